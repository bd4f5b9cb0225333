"""Log to MLflow what it missed: the runs in `mlflow_backlog` (server down, process died).

The database is the record, so everything is rebuilt from it: the run's config as params,
its identity as tags, and its results as metrics (an analysis' per-metric means over heads
and its segment count; a probe's scores). A run that MLflow already knows (it went down
mid-run) is completed in place; one it never saw is created under the same experiment and
run name the live path uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sqlalchemy import func, select

from app.config import Settings
from app.pipeline.common import open_db
from app.store.db import session_scope

if TYPE_CHECKING:
    from app.store.mlflow_backlog import Kind


@dataclass
class Relogged:
    kind: str
    ref_id: int
    mlflow_run_id: str | None
    outcome: str  # "logged", "skipped: <why>", "failed: <error>"


def relog(settings: Settings) -> list[Relogged]:
    from app.store.mlflow_backlog import backlog, settle
    from app.tracking import Tracker

    db = open_db(settings)
    with session_scope(db) as session:
        items = [(row.kind, row.ref_id) for row in backlog(session)]
    if not items:
        return []
    tracker = Tracker(settings)
    results = []
    for kind, ref_id in items:
        with session_scope(db) as session:
            plan = _analysis_plan(session, ref_id) if kind == "analysis" else _probe_plan(session, ref_id)
        if isinstance(plan, str):
            results.append(Relogged(kind, ref_id, None, f"skipped: {plan}"))
            continue
        known = plan.mlflow_run_id is not None and tracker.exists(plan.mlflow_run_id)
        mlflow_id = plan.mlflow_run_id if known else tracker.start(
            plan.experiment, plan.run_name, plan.params, plan.tags
        )
        tracker.log_params(mlflow_id, plan.params)
        tracker.set_tags(mlflow_id, {**plan.tags, "headlens.relogged": "true"})
        tracker.log_metrics(mlflow_id, plan.metrics)
        tracker.finish(mlflow_id)
        with session_scope(db) as session:
            if tracker.ok:
                plan.store_id(session, mlflow_id)
            settle(session, cast("Kind", kind), ref_id, tracker.error)
        outcome = "logged" if tracker.ok else f"failed: {tracker.error}"
        results.append(Relogged(kind, ref_id, mlflow_id if tracker.ok else None, outcome))
        if not tracker.ok:
            break  # the server is down again: the rest stay in the backlog
    return results


@dataclass
class _Plan:
    experiment: str
    run_name: str
    params: dict[str, object]
    tags: dict[str, str]
    metrics: dict[str, float]
    mlflow_run_id: str | None
    table: type
    ref_id: int

    def store_id(self, session, mlflow_id: str | None) -> None:
        session.get(self.table, self.ref_id).mlflow_run_id = mlflow_id


def _analysis_plan(session, run_id: int) -> _Plan | str:
    from app.store.schema import Corpus, Encoder, HeadMetric, Run

    run = session.get(Run, run_id)
    if run is None or run.status != "done":
        return f"run {run_id} is {run.status if run else 'gone'}; it is logged when it finishes"
    model = session.get(Encoder, run.encoder_id).name
    corpus = session.get(Corpus, run.corpus_id).name
    means = session.execute(
        select(HeadMetric.metric, func.avg(HeadMetric.value))
        .where(HeadMetric.run_id == run_id)
        .group_by(HeadMetric.metric)
    ).all()
    metrics = {f"mean_{metric}": float(value) for metric, value in means}
    metrics["n_segments"] = float(run.n_segments or 0)
    return _Plan(
        experiment=f"headlens/{corpus}",
        run_name=f"{run.analysis}:{model}",
        params={"analysis": run.analysis, "model": model, "corpus": corpus, **json.loads(run.config_json)},
        tags={"headlens.run_id": str(run_id), "headlens.model": model, "headlens.corpus": corpus,
              "headlens.analysis": run.analysis},
        metrics=metrics,
        mlflow_run_id=run.mlflow_run_id,
        table=Run,
        ref_id=run_id,
    )


def _probe_plan(session, probe_run_id: int) -> _Plan | str:
    from app.store.schema import Corpus, Encoder, ProbeRun

    row = session.get(ProbeRun, probe_run_id)
    if row is None or row.status != "done":
        return f"probe run {probe_run_id} is {row.status if row else 'gone'}; it is logged when it finishes"
    model = session.get(Encoder, row.encoder_id).name if row.encoder_id else None
    train = session.get(Corpus, row.train_corpus_id).name
    identity = json.loads(row.config_json)
    params = {k: v for k, v in identity.items() if k != "probe"} | (identity.get("probe") or {})
    metrics = {f"test_{row.metric}": row.test_score, f"best_dev_{row.metric}": row.dev_score}
    return _Plan(
        experiment=f"headlens-probes/{train}",
        run_name=f"{row.kind}:{model or '-'}" + (f":layers={row.layers}" if row.layers else ""),
        params=params,
        tags={"headlens.probe_run_id": str(probe_run_id), "headlens.probe": row.kind},
        metrics={key: float(value) for key, value in metrics.items() if value is not None},
        mlflow_run_id=row.mlflow_run_id,
        table=ProbeRun,
        ref_id=probe_run_id,
    )
