"""Query stage: named SQL files from queries/ and ad-hoc SQL, as DataFrames."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.pipeline.common import open_db


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

    engine = open_db(settings)
    if sql is not None:
        return queries.execute(engine, sql, params or {})
    assert name is not None
    query = queries.load(name)
    bound = queries.default_params(engine, query, params or {}, model=model, corpus=corpus)
    return queries.execute(engine, query.sql, bound)
