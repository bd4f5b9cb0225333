"""Smaller per-head predictions, and arc scores without a self-join of the predictions.

`head_predictions` (tens of millions of rows at UD EWT train scale) loses `weight`, the
attention the word sends to its predicted word: no query, view or report reads it (the
noop queries read `cls_weight` and `sep_weight`, which stay). The rows are copied in
clustered order (run, segment, word, layer, head) into the new table and swapped, as in 0007;
the views over the table, read from the catalogue, are rebuilt around the swap.

`arc_scores` is redefined with the same columns and counts, computed without joining the
predictions to themselves or every prediction row to an arc: the predictions are joined to
the arcs on (word, predicted word) and (word, attended-by word), so that only hits come out
of the joins, which all have the small dependency table on their build side (Table 1 over
15M prediction rows: see README "Scale").
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

# The non-root arcs of each syntax run's corpus, per annotation layer. Used three times
# below, as a subquery rather than a CTE: DuckDB materialises a CTE read more than once,
# for every run, before the caller's `run_id = ...` filter can reach it.
ARCS = """(
    SELECT runs.id AS run_id, dependencies.layer_id, dependencies.segment_id,
           dependencies.word_index AS dependent, dependencies.head_index AS head_word,
           dependencies.relation AS label
    FROM runs
    JOIN annotation_layers ON annotation_layers.corpus_id = runs.corpus_id
    JOIN dependencies ON dependencies.layer_id = annotation_layers.id
    WHERE dependencies.head_index IS NOT NULL
)"""

# Per (syntax run, annotation layer of its corpus, label, layer, head): how many arcs each
# direction gets right, out of n: the counts of arc_hits, without joining every prediction
# row to an arc. Only hits are joined: a prediction row (word, predicted word) is a d2h hit
# when the arc word -> predicted exists, an h2d hit when predicted -> word exists, and an
# h2d_col hit when (word, attended-by word) is an arc. As in arc_hits, n counts the arcs
# whose two words both have predictions (a truncated segment keeps a prefix of its words;
# every word with predictions has them for every head), and a hit names two such words.
# Counts are grouped by integer keys and the label; names are joined to the small result.
# Each CTE is read once, so that the caller's run filter reaches every scan.
ARC_SCORES = f"""
CREATE VIEW arc_scores AS
WITH predicted_hits AS (
    SELECT arc_ends.run_id, arc_ends.layer_id, arc_ends.label, head_predictions.layer, head_predictions.head,
           count(*) FILTER (WHERE arc_ends.direction = 'd2h') AS d2h,
           count(*) FILTER (WHERE arc_ends.direction = 'h2d') AS h2d
    FROM (
        SELECT run_id, layer_id, segment_id, label, dependent AS word, head_word AS target, 'd2h' AS direction
        FROM {ARCS} AS arcs
        UNION ALL
        SELECT run_id, layer_id, segment_id, label, head_word, dependent, 'h2d'
        FROM {ARCS} AS arcs
    ) AS arc_ends
    JOIN head_predictions
        ON head_predictions.run_id = arc_ends.run_id
        AND head_predictions.segment_id = arc_ends.segment_id
        AND head_predictions.word_index = arc_ends.word
        AND head_predictions.predicted_index = arc_ends.target
    GROUP BY arc_ends.run_id, arc_ends.layer_id, arc_ends.label, head_predictions.layer, head_predictions.head
),
column_hits AS (
    SELECT arcs.run_id, arcs.layer_id, arcs.label, head_predictions.layer, head_predictions.head,
           count(*) AS h2d_col
    FROM {ARCS} AS arcs
    JOIN head_predictions
        ON head_predictions.run_id = arcs.run_id
        AND head_predictions.segment_id = arcs.segment_id
        AND head_predictions.word_index = arcs.dependent
        AND head_predictions.attended_by_index = arcs.head_word
    GROUP BY arcs.run_id, arcs.layer_id, arcs.label, head_predictions.layer, head_predictions.head
),
scored AS (
    SELECT arcs.run_id, arcs.layer_id, arcs.label, count(*) AS n
    FROM {ARCS} AS arcs
    JOIN head_predictions AS dependent_words
        ON dependent_words.run_id = arcs.run_id
        AND dependent_words.segment_id = arcs.segment_id
        AND dependent_words.word_index = arcs.dependent
        AND dependent_words.layer = 0
        AND dependent_words.head = 0
    JOIN head_predictions AS head_words
        ON head_words.run_id = arcs.run_id
        AND head_words.segment_id = arcs.segment_id
        AND head_words.word_index = arcs.head_word
        AND head_words.layer = 0
        AND head_words.head = 0
    GROUP BY arcs.run_id, arcs.layer_id, arcs.label
),
heads AS (
    SELECT DISTINCT run_id, layer, head FROM head_predictions WHERE word_index = 0
),
counts AS (
    SELECT scored.run_id, annotation_layers.name AS annotation, annotation_layers.scheme,
           scored.label, relation_map.relation AS paper_relation, heads.layer, heads.head,
           coalesce(predicted_hits.d2h, 0) AS d2h, coalesce(predicted_hits.h2d, 0) AS h2d,
           coalesce(column_hits.h2d_col, 0) AS h2d_col, scored.n
    FROM scored
    JOIN annotation_layers ON annotation_layers.id = scored.layer_id
    LEFT JOIN relation_map
        ON relation_map.scheme = annotation_layers.scheme AND relation_map.label = scored.label
    JOIN heads ON heads.run_id = scored.run_id
    LEFT JOIN predicted_hits
        ON predicted_hits.run_id = scored.run_id
        AND predicted_hits.layer_id = scored.layer_id
        AND predicted_hits.label = scored.label
        AND predicted_hits.layer = heads.layer
        AND predicted_hits.head = heads.head
    LEFT JOIN column_hits
        ON column_hits.run_id = scored.run_id
        AND column_hits.layer_id = scored.layer_id
        AND column_hits.label = scored.label
        AND column_hits.layer = heads.layer
        AND column_hits.head = heads.head
)
SELECT counts.run_id, counts.annotation, counts.scheme, counts.label, counts.paper_relation,
       counts.layer, counts.head, directions.direction,
       CASE directions.direction WHEN 'd2h' THEN counts.d2h WHEN 'h2d' THEN counts.h2d ELSE counts.h2d_col END AS correct,
       counts.n
FROM counts
CROSS JOIN (SELECT 'd2h' AS direction UNION ALL SELECT 'h2d' UNION ALL SELECT 'h2d_col') AS directions
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
