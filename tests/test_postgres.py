"""PostgreSQL backend: the same tiny-model pipeline on DuckDB and on a real PostgreSQL gives
the same answer to every named query."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest

from app import queries
from app.errors import DatabaseUnavailable

# The tiny queries' parameters (the defaults name the real models and corpora).
TINY = {"model": "tiny", "model_a": "tiny", "model_b": "tiny-random", "random_model": "tiny-random",
        "corpus": "sentences", "test_corpus": "sentences", "min_arcs": 1, "min_words": 1}
# Identifiers minted by each MLflow store, and wall-clock times: equal only by accident.
DIFFERENT_BY_DESIGN = {"mlflow_run_id", "started", "seconds"}


def _plain(value: Any) -> Any:
    import pandas as pd

    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if a is None or b is None:
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        # Same float4 (REAL) rows on both sides; the backends differ only in where they widen
        # float4 sums to float8, so a few float32 ulps (1.2e-7 each) apart is the same answer.
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("name", sorted(queries.catalogue()))
def test_every_named_query_gives_the_same_answer_on_postgres(populated, populated_pg, name: str) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline import run_query

    params = {key: value for key, value in TINY.items() if key in queries.catalogue()[name].params}
    duck = run_query(populated, name, params=params)
    pg = run_query(populated_pg, name, params=params)
    assert list(pg.columns) == list(duck.columns)
    assert len(pg) == len(duck) > 0
    columns = [column for column in duck.columns if column not in DIFFERENT_BY_DESIGN]
    for (index, duck_row), (_, pg_row) in zip(duck[columns].iterrows(), pg[columns].iterrows()):
        for column in columns:
            assert _same(duck_row[column], pg_row[column]), (name, index, column, duck_row[column], pg_row[column])


def test_an_unreachable_postgres_names_host_port_database_and_the_fix() -> None:
    from app.store.db import ensure_reachable, make_engine

    url = "postgresql+psycopg://someone:secret@127.0.0.1:9/results"
    with pytest.raises(DatabaseUnavailable) as caught:
        ensure_reachable(make_engine(url))
    message = str(caught.value)
    assert "127.0.0.1" in message and "9" in message and "results" in message
    assert "secret" not in message and "\n" not in message
    assert "HEADLENS_DB" in message


def test_a_plain_postgres_url_gets_the_installed_driver() -> None:
    from app.config import normalize_db_url

    assert normalize_db_url("postgresql://u@h:5432/db") == "postgresql+psycopg://u@h:5432/db"
    assert normalize_db_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
