"""MLflow tracking: every analysis run and probe training is also an MLflow run.

The store lives under `mlruns/` (a SQLite backend, the one MLflow recommends; it cannot
use DuckDB) with artifacts beside it. One experiment per corpus, runs named
`<analysis>:<model>`, so the UI compares models on the same data side by side. The database
run id is an MLflow tag and the MLflow run id is stored on the database row.

With `--mlflow-uri` (or MLFLOW_TRACKING_URI) the runs go to a tracking server instead, and
the server places the artifacts. MLflow is the mirror, the database the record: when the
server cannot be reached, the tracker says so once, stops calling it, and the pipeline keeps
the run in `mlflow_backlog` for `headlens runs --relog`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from app.config import Settings

T = TypeVar("T")


def metric_key(text: str) -> str:
    """MLflow allows letters, digits and `_-. :/` in metric names; anything else becomes `_`."""
    return re.sub(r"[^\w\-. :/]", "_", text)


def _quiet() -> None:
    # MLflow runs its own Alembic migrations on first use and logs each at INFO.
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _tolerant(method: Callable[..., T]) -> Callable[..., T | None]:
    """Run an MLflow call unless the tracker has failed before; a failure is remembered
    (and said once) instead of raised. Calls about no run (None) are skipped."""

    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> T | None:
        if self.error is not None or (args and args[0] is None and method.__name__ != "start"):
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any MLflow/HTTP failure: the DB run stands
            self.error = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"[:500]
            print(
                f"headlens: MLflow at {self.settings.mlflow_uri} failed ({self.error[:200]}); "
                "the results are in the database: `headlens runs --relog` logs them to MLflow later",
                file=sys.stderr,
            )
            return None

    return wrapper


class Tracker:
    """A thin, explicit wrapper over MlflowClient (no global active-run state).

    `error` is None while every call has succeeded; after a failure the tracker is inert.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.error: str | None = None
        if not settings.mlflow_is_local:
            # A server that is down should cost seconds, not MLflow's default minutes of
            # retries; a user's own settings win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.tracking import MlflowClient

        _quiet()  # after the import: mlflow sets its own log level when imported

        if settings.mlflow_is_local:
            settings.mlruns_dir.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=settings.mlflow_uri)

    @property
    def ok(self) -> bool:
        return self.error is None

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        if not self.settings.mlflow_is_local:  # the server's artifact root
            return self.client.create_experiment(name)
        location = (self.settings.mlflow_artifacts / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    @_tolerant
    def start(
        self, experiment: str, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        run = self.client.create_run(
            self.experiment_id(experiment), run_name=run_name, tags=dict(tags)
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    @_tolerant
    def exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException as error:
            if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code):
                return False
            raise
        return True

    @_tolerant
    def resume(self, run_id: str) -> bool:
        """Set the run RUNNING again; False when this store does not have it (lost, or
        another --mlruns), so the caller starts a new one instead."""
        if not self.exists(run_id):
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def fail_if_present(self, run_ids: Sequence[str | None]) -> None:
        """Mark runs FAILED, skipping any this store does not have (None: never started)."""
        for run_id in run_ids:
            if run_id is not None and self.exists(run_id):
                self.client.set_terminated(run_id, status="FAILED")

    @_tolerant
    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        fresh = [
            Param(key, str(value)[:6000]) for key, value in params.items() if key not in existing
        ]
        if fresh:
            self.client.log_batch(run_id, params=fresh)

    @_tolerant
    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """One batch call (10x faster than one call per metric, shared/STACK.md §3)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(metric_key(key), float(value), now, step)
            for key, value in metrics.items()
            if value is not None and math.isfinite(float(value))
        ]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    @_tolerant
    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    @_tolerant
    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    @_tolerant
    def finish(self, run_id: str, *, failed: bool = False) -> None:
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


# ---------------------------------------------------------------- helper process

# MLflow's import (pandas, pyarrow, its SQLAlchemy store: about 2 s) and its store's first
# queries are single-threaded work that a command would otherwise do before or after its
# encoder pass. A helper process does them on another core while this one imports torch and
# loads the encoder; the calls then travel over a multiprocessing pipe. The helper is
# spawned, not forked: the command may already hold torch's threads.


def _serve(connection: Any, settings: Settings) -> None:
    """The helper's loop: one Tracker, one reply per request, until the pipe closes."""
    import signal

    from app.heap import short_lived_process

    short_lived_process()  # its exit skips the teardown anyway (os._exit below)
    # Ctrl-C reaches the whole process group: the command handles it (and marks its runs
    # failed); the helper ends when the command closes the pipe or exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        tracker: Tracker | None = Tracker(settings)
        failure: BaseException | None = None
    except Exception as error:  # noqa: BLE001 - reported with every reply
        tracker, failure = None, error
    while True:
        try:
            method, args, kwargs = connection.recv()
        except EOFError:
            # The command is done with MLflow, and every call has had its reply: what MLflow
            # wrote is written (its calls are synchronous). Exit now, skipping the interpreter's
            # teardown of MLflow's modules: about 0.9 s that the command would wait for.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        try:
            if tracker is None:
                raise RuntimeError(f"MLflow could not start: {failure}")
            reply = ("ok", getattr(tracker, method)(*args, **kwargs), tracker.error)
        except Exception as error:  # noqa: BLE001 - raised again in the caller
            reply = ("raise", RuntimeError(f"{type(error).__name__}: {error}"), None if tracker is None else tracker.error)
        connection.send(reply)


class BackgroundTracker:
    """A Tracker that lives in a helper process: same methods, same `error`.

    Started early (`shared_tracker`), it imports MLflow while the caller loads its model;
    the first call waits for it. A helper that dies or cannot import MLflow makes the
    tracker inert with an error, like a tracking server that is down: the database run
    stands and `headlens runs --relog` logs it later.
    """

    def __init__(self, settings: Settings):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.settings = settings
        self.error: str | None = None
        self._connection, theirs = context.Pipe()
        # Daemonic: multiprocessing stops it when the command exits, however it exits.
        self._process = context.Process(target=_serve, args=(theirs, settings), daemon=True,
                                        name="headlens-mlflow")
        self._process.start()
        theirs.close()  # the helper's end: closed here, so a helper that dies is an EOF
        self._used = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._used = True
        try:
            self._connection.send((method, args, kwargs))
            outcome, value, error = self._connection.recv()
        except (EOFError, OSError) as failure:
            if self.error is None:
                self.error = f"the MLflow helper process failed ({type(failure).__name__}: {failure})"
                print(
                    f"headlens: {self.error}; the results are in the database: "
                    "`headlens runs --relog` logs them to MLflow later",
                    file=sys.stderr,
                )
            return None
        self.error = error
        if outcome == "raise":
            raise value
        return value

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_") or not callable(getattr(Tracker, method, None)):
            raise AttributeError(method)
        return functools.partial(self._call, method)

    def close(self) -> None:
        """End the helper: every call has had its reply, so nothing is left to do there.

        It exits when the pipe closes; one that was never called (every run already
        finished) may still be importing MLflow and is stopped instead.
        """
        self._connection.close()
        if not self._used:
            self._process.kill()
        self._process.join(timeout=30)
        if self._process.exitcode is None:  # a helper that hangs is stopped
            self._process.kill()
            self._process.join()


# Within `helper_process()`: the helpers started so far, one per store (None outside).
_helpers: dict[str, BackgroundTracker] | None = None


@contextlib.contextmanager
def helper_process() -> Iterator[None]:
    """Within: MLflow runs in one helper process, started by the first pass that tracks and
    used by every pass after it, then closed on the way out (the CLI sets this).

    So a command pays MLflow's import once, on another core, and its own memory holds no
    MLflow (0.15 GiB with its server-side imports; the helper holds about as much beside it).
    Like a tracker in the process, the helper stops calling MLflow after a failure: the
    command's later runs wait in `mlflow_backlog` for `headlens runs --relog`. A notebook
    keeps MLflow in its own process, imported once.
    """
    global _helpers
    outer, _helpers = _helpers, {}
    try:
        yield
    finally:
        helpers, _helpers = _helpers, outer
        for tracker in helpers.values():
            tracker.close()


def shared_tracker(settings: Settings, *, local: bool = True) -> BackgroundTracker | None:
    """The helper process's tracker for this store inside `helper_process()` (started now if it
    is the first), for a local pass; otherwise None: the pass makes its own `Tracker`."""
    if _helpers is None or not local:
        return None
    key = settings.mlflow_uri
    if key not in _helpers:
        _helpers[key] = BackgroundTracker(settings)
    return _helpers[key]


AnyTracker = Tracker | BackgroundTracker  # the same methods, in this process or the helper


def tracker_for(settings: Settings) -> AnyTracker:
    """The tracker a pass should use: the shared helper's when there is one, else its own."""
    return shared_tracker(settings) or Tracker(settings)
