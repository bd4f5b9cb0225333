"""Model-level analyses: Jensen-Shannon distances between heads and their MDS
coordinates (paper §6), and word-level maps of a few example sentences for figures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "head_coords",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("x", sa.Double(), nullable=False),
        sa.Column("y", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_head_coords_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "layer", "head", name=op.f("pk_head_coords")),
    )
    op.create_table(
        "head_distances",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer_a", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head_a", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("layer_b", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head_b", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("jsd", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_head_distances_run_id_runs")
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "layer_a", "head_a", "layer_b", "head_b", name=op.f("pk_head_distances")
        ),
    )
    op.create_table(
        "example_maps",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("query_unit", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("key_unit", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("query_word", sa.Integer(), nullable=True),
        sa.Column("key_word", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_example_maps_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_example_maps_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint(
            "run_id",
            "segment_id",
            "layer",
            "head",
            "query_unit",
            "key_unit",
            name=op.f("pk_example_maps"),
        ),
    )


def downgrade() -> None:
    op.drop_table("example_maps")
    op.drop_table("head_distances")
    op.drop_table("head_coords")
