"""Run claims: the database half of a unit of work's lifecycle (see pipeline/lifecycle.py).

A claim row says which process computes a run. Claiming inserts it (the primary key makes
two claims of one run impossible on every backend); a live claim means "in progress", a
stale one (the process is gone, or silent too long) is taken over and reported so the
caller can mark the dead attempt failed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import AppError, RunInProgress
from app.store.corpora import utcnow
from app.store.schema import RunClaim

# A claim from another host is stale after this long without a heartbeat (seconds). On the
# same host the PID decides at once. Heartbeats come with every checkpoint / epoch.
DEFAULT_STALE_AFTER = 3600.0
# Claims this process holds; a row with our PID but not in here is a leftover of an
# attempt that failed inside this same process (a library user's loop, the tests).
_HELD: set[tuple[str, int]] = set()


def stale_after() -> float:
    value = os.environ.get("HEADLENS_STALE_AFTER", "")
    try:
        return float(value) if value else DEFAULT_STALE_AFTER
    except ValueError:
        raise AppError(f"HEADLENS_STALE_AFTER must be seconds, found {value!r}") from None


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


@dataclass(frozen=True)
class Stale:
    """A claim whose process died: what to tell the user and the run to mark failed."""

    kind: str
    run_id: int
    pid: int
    host: str
    heartbeat_at: datetime

    def reason(self) -> str:
        return (
            f"process {self.pid} on {self.host} stopped without finishing "
            f"(last heartbeat {self.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
        )


def liveness(claim: RunClaim, now: datetime | None = None) -> bool:
    """Is the claiming process still at work?

    Same host: its PID must exist (and, against PID reuse, have beaten recently); another
    host: its heartbeat must be recent.
    """
    fresh = ((now or utcnow()) - claim.heartbeat_at).total_seconds() < stale_after()
    if claim.host == this_host():
        if claim.pid == os.getpid():
            return (claim.kind, claim.run_id) in _HELD
        return fresh and pid_alive(claim.pid)
    return fresh


def claim(session: Session, kind: str, run_id: int, label: str) -> Stale | None:
    """Claim run `run_id` for this process, or raise RunInProgress naming the live holder.

    Returns the stale claim that was taken over, if any (its run must be marked failed).
    """
    now = utcnow()
    existing = session.get(RunClaim, (kind, run_id))
    stale = None
    if existing is not None:
        if liveness(existing, now):
            since = int((now - existing.heartbeat_at).total_seconds())
            raise RunInProgress(
                f"{label} {run_id} is in progress in process {existing.pid} on {existing.host} "
                f"(heartbeat {since} s ago): wait for it to finish, then rerun to use its result"
            )
        stale = Stale(kind, run_id, existing.pid, existing.host, existing.heartbeat_at)
        existing.pid, existing.host = os.getpid(), this_host()
        existing.claimed_at = existing.heartbeat_at = now
    else:
        session.add(
            RunClaim(
                kind=kind,
                run_id=run_id,
                pid=os.getpid(),
                host=this_host(),
                claimed_at=now,
                heartbeat_at=now,
            )
        )
    try:
        session.flush()  # a concurrent claim of the same run fails here, on the primary key
    except IntegrityError:
        raise RunInProgress(
            f"{label} {run_id} was claimed by another process a moment ago: wait for it to "
            "finish, then rerun to use its result"
        ) from None
    _HELD.add((kind, run_id))
    return stale


def heartbeat(session: Session, kind: str, run_ids: list[int]) -> None:
    session.execute(
        update(RunClaim)
        .where(RunClaim.kind == kind, RunClaim.run_id.in_(run_ids), RunClaim.pid == os.getpid())
        .values(heartbeat_at=utcnow())
    )


def release(session: Session, kind: str, run_ids: list[int]) -> None:
    session.execute(
        delete(RunClaim).where(
            RunClaim.kind == kind, RunClaim.run_id.in_(run_ids), RunClaim.pid == os.getpid()
        )
    )
    for run_id in run_ids:
        _HELD.discard((kind, run_id))


def forget(kind: str, run_ids: list[int]) -> None:
    """This process stops holding the claims (its rows, if any, will be found stale)."""
    for run_id in run_ids:
        _HELD.discard((kind, run_id))
