"""Ingest stage: encoders, corpora and silver annotation layers into the database."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from app.config import DEFAULT_MODEL, Settings
from app.errors import AppError, UnknownName
from app.options import CorpusOptions
from app.pipeline.common import open_db, progress_bar
from app.store.db import refresh_statistics, session_scope

if TYPE_CHECKING:
    from app.ingest.conll import ConllFormat
    from app.ingest.coref import CorefFormat


@dataclass
class IngestResult:
    kind: str
    name: str
    created: bool
    details: dict[str, Any] = field(default_factory=dict)


def ingest_model(
    settings: Settings, name: str, path: str | None = None, *, random_init_seed: int | None = None
) -> IngestResult:
    """Register an encoder: a built-in package or a local directory (never a hub)."""
    from app.ingest.models import inspect_encoder, resolve_model_path, weights_sha256
    from app.store.encoders import store_encoder

    engine = open_db(settings)
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


DEPENDENCY_FORMATS = ("conllu", "conllx")
COREF_FORMATS = ("corefud", "conll2012", "gap")
CORPUS_FORMATS = ("text", *DEPENDENCY_FORMATS, *COREF_FORMATS)


def _budget_tokenizer(settings: Settings, options: CorpusOptions):
    """The tokenizer that measures token budgets at ingestion (a built-in model's)."""
    from app.ingest.models import load_tokenizer, resolve_model_path

    return load_tokenizer(
        resolve_model_path(options.tokenizer or DEFAULT_MODEL, None, settings.cache_dir)
    )


def _read_coreference(
    settings: Settings, name: str, paths: list[Path], fmt: str, options: CorpusOptions
):
    """Documents -> mentions with heads and types -> segments within the token budget."""
    from app.config import PAPER_MAX_TOKENS
    from app.ingest.coref_segments import read_coref_corpus

    tokenizer = _budget_tokenizer(settings, options)

    def piece_counts(forms: list[str]) -> list[int]:
        counts = [0] * len(forms)
        for word in tokenizer(forms, is_split_into_words=True, add_special_tokens=False).word_ids():
            counts[word] += 1
        return counts

    parse = None
    if options.heads == "silver":  # for documents without gold dependencies
        from app.ingest.silver import head_parser, load_parser

        parse = head_parser(load_parser())
    data = read_coref_corpus(
        name,
        paths,
        cast("CorefFormat", fmt),  # read_coref_corpus names the known formats otherwise
        piece_counts,
        max_tokens=options.max_tokens or PAPER_MAX_TOKENS,
        mode=options.segmentation,
        parse=parse,
    )
    # Options that change mentions or segments are part of what is stored (re-ingesting
    # with other ones is refused, not silently ignored).
    data.config["heads"] = options.heads
    data.config["tokenizer"] = options.tokenizer or DEFAULT_MODEL
    return data


def read_corpus(
    settings: Settings,
    name: str,
    *,
    fmt: str | None,
    path: str | None,
    options: CorpusOptions | dict[str, Any],
):
    """Read a corpus from a built-in source, the dataset registry, or a user file.

    A treebank (CoNLL-U / CoNLL-X) becomes one segment per sentence; a coreference corpus
    (CorefUD CoNLL-U, CoNLL-2012, GAP; or a CoNLL-U dataset read `as_kind="coreference"`)
    becomes documents cut to the token budget, with mentions.
    """
    from app.ingest import datasets
    from app.ingest.conll import read_dependency_corpus
    from app.ingest.text import read_text_corpus

    options = CorpusOptions.of(options)
    coreference = options.kind == "coreference"
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise AppError(f"no corpus file at {file}")
        if fmt is None:
            raise AppError(f"say which format {file} is in: --format {'|'.join(CORPUS_FORMATS)}")
        if fmt == "text":
            return read_text_corpus(name, file)
        if fmt in COREF_FORMATS or (fmt == "conllu" and coreference):
            return _read_coreference(
                settings, name, [file], "corefud" if fmt == "conllu" else fmt, options
            )
        if fmt in DEPENDENCY_FORMATS:
            return read_dependency_corpus(name, [file], cast("ConllFormat", fmt))
        raise UnknownName("format", fmt, list(CORPUS_FORMATS))
    source = options.source or name
    if source == "wiki-segments":
        from app.ingest.unlabeled import WikiConfig, build_wiki_segments

        config = WikiConfig(
            n_segments=options.n_segments, seed=options.seed, max_tokens=options.max_tokens
        )
        return build_wiki_segments(name, _budget_tokenizer(settings, options), config)
    known = datasets.registry()
    if source not in known:
        raise UnknownName(
            "corpus source",
            source,
            ["wiki-segments", *known],
            hint="or give a file: headlens ingest corpus NAME --format FMT --path FILE",
        )
    dataset = known[source]
    paths = datasets.ensure(source, settings.data_dir)  # fetched here if missing
    if dataset.kind == "coreference" or coreference:
        return _read_coreference(
            settings,
            name,
            paths,
            "corefud" if dataset.format == "conllu" else dataset.format,
            options,
        )
    return read_dependency_corpus(name, paths, cast("ConllFormat", dataset.format))


def ingest_corpus(
    settings: Settings,
    name: str,
    *,
    fmt: str | None = None,
    path: str | None = None,
    options: CorpusOptions | dict[str, Any] | None = None,
) -> IngestResult:
    """Read a corpus (see read_corpus) and store it; the same content again is a no-op.

    `options` is a CorpusOptions, or a dict of its fields (the rest keep their defaults).
    """
    from app.store.corpora import store_corpus

    engine = open_db(settings)
    data = read_corpus(settings, name, fmt=fmt, path=path, options=CorpusOptions.of(options))
    with session_scope(engine) as session:
        stored = store_corpus(session, data)
        if stored.created and data.has_coreference:
            # The baselines depend only on the corpus: computed once, here.
            from app.analysis.coref import baseline_choices
            from app.store.coref import store_baselines

            choices = [
                (seg_index, *choice)
                for seg_index, segment in enumerate(data.segments)
                for choice in baseline_choices(segment)
            ]
            store_baselines(session, stored.corpus.id, choices)
        corpus = stored.corpus
        details = {
            "documents": corpus.n_documents,
            "segments": corpus.n_segments,
            "words": corpus.n_words,
            "format": corpus.format,
            "dropped": json.loads(corpus.dropped_json),
        }
    if stored.created:
        refresh_statistics(engine)
    return IngestResult("corpus", name, stored.created, details)


def annotate(settings: Settings, corpus: str, *, name: str = "silver") -> IngestResult:
    """Parse a corpus with spaCy into a silver dependency layer (a no-op if it exists)."""
    import numpy as np
    from sqlalchemy import select

    from app.ingest.silver import SCHEME, load_parser, parse_segments, parser_name
    from app.store.corpora import find_corpus, segment_inputs, store_dependency_layer
    from app.store.schema import AnnotationLayer

    engine = open_db(settings)
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
    progress = progress_bar(len(inputs), 0, f"parsing {corpus}", unit="seq")
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
    refresh_statistics(engine)
    return IngestResult(
        "annotation", name, True, {"corpus": corpus, "arcs": len(arcs), "tool": parser_name(nlp)}
    )
