"""Run claims: which process (PID, host) computes a run, with a heartbeat, so that a second
process never resumes a live run and a run whose process died is detected and failed.

One table for analysis runs and probe runs (see RunClaim in app/store/schema.py for why a
table and not columns).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_claims",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "run_id", name=op.f("pk_run_claims")),
    )


def downgrade() -> None:
    op.drop_table("run_claims")
