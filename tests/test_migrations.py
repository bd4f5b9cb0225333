"""Alembic builds the schema from an empty DuckDB or SQLite file, and matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.errors import SchemaBehind
from app.store.db import check_schema, current_revision, head_revision, make_engine, upgrade
from app.store.schema import Base


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_upgrade_from_empty_builds_every_table(tmp_path: Path, backend: str) -> None:
    url = f"{backend}:///{tmp_path / ('db.' + backend)}"
    assert upgrade(url) == head_revision()
    engine = make_engine(url)
    assert current_revision(engine) == head_revision()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    check_schema(engine)
    # Upgrading again is a no-op.
    assert upgrade(url) == head_revision()


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    """What autogenerate would add after `upgrade head` must be nothing (SQLite reflects fully)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    with make_engine(url).connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


@pytest.mark.parametrize("backend", ["duckdb", "sqlite"])
def test_downgrade_to_base_and_back(tmp_path: Path, backend: str) -> None:
    url = f"{backend}:///{tmp_path / ('db.' + backend)}"
    upgrade(url)
    upgrade(url)
    from alembic import command

    from app.store.db import alembic_config

    command.downgrade(alembic_config(url), "base")
    assert current_revision(make_engine(url)) is None
    assert upgrade(url) == head_revision()


def test_an_empty_database_is_refused_with_the_command_to_type(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'empty.duckdb'}")
    with pytest.raises(SchemaBehind, match="headlens db upgrade"):
        check_schema(engine)


def test_foreign_keys_are_enforced(engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    from app.store.db import session_scope
    from app.store.write import insert_rows

    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            insert_rows(
                session,
                "head_metrics",
                {"layer": [0], "head": [0], "metric": ["x"], "value": [1.0], "n": [1]},
                constants={"run_id": 999},
            )
