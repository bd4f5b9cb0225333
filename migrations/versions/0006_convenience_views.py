"""Convenience views for queries and users: `latest_runs` (the most recent finished run
per encoder, corpus and analysis, with names) and `head_surface` (the surface statistics
of each head as columns instead of long rows).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LATEST_RUNS = """
CREATE VIEW latest_runs AS
SELECT run_id, analysis, model, corpus, encoder_id, corpus_id, finished_at
FROM (
    SELECT
        runs.id AS run_id,
        runs.analysis AS analysis,
        encoders.name AS model,
        corpora.name AS corpus,
        runs.encoder_id AS encoder_id,
        runs.corpus_id AS corpus_id,
        runs.finished_at AS finished_at,
        row_number() OVER (
            PARTITION BY runs.encoder_id, runs.corpus_id, runs.analysis
            ORDER BY runs.finished_at DESC, runs.id DESC
        ) AS recency
    FROM runs
    JOIN encoders ON encoders.id = runs.encoder_id
    JOIN corpora ON corpora.id = runs.corpus_id
    WHERE runs.status = 'done'
) AS ranked
WHERE recency = 1
"""

HEAD_SURFACE = """
CREATE VIEW head_surface AS
SELECT
    run_id,
    layer,
    head,
    max(value) FILTER (WHERE metric = 'attn_prev') AS attn_prev,
    max(value) FILTER (WHERE metric = 'attn_self') AS attn_self,
    max(value) FILTER (WHERE metric = 'attn_next') AS attn_next,
    max(value) FILTER (WHERE metric = 'attn_cls') AS attn_cls,
    max(value) FILTER (WHERE metric = 'attn_sep') AS attn_sep,
    max(value) FILTER (WHERE metric = 'attn_period') AS attn_period,
    max(value) FILTER (WHERE metric = 'attn_comma') AS attn_comma,
    max(value) FILTER (WHERE metric = 'sep_to_sep') AS sep_to_sep,
    max(value) FILTER (WHERE metric = 'entropy') AS entropy,
    max(value) FILTER (WHERE metric = 'cls_entropy') AS cls_entropy,
    max(value) FILTER (WHERE metric = 'uniform_entropy') AS uniform_entropy
FROM head_metrics
GROUP BY run_id, layer, head
"""


def upgrade() -> None:
    op.execute(LATEST_RUNS)
    op.execute(HEAD_SURFACE)


def downgrade() -> None:
    op.execute("DROP VIEW head_surface")
    op.execute("DROP VIEW latest_runs")
