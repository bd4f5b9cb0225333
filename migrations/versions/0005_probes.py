"""Probes: feature caches on disk (attention maps and hidden states per corpus and
encoder), probe runs with their scores and MLflow ids, and the paper's Table 3.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


SEQUENCES = ("feature_caches", "probe_runs")


def upgrade() -> None:
    for table in SEQUENCES:
        sa.Sequence(f"{table}_id_seq").create(op.get_bind(), checkfirst=True)
    op.create_table(
        "paper_probes",
        sa.Column("model", sa.String(length=40), nullable=False),
        sa.Column("sort_order", sa.Integer(), nullable=False),
        sa.Column("paper_score", sa.Double(), nullable=False),
        sa.Column("paper_metric", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_paper_probes")),
    )
    op.create_table(
        "feature_caches",
        sa.Column("id", sa.Integer(), sa.Sequence("feature_caches_id_seq"), nullable=False),
        sa.Column("encoder_id", sa.Integer(), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("config_hash", sa.String(length=16), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("n_segments", sa.Integer(), nullable=True),
        sa.Column("skipped_json", sa.Text(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"], ["corpora.id"], name=op.f("fk_feature_caches_corpus_id_corpora")
        ),
        sa.ForeignKeyConstraint(
            ["encoder_id"], ["encoders.id"], name=op.f("fk_feature_caches_encoder_id_encoders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feature_caches")),
        sa.UniqueConstraint(
            "encoder_id",
            "corpus_id",
            "config_hash",
            name=op.f("uq_feature_caches_encoder_id_corpus_id_config_hash"),
        ),
    )
    op.create_table(
        "probe_runs",
        sa.Column("id", sa.Integer(), sa.Sequence("probe_runs_id_seq"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("encoder_id", sa.Integer(), nullable=True),
        sa.Column("train_corpus_id", sa.Integer(), nullable=False),
        sa.Column("dev_corpus_id", sa.Integer(), nullable=False),
        sa.Column("test_corpus_id", sa.Integer(), nullable=False),
        sa.Column("annotation", sa.String(length=40), nullable=False),
        sa.Column("layers", sa.String(length=200), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("metric", sa.String(length=10), nullable=False),
        sa.Column("dev_score", sa.Double(), nullable=True),
        sa.Column("test_score", sa.Double(), nullable=True),
        sa.Column("n_train_words", sa.Integer(), nullable=True),
        sa.Column("n_test_words", sa.Integer(), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dev_corpus_id"], ["corpora.id"], name=op.f("fk_probe_runs_dev_corpus_id_corpora")
        ),
        sa.ForeignKeyConstraint(
            ["encoder_id"], ["encoders.id"], name=op.f("fk_probe_runs_encoder_id_encoders")
        ),
        sa.ForeignKeyConstraint(
            ["test_corpus_id"], ["corpora.id"], name=op.f("fk_probe_runs_test_corpus_id_corpora")
        ),
        sa.ForeignKeyConstraint(
            ["train_corpus_id"], ["corpora.id"], name=op.f("fk_probe_runs_train_corpus_id_corpora")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_runs")),
        sa.UniqueConstraint("config_hash", name=op.f("uq_probe_runs_config_hash")),
    )


def downgrade() -> None:
    op.drop_table("probe_runs")
    op.drop_table("feature_caches")
    op.drop_table("paper_probes")
    for table in SEQUENCES:
        sa.Sequence(f"{table}_id_seq").drop(op.get_bind(), checkfirst=True)
