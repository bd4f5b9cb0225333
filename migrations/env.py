"""Alembic environment: metadata from app.store.schema, URL from the app's settings."""

from __future__ import annotations

from alembic import context
from alembic.ddl.impl import DefaultImpl

from app.config import Settings
from app.store.db import make_engine
from app.store.schema import Base


class DuckDBImpl(DefaultImpl):
    """Alembic knows no 'duckdb' dialect; DuckDB DDL is transactional, so a failing
    migration rolls back whole."""

    __dialect__ = "duckdb"
    transactional_ddl = True


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # duckdb-engine reflects no UNIQUE constraints, so autogenerate would re-propose them.
    if type_ == "unique_constraint" and context.get_bind().dialect.name == "duckdb":
        return False
    return True


def run_migrations() -> None:
    config = context.config
    url = config.get_main_option("sqlalchemy.url") or Settings.resolve().db_url
    connectable = config.attributes.get("connection") or make_engine(url)
    if hasattr(connectable, "connect"):
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("headlens migrations run online only: use `headlens db upgrade`")
run_migrations()
