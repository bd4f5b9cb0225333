"""Foundation schema: encoders, corpora (documents, segments, words), dependency
annotation layers, runs with checkpoints, per-head metrics and per-word head predictions.

Surrogate keys draw from explicit sequences (DuckDB has no SERIAL; on SQLite the
sequences are no-ops and INTEGER PRIMARY KEY autoincrements).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


SEQUENCES = ("encoders", "corpora", "documents", "segments", "annotation_layers", "runs")


def upgrade() -> None:
    bind = op.get_bind()
    for table in SEQUENCES:
        sa.Sequence(f"{table}_id_seq").create(bind, checkfirst=True)
    op.create_table(
        "corpora",
        sa.Column("id", sa.Integer(), sa.Sequence("corpora_id_seq"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("format", sa.String(length=40), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("n_documents", sa.Integer(), nullable=False),
        sa.Column("n_segments", sa.Integer(), nullable=False),
        sa.Column("n_words", sa.Integer(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("dropped_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corpora")),
        sa.UniqueConstraint("name", name=op.f("uq_corpora_name")),
    )
    op.create_table(
        "encoders",
        sa.Column("id", sa.Integer(), sa.Sequence("encoders_id_seq"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("architecture", sa.String(length=100), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("init", sa.String(length=40), nullable=False),
        sa.Column("n_layers", sa.Integer(), nullable=False),
        sa.Column("n_heads", sa.Integer(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("vocab_size", sa.Integer(), nullable=False),
        sa.Column("max_positions", sa.Integer(), nullable=True),
        sa.Column("cased", sa.Boolean(), nullable=False),
        sa.Column("has_mlm_head", sa.Boolean(), nullable=False),
        sa.Column("special_tokens_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encoders")),
        sa.UniqueConstraint("name", name=op.f("uq_encoders_name")),
    )
    op.create_table(
        "annotation_layers",
        sa.Column("id", sa.Integer(), sa.Sequence("annotation_layers_id_seq"), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("scheme", sa.String(length=20), nullable=False),
        sa.Column("tool", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"], ["corpora.id"], name=op.f("fk_annotation_layers_corpus_id_corpora")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_layers")),
        sa.UniqueConstraint("corpus_id", "name", name=op.f("uq_annotation_layers_corpus_id_name")),
    )
    op.create_table(
        "documents",
        sa.Column("id", sa.Integer(), sa.Sequence("documents_id_seq"), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("doc_index", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"], ["corpora.id"], name=op.f("fk_documents_corpus_id_corpora")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint(
            "corpus_id", "doc_index", name=op.f("uq_documents_corpus_id_doc_index")
        ),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), sa.Sequence("runs_id_seq"), nullable=False),
        sa.Column("encoder_id", sa.Integer(), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("analysis", sa.String(length=40), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("config_hash", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("code_version", sa.String(length=80), nullable=False),
        sa.Column("mlflow_run_id", sa.String(length=64), nullable=True),
        sa.Column("n_segments", sa.Integer(), nullable=True),
        sa.Column("skipped_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["corpus_id"], ["corpora.id"], name=op.f("fk_runs_corpus_id_corpora")
        ),
        sa.ForeignKeyConstraint(
            ["encoder_id"], ["encoders.id"], name=op.f("fk_runs_encoder_id_encoders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint(
            "encoder_id",
            "corpus_id",
            "analysis",
            "config_hash",
            name=op.f("uq_runs_encoder_id_corpus_id_analysis_config_hash"),
        ),
    )
    op.create_table(
        "head_metrics",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("metric", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_head_metrics_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", "layer", "head", "metric", name=op.f("pk_head_metrics")),
    )
    op.create_table(
        "run_checkpoints",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segments_done", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_checkpoints_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_checkpoints")),
    )
    op.create_table(
        "segments",
        sa.Column("id", sa.Integer(), sa.Sequence("segments_id_seq"), nullable=False),
        sa.Column("corpus_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("seg_index", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("n_words", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"], ["corpora.id"], name=op.f("fk_segments_corpus_id_corpora")
        ),
        sa.ForeignKeyConstraint(
            ["document_id"], ["documents.id"], name=op.f("fk_segments_document_id_documents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("corpus_id", "seg_index", name=op.f("uq_segments_corpus_id_seg_index")),
    )
    op.create_table(
        "words",
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("word_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("form", sa.Text(), nullable=False),
        sa.Column("lemma", sa.Text(), nullable=True),
        sa.Column("upos", sa.String(length=20), nullable=True),
        sa.Column("xpos", sa.String(length=20), nullable=True),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("sent_index", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_words_segment_id_segments")
        ),
        sa.PrimaryKeyConstraint("segment_id", "word_index", name=op.f("pk_words")),
    )
    op.create_table(
        "dependencies",
        sa.Column("layer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("word_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("head_index", sa.Integer(), nullable=True),
        sa.Column("relation", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["layer_id"],
            ["annotation_layers.id"],
            name=op.f("fk_dependencies_layer_id_annotation_layers"),
        ),
        sa.ForeignKeyConstraint(
            ["segment_id", "word_index"],
            ["words.segment_id", "words.word_index"],
            name=op.f("fk_dependencies_segment_id_words"),
        ),
        sa.PrimaryKeyConstraint(
            "layer_id", "segment_id", "word_index", name=op.f("pk_dependencies")
        ),
    )
    op.create_table(
        "head_predictions",
        sa.Column("run_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("segment_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("word_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("layer", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("head", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("predicted_index", sa.Integer(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=True),
        sa.Column("cls_weight", sa.Float(), nullable=False),
        sa.Column("sep_weight", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_head_predictions_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["segment_id", "word_index"],
            ["words.segment_id", "words.word_index"],
            name=op.f("fk_head_predictions_segment_id_words"),
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "segment_id", "word_index", "layer", "head", name=op.f("pk_head_predictions")
        ),
    )


def downgrade() -> None:
    op.drop_table("head_predictions")
    op.drop_table("dependencies")
    op.drop_table("words")
    op.drop_table("segments")
    op.drop_table("run_checkpoints")
    op.drop_table("head_metrics")
    op.drop_table("runs")
    op.drop_table("documents")
    op.drop_table("annotation_layers")
    op.drop_table("encoders")
    op.drop_table("corpora")
    bind = op.get_bind()
    for table in SEQUENCES:
        sa.Sequence(f"{table}_id_seq").drop(bind, checkfirst=True)
