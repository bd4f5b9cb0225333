"""One function per stage; the only module that does I/O across stages.

ingest (models, corpora) -> extract (align, engine) -> analysis (accumulators) -> store
(rows + checkpoints, one transaction per chunk) -> queries. Every stage is keyed by names
and config hashes, so rerunning is safe and an interrupted analysis resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import DEFAULT_MODEL, ExtractConfig, Settings
from app.errors import AppError, UnknownName
from app.store.db import check_schema, make_engine, session_scope

log = logging.getLogger("headlens")


# --------------------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    kind: str
    name: str
    created: bool
    details: dict[str, Any] = field(default_factory=dict)


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    engine = make_engine(settings.db_url)
    check_schema(engine)
    return engine


def ingest_model(
    settings: Settings, name: str, path: str | None = None, *, random_init_seed: int | None = None
) -> IngestResult:
    """Register an encoder: a built-in package or a local directory (never a hub)."""
    from app.ingest.models import inspect_encoder, resolve_model_path, weights_sha256
    from app.store.encoders import store_encoder

    engine = _engine(settings)
    directory = resolve_model_path(name if path is None else name, path, settings.cache_dir)
    info = inspect_encoder(directory)
    init = "pretrained" if random_init_seed is None else f"random:{random_init_seed}"
    with session_scope(engine) as session:
        encoder, created = store_encoder(
            session, name, directory, info, weights_sha256(directory), init
        )
        details = {
            "layers": encoder.n_layers,
            "heads": encoder.n_heads,
            "architecture": encoder.architecture,
            "cased": encoder.cased,
            "mlm_head": encoder.has_mlm_head,
            "init": init,
            "source": str(directory),
        }
    return IngestResult("model", name, created, details)


CORPUS_FORMATS = ("text", "conllu", "conllx")


def read_corpus(
    settings: Settings, name: str, *, fmt: str | None, path: str | None, options: dict[str, Any]
):  # type: ignore[no-untyped-def]
    """Read a corpus from a built-in source, the dataset registry, or a user file."""
    from app.ingest import datasets
    from app.ingest.conll import read_dependency_corpus
    from app.ingest.text import read_text_corpus

    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise AppError(f"no corpus file at {file}")
        if fmt is None:
            raise AppError(f"say which format {file} is in: --format {'|'.join(CORPUS_FORMATS)}")
        if fmt == "text":
            return read_text_corpus(name, file)
        if fmt in ("conllu", "conllx"):
            return read_dependency_corpus(name, [file], fmt)  # type: ignore[arg-type]
        raise UnknownName("format", fmt, list(CORPUS_FORMATS))
    source = options.get("source") or name
    if source == "wiki-segments":
        from app.ingest.models import load_tokenizer, resolve_model_path
        from app.ingest.unlabeled import WikiConfig, build_wiki_segments

        tokenizer = load_tokenizer(
            resolve_model_path(options.get("tokenizer", DEFAULT_MODEL), None, settings.cache_dir)
        )
        config = WikiConfig(
            **{k: v for k, v in options.items() if k in ("n_segments", "seed", "max_tokens")}
        )
        return build_wiki_segments(name, tokenizer, config)
    known = datasets.registry()
    if source not in known:
        raise UnknownName(
            "corpus source",
            source,
            ["wiki-segments", *known],
            hint="or give a file: headlens ingest corpus NAME --format FMT --path FILE",
        )
    dataset = known[source]
    paths = datasets.locate(source, settings.data_dir)
    if dataset.format in ("conllu", "conllx"):
        return read_dependency_corpus(name, paths, dataset.format)  # type: ignore[arg-type]
    raise AppError(
        f"dataset {source!r} has format {dataset.format!r}, which this version cannot ingest yet"
    )


def ingest_corpus(
    settings: Settings,
    name: str,
    *,
    fmt: str | None = None,
    path: str | None = None,
    options: dict[str, Any] | None = None,
) -> IngestResult:
    from app.store.corpora import store_corpus

    engine = _engine(settings)
    data = read_corpus(settings, name, fmt=fmt, path=path, options=options or {})
    with session_scope(engine) as session:
        stored = store_corpus(session, data)
        corpus = stored.corpus
        details = {
            "documents": corpus.n_documents,
            "segments": corpus.n_segments,
            "words": corpus.n_words,
            "format": corpus.format,
            "dropped": json.loads(corpus.dropped_json),
        }
    return IngestResult("corpus", name, stored.created, details)


def annotate(settings: Settings, corpus: str, *, name: str = "silver") -> IngestResult:
    """Parse a corpus with spaCy into a silver dependency layer (a no-op if it exists)."""
    import numpy as np
    from sqlalchemy import select

    from app.ingest.silver import SCHEME, load_parser, parse_segments, parser_name
    from app.store.corpora import find_corpus, segment_inputs, store_dependency_layer
    from app.store.schema import AnnotationLayer

    engine = _engine(settings)
    with session_scope(engine) as session:
        corpus_row = find_corpus(session, corpus)
        existing = session.scalar(
            select(AnnotationLayer).where(
                AnnotationLayer.corpus_id == corpus_row.id, AnnotationLayer.name == name
            )
        )
        if existing is not None:
            return IngestResult(
                "annotation", name, False, {"corpus": corpus, "tool": existing.tool}
            )
        inputs = segment_inputs(session, corpus_row.id)
        corpus_id = corpus_row.id
    nlp = load_parser()
    progress = _progress(len(inputs), 0, f"parsing {corpus}", unit="seq")
    arcs = list(parse_segments(nlp, inputs, progress=progress))
    progress.close()
    with session_scope(engine) as session:
        store_dependency_layer(
            session,
            corpus_id,
            name=name,
            kind="silver",
            scheme=SCHEME,
            tool=parser_name(nlp),
            segment_ids=np.array([arc.segment_id for arc in arcs], dtype=np.int64),
            word_indices=np.array([arc.word_index for arc in arcs], dtype=np.int64),
            heads=[arc.head_index for arc in arcs],
            relations=[arc.relation for arc in arcs],
            upos=[arc.upos for arc in arcs],
        )
    return IngestResult(
        "annotation", name, True, {"corpus": corpus, "arcs": len(arcs), "tool": parser_name(nlp)}
    )


# --------------------------------------------------------------------------- analyze


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


def _progress(total: int, initial: int, description: str, unit: str = "seg"):  # type: ignore[no-untyped-def]
    """A progress bar on a terminal, nothing in logs (tqdm's disable=None)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=description, unit=unit, disable=None, leave=False
    )


