"""Corpus data that some analyses need besides attention (e.g. coreference mentions).

An AnalysisSpec names its context; the loader reads it from the database once per pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.store.db import session_scope

# Example sentences for figures: the first few of a readable length, in corpus order.
EXAMPLE_COUNT = 3
EXAMPLE_WORDS = (8, 20)


def example_segments(session: Session, corpus_id: int) -> frozenset[int]:
    from sqlalchemy import select

    from app.store.schema import SegmentRow

    low, high = EXAMPLE_WORDS
    query = (
        select(SegmentRow.id)
        .where(SegmentRow.corpus_id == corpus_id, SegmentRow.n_words.between(low, high))
        .order_by(SegmentRow.seg_index)
        .limit(EXAMPLE_COUNT)
    )
    return frozenset(session.scalars(query))


def coref_mentions(session: Session, corpus_id: int) -> dict[int, list[Any]]:
    """segment id -> its evaluable mentions with candidates (see analysis/coref.py)."""
    from app.analysis.coref import scored_mentions
    from app.errors import AnalysisUnavailable
    from app.store.coref import segment_mentions

    by_segment = segment_mentions(session, corpus_id)
    if not by_segment:
        raise AnalysisUnavailable(
            "this corpus has no coreference mentions: ingest a coreference corpus "
            "(e.g. ontogum-dev, litbank, or --format corefud|conll2012|gap)"
        )
    return {
        segment: scored_mentions(ids, mentions) for segment, (ids, mentions) in by_segment.items()
    }


LOADERS: dict[str, Callable[[Session, int], Any]] = {
    "example_segments": example_segments,
    "mentions": coref_mentions,
}


def load_context(db: Engine, name: str, corpus_id: int) -> Any:
    with session_scope(db) as session:
        return LOADERS[name](session, corpus_id)
