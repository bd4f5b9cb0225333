"""Run bookkeeping: identity, status, checkpoints, and clearing results for --force.

A run is keyed by (encoder, corpus, analysis, config hash). Starting a run that is done is
a no-op; starting one that is running or failed resumes it from its checkpoint, which is
written in the same transaction as the rows it covers, so the two always agree. Who may
resume it (claims, failure) is pipeline/lifecycle.py's job, shared with probes.
"""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import __version__
from app.config import REPO_ROOT, ExtractConfig
from app.errors import RunInProgress, RunNotFound
from app.store.corpora import utcnow
from app.store.schema import Base, Corpus, Encoder, Run, RunCheckpoint, RunVariant

RunState = Literal["new", "resume", "done"]


def code_version() -> str:
    """Package version plus the git commit (and '-dirty') when run from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{__version__}+{sha}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def result_tables() -> list[str]:
    """Every table holding rows that belong to a run."""
    return [
        name
        for name, table in Base.metadata.tables.items()
        if "run_id" in table.c and name not in ("run_checkpoints", "run_claims", "run_variants")
    ]


def run_variant(analysis: str, config: ExtractConfig) -> RunVariant:
    """The weighting and objective a run's config asks for (the defaults when absent)."""
    objective = config.option("objective", "mlm") if analysis == "gradients" else None
    return RunVariant(weighting=config.option("weighting", "weight"), objective=objective)


@dataclass
class RunHandle:
    run: Run
    state: RunState


def start_run(
    session: Session,
    encoder: Encoder,
    corpus: Corpus,
    analysis: str,
    config: ExtractConfig,
    *,
    force: bool = False,
    claim: Callable[[Run, bool], None] | None = None,
) -> RunHandle:
    """Find or create the run of this identity; `claim(run, fresh)` is called on every run
    that will be computed, before it changes (it raises when a live process holds the run)."""
    existing = session.scalar(
        select(Run).where(
            Run.encoder_id == encoder.id,
            Run.corpus_id == corpus.id,
            Run.analysis == analysis,
            Run.config_hash == config.config_hash(),
        )
    )
    if existing is not None and existing.status == "done" and not force:
        return RunHandle(existing, "done")
    if existing is not None and claim is not None:
        claim(existing, False)
    if existing is not None and force:
        clear_results(session, existing.id)
        existing.mlflow_run_id = None  # a redo is a new MLflow run
    if existing is not None:
        state: RunState = "new" if force else "resume"
        existing.status = "running"
        existing.error = None
        existing.code_version = code_version()
        if force:
            existing.started_at = utcnow()
            existing.finished_at = None
        return RunHandle(existing, state)
    run = Run(
        encoder_id=encoder.id,
        corpus_id=corpus.id,
        analysis=analysis,
        config_json=json.dumps(config.as_params(), sort_keys=True, default=str),
        config_hash=config.config_hash(),
        status="running",
        started_at=utcnow(),
        code_version=code_version(),
    )
    session.add(run)
    try:
        session.flush()
    except IntegrityError:  # another process created the same run a moment ago
        raise RunInProgress(
            f"the {analysis} run of this model, corpus and config was just started by another "
            "process: wait for it to finish, then rerun to use its result"
        ) from None
    variant = run_variant(analysis, config)
    variant.run_id = run.id
    session.add(variant)
    session.flush()
    if claim is not None:
        claim(run, True)
    return RunHandle(run, "new")


def clear_results(session: Session, run_id: int) -> None:
    for name in result_tables() + ["run_checkpoints"]:
        table = Base.metadata.tables[name]
        session.execute(delete(table).where(table.c.run_id == run_id))


def pack_state(state: dict[str, np.ndarray]) -> bytes:
    """An accumulator's state as .npz bytes: checkpoints and Ray shards store it alike."""
    buffer = io.BytesIO()
    np.savez(buffer, **state)  # type: ignore[arg-type]  # numpy's stub: allow_pickle vs **kwds
    return buffer.getvalue()


