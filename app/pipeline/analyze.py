"""Analyze stage: encoder passes over a corpus feeding streaming analyses.

Each analysis is a database run and an MLflow run. Analyses that only read attention share
one forward pass; gradient analyses need the masked-LM model on masked input and get a pass
of their own. Rows are written with a checkpoint after every chunk of segments, in one
transaction, so an interrupted pass resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import Engine

from app.config import CONTRASTIVE_PAIRS, ExtractConfig, Settings
from app.errors import AnalysisUnavailable, AppError, UnknownName
from app.pipeline.common import check_extract_config, open_db, progress_bar
from app.pipeline.lifecycle import Lifecycle
from app.store.db import refresh_statistics, session_scope

if TYPE_CHECKING:
    from app.extract.align import EncodedSegment
    from app.extract.contrastive import ContrastivePair
    from app.pipeline.cluster import Distribute

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
    distribute: Distribute | None = None,
    weightings: Sequence[str] = ("weight",),
    objective: str = "mlm",
) -> list[RunSummary]:
    """Run analyses of `model` over `corpus`: one database + MLflow run each.

    `weightings` ('weight', 'norm'): each forward analysis runs once per weighting, all
    in the same engine pass; a norm-based run is a run of its own (its config carries
    `weighting=norm`). An entry "NAME:WEIGHTING" of `analyses` (e.g. "surface:norm") asks
    for that one run whatever `weightings` says, so one pass can hold e.g. surface and
    clustering by weight and surface by norm. `objective` ('mlm', 'contrastive') is what the gradients analysis
    differentiates (see analysis/importance.py and analysis/contrastive.py).
    With `distribute`, each pass runs on Ray workers (pipeline/distributed.py); without it
    Ray is not imported.
    """
    options: _PassOptions = {"weightings": tuple(weightings), "objective": objective}
    if distribute is not None:
        from app.pipeline.cluster import ray_session

        if tuple(weightings) != ("weight",) or objective != "mlm" or any(":" in name for name in analyses):
            raise AppError(
                "--workers runs weight-based analyses and MLM gradients; run norm-based or "
                "contrastive analyses without --workers"
            )
        with ray_session(distribute, device=config.device):  # unreachable: fails before any work
            return _analyze(settings, analyses, model=model, corpus=corpus, config=config,
                            force=force, on_event=on_event, distribute=distribute, **options)
    return _analyze(settings, analyses, model=model, corpus=corpus, config=config, force=force,
                    on_event=on_event, distribute=None, **options)


class _PassOptions(TypedDict):
    """What `analyze` passes through to `_analyze` on either path (local or Ray)."""

    weightings: tuple[str, ...]
    objective: str


def _analyze(
    settings: Settings,
    analyses: Sequence[str],
    *,
    model: str,
    corpus: str,
    config: ExtractConfig,
    force: bool,
    on_event: Say | None,
    distribute: Distribute | None,
    weightings: tuple[str, ...],
    objective: str,
) -> list[RunSummary]:
    """Each run is claimed by this process (a second process asking for the same run is told
    it is in progress), the forward pass holds no database connection, and each chunk's rows
    are written with a checkpoint and a heartbeat in one short transaction.
    """
    from app.tracking import shared_tracker

    say = on_event or (lambda message: None)
    jobs = _jobs(analyses, weightings)
    if objective not in OBJECTIVES:
        raise UnknownName("objective", objective, list(OBJECTIVES))
    # From the CLI, MLflow's import and its store's first queries (seconds on one core) run
    # in a helper process while this one opens the database and loads the encoder.
    tracker = shared_tracker(settings, local=distribute is None)
    return _analyze_runs(settings, jobs, model=model, corpus=corpus, config=config, force=force,
                         say=say, distribute=distribute, objective=objective, tracker=tracker)


def _analyze_runs(
    settings: Settings,
    jobs: list[tuple[str, str]],
    *,
    model: str,
    corpus: str,
    config: ExtractConfig,
    force: bool,
    say: Say,
    distribute: Distribute | None,
    objective: str,
    tracker: Any,
) -> list[RunSummary]:
    from app.analysis.registry import ANALYSES
    from app.ingest.models import check_device

    db = open_db(settings)
    check_device(config.device)
    work = Lifecycle(settings, db, "analysis", say)
    try:
        summaries, target, configs = _start_runs(
            db, jobs, model, corpus, config, force, work, objective
        )
    except BaseException:
        work.abandon()
        raise
    work.settle()
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
            overflow = configs[summary.analysis, summary.weighting].overflow
            passes.setdefault((mode, overflow), []).append(summary)
    with work.guard():
        for (mode, _overflow), batch in passes.items():
            first = configs[batch[0].analysis, batch[0].weighting]
            if distribute is None:
                _run_pass(settings, db, target, first, batch, mode=mode, say=say, work=work,
                          tracker=tracker)
            else:
                from app.pipeline.distributed import run_pass_on_workers

                worker_mode = "gradients" if mode.startswith("gradients") else mode
                run_pass_on_workers(settings, db, target, first, batch, mode=worker_mode,
                                    say=say, work=work, distribute=distribute)
    return list(summaries.values())


WEIGHTINGS = ("weight", "norm")
OBJECTIVES = ("mlm", "contrastive")


def _jobs(analyses: Sequence[str], weightings: Sequence[str]) -> list[tuple[str, str]]:
    """(analysis, weighting) of each run asked for: every forward analysis once per
    weighting (gradients by weight only), "NAME:WEIGHTING" entries just so; no repeats."""
    from app.analysis.registry import ANALYSES

    jobs: list[tuple[str, str]] = []
    for entry in analyses:
        name, _, weighting = entry.partition(":")
        if name not in ANALYSES:
            raise UnknownName("analysis", name, list(ANALYSES))
        chosen = [weighting] if weighting else (["weight"] if ANALYSES[name].cls.needs_gradients else list(weightings))
        for each in chosen:
            if each not in WEIGHTINGS:
                raise UnknownName("weighting", each, list(WEIGHTINGS))
            if each != "weight" and ANALYSES[name].cls.needs_gradients:
                raise AppError(f"{name} is measured on attention weights only: drop ':{each}'")
            if (name, each) not in jobs:
                jobs.append((name, each))
    return jobs


def _run_config(config: ExtractConfig, spec: Any, weighting: str, objective: str) -> ExtractConfig:
    """The config a run is keyed by: the shared one, plus what is specific to this run.

    Defaults add nothing (weight-based, MLM), so runs made before these options existed
    keep their identity. Documents are truncated to the budget, not skipped, for analyses
    that ask for it (coreference, like the paper).
    """
    options = {**dict(spec.identity), **dict(config.options)}
    if spec.overflow == "truncate":
        config = replace(config, overflow="truncate")
    if weighting != "weight":
        options["weighting"] = weighting
    if spec.cls.needs_gradients and objective != "mlm":
        options["objective"] = objective
        # In-batch negatives: the batch is part of the loss, so of the run's identity.
        options["pairs_per_batch"] = config.batch_size or CONTRASTIVE_PAIRS
    return replace(config, options=tuple(sorted(options.items())))


def _start_runs(
    db: Engine,
    jobs: list[tuple[str, str]],
    model: str,
    corpus: str,
    config: ExtractConfig,
    force: bool,
    work: Lifecycle,
    objective: str,
) -> tuple[dict[str, RunSummary], _Target, dict[tuple[str, str], ExtractConfig]]:
    """Find or create (and claim) each analysis' run, in one transaction."""
    from app.analysis.registry import ANALYSES
    from app.store.corpora import find_corpus
    from app.store.encoders import find_encoder
    from app.store.runs import start_run

    with session_scope(db) as session:
        encoder = find_encoder(session, model)
        corpus_row = find_corpus(session, corpus)
        check_extract_config(config, encoder)
        target = _Target(
            model, corpus, corpus_row.id, Path(encoder.source), encoder.init, encoder.has_mlm_head
        )
        for name, _ in jobs:
            if ANALYSES[name].cls.needs_gradients and objective == "mlm" and not target.has_mlm_head:
                raise AnalysisUnavailable(
                    f"model {model!r} has no masked-LM head (no cls.predictions / lm_head weights), "
                    f"so the {name} analysis cannot run on it; ingest a checkpoint that has one "
                    "(e.g. a BertForMaskedLM directory), or use --objective contrastive"
                )
        configs = {
            (name, weighting): _run_config(config, ANALYSES[name], weighting, objective)
            for name, weighting in jobs
        }
        summaries: dict[str, RunSummary] = {}
        for name, weighting in jobs:
            handle = start_run(
                session,
                encoder,
                corpus_row,
                name,
                configs[name, weighting],
                force=force,
                claim=lambda row, fresh: work.claim(session, row, fresh=fresh),
            )
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
    return summaries, target, configs


