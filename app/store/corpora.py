"""Storing and reading corpora: documents, segments, words, dependency layers.

A corpus is stored in one transaction, so a failure leaves nothing behind, and keyed by
name + content checksum, so ingesting the same corpus twice is a no-op.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import AppError, UnknownName
from app.store.schema import AnnotationLayer, Corpus, DocumentRow, SegmentRow, WordRow
from app.store.write import insert_rows
from app.types import CorpusData, SegmentInput


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class StoredCorpus:
    corpus: Corpus
    created: bool


def find_corpus(session: Session, name: str) -> Corpus:
    corpus = session.scalar(select(Corpus).where(Corpus.name == name))
    if corpus is None:
        known = session.scalars(select(Corpus.name)).all()
        raise UnknownName(
            "corpus", name, known, hint="ingest it with `headlens ingest corpus NAME`"
        )
    return corpus


def store_corpus(session: Session, data: CorpusData) -> StoredCorpus:
    """Write a corpus (no-op when the same name and checksum are already stored)."""
    existing = session.scalar(select(Corpus).where(Corpus.name == data.name))
    if existing is not None:
        other_name = (
            f"ingest it under another NAME (`headlens ingest corpus {data.name}-2 ...`), "
            f"or keep using {data.name!r} as stored"
        )
        stored = json.loads(existing.config_json or "{}")
        changed = {
            key: (stored[key], value)
            for key, value in data.config.items()
            if key in stored and stored[key] != value
        }
        if changed:
            listing = ", ".join(f"{key} {old} (now {new})" for key, (old, new) in sorted(changed.items()))
            raise AppError(
                f"corpus {data.name!r} is already stored with other options: {listing}; {other_name}"
            )
        if existing.sha256 != data.sha256:
            raise AppError(
                f"a different corpus named {data.name!r} is already stored (checksum "
                f"{existing.sha256[:12]}... vs {data.sha256[:12]}...); {other_name}"
            )
        return StoredCorpus(existing, created=False)
    segments = data.segments
    corpus = Corpus(
        name=data.name,
        format=data.format,
        source=data.source,
        sha256=data.sha256,
        n_documents=len(data.documents),
        n_segments=len(segments),
        n_words=sum(len(segment.words) for segment in segments),
        config_json=json.dumps(data.config, sort_keys=True),
        dropped_json=json.dumps(data.dropped, sort_keys=True),
        created_at=utcnow(),
    )
    session.add(corpus)
    session.flush()

    insert_rows(
        session,
        "documents",
        {
            "doc_index": np.arange(len(data.documents)),
            "name": np.array([d.name for d in data.documents], dtype=object),
        },
        constants={"corpus_id": corpus.id},
    )
    doc_ids = dict(
        session.execute(
            select(DocumentRow.doc_index, DocumentRow.id).where(DocumentRow.corpus_id == corpus.id)
        ).tuples().all()
    )
    seg_doc = (
        np.concatenate([np.full(len(d.segments), doc_ids[i]) for i, d in enumerate(data.documents)])
        if segments
        else np.array([])
    )
    insert_rows(
        session,
        "segments",
        {
            "document_id": seg_doc,
            "seg_index": np.arange(len(segments)),
            "label": np.array([s.label for s in segments], dtype=object),
            "text": np.array([s.text for s in segments], dtype=object),
            "n_words": np.array([len(s.words) for s in segments]),
        },
        constants={"corpus_id": corpus.id},
    )
    seg_ids = dict(
        session.execute(
            select(SegmentRow.seg_index, SegmentRow.id).where(SegmentRow.corpus_id == corpus.id)
        ).tuples().all()
    )
    segment_id = np.array([seg_ids[i] for i in range(len(segments))], dtype=np.int64)

    words = [(segment_id[i], j, w) for i, s in enumerate(segments) for j, w in enumerate(s.words)]
    insert_rows(
        session,
        "words",
        {
            "segment_id": np.array([row[0] for row in words], dtype=np.int64),
            "word_index": np.array([row[1] for row in words], dtype=np.int64),
            "form": np.array([row[2].form for row in words], dtype=object),
            "lemma": np.array([row[2].lemma for row in words], dtype=object),
            "upos": np.array([row[2].upos for row in words], dtype=object),
            "xpos": np.array([row[2].xpos for row in words], dtype=object),
            "part": np.array([row[2].part for row in words], dtype=np.int64),
            "sent_index": np.array([row[2].sent_index for row in words], dtype=np.int64),
        },
    )
    if any(segment.mentions for segment in segments):
        from app.store.coref import store_mentions

        store_mentions(session, segment_id, segments)
    if data.dependency_scheme is not None:
        arcs = [row for row in words if row[2].deprel is not None]
        store_dependency_layer(
            session,
            corpus.id,
            name="gold",
            kind="gold",
            scheme=data.dependency_scheme,
            tool=data.source,
            segment_ids=np.array([row[0] for row in arcs], dtype=np.int64),
            word_indices=np.array([row[1] for row in arcs], dtype=np.int64),
            heads=[row[2].head for row in arcs],
            relations=[row[2].deprel for row in arcs],
        )
    return StoredCorpus(corpus, created=True)


def store_dependency_layer(
    session: Session,
    corpus_id: int,
    *,
    name: str,
    kind: str,
    scheme: str,
    tool: str | None,
    segment_ids: np.ndarray,
    word_indices: np.ndarray,
    heads: list[int | None],
    relations: list[str | None],
    upos: list[str | None] | None = None,
) -> AnnotationLayer:
    layer = AnnotationLayer(
        corpus_id=corpus_id, name=name, kind=kind, scheme=scheme, tool=tool, created_at=utcnow()
    )
    session.add(layer)
    session.flush()
    insert_rows(
        session,
        "dependencies",
        {
            "segment_id": segment_ids,
            "word_index": word_indices,
            "head_index": np.array(heads, dtype=object),
            "relation": np.array(relations, dtype=object),
            "upos": np.array(upos if upos is not None else [None] * len(relations), dtype=object),
        },
        constants={"layer_id": layer.id},
    )
    return layer


def segment_inputs(
    session: Session, corpus_id: int, limit: int | None = None
) -> list[SegmentInput]:
    """The corpus' segments as the aligner needs them, in corpus order."""
    query = (
        select(SegmentRow.id, SegmentRow.label, WordRow.form, WordRow.part)
        .join(WordRow, WordRow.segment_id == SegmentRow.id)
        .where(SegmentRow.corpus_id == corpus_id)
        .order_by(SegmentRow.seg_index, WordRow.word_index)
    )
    if limit is not None:
        first_ids = (
            select(SegmentRow.id)
            .where(SegmentRow.corpus_id == corpus_id)
            .order_by(SegmentRow.seg_index)
            .limit(limit)
        )
        query = query.where(SegmentRow.id.in_(first_ids.scalar_subquery()))
    inputs: list[SegmentInput] = []
    current: tuple[int, str] | None = None
    forms: list[str] = []
    parts: list[int] = []
    for seg_id, label, form, part in session.execute(query):
        if current is None or current[0] != seg_id:
            if current is not None:
                inputs.append(SegmentInput(current[0], current[1], forms, parts))
            current, forms, parts = (seg_id, label), [], []
        forms.append(form)
        parts.append(part)
    if current is not None:
        inputs.append(SegmentInput(current[0], current[1], forms, parts))
    return inputs