def unpack_state(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def save_checkpoint(
    session: Session, run_id: int, segments_done: int, state: dict[str, np.ndarray]
) -> None:
    checkpoint = session.get(RunCheckpoint, run_id)
    if checkpoint is None:
        session.add(
            RunCheckpoint(
                run_id=run_id, segments_done=segments_done, state=pack_state(state), updated_at=utcnow()
            )
        )
    else:
        checkpoint.segments_done = segments_done
        checkpoint.state = pack_state(state)
        checkpoint.updated_at = utcnow()


def load_checkpoint(session: Session, run_id: int) -> tuple[int, dict[str, np.ndarray]] | None:
    checkpoint = session.get(RunCheckpoint, run_id)
    if checkpoint is None:
        return None
    return checkpoint.segments_done, unpack_state(checkpoint.state)


def finish_run(session: Session, run_id: int, *, n_segments: int, skipped: dict[str, int]) -> None:
    run = session.get(Run, run_id)
    assert run is not None
    run.status = "done"
    run.finished_at = utcnow()
    run.n_segments = n_segments
    run.skipped_json = json.dumps(skipped, sort_keys=True)
    checkpoint = session.get(RunCheckpoint, run_id)
    if checkpoint is not None:
        session.delete(checkpoint)


def latest_run(
    session: Session,
    analysis: str,
    *,
    encoder: str | None = None,
    corpus: str | None = None,
    weighting: str = "weight",
    objective: str | None = None,
) -> Run:
    """The most recent finished run of `analysis`, optionally for one encoder / corpus.

    Weight-based runs unless `weighting='norm'`; gradient runs of any objective unless
    one is named.
    """
    # Outer join: a run stored without a variant row (another code path) counts as the default.
    query = (
        select(Run)
        .outerjoin(RunVariant, RunVariant.run_id == Run.id)
        .where(
            Run.analysis == analysis,
            Run.status == "done",
            func.coalesce(RunVariant.weighting, "weight") == weighting,
        )
    )
    if objective is not None:
        query = query.where(func.coalesce(RunVariant.objective, "mlm") == objective)
    if encoder is not None:
        query = query.join(Encoder, Encoder.id == Run.encoder_id).where(Encoder.name == encoder)
    if corpus is not None:
        query = query.join(Corpus, Corpus.id == Run.corpus_id).where(Corpus.name == corpus)
    run = session.scalar(query.order_by(Run.finished_at.desc(), Run.id.desc()).limit(1))
    if run is None:
        scope = " ".join(
            filter(
                None,
                [
                    f"model {encoder}" if encoder else "",
                    f"corpus {corpus}" if corpus else "",
                    f"weighting {weighting}" if weighting != "weight" else "",
                    f"objective {objective}" if objective else "",
                ],
            )
        )
        raise RunNotFound(
            f"no finished {analysis} run{' for ' + scope if scope else ''}: "
            f"run `headlens analyze {analysis} --model M --corpus C"
            f"{' --weighting ' + weighting if weighting != 'weight' else ''}"
            f"{' --objective ' + objective if objective else ''}` first"
        )
    return run


def latest_probe_test_corpus(session: Session, encoder: str) -> str:
    """The test corpus of the most recent finished probe of `encoder`."""
    from app.store.schema import ProbeRun

    query = (
        select(Corpus.name)
        .join(ProbeRun, ProbeRun.test_corpus_id == Corpus.id)
        .join(Encoder, Encoder.id == ProbeRun.encoder_id)
        .where(Encoder.name == encoder, ProbeRun.status == "done")
        .order_by(ProbeRun.finished_at.desc(), ProbeRun.id.desc())
        .limit(1)
    )
    name = session.scalar(query)
    if name is None:
        raise RunNotFound(f"no finished probe of {encoder}: run `headlens probe attn_glove --model {encoder}`")
    return name
