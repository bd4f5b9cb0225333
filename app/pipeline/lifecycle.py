"""One lifecycle for a unit of work (analysis runs, a probe run): claim, heartbeat,
finish or fail, with the MLflow runs inside it.

    work = Lifecycle(settings, db, "analysis")
    with session_scope(db) as session:
        work.claim(session, run)           # RunInProgress if a live process has it
    work.settle()                          # dead earlier attempts: FAILED in MLflow too
    with work.guard():                     # any exception: failed in the DB and MLflow
        ... compute; in each write transaction: work.heartbeat(session) ...
        with session_scope(db) as session:
            ...; work.finish(session, [run.id])

A failure that cannot even be recorded (disk full, the lock held too long) leaves the claim
behind; the next command that claims the run finds its process gone and fails it then.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from app.config import Settings
from app.store import claims
from app.store.db import session_scope

Say = Callable[[str], None]
LABELS = {"analysis": "run", "probe": "probe run"}


def _model(kind: str):
    from app.store.schema import ProbeRun, Run

    return {"analysis": Run, "probe": ProbeRun}[kind]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Lifecycle:
    """The runs of one kind that this process computes, from claim to finish or failure."""

    def __init__(self, settings: Settings, db: Engine, kind: str, say: Say | None = None):
        self.settings, self.db, self.kind = settings, db, kind
        self.say = say or _stderr
        self.active: list[int] = []  # claimed, not yet finished
        self.mlflow: dict[int, str | None] = {}  # run id -> MLflow run id of this attempt
        self._dead_mlflow: list[str] = []

    # ------------------------------------------------------------------ claim

    def claim(self, session: Any, row: Any, *, fresh: bool = False) -> None:
        """Claim `row` (a Run or ProbeRun) inside the caller's start transaction.

        `fresh`: the row was created in this transaction (no earlier attempt to check).
        """
        was_running = row.status == "running" and not fresh
        stale = claims.claim(session, self.kind, row.id, LABELS[self.kind])
        reason = None
        if stale is not None:
            reason = stale.reason()
        elif was_running:
            reason = "an earlier attempt stopped without finishing (no process holds it)"
        if reason is not None:
            row.status, row.error = "failed", reason[:2000]
            if row.mlflow_run_id:
                self._dead_mlflow.append(row.mlflow_run_id)
            self.say(f"{LABELS[self.kind]} {row.id}: {reason}; marked failed, taking it over")
            # The new attempt gets its own MLflow run; the dead one stays FAILED.
            row.mlflow_run_id = None
        self.active.append(row.id)

    def abandon(self, keep: int = 0) -> None:
        """The start transaction rolled back: the claims after the first `keep` were not made
        after all."""
        claims.forget(self.kind, self.active[keep:])
        self.active = self.active[:keep]

    def settle(self) -> None:
        """Mark the MLflow runs of dead attempts FAILED (after the claim is committed)."""
        if self._dead_mlflow:
            from app.tracking import Tracker

            Tracker(self.settings).fail_if_present(self._dead_mlflow)
            self._dead_mlflow = []

    # ------------------------------------------------------------------ while running

    def heartbeat(self, session: Any) -> None:
        if self.active:
            claims.heartbeat(session, self.kind, self.active)

    def finish(self, session: Any, run_ids: list[int]) -> None:
        """Release the claims in the transaction that records the result."""
        claims.release(session, self.kind, run_ids)
        self.active = [run_id for run_id in self.active if run_id not in run_ids]

    # ------------------------------------------------------------------ failure

    def fail(self, error: BaseException) -> None:
        """Record the failure of every unfinished run, in the database and in MLflow.

        Best effort: when the database cannot be written (disk full, lock), the claim stays
        and the next command that touches the run finds its process gone.
        """
        if not self.active:
            return
        run_ids, message = list(self.active), f"{type(error).__name__}: {error}"[:2000]
        model = _model(self.kind)
        try:
            with session_scope(self.db) as session:
                for run_id in run_ids:
                    row = session.get(model, run_id)
                    if row is not None:
                        from app.store.corpora import utcnow

                        row.status, row.error, row.finished_at = "failed", message, utcnow()
                claims.release(session, self.kind, run_ids)
        except Exception as secondary:  # noqa: BLE001 - the first error is the one to raise
            claims.forget(self.kind, run_ids)
            self.say(
                f"could not record the failure in the database ({type(secondary).__name__}); "
                "the next command that touches the run will"
            )
        started = [self.mlflow[run_id] for run_id in run_ids if run_id in self.mlflow]
        if started:
            try:
                from app.tracking import Tracker

                Tracker(self.settings).fail_if_present(started)
            except Exception as secondary:  # noqa: BLE001
                self.say(f"could not mark the MLflow run failed ({type(secondary).__name__})")
        self.active = []

    @contextmanager
    def guard(self) -> Iterator[Lifecycle]:
        try:
            yield self
        except BaseException as error:
            self.fail(error)
            raise


def abandoned(db: Engine) -> list[str]:
    """Read-only: runs marked running that no live process computes, one line each.

    A reader cannot fix them (it never writes); the next command that claims one fails
    it in the database and MLflow and takes it over.
    """
    from sqlalchemy import select

    from app.store.schema import RunClaim

    lines = []
    with session_scope(db) as session:
        held = {(claim.kind, claim.run_id): claim for claim in session.scalars(select(RunClaim))}
        for kind, label in LABELS.items():
            model = _model(kind)
            for row in session.scalars(select(model).where(model.status == "running")):
                claim = held.get((kind, row.id))
                if claim is not None and claims.liveness(claim):
                    continue
                who = f"process {claim.pid} on {claim.host}" if claim else "no process"
                command = "headlens analyze" if kind == "analysis" else "headlens probe"
                lines.append(
                    f"{label} {row.id} is marked running but {who} is computing it: the next "
                    f"`{command}` of it marks it failed and resumes it"
                )
    return lines
