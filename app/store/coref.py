"""Coreference rows: mentions (with ingestion), baseline choices, and the analysis context."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import cast

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.store.schema import MentionRow, SegmentRow
from app.store.write import insert_rows
from app.types import Mention, MentionType, Segment


def store_mentions(session: Session, segment_ids: np.ndarray, segments: Sequence[Segment]) -> None:
    """Insert every segment's mentions (segment_ids[i] is the id of segments[i])."""
    rows = [
        (segment_ids[i], k, m)
        for i, segment in enumerate(segments)
        for k, m in enumerate(segment.mentions)
    ]
    if not rows:
        return
    insert_rows(
        session,
        "mentions",
        {
            "segment_id": np.array([r[0] for r in rows], dtype=np.int64),
            "mention_index": np.array([r[1] for r in rows], dtype=np.int64),
            "start_word": np.array([r[2].start for r in rows], dtype=np.int64),
            "end_word": np.array([r[2].end for r in rows], dtype=np.int64),
            "head_word": np.array([r[2].head for r in rows], dtype=np.int64),
            "entity": np.array([r[2].entity for r in rows], dtype=object),
            "mention_type": np.array([r[2].mention_type for r in rows], dtype=object),
            "head_source": np.array([r[2].head_source for r in rows], dtype=object),
        },
    )


def mention_ids(session: Session, corpus_id: int) -> dict[tuple[int, int], int]:
    """(seg_index, mention_index) -> mention id, for a corpus."""
    query = (
        select(SegmentRow.seg_index, MentionRow.mention_index, MentionRow.id)
        .join(SegmentRow, SegmentRow.id == MentionRow.segment_id)
        .where(SegmentRow.corpus_id == corpus_id)
    )
    return {(seg, index): mention_id for seg, index, mention_id in session.execute(query)}


def store_baselines(
    session: Session, corpus_id: int, choices: Sequence[tuple[int, int, str, int, bool, str | None]]
) -> int:
    """Rows (seg_index, mention index, baseline, chosen index, correct, detail)."""
    if not choices:
        return 0
    ids = mention_ids(session, corpus_id)
    return insert_rows(
        session,
        "coref_baselines",
        {
            "mention_id": np.array([ids[(c[0], c[1])] for c in choices], dtype=np.int64),
            "baseline": np.array([c[2] for c in choices], dtype=object),
            "predicted_mention_id": np.array([ids[(c[0], c[3])] for c in choices], dtype=np.int64),
            "correct": np.array([c[4] for c in choices], dtype=bool),
            "detail": np.array([c[5] for c in choices], dtype=object),
        },
    )


def segment_mentions(
    session: Session, corpus_id: int
) -> dict[int, tuple[list[int], list[Mention]]]:
    """segment id -> (mention ids, mentions), in mention order, for a corpus."""
    query = (
        select(MentionRow)
        .join(SegmentRow, SegmentRow.id == MentionRow.segment_id)
        .where(SegmentRow.corpus_id == corpus_id)
        .order_by(MentionRow.segment_id, MentionRow.mention_index)
    )
    grouped: dict[int, tuple[list[int], list[Mention]]] = defaultdict(lambda: ([], []))
    for row in session.scalars(query):
        ids, mentions = grouped[row.segment_id]
        ids.append(row.id)
        mentions.append(
            Mention(
                row.start_word,
                row.end_word,
                row.entity,
                row.head_word,
                row.head_source,
                cast("MentionType | None", row.mention_type),
            )
        )
    return dict(grouped)
