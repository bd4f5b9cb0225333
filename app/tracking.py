"""MLflow tracking: every analysis run and probe training is also an MLflow run.

The store lives under `mlruns/` (a SQLite backend, the one MLflow recommends; it cannot
use DuckDB) with artifacts beside it. One experiment per corpus, runs named
`<analysis>:<model>`, so the UI compares models on the same data side by side. The database
run id is an MLflow tag and the MLflow run id is stored on the database row.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config import Settings


def metric_key(text: str) -> str:
    """MLflow allows letters, digits and `_-. :/` in metric names; anything else becomes `_`."""
    return re.sub(r"[^\w\-. :/]", "_", text)


def _quiet() -> None:
    # MLflow runs its own Alembic migrations on first use and logs each at INFO.
    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Tracker:
    """A thin, explicit wrapper over MlflowClient (no global active-run state)."""

    def __init__(self, settings: Settings):
        from mlflow.tracking import MlflowClient

        _quiet()  # after the import: mlflow sets its own log level when imported

        settings.mlruns_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.client = MlflowClient(tracking_uri=settings.mlflow_uri)

    def experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = (self.settings.mlflow_artifacts / name).as_uri()
        return self.client.create_experiment(name, artifact_location=location)

    def start(
        self, experiment: str, run_name: str, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> str:
        run = self.client.create_run(
            self.experiment_id(experiment), run_name=run_name, tags=dict(tags)
        )
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def resume(self, run_id: str) -> bool:
        """Set the run RUNNING again; False when this store does not have it (lost, or
        another --mlruns), so the caller starts a new one instead."""
        if not self.exists(run_id):
            return False
        self.client.update_run(run_id, status="RUNNING")
        return True

    def fail_if_present(self, run_ids: list[str]) -> None:
        """Mark runs FAILED, skipping any this store does not have."""
        for run_id in run_ids:
            if self.exists(run_id):
                self.client.set_terminated(run_id, status="FAILED")

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        fresh = [
            Param(key, str(value)[:6000]) for key, value in params.items() if key not in existing
        ]
        if fresh:
            self.client.log_batch(run_id, params=fresh)

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

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, *, failed: bool = False) -> None:
        self.client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
