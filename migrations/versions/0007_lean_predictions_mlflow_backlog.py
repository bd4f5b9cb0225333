"""Lean per-head predictions, and a backlog of runs not yet logged to MLflow.

`head_predictions` is the one table that grows with the corpus (tens of millions of rows).
It loses its primary key and foreign keys: on DuckDB each is an ART index that every bulk
insert updates and every `--force` redo deletes from row by row (27 s of COMMIT for 1.8M
rows, shared/STACK.md §6). Without them DuckDB prunes by zone maps (rows arrive clustered
by run, and insert_rows sorts each batch by segment, word, layer, head) and a redo's
DELETE is a scan. Word indices become SMALLINT (a segment has at most a few hundred
words) and the weights REAL everywhere (they already were float4 on DuckDB; PostgreSQL's
FLOAT was float8). The only writer (app/store/write.py) and run_id values from `runs`
keep the rows consistent. DuckDB cannot drop or change a key in place, so the table is
copied and swapped; the views over it (read from the catalogue) are rebuilt around the swap.

`mlflow_backlog` lists database runs (analyses and probes) whose MLflow run is not
complete, e.g. because the tracking server was down: `headlens runs` flags them and
`headlens runs --relog` logs them again. A table rather than a column on `runs`: DuckDB
cannot drop a column of a table that foreign keys reference, so the downgrade could not
remove it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ORDER = "run_id, segment_id, word_index, layer, head"
COLUMNS = (
    "run_id, segment_id, word_index, layer, head, predicted_index, weight, attended_by_index, "
    "cls_weight, sep_weight"
)


# Every view of the schema with its CREATE statement, oldest first. Dialect-specific
# catalogue reads, so that the swap keeps whatever views exist now (other revisions may
# have redefined arc_hits or added views over head_predictions).
VIEW_CATALOGUE = {
    "duckdb": "SELECT view_name, sql FROM duckdb_views() "
              "WHERE NOT internal AND schema_name = current_schema() ORDER BY view_oid",
    "sqlite": "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid",
    "postgresql": "SELECT c.relname, 'CREATE VIEW ' || quote_ident(c.relname) || ' AS ' || "
                  "pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'v' AND n.nspname = current_schema() ORDER BY c.oid",
}


def _views_over_predictions() -> list[tuple[str, str]]:
    """(name, CREATE statement) of the views that read head_predictions, directly or
    through other views, in creation order."""
    bind = op.get_bind()
    views = [(name, sql) for name, sql in bind.exec_driver_sql(VIEW_CATALOGUE[bind.dialect.name])]
    reads = {"head_predictions"}
    changed = True
    while changed:
        changed = False
        for name, sql in views:
            if name not in reads and any(re.search(rf"\b{read}\b", sql) for read in reads):
                reads.add(name)
                changed = True
    return [(name, sql) for name, sql in views if name in reads]


def _swap(columns: list[sa.Column], constraints: list[sa.Constraint]) -> None:
    """Rebuild head_predictions with `columns`, copying its rows in clustered order.

    The table that holds foreign keys is always created under its final name: DuckDB's
    RENAME does not update the referenced tables' record of who references them.
    """
    views = _views_over_predictions()
    for name, _ in reversed(views):
        op.execute(f"DROP VIEW {name}")
    if constraints:  # the keyless table can be renamed away first
        op.rename_table("head_predictions", "head_predictions_swap")
        source, target = "head_predictions_swap", "head_predictions"
    else:  # the keyed table cannot be renamed: build the new one beside it
        source, target = "head_predictions", "head_predictions_swap"
    op.create_table(target, *columns, *constraints)
    op.execute(f"INSERT INTO {target} ({COLUMNS}) SELECT {COLUMNS} FROM {source} ORDER BY {ORDER}")
    op.drop_table(source)
    if target != "head_predictions":
        op.rename_table(target, "head_predictions")
    for _, create in views:
        op.execute(create)


def upgrade() -> None:
    _swap(
        [
            sa.Column("run_id", sa.Integer(), nullable=False),
            sa.Column("segment_id", sa.Integer(), nullable=False),
            sa.Column("word_index", sa.SmallInteger(), nullable=False),
            sa.Column("layer", sa.SmallInteger(), nullable=False),
            sa.Column("head", sa.SmallInteger(), nullable=False),
            sa.Column("predicted_index", sa.SmallInteger(), nullable=True),
            sa.Column("weight", sa.REAL(), nullable=True),
            sa.Column("attended_by_index", sa.SmallInteger(), nullable=True),
            sa.Column("cls_weight", sa.REAL(), nullable=False),
            sa.Column("sep_weight", sa.REAL(), nullable=False),
        ],
        [],
    )
    op.create_table(
        "mlflow_backlog",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("ref_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "ref_id", name=op.f("pk_mlflow_backlog")),
    )


def downgrade() -> None:
    op.drop_table("mlflow_backlog")
    _swap(
        [
            sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("word_index", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
            sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
            sa.Column("predicted_index", sa.Integer(), nullable=True),
            sa.Column("weight", sa.Float(), nullable=True),
            sa.Column("attended_by_index", sa.Integer(), nullable=True),
            sa.Column("cls_weight", sa.Float(), nullable=False),
            sa.Column("sep_weight", sa.Float(), nullable=False),
        ],
        [
            sa.ForeignKeyConstraint(
                ["run_id"], ["runs.id"], name=op.f("fk_head_predictions_run_id_runs")
            ),
            sa.ForeignKeyConstraint(
                ["segment_id", "word_index"],
                ["words.segment_id", "words.word_index"],
                name=op.f("fk_head_predictions_segment_id_words"),
            ),
            sa.PrimaryKeyConstraint(
                "run_id", "segment_id", "word_index", "layer", "head",
                name=op.f("pk_head_predictions"),
            ),
        ],
    )
