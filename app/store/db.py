"""Engine and session factories, and the schema-version check.

Nothing connects at import time. Engines use NullPool: a pooled DuckDB connection keeps the
file's write lock while idle, which would lock out a second `headlens` process
(shared/STACK.md §2).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app._resources import folder
from app.errors import DatabaseUnavailable, SchemaBehind

MIGRATIONS_DIR = folder("migrations")
# What alembic.ini says, for `headlens db ...` from an installed wheel (no alembic.ini there);
# the top-level alembic.ini keeps plain `alembic` usable in a checkout.
ALEMBIC_OPTIONS = {"file_template": "%%(rev)s_%%(slug)s"}


def make_engine(url: str) -> Engine:
    if url.startswith("duckdb:///") and not url.startswith("duckdb:///:memory:"):
        Path(url.removeprefix("duckdb:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        # SQLite enforces foreign keys only when asked, per connection.
        @event.listens_for(engine, "connect")
        def _enable_foreign_keys(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def ensure_reachable(engine: Engine) -> None:
    """A database server (PostgreSQL) that does not answer: one line naming host, port,
    database and the fix, instead of the driver's traceback. File databases are skipped:
    opening them is their own check."""
    from sqlalchemy.exc import OperationalError

    if engine.dialect.name in ("duckdb", "sqlite"):
        return
    try:
        engine.connect().close()
    except OperationalError as error:
        url = engine.url
        host = url.host or url.query.get("host") or "localhost"
        port = url.port or (5432 if engine.dialect.name == "postgresql" else "default port")
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {engine.dialect.name} at {host}:{port}, database "
            f"{url.database!r} ({reason}): start the server or fix the URL in --db / HEADLENS_DB "
            "(postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from error


def refresh_statistics(engine: Engine) -> None:
    """PostgreSQL plans joins from table statistics, which a bulk COPY does not update:
    right after `analyze syntax`, Table 1 took 20 s instead of 0.8 s on 144k prediction
    rows (a nested loop over a table the planner thought empty). So after a stage's bulk
    writes, ANALYZE, in its own transaction: inside a writer's transaction its lock would
    queue concurrent writers and could deadlock them. DuckDB and SQLite need nothing."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An Alembic Config for `url` that works from any working directory."""
    from alembic.config import Config

    config = Config()
    for key, value in ALEMBIC_OPTIONS.items():
        config.set_main_option(key, value)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(url: str, revision: str = "head") -> str:
    """Run Alembic migrations up to `revision`; returns the revision now current."""
    from alembic import command

    from app.store.reference import seed_reference_data

    engine = make_engine(url)
    ensure_reachable(engine)
    command.upgrade(alembic_config(url), revision)
    current = current_revision(engine)
    if current == head_revision():
        seed_reference_data(engine)
    return current or "base"


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    ensure_reachable(engine)
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # no table yet: an empty database
            return None


def check_schema(engine: Engine) -> None:
    """Fail with the command to type when the database is behind the code."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaBehind(
            f"the database {engine.url.render_as_string(hide_password=True)} is {state}, "
            f"code expects {head}: run `headlens db upgrade`"
        )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        yield session
