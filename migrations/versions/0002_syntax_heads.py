"""Syntax heads: the "attended by" prediction per word and head, silver POS on dependency
layers, the UD/ClearNLP -> paper relation map, the paper's Table 1 for comparison, and the
views `arc_hits` (one row per arc, run and head: did each direction get the arc right?)
and `arc_scores` (those hits counted per label, head and direction), which the syntax
queries read.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# One row per (syntax run, annotation layer of its corpus, non-root arc, layer, head).
ARC_HITS = """
CREATE VIEW arc_hits AS
SELECT
    runs.id AS run_id,
    annotation_layers.name AS annotation,
    annotation_layers.scheme AS scheme,
    dependencies.segment_id AS segment_id,
    dependencies.word_index AS dependent,
    dependencies.head_index AS head_word,
    dependencies.relation AS label,
    relation_map.relation AS paper_relation,
    from_dependent.layer AS layer,
    from_dependent.head AS head,
    from_dependent.predicted_index = dependencies.head_index AS d2h,
    from_head.predicted_index = dependencies.word_index AS h2d,
    from_dependent.attended_by_index = dependencies.head_index AS h2d_col
FROM runs
JOIN annotation_layers ON annotation_layers.corpus_id = runs.corpus_id
JOIN dependencies ON dependencies.layer_id = annotation_layers.id
LEFT JOIN relation_map
    ON relation_map.scheme = annotation_layers.scheme AND relation_map.label = dependencies.relation
JOIN head_predictions AS from_dependent
    ON from_dependent.run_id = runs.id
    AND from_dependent.segment_id = dependencies.segment_id
    AND from_dependent.word_index = dependencies.word_index
JOIN head_predictions AS from_head
    ON from_head.run_id = runs.id
    AND from_head.segment_id = dependencies.segment_id
    AND from_head.word_index = dependencies.head_index
    AND from_head.layer = from_dependent.layer
    AND from_head.head = from_dependent.head
WHERE dependencies.head_index IS NOT NULL
"""

# arc_hits counted per (run, annotation, label, layer, head, direction). One aggregation
# over arc_hits, then unpivoted: a UNION of three aggregations would join three times.
ARC_SCORES = """
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


def upgrade() -> None:
    op.add_column("head_predictions", sa.Column("attended_by_index", sa.Integer(), nullable=True))
    op.add_column("dependencies", sa.Column("upos", sa.String(length=20), nullable=True))
    op.create_table(
        "relation_map",
        sa.Column("scheme", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=40), nullable=False),
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("scheme", "label", name=op.f("pk_relation_map")),
    )
    op.create_table(
        "paper_relations",
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("paper_head", sa.String(length=10), nullable=False),
        sa.Column("paper_accuracy", sa.Double(), nullable=False),
        sa.Column("paper_baseline", sa.Double(), nullable=False),
        sa.Column("paper_baseline_offset", sa.Integer(), nullable=False),
        sa.Column("missing_note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("relation", name=op.f("pk_paper_relations")),
    )
    op.execute(ARC_HITS)
    op.execute(ARC_SCORES)


def downgrade() -> None:
    op.execute("DROP VIEW arc_scores")
    op.execute("DROP VIEW arc_hits")
    op.drop_table("paper_relations")
    op.drop_table("relation_map")
    op.drop_column("dependencies", "upos")
    op.drop_column("head_predictions", "attended_by_index")
