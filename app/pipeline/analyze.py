"""Analyze stage: encoder passes over a corpus feeding streaming analyses.

Each analysis is a database run and an MLflow run. Analyses that only read attention share
one forward pass; gradient analyses need the masked-LM model on masked input and get a pass
of their own. Rows are written with a checkpoint after every chunk of segments, in one
transaction, so an interrupted pass resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from app.config import ExtractConfig, Settings
from app.errors import AnalysisUnavailable, AppError, UnknownName
from app.pipeline.common import open_db, progress_bar
from app.store.db import session_scope

Say = Callable[[str], None]


@dataclass
class RunSummary:
    run_id: int
    analysis: str
    model: str
    corpus: str
    state: str  # "new", "resume", "done" (already finished: nothing ran)
    n_segments: int | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    weighting: str = "weight"

    @property
    def key(self) -> str:
        """The analysis name, plus ':norm' for a norm-based run (unique within one call)."""
        return self.analysis if self.weighting == "weight" else f"{self.analysis}:{self.weighting}"


@dataclass
class _Target:
    """The encoder and corpus rows a pass needs, read once."""

    model: str
    corpus: str
    corpus_id: int
    source: Path
    init: str
    has_mlm_head: bool


def analyze(
    settings: Settings,
    analyses: Sequence[str],
    *,
    model: str,
    corpus: str,
    config: ExtractConfig,
    force: bool = False,
    on_event: Say | None = None,
    weightings: Sequence[str] = ("weight",),
    objective: str = "mlm",
) -> list[RunSummary]:
    """Run analyses of `model` over `corpus`: one database + MLflow run each.

    `weightings` ('weight', 'norm'): each forward analysis runs once per weighting, all
    in the same engine pass; a norm-based run is a run of its own (its config carries
    `weighting=norm`). `objective` ('mlm', 'contrastive') is what the gradients analysis
    differentiates (see analysis/importance.py and analysis/contrastive.py).
    """
    from app.analysis.registry import ANALYSES
    from app.store.corpora import find_corpus
    from app.store.encoders import find_encoder
    from app.store.runs import start_run

    say = on_event or (lambda message: None)
    unknown = [name for name in analyses if name not in ANALYSES]
    if unknown:
        raise UnknownName("analysis", unknown[0], list(ANALYSES))
    for weighting in weightings:
        if weighting not in WEIGHTINGS:
            raise UnknownName("weighting", weighting, list(WEIGHTINGS))
    if objective not in OBJECTIVES:
        raise UnknownName("objective", objective, list(OBJECTIVES))
    jobs = [
        (name, weighting)
        for name in analyses
        for weighting in (["weight"] if ANALYSES[name].cls.needs_gradients else weightings)
    ]
    db = open_db(settings)
    with session_scope(db) as session:
        encoder = find_encoder(session, model)
        corpus_row = find_corpus(session, corpus)
        target = _Target(
            model, corpus, corpus_row.id, Path(encoder.source), encoder.init, encoder.has_mlm_head
        )
        for name in analyses:
            if ANALYSES[name].cls.needs_gradients and objective == "mlm" and not target.has_mlm_head:
                raise AnalysisUnavailable(
                    f"model {model!r} has no masked-LM head (no cls.predictions / lm_head weights), "
                    f"so the {name} analysis cannot run on it; ingest a checkpoint that has one "
                    "(e.g. a BertForMaskedLM directory), or use --objective contrastive"
                )
        # Documents are truncated to the budget, not skipped, for analyses that ask for it
        # (coreference, like the paper); the overflow rule is part of each run's config.
        configs = {
            (name, weighting): _run_config(config, ANALYSES[name], weighting, objective)
            for name, weighting in jobs
        }
        summaries: dict[str, RunSummary] = {}
        for name, weighting in jobs:
            run_config = configs[name, weighting]
            handle = start_run(session, encoder, corpus_row, name, run_config, force=force)
            summary = RunSummary(
                handle.run.id,
                name,
                model,
                corpus,
                handle.state,
                mlflow_run_id=handle.run.mlflow_run_id,
                weighting=weighting,
            )
            summaries[summary.key] = summary
    for summary in summaries.values():
        if summary.state == "done":
            say(
                f"{summary.key}: run {summary.run_id} already finished for this model, corpus and "
                "config (use --force to redo)"
            )
    # One pass per (forward or gradient mode, overflow rule): analyses in a pass share inputs
    # (weight- and norm-based runs included: the norms come from the same forward).
    passes: dict[tuple[str, str], list[RunSummary]] = {}
    for summary in summaries.values():
        if summary.state != "done":
            spec = ANALYSES[summary.analysis]
            mode = ("gradients:" + objective) if spec.cls.needs_gradients else "forward"
            passes.setdefault((mode, configs[summary.analysis, summary.weighting].overflow), []).append(summary)
    for (mode, _overflow), batch in passes.items():
        first = configs[batch[0].analysis, batch[0].weighting]
        try:
            _run_pass(settings, db, target, first, batch, mode=mode, say=say)
        except BaseException as error:
            _mark_failed(settings, db, batch, error)
            raise
    return list(summaries.values())


WEIGHTINGS = ("weight", "norm")
OBJECTIVES = ("mlm", "contrastive")


def _run_config(config: ExtractConfig, spec: Any, weighting: str, objective: str) -> ExtractConfig:
    """The config a run is keyed by: the shared one, plus what is specific to this run.

    Defaults add nothing (weight-based, MLM), so runs made before these options existed
    keep their identity.
    """
    options = dict(config.options)
    if spec.overflow == "truncate":
        config = replace(config, overflow="truncate")
    if weighting != "weight":
        options["weighting"] = weighting
    if spec.cls.needs_gradients and objective != "mlm":
        options["objective"] = objective
        # In-batch negatives: the batch is part of the loss, so of the run's identity.
        options["pairs_per_batch"] = config.batch_size
    return replace(config, options=tuple(sorted(options.items())))


def _mark_failed(
    settings: Settings, db: Engine, summaries: list[RunSummary], error: BaseException
) -> None:
    """Record the failure on the database and MLflow runs; checkpoints stay for a resume."""
    from app.store.runs import fail_run

    with session_scope(db) as session:
        for summary in summaries:
            fail_run(session, summary.run_id, f"{type(error).__name__}: {error}")
    started = [summary.mlflow_run_id for summary in summaries if summary.mlflow_run_id]
    if started:
        from app.tracking import Tracker

        tracker = Tracker(settings)
        for mlflow_id in started:
            tracker.finish(mlflow_id, failed=True)


def _run_pass(
    settings: Settings,
    db: Engine,
    target: _Target,
    config: ExtractConfig,
    summaries: list[RunSummary],
    *,
    mode: str,
    say: Say,
) -> None:
    from app.analysis.registry import ANALYSES
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine, length_order
    from app.ingest.models import load_encoder
    from app.pipeline.contexts import load_context
    from app.store.corpora import segment_inputs
    from app.store.runs import finish_run, load_checkpoint, save_checkpoint
    from app.store.write import insert_rows
    from app.tracking import Tracker

    loaded = load_encoder(
        target.source,
        init=target.init,
        dtype=config.dtype,
        device=config.device,
        masked_lm=mode == "gradients:mlm",
    )
    with session_scope(db) as session:
        inputs = segment_inputs(session, target.corpus_id, limit=config.limit)
    skipped = Skipped()
    aligner = Aligner(
        loaded.tokenizer,
        max_tokens=config.max_tokens,
        overflow=config.overflow,
        on_unaligned=config.on_unaligned,
    )
    if mode == "gradients:contrastive":
        from app.extract.contrastive import encode_pairs

        encoded = length_order(encode_pairs(aligner, inputs, skipped, corpus=target.corpus))
    else:
        encoded = length_order(aligner.encode(inputs, skipped))
    if not encoded:
        raise AppError(
            f"no segment of corpus {target.corpus!r} can be analysed: skipped {skipped.counts}"
        )

    info = loaded.info
    accumulators = {}
    for summary in summaries:
        spec = ANALYSES[summary.analysis]
        context = load_context(db, spec.context, target.corpus_id) if spec.context else None
        accumulators[summary.key] = spec.build(info.n_layers, info.n_heads, context)
        accumulators[summary.key].weighting = summary.weighting
    done_upto = {summary.key: 0 for summary in summaries}
    tracker = Tracker(settings)
    with session_scope(db) as session:
        for summary in summaries:
            checkpoint = load_checkpoint(session, summary.run_id)
            if checkpoint is not None:
                done_upto[summary.key], state = checkpoint
                accumulators[summary.key].load_state_dict(state)
                say(
                    f"{summary.key}: resuming run {summary.run_id} after "
                    f"{done_upto[summary.key]} of {len(encoded)} segments"
                )
            _open_mlflow_run(session, tracker, settings, target, config, summary, info)

    engine = AttentionEngine(
        loaded.model,
        pad_id=loaded.tokenizer.pad_token_id or 0,
        batch_size=config.batch_size,
        device=config.device,
    )
    if mode == "gradients:mlm":
        feed = _gradient_feed(engine, loaded, config)
    elif mode == "gradients:contrastive":
        from app.extract.contrastive import contrastive_feed

        feed = contrastive_feed(engine, target.source)
    else:
        feed = engine.run
    names = [summary.key for summary in summaries]
    run_ids = {summary.key: summary.run_id for summary in summaries}
    start = min(done_upto.values())
    progress = progress_bar(
        len(encoded), start, f"{'+'.join(names)} {target.model} on {target.corpus}"
    )
    try:
        for chunk_start in range(start, len(encoded), config.chunk_size):
            chunk = encoded[chunk_start : chunk_start + config.chunk_size]
            active = [name for name in names if done_upto[name] <= chunk_start]
            feed(chunk, [accumulators[name] for name in active], progress=progress)
            with session_scope(db) as session:
                for name in active:
                    for rows in accumulators[name].flush():
                        insert_rows(
                            session, rows.table, rows.columns, constants={"run_id": run_ids[name]}
                        )
                    save_checkpoint(
                        session,
                        run_ids[name],
                        chunk_start + len(chunk),
                        accumulators[name].state_dict(),
                    )
                    done_upto[name] = chunk_start + len(chunk)
        with session_scope(db) as session:
            for name in names:
                for rows in accumulators[name].finish():
                    insert_rows(
                        session, rows.table, rows.columns, constants={"run_id": run_ids[name]}
                    )
                finish_run(session, run_ids[name], n_segments=len(encoded), skipped=skipped.counts)
    finally:
        progress.close()
    for summary in summaries:
        summary.summary = accumulators[summary.key].summary()
        summary.n_segments = len(encoded)
        summary.skipped = dict(skipped.counts)
        summary.skipped_examples = dict(skipped.examples)
        metrics = {**summary.summary, "n_segments": len(encoded), "n_skipped": skipped.total}
        tracker.log_metrics(summary.mlflow_run_id, metrics)  # type: ignore[arg-type]
        tracker.finish(summary.mlflow_run_id)  # type: ignore[arg-type]


def _gradient_feed(engine, loaded, config: ExtractConfig):  # type: ignore[no-untyped-def]
    from app.analysis.importance import MASK_RATE, mask_tokens, per_segment_loss

    mask_id = loaded.tokenizer.mask_token_id
    if mask_id is None:
        raise AnalysisUnavailable(
            "the tokenizer has no mask token, so masked-LM gradients are undefined"
        )
    rate = float(config.option("mask_rate", MASK_RATE))

    def feed(chunk, analyses, progress=None):  # type: ignore[no-untyped-def]
        engine.run_gradients(
            chunk,
            analyses,
            progress=progress,
            loss=per_segment_loss,
            mask=lambda batch: mask_tokens(batch, mask_id=mask_id, rate=rate, seed=config.seed),
        )

    return feed


def _open_mlflow_run(
    session,
    tracker,
    settings: Settings,
    target: _Target,
    config: ExtractConfig,  # type: ignore[no-untyped-def]
    summary: RunSummary,
    info,
) -> None:  # type: ignore[no-untyped-def]
    """Start (or resume) the MLflow run of an analysis and link it with the database run."""
    from app.store.schema import Run

    if summary.mlflow_run_id is not None:
        tracker.resume(summary.mlflow_run_id)
        return
    summary.mlflow_run_id = tracker.start(
        experiment=f"headlens/{target.corpus}",
        run_name=f"{summary.key}:{target.model}",
        params={
            "analysis": summary.analysis,
            "weighting": summary.weighting,
            "model": target.model,
            "corpus": target.corpus,
            **config.as_params(),
            "n_layers": info.n_layers,
            "n_heads": info.n_heads,
        },
        tags={
            "headlens.run_id": str(summary.run_id),
            "headlens.model": target.model,
            "headlens.corpus": target.corpus,
            "headlens.analysis": summary.analysis,
            "headlens.db": settings.db_url,
        },
    )
    session.get(Run, summary.run_id).mlflow_run_id = summary.mlflow_run_id
