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


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend (PostgreSQL: a real server, never skipped)."""
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return f"{request.param}:///{tmp_path / ('db.' + request.param)}"


def test_upgrade_from_empty_builds_every_table(empty_url: str) -> None:
    url = empty_url
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


def test_downgrade_to_base_and_back(empty_url: str) -> None:
    url = empty_url
    upgrade(url)
    upgrade(url)
    from alembic import command

    from app.store.db import alembic_config

    command.downgrade(alembic_config(url), "base")
    assert current_revision(make_engine(url)) is None
    assert upgrade(url) == head_revision()


def test_every_revision_steps_down_and_up_keeping_predictions(empty_url: str) -> None:
    """Each revision's downgrade works on its own, and 0007's table swap keeps the rows."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    from app.store.db import alembic_config

    url, config = empty_url, alembic_config(empty_url)
    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "insert into encoders values (1, 'e', '-', 'bert', '0', 'pretrained', 1, 2, 8, 10, 16, true, false, '{}', '2026-01-01')"
        ))
        connection.execute(text("insert into corpora values (1, 'c', 'text', '-', '0', 1, 1, 2, '{}', '{}', '2026-01-01')"))
        connection.execute(text("insert into documents values (1, 1, 0, 'd')"))
        connection.execute(text("insert into segments values (1, 1, 1, 0, 's', null, 2)"))
        connection.execute(text("insert into words values (1, 0, 'a', null, null, null, 0, 0), (1, 1, 'b', null, null, null, 0, 0)"))
        connection.execute(text(
            "insert into runs (id, encoder_id, corpus_id, analysis, config_json, config_hash, status, started_at, code_version) "
            "values (1, 1, 1, 'syntax', '{}', 'h', 'done', '2026-01-01', 'v')"
        ))
        connection.execute(text(
            "insert into head_predictions (run_id, segment_id, word_index, layer, head, predicted_index, weight, "
            "attended_by_index, cls_weight, sep_weight) values "
            "(1, 1, 1, 0, 1, 0, 0.5, 0, 0.25, 0.125), (1, 1, 0, 0, 0, null, null, null, 0.5, 0.25)"
        ))
    rows = "select word_index, head, predicted_index, attended_by_index, cls_weight from head_predictions order by word_index"
    expected = [(0, 0, None, None, 0.5), (1, 1, 0, 0, 0.25)]  # exact in float4
    revisions = [script.revision for script in ScriptDirectory.from_config(config).walk_revisions()]
    for revision in [r for r in reversed(revisions) if r > "0006"]:
        command.upgrade(config, revision)
        command.downgrade(config, "-1")
        command.upgrade(config, revision)
    with engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(text(rows))] == expected
        # The views over the swapped table were rebuilt (one layer, no arcs: no rows).
        assert connection.execute(text("select count(*) from arc_scores")).scalar() == 0
    command.downgrade(config, "0006")
    with engine.connect() as connection:
        assert [tuple(row) for row in connection.execute(text(rows))] == expected
        # 0011 dropped the predicted word's weight; its downgrade restores the column empty.
        weights = "select weight from head_predictions order by word_index"
        assert [row[0] for row in connection.execute(text(weights))] == [None, None]
    for _revision in [r for r in revisions if r <= "0006"]:  # 0006 .. 0001: each step down alone
        command.downgrade(config, "-1")
    assert current_revision(engine) is None


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
