"""Loaded shards: the bookkeeping of distributed passes (`analyze --workers N`).

One row per shard of a run (or of a probe feature cache) that the driver has loaded, with
the shard's row counts and mergeable sums, written in the same transaction as its rows:
unique per (run, shard), so no shard is ever loaded twice.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sa.Sequence("loaded_shards_id_seq").create(op.get_bind(), checkfirst=True)
    op.create_table(
        "loaded_shards",
        sa.Column("id", sa.Integer(), sa.Sequence("loaded_shards_id_seq"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("feature_cache_id", sa.Integer(), nullable=True),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("first_segment", sa.Integer(), nullable=False),
        sa.Column("n_segments", sa.Integer(), nullable=False),
        sa.Column("rows_json", sa.Text(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=True),
        sa.Column("worker", sa.String(length=120), nullable=False),
        sa.Column("loaded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feature_cache_id"],
            ["feature_caches.id"],
            name=op.f("fk_loaded_shards_feature_cache_id_feature_caches"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_loaded_shards_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loaded_shards")),
        sa.UniqueConstraint(
            "feature_cache_id", "shard", name=op.f("uq_loaded_shards_feature_cache_id_shard")
        ),
        sa.UniqueConstraint("run_id", "shard", name=op.f("uq_loaded_shards_run_id_shard")),
    )


def downgrade() -> None:
    op.drop_table("loaded_shards")
    sa.Sequence("loaded_shards_id_seq").drop(op.get_bind(), checkfirst=True)
