"""Smaller per-head predictions, and arc scores without a self-join of the predictions.

`head_predictions` (tens of millions of rows at UD EWT train scale) loses `weight`, the
attention the word sends to its predicted word: no query, view or report reads it (the
noop queries read `cls_weight` and `sep_weight`, which stay). The rows are copied in
clustered order (run, segment, word, layer, head) into the new table and swapped, as in 0007;
the views over the table, read from the catalogue, are rebuilt around the swap.

`arc_scores` is redefined with the same columns and counts, computed without joining the
predictions to themselves: a head-to-dependent hit (the head word's predicted word is the
dependent) is found by joining each prediction of the head word with its arcs, on the
predicted word. Every join then has the small dependency table on its build side instead of
a run's whole predictions (Table 1 over 15M prediction rows: see README "Scale").
`arc_hits`, one row per arc and head, stays as it was: the per-arc definition that the
tests hold `arc_scores` to.

Downgrade restores `weight` as NULL (its values are gone: the attention weights are not
derivable from what stays) and 0002's `arc_scores`.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

ORDER = "run_id, segment_id, word_index, layer, head"
KEPT = (
    "run_id, segment_id, word_index, layer, head, predicted_index, attended_by_index, "
    "cls_weight, sep_weight"
)

# Same catalogue reads as 0007's: every view of the schema with its CREATE statement.
VIEW_CATALOGUE = {
    "duckdb": "SELECT view_name, sql FROM duckdb_views() "
              "WHERE NOT internal AND schema_name = current_schema() ORDER BY view_oid",
    "sqlite": "SELECT name, sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid",
    "postgresql": "SELECT c.relname, 'CREATE VIEW ' || quote_ident(c.relname) || ' AS ' || "
                  "pg_get_viewdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'v' AND n.nspname = current_schema() ORDER BY c.oid",
}

# Per (syntax run, annotation layer of its corpus, label, layer, head): how many arcs each
# direction gets right, out of n. The arcs scored are those whose two words both have
# predictions (a truncated segment keeps a prefix of its words), as in arc_hits.
ARC_SCORES = """
CREATE VIEW arc_scores AS
WITH arcs AS (
    SELECT
        runs.id AS run_id,
        annotation_layers.name AS annotation,
        annotation_layers.scheme AS scheme,
        dependencies.segment_id AS segment_id,
        dependencies.word_index AS dependent,
        dependencies.head_index AS head_word,
        dependencies.relation AS label,
        relation_map.relation AS paper_relation
    FROM runs
    JOIN annotation_layers ON annotation_layers.corpus_id = runs.corpus_id
    JOIN dependencies ON dependencies.layer_id = annotation_layers.id
    LEFT JOIN relation_map
        ON relation_map.scheme = annotation_layers.scheme AND relation_map.label = dependencies.relation
    WHERE dependencies.head_index IS NOT NULL
),
analysed AS (
    SELECT run_id, segment_id, word_index FROM head_predictions WHERE layer = 0 AND head = 0
),
scored AS (
    SELECT arcs.*
    FROM arcs
    JOIN analysed AS dependent_words
        ON dependent_words.run_id = arcs.run_id
        AND dependent_words.segment_id = arcs.segment_id
        AND dependent_words.word_index = arcs.dependent
    JOIN analysed AS head_words
        ON head_words.run_id = arcs.run_id
        AND head_words.segment_id = arcs.segment_id
        AND head_words.word_index = arcs.head_word
),
from_dependent AS (
    SELECT scored.run_id, scored.annotation, scored.scheme, scored.label, scored.paper_relation,
           head_predictions.layer, head_predictions.head,
           count(*) FILTER (WHERE head_predictions.predicted_index = scored.head_word) AS d2h,
           count(*) FILTER (WHERE head_predictions.attended_by_index = scored.head_word) AS h2d_col,
           count(*) AS n
    FROM scored
    JOIN head_predictions
        ON head_predictions.run_id = scored.run_id
        AND head_predictions.segment_id = scored.segment_id
        AND head_predictions.word_index = scored.dependent
    GROUP BY scored.run_id, scored.annotation, scored.scheme, scored.label, scored.paper_relation,
             head_predictions.layer, head_predictions.head
),
from_head AS (
    SELECT scored.run_id, scored.annotation, scored.label, head_predictions.layer, head_predictions.head,
           count(*) AS h2d
    FROM scored
    JOIN head_predictions
        ON head_predictions.run_id = scored.run_id
        AND head_predictions.segment_id = scored.segment_id
        AND head_predictions.word_index = scored.head_word
        AND head_predictions.predicted_index = scored.dependent
    GROUP BY scored.run_id, scored.annotation, scored.label, head_predictions.layer, head_predictions.head
),
counts AS (
    SELECT from_dependent.run_id, from_dependent.annotation, from_dependent.scheme, from_dependent.label,
           from_dependent.paper_relation, from_dependent.layer, from_dependent.head,
           from_dependent.d2h, coalesce(from_head.h2d, 0) AS h2d, from_dependent.h2d_col, from_dependent.n
    FROM from_dependent
    LEFT JOIN from_head
        ON from_head.run_id = from_dependent.run_id
        AND from_head.annotation = from_dependent.annotation
        AND from_head.label = from_dependent.label
        AND from_head.layer = from_dependent.layer
        AND from_head.head = from_dependent.head
)
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'd2h' AS direction, d2h AS correct, n FROM counts
UNION ALL
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'h2d', h2d, n FROM counts
UNION ALL
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'h2d_col', h2d_col, n FROM counts
"""

# 0002's definition, restored by the downgrade.
ARC_SCORES_0002 = """
CREATE VIEW arc_scores AS
WITH counts AS (
    SELECT run_id, annotation, scheme, label, paper_relation, layer, head,
           count(*) FILTER (WHERE d2h) AS d2h,
           count(*) FILTER (WHERE h2d) AS h2d,
           count(*) FILTER (WHERE h2d_col) AS h2d_col,
           count(*) AS n
    FROM arc_hits
    GROUP BY run_id, annotation, scheme, label, paper_relation, layer, head
)
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'd2h' AS direction, d2h AS correct, n FROM counts
UNION ALL
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'h2d', h2d, n FROM counts
UNION ALL
SELECT run_id, annotation, scheme, label, paper_relation, layer, head, 'h2d_col', h2d_col, n FROM counts
"""


def _views_over_predictions() -> list[tuple[str, str]]:
    """(name, CREATE statement) of the views that read head_predictions, directly or
    through other views, in creation order (arc_scores among them, before 0011 through
    arc_hits, after it directly)."""
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


def _swap(columns: list[sa.Column], copied: str, arc_scores: str) -> None:
    """Rebuild the keyless head_predictions with `columns`, copying `copied` in clustered
    order, and recreate the views over it with `arc_scores` as that view's definition."""
    views = _views_over_predictions()
    for name, _ in reversed(views):
        op.execute(f"DROP VIEW {name}")
    op.rename_table("head_predictions", "head_predictions_swap")
    op.create_table("head_predictions", *columns)
    op.execute(
        f"INSERT INTO head_predictions ({copied}) "
        f"SELECT {copied} FROM head_predictions_swap ORDER BY {ORDER}"
    )
    op.drop_table("head_predictions_swap")
    for name, create in views:
        op.execute(arc_scores if name == "arc_scores" else create)


def _columns(*, with_weight: bool) -> list[sa.Column]:
    return [
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("word_index", sa.SmallInteger(), nullable=False),
        sa.Column("layer", sa.SmallInteger(), nullable=False),
        sa.Column("head", sa.SmallInteger(), nullable=False),
        sa.Column("predicted_index", sa.SmallInteger(), nullable=True),
        *([sa.Column("weight", sa.REAL(), nullable=True)] if with_weight else []),
        sa.Column("attended_by_index", sa.SmallInteger(), nullable=True),
        sa.Column("cls_weight", sa.REAL(), nullable=False),
        sa.Column("sep_weight", sa.REAL(), nullable=False),
    ]


def upgrade() -> None:
    _swap(_columns(with_weight=False), KEPT, ARC_SCORES)


def downgrade() -> None:
    _swap(_columns(with_weight=True), KEPT, ARC_SCORES_0002)