def analyze(
    settings: Settings,
    analyses: Sequence[str],
    *,
    model: str,
    corpus: str,
    config: ExtractConfig,
    force: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> list[RunSummary]:
    """Run analyses over a corpus with one forward pass; one database + MLflow run each."""
    from app.analysis.registry import ANALYSES
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine, length_order
    from app.ingest.models import load_encoder
    from app.store.corpora import find_corpus, segment_inputs
    from app.store.encoders import find_encoder
    from app.store.runs import fail_run, finish_run, load_checkpoint, save_checkpoint, start_run
    from app.store.write import insert_rows
    from app.tracking import Tracker

    say = on_event or (lambda message: None)
    for name in analyses:
        if name not in ANALYSES:
            raise UnknownName("analysis", name, list(ANALYSES))
    engine = _engine(settings)
    with session_scope(engine) as session:
        encoder = find_encoder(session, model)
        corpus_row = find_corpus(session, corpus)
        handles = {
            name: start_run(session, encoder, corpus_row, name, config, force=force)
            for name in analyses
        }
        runs = {
            name: (handle.run.id, handle.state, handle.run.mlflow_run_id)
            for name, handle in handles.items()
        }
        encoder_source, encoder_init = encoder.source, encoder.init
    summaries = {
        name: RunSummary(run_id, name, model, corpus, state, mlflow_run_id=mlflow_id)
        for name, (run_id, state, mlflow_id) in runs.items()
    }
    todo = [name for name, (_, state, _) in runs.items() if state != "done"]
    for name in analyses:
        if name not in todo:
            say(
                f"{name}: run {runs[name][0]} already finished for this model, corpus and config (use --force to redo)"
            )
    if not todo:
        return list(summaries.values())

    loaded = load_encoder(
        Path(encoder_source), init=encoder_init, dtype=config.dtype, device=config.device
    )
    with session_scope(engine) as session:
        inputs = segment_inputs(session, corpus_row.id, limit=config.limit)
    skipped = Skipped()
    aligner = Aligner(
        loaded.tokenizer,
        max_tokens=config.max_tokens,
        overflow=config.overflow,
        on_unaligned=config.on_unaligned,
    )
    encoded = length_order(aligner.encode(inputs, skipped))
    if not encoded:
        raise AppError(f"no segment of corpus {corpus!r} can be analysed: skipped {skipped.counts}")

    info = loaded.info
    accumulators = {name: ANALYSES[name].cls(info.n_layers, info.n_heads) for name in todo}
    done_upto = {name: 0 for name in todo}
    tracker = Tracker(settings)
    with session_scope(engine) as session:
        for name in todo:
            run_id = runs[name][0]
            checkpoint = load_checkpoint(session, run_id)
            if checkpoint is not None:
                done_upto[name], state = checkpoint
                accumulators[name].load_state_dict(state)
                say(
                    f"{name}: resuming run {run_id} after {done_upto[name]} of {len(encoded)} segments"
                )
            mlflow_id = summaries[name].mlflow_run_id
            if mlflow_id is None:
                mlflow_id = tracker.start(
                    experiment=f"headlens/{corpus}",
                    run_name=f"{name}:{model}",
                    params={
                        "analysis": name,
                        "model": model,
                        "corpus": corpus,
                        **config.as_params(),
                        "n_layers": info.n_layers,
                        "n_heads": info.n_heads,
                    },
                    tags={
                        "headlens.run_id": str(run_id),
                        "headlens.model": model,
                        "headlens.corpus": corpus,
                        "headlens.analysis": name,
                        "headlens.db": settings.db_url,
                    },
                )
                from app.store.schema import Run

                session.get(Run, run_id).mlflow_run_id = mlflow_id  # type: ignore[union-attr]
            else:
                tracker.resume(mlflow_id)
            summaries[name].mlflow_run_id = mlflow_id

    attention_engine = AttentionEngine(
        loaded.model,
        pad_id=loaded.tokenizer.pad_token_id or 0,
        batch_size=config.batch_size,
        device=config.device,
    )
    start = min(done_upto.values())
    progress = _progress(len(encoded), start, f"{'+'.join(todo)} {model} on {corpus}")
    try:
        for chunk_start in range(start, len(encoded), config.chunk_size):
            chunk = encoded[chunk_start : chunk_start + config.chunk_size]
            chunk_end = chunk_start + len(chunk)
            active = [name for name in todo if done_upto[name] <= chunk_start]
            attention_engine.run(chunk, [accumulators[name] for name in active], progress)
            with session_scope(engine) as session:
                for name in active:
                    run_id = runs[name][0]
                    for rows in accumulators[name].flush():
                        insert_rows(session, rows.table, rows.columns, constants={"run_id": run_id})
                    save_checkpoint(session, run_id, chunk_end, accumulators[name].state_dict())
                    done_upto[name] = chunk_end
        with session_scope(engine) as session:
            for name in todo:
                run_id = runs[name][0]
                for rows in accumulators[name].finish():
                    insert_rows(session, rows.table, rows.columns, constants={"run_id": run_id})
                finish_run(session, run_id, n_segments=len(encoded), skipped=skipped.counts)
    except BaseException as error:
        progress.close()
        message = f"{type(error).__name__}: {error}"
        with session_scope(engine) as session:
            for name in todo:
                fail_run(session, runs[name][0], message)
        for name in todo:
            tracker.finish(summaries[name].mlflow_run_id, failed=True)  # type: ignore[arg-type]
        raise
    progress.close()
    for name in todo:
        summary = accumulators[name].summary()
        mlflow_id = summaries[name].mlflow_run_id
        tracker.log_metrics(
            mlflow_id, {**summary, "n_segments": len(encoded), "n_skipped": skipped.total}
        )  # type: ignore[arg-type]
        tracker.finish(mlflow_id)  # type: ignore[arg-type]
        summaries[name].n_segments = len(encoded)
        summaries[name].skipped = dict(skipped.counts)
        summaries[name].skipped_examples = dict(skipped.examples)
        summaries[name].summary = summary
    return list(summaries.values())


# --------------------------------------------------------------------------- query


def run_query(
    settings: Settings,
    name: str | None,
    *,
    sql: str | None = None,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    corpus: str | None = None,
):  # type: ignore[no-untyped-def]
    """A named query from queries/ (missing run ids default to the latest run) or ad-hoc SQL."""
    from app import queries

    engine = _engine(settings)
    if sql is not None:
        return queries.execute(engine, sql, params or {})
    assert name is not None
    query = queries.load(name)
    bound = queries.default_params(engine, query, params or {}, model=model, corpus=corpus)
    return queries.execute(engine, query.sql, bound)
