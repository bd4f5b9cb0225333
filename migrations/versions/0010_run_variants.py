"""Run variants: each run's attention weighting ('weight' / 'norm', Kobayashi et al. 2020)
and, for gradient runs, the objective differentiated ('mlm' / 'contrastive'), in a table of
their own keyed by run (DuckDB cannot drop a column of `runs`, which other tables
reference, so a new column there could not be downgraded). Existing runs are backfilled as
weight-based, and gradient runs as masked-LM.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_variants",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("weighting", sa.String(length=10), nullable=False),
        sa.Column("objective", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_variants_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_variants")),
    )
    op.execute(
        "INSERT INTO run_variants (run_id, weighting, objective) "
        "SELECT id, 'weight', CASE WHEN analysis = 'gradients' THEN 'mlm' END FROM runs"
    )


def downgrade() -> None:
    op.drop_table("run_variants")