def _run_pass(
    settings: Settings,
    db: Engine,
    target: _Target,
    config: ExtractConfig,
    summaries: list[RunSummary],
    *,
    mode: str,
    say: Say,
    work: Lifecycle,
    tracker: Any = None,
) -> None:
    """One engine pass; `tracker`: an MLflow tracker already started (default: a new one)."""
    from app.analysis.registry import ANALYSES
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine, length_order
    from app.ingest.models import load_encoder
    from app.pipeline.contexts import load_context
    from app.store.corpora import segment_inputs
    from app.store.runs import finish_run, load_checkpoint, save_checkpoint
    from app.store.shards import has_shards
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
    encoded: list[EncodedSegment] | list[ContrastivePair]
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
    tracker = tracker or Tracker(settings)
    with session_scope(db) as session:
        for summary in summaries:
            if has_shards(session, summary.run_id):
                raise AppError(
                    f"{summary.key}: run {summary.run_id} was started with --workers; resume "
                    "it with --workers, or redo it with --force"
                )
            checkpoint = load_checkpoint(session, summary.run_id)
            if checkpoint is not None:
                done_upto[summary.key], state = checkpoint
                accumulators[summary.key].merge(state)
                say(
                    f"{summary.key}: resuming run {summary.run_id} after "
                    f"{done_upto[summary.key]} of {len(encoded)} segments"
                )

    open_mlflow_runs(db, tracker, settings, target, config, summaries, info, work)
    engine = AttentionEngine(
        loaded.model,
        pad_id=loaded.tokenizer.pad_token_id or 0,
        batch_size=config.batch_size,
        batch_tokens=config.batch_tokens,
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
    lengths = [segment.n_tokens for segment in encoded]
    if mode == "gradients:contrastive":
        # Pairs go in groups of CONTRASTIVE_PAIRS within a chunk, and the group is part of
        # the loss (in-batch negatives): chunks of chunk_size pairs, never a token cut.
        config = replace(config, chunk_tokens=None)
    try:
        for chunk_start, chunk_stop in chunk_bounds(lengths, start, config, done_upto.values()):
            chunk = encoded[chunk_start:chunk_stop]
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
                work.heartbeat(session)
        with session_scope(db) as session:
            for name in names:
                for rows in accumulators[name].finish():
                    insert_rows(
                        session, rows.table, rows.columns, constants={"run_id": run_ids[name]}
                    )
                finish_run(session, run_ids[name], n_segments=len(encoded), skipped=skipped.counts)
            work.finish(session, list(run_ids.values()))
    finally:
        progress.close()
    close_mlflow_runs(db, tracker, summaries, accumulators, len(encoded), skipped)


def chunk_bounds(
    lengths: Sequence[int], start: int, config: ExtractConfig, resume_points: Iterable[int] = ()
) -> list[tuple[int, int]]:
    """[start, stop) chunks of the length-ordered segments from `start`, one checkpoint each.

    A chunk holds `config.chunk_size` segments or, with `config.chunk_tokens`, as many as
    fit that many word pieces (at least one). Every point where one of the pass's runs
    resumes is also a cut, so that a chunk goes to the same runs from its first segment to
    its last, whatever cut an earlier attempt used.
    """
    cuts = {point for point in resume_points if start < point < len(lengths)}
    bounds: list[tuple[int, int]] = []
    begin, pieces = start, 0
    for index in range(start, len(lengths)):
        if config.chunk_tokens is None:
            full = index - begin >= config.chunk_size
        else:
            full = pieces + lengths[index] > config.chunk_tokens
        if index > begin and (full or index in cuts):
            bounds.append((begin, index))
            begin, pieces = index, 0
        pieces += lengths[index]
    if begin < len(lengths):
        bounds.append((begin, len(lengths)))
    return bounds


def open_mlflow_runs(
    db: Engine,
    tracker,
    settings: Settings,
    target: _Target,
    config: ExtractConfig,
    summaries: list[RunSummary],
    info,
    work: Lifecycle,
) -> None:
    """Start (or resume) each run's MLflow run and link it to the database run.

    The runs go on the MLflow backlog first (a tracking server that fails now or later
    leaves them there for `headlens runs --relog`); MLflow is called outside any database
    transaction: a first use of a store takes seconds, and DuckDB's lock must only be held
    while writing.
    """
    from app.store.mlflow_backlog import pending
    from app.store.schema import Run

    with session_scope(db) as session:
        for summary in summaries:
            pending(session, "analysis", summary.run_id)
    for summary in summaries:
        _open_mlflow_run(tracker, settings, target, config, summary, info)
        work.mlflow[summary.run_id] = summary.mlflow_run_id
    with session_scope(db) as session:
        for summary in summaries:
            session.get_one(Run, summary.run_id).mlflow_run_id = summary.mlflow_run_id


def close_mlflow_runs(
    db: Engine,
    tracker,
    summaries: list[RunSummary],
    accumulators: dict[str, Any],
    n_segments: int,
    skipped,
) -> None:
    """Headline numbers onto the summaries and MLflow; runs MLflow has seen in full leave
    the backlog; PostgreSQL's planner statistics catch up with the bulk writes."""
    from app.store.mlflow_backlog import settle

    for summary in summaries:
        summary.summary = accumulators[summary.key].summary()
        summary.n_segments = n_segments
        summary.skipped = dict(skipped.counts)
        summary.skipped_examples = dict(skipped.examples)
        metrics = {**summary.summary, "n_segments": n_segments, "n_skipped": skipped.total}
        tracker.log_metrics(summary.mlflow_run_id, metrics)
        tracker.finish(summary.mlflow_run_id)
    with session_scope(db) as session:
        for summary in summaries:
            settle(session, "analysis", summary.run_id, tracker.error)
    refresh_statistics(db)


def _gradient_feed(engine, loaded, config: ExtractConfig):
    from app.analysis.importance import MASK_RATE, mask_tokens, per_segment_loss

    mask_id = loaded.tokenizer.mask_token_id
    if mask_id is None:
        raise AnalysisUnavailable(
            "the tokenizer has no mask token, so masked-LM gradients are undefined"
        )
    rate = float(config.option("mask_rate", MASK_RATE))

    def feed(chunk, analyses, progress=None):
        engine.run_gradients(
            chunk,
            analyses,
            progress=progress,
            loss=per_segment_loss,
            mask=lambda batch: mask_tokens(batch, mask_id=mask_id, rate=rate, seed=config.seed),
        )

    return feed


def _open_mlflow_run(
    tracker,
    settings: Settings,
    target: _Target,
    config: ExtractConfig,
    summary: RunSummary,
    info,
) -> None:
    """Start (or resume) the MLflow run of an analysis (the caller links it to the database run)."""
    if summary.mlflow_run_id is not None:
        if tracker.resume(summary.mlflow_run_id):
            return
        # The MLflow store lost the run (or this is another --mlruns): a new MLflow run,
        # linked to the same database run; metrics are logged once, at the end.
        summary.mlflow_run_id = None
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
