"""Coreference: mentions with head words and types, baseline antecedent choices, each
head's antecedent choices, and the paper's Table 2 for comparison.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sa.Sequence("mentions_id_seq").create(op.get_bind(), checkfirst=True)
    op.create_table(
        "paper_coref",
        sa.Column("method", sa.String(length=40), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("paper_all", sa.Double(), nullable=False),
        sa.Column("paper_pronoun", sa.Double(), nullable=True),
        sa.Column("paper_proper", sa.Double(), nullable=True),
        sa.Column("paper_nominal", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("method", name=op.f("pk_paper_coref")),
    )
    op.create_table(
        "mentions",
        sa.Column("id", sa.Integer(), sa.Sequence("mentions_id_seq"), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("mention_index", sa.Integer(), nullable=False),
        sa.Column("start_word", sa.Integer(), nullable=False),
        sa.Column("end_word", sa.Integer(), nullable=False),
        sa.Column("head_word", sa.Integer(), nullable=False),
        sa.Column("entity", sa.String(length=100), nullable=False),
        sa.Column("mention_type", sa.String(length=10), nullable=False),
        sa.Column("head_source", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_mentions_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mentions")),
        sa.UniqueConstraint(
            "segment_id", "mention_index", name=op.f("uq_mentions_segment_id_mention_index")
        ),
    )
    op.create_table(
        "coref_baselines",
        sa.Column("mention_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("baseline", sa.String(length=20), nullable=False),
        sa.Column("predicted_mention_id", sa.Integer(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["mention_id"], ["mentions.id"], name=op.f("fk_coref_baselines_mention_id_mentions")
        ),
        sa.ForeignKeyConstraint(
            ["predicted_mention_id"],
            ["mentions.id"],
            name=op.f("fk_coref_baselines_predicted_mention_id_mentions"),
        ),
        sa.PrimaryKeyConstraint("mention_id", "baseline", name=op.f("pk_coref_baselines")),
    )
    op.create_table(
        "coref_predictions",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("mention_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("predicted_mention_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mention_id"], ["mentions.id"], name=op.f("fk_coref_predictions_mention_id_mentions")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_coref_predictions_run_id_runs")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "mention_id", "layer", "head", name=op.f("pk_coref_predictions")
        ),
    )


def downgrade() -> None:
    op.drop_table("coref_predictions")
    op.drop_table("coref_baselines")
    op.drop_table("mentions")
    op.drop_table("paper_coref")
    sa.Sequence("mentions_id_seq").drop(op.get_bind(), checkfirst=True)
