"""Query stage: named SQL files from queries/ and ad-hoc SQL, as DataFrames."""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.pipeline.common import open_db, open_db_read_only


def run_query(
    settings: Settings,
    name: str | None,
    *,
    sql: str | None = None,
    params: dict[str, Any] | None = None,
    model: str | None = None,
    corpus: str | None = None,
    read_write: bool = False,
):
    """A named query from queries/ (missing run ids default to the latest run) or ad-hoc SQL.

    Both run on a read-only connection without file access; `read_write=True` (ad-hoc SQL
    only) is the explicit escape hatch.
    """
    from app import queries

    if sql is not None:
        engine = open_db(settings) if read_write else open_db_read_only(settings)
        return queries.execute(engine, sql, params or {}, commit=read_write)
    assert name is not None
    engine = open_db_read_only(settings)
    query = queries.load(name)
    queries.check_params(query, params or {})
    bound = queries.default_params(engine, query, params or {}, model=model, corpus=corpus)
    return queries.execute(engine, query.sql, bound)
