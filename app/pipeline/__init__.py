"""One function per stage; the only package that does I/O across stages.

ingest (models, corpora) -> extract (align, engine) -> analysis (accumulators) -> store
(rows + checkpoints, one transaction per chunk) -> queries -> report. Every stage is keyed by
names and config hashes, so rerunning is safe and an interrupted analysis resumes.
"""

from app.pipeline.analyze import RunSummary, analyze
from app.pipeline.ingest import IngestResult, annotate, ingest_corpus, ingest_model, read_corpus
from app.pipeline.query import run_query

__all__ = [
    "IngestResult",
    "RunSummary",
    "analyze",
    "annotate",
    "ingest_corpus",
    "ingest_model",
    "read_corpus",
    "run_query",
]
