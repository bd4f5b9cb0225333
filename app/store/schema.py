"""The database schema, defined once as SQLAlchemy 2.0 models.

Alembic revisions in `migrations/` build it; the bulk writer (write.py) inserts per-head and
per-word rows into these same tables through DuckDB's Arrow path. Surrogate keys use
explicit sequences because DuckDB has no SERIAL (shared/STACK.md §2); every other integer
key is declared `autoincrement=False`.

Indices follow one convention: `layer`, `head`, `word_index` are 0-based.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    REAL,
    Boolean,
    Column,
    DateTime,
    Double,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    Sequence,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def surrogate_key(table: str) -> Mapped[int]:
    # No server_default: with it the ORM falls back to one INSERT per row (STACK.md §2).
    return mapped_column(Integer, Sequence(f"{table}_id_seq"), primary_key=True)


class Encoder(Base):
    """An ingested Transformer encoder: where its files are and what shape it has."""

    __tablename__ = "encoders"

    id: Mapped[int] = surrogate_key("encoders")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(Text)
    architecture: Mapped[str] = mapped_column(String(100))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    # "pretrained", or "random:<seed>" for a randomly initialised copy of the architecture
    # (the paper's random-init control).
    init: Mapped[str] = mapped_column(String(40))
    n_layers: Mapped[int] = mapped_column(Integer)
    n_heads: Mapped[int] = mapped_column(Integer)
    hidden_size: Mapped[int] = mapped_column(Integer)
    vocab_size: Mapped[int] = mapped_column(Integer)
    max_positions: Mapped[int | None] = mapped_column(Integer)
    cased: Mapped[bool] = mapped_column(Boolean)
    has_mlm_head: Mapped[bool] = mapped_column(Boolean)
    # JSON object: role ("cls", "sep", "pad", ...) -> token id, as the tokenizer reports it.
    special_tokens_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Corpus(Base):
    """An ingested corpus; `sha256` of its source makes re-ingestion a no-op."""

    __tablename__ = "corpora"

    id: Mapped[int] = surrogate_key("corpora")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    format: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    n_documents: Mapped[int] = mapped_column(Integer)
    n_segments: Mapped[int] = mapped_column(Integer)
    n_words: Mapped[int] = mapped_column(Integer)
    # JSON: how the corpus was built, and what was dropped while reading it, by reason.
    config_json: Mapped[str] = mapped_column(Text)
    dropped_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("corpus_id", "doc_index"),)

    id: Mapped[int] = surrogate_key("documents")
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    doc_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(Text)


class SegmentRow(Base):
    """One encoder input: a sentence, a paragraph pair or a document window."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("corpus_id", "seg_index"),)

    id: Mapped[int] = surrogate_key("segments")
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id"))
    seg_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    n_words: Mapped[int] = mapped_column(Integer)


class WordRow(Base):
    __tablename__ = "words"

    segment_id: Mapped[int] = mapped_column(
        ForeignKey("segments.id"), primary_key=True, autoincrement=False
    )
    word_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    form: Mapped[str] = mapped_column(Text)
    lemma: Mapped[str | None] = mapped_column(Text)
    upos: Mapped[str | None] = mapped_column(String(20))
    xpos: Mapped[str | None] = mapped_column(String(20))
    part: Mapped[int] = mapped_column(SmallInteger)
    sent_index: Mapped[int] = mapped_column(Integer)


class AnnotationLayer(Base):
    """A dependency annotation of a corpus: gold from the source, or silver from a parser."""

    __tablename__ = "annotation_layers"
    __table_args__ = (UniqueConstraint("corpus_id", "name"),)

    id: Mapped[int] = surrogate_key("annotation_layers")
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    name: Mapped[str] = mapped_column(String(40))
    # "gold" or "silver".
    kind: Mapped[str] = mapped_column(String(10))
    # Label scheme: "ud" (Universal Dependencies), "clear" (ClearNLP/Stanford-style), ...
    scheme: Mapped[str] = mapped_column(String(20))
    tool: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Dependency(Base):
    """One arc: `head_index` is NULL for the root."""

    __tablename__ = "dependencies"
    __table_args__ = (
        ForeignKeyConstraint(
            ["segment_id", "word_index"], ["words.segment_id", "words.word_index"]
        ),
    )

    layer_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_layers.id"), primary_key=True, autoincrement=False
    )
    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    word_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    head_index: Mapped[int | None] = mapped_column(Integer)
    relation: Mapped[str] = mapped_column(String(40))
    # Part of speech assigned by this layer's tool (silver layers); gold POS is in `words`.
    upos: Mapped[str | None] = mapped_column(String(20))


class Run(Base):
    """One analysis of one corpus by one encoder under one config.

    (encoder, corpus, analysis, config_hash) is unique: rerunning a finished config is a
    no-op, and an interrupted one resumes from its checkpoint.
    """

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("encoder_id", "corpus_id", "analysis", "config_hash"),)

    id: Mapped[int] = surrogate_key("runs")
    encoder_id: Mapped[int] = mapped_column(ForeignKey("encoders.id"))
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    analysis: Mapped[str] = mapped_column(String(40))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(16))
    # "running", "done" or "failed".
    status: Mapped[str] = mapped_column(String(10))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    code_version: Mapped[str] = mapped_column(String(80))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    n_segments: Mapped[int | None] = mapped_column(Integer)
    # JSON: segments left out, by reason (too long, unalignable): nothing silently dropped.
    skipped_json: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class RunVariant(Base):
    """What kind of maps or loss a run's rows come from, as columns a query can filter on.

    `weighting`: 'weight' (attention weights, the paper) or 'norm' (||alpha f(x)||,
    Kobayashi et al. 2020). `objective`: for gradient runs, 'mlm' or 'contrastive'; NULL
    otherwise. Both are also in the run's config, so they are part of its identity.
    """

    __tablename__ = "run_variants"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id"), primary_key=True, autoincrement=False
    )
    weighting: Mapped[str] = mapped_column(String(10))
    objective: Mapped[str | None] = mapped_column(String(20))


class RunCheckpoint(Base):
    """Streaming state of an unfinished run, written in the same transaction as its rows."""

    __tablename__ = "run_checkpoints"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id"), primary_key=True, autoincrement=False
    )
    segments_done: Mapped[int] = mapped_column(Integer)
    state: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class LoadedShard(Base):
    """A worker's shard of a distributed pass, loaded into the database exactly once.

    Workers write each shard's rows as Parquet files under the run's folder; the driver
    loads a shard's rows and this row in one transaction, so a shard is either wholly in
    the database (and never loaded again) or not at all. `state` holds the shard's
    mergeable sums (the accumulator's state_dict), merged once every shard is in. Feature
    extraction for the probes books its shards here too, under `feature_cache_id`.
    """

    __tablename__ = "loaded_shards"
    __table_args__ = (
        UniqueConstraint("run_id", "shard"),
        UniqueConstraint("feature_cache_id", "shard"),
    )

    id: Mapped[int] = surrogate_key("loaded_shards")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"))
    feature_cache_id: Mapped[int | None] = mapped_column(ForeignKey("feature_caches.id"))
    shard: Mapped[int] = mapped_column(Integer)
    # Position of the shard's first segment in the pass's length-sorted segment order.
    first_segment: Mapped[int] = mapped_column(Integer)
    n_segments: Mapped[int] = mapped_column(Integer)
    # JSON: rows loaded per table, as the worker counted them (checked against the files).
    rows_json: Mapped[str] = mapped_column(Text)
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    # host:pid of the Ray worker that computed the shard.
    worker: Mapped[str] = mapped_column(String(120))
    loaded_at: Mapped[datetime] = mapped_column(DateTime)


class HeadMetric(Base):
    """A scalar per head, long format: surface statistics, gradients, behaviour scores."""

    __tablename__ = "head_metrics"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("runs.id"), primary_key=True, autoincrement=False
    )
    layer: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[float] = mapped_column(Double)
    # How many observations (query tokens, arcs, ...) the value averages over.
    n: Mapped[int] = mapped_column(Integer)


# Per word and head: the word it attends to most, and how much goes to special tokens.
# `predicted_index` excludes the word itself and special tokens (the paper's head-as-parser
# rule); NULL when the segment has no other word. Accuracies are SQL joins of this table
# with `dependencies`. The one table that grows with the corpus, so it is lean (migrations
# 0007, 0011): no primary key or foreign keys (on DuckDB each is an index that bulk inserts
# and redo deletes pay for), SMALLINT word indices, REAL weights, only the columns some
# query reads (not the weight of the predicted word), and rows appended in `append_order`
# so that zone maps prune and columns compress. A plain Table, not a mapped class: the ORM
# needs a primary key, and only insert_rows and SQL touch these rows.
head_predictions = Table(
    "head_predictions",
    Base.metadata,
    Column("run_id", Integer, nullable=False),
    Column("segment_id", Integer, nullable=False),
    Column("word_index", SmallInteger, nullable=False),
    Column("layer", SmallInteger, nullable=False),
    Column("head", SmallInteger, nullable=False),
    Column("predicted_index", SmallInteger),
    # The other word that attends most to this one: the authors' code's "transpose" direction.
    Column("attended_by_index", SmallInteger),
    # Stored to 6 decimals (`insert_rows` rounds any column with info["decimals"]): the
    # float32 sums over word pieces carry about that much (padding a batch differently moves
    # them by up to 1e-6), and decimal-like floats compress as integers in DuckDB (ALP),
    # about 2.7 bytes a row each instead of 3.8.
    Column("cls_weight", REAL, nullable=False, info={"decimals": 6}),
    Column("sep_weight", REAL, nullable=False, info={"decimals": 6}),
    info={"append_order": ("segment_id", "word_index", "layer", "head")},
)


class RelationMap(Base):
    """How a scheme's dependency labels map onto the paper's (Stanford Dependencies) rows.

    Seeded from app/data/relation_map.csv by `headlens db upgrade`: data, not code.
    """

    __tablename__ = "relation_map"

    scheme: Mapped[str] = mapped_column(String(20), primary_key=True)
    label: Mapped[str] = mapped_column(String(40), primary_key=True)
    relation: Mapped[str] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)


class PaperRelation(Base):
    """The paper's Table 1 rows, for side-by-side comparison (app/data/paper_table1.csv)."""

    __tablename__ = "paper_relations"

    relation: Mapped[str] = mapped_column(String(40), primary_key=True)
    sort_order: Mapped[int] = mapped_column(Integer)
    paper_head: Mapped[str] = mapped_column(String(10))
    paper_accuracy: Mapped[float] = mapped_column(Double)
    paper_baseline: Mapped[float] = mapped_column(Double)
    paper_baseline_offset: Mapped[int] = mapped_column(Integer)
    # Why a scheme may have no rows for this relation (e.g. UD has no pobj/prep).
    missing_note: Mapped[str | None] = mapped_column(Text)


class HeadDistance(Base):
    """Mean Jensen-Shannon divergence between two heads' attention (a < b, paper §6)."""

    __tablename__ = "head_distances"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True, autoincrement=False)
    layer_a: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head_a: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    layer_b: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head_b: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    jsd: Mapped[float] = mapped_column(Double)


class HeadCoordinate(Base):
    """A head's position in the 2-D MDS map of the distances."""

    __tablename__ = "head_coords"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True, autoincrement=False)
    layer: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    x: Mapped[float] = mapped_column(Double)
    y: Mapped[float] = mapped_column(Double)


class ExampleMap(Base):
    """Word-level attention of a few example segments, for figures (paper Figure 5).

    Units index the rows/columns of the word-level map; `*_word` is the word index, NULL
    for special tokens.
    """

    __tablename__ = "example_maps"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True, autoincrement=False)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), primary_key=True, autoincrement=False)
    layer: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    query_unit: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    key_unit: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    query_word: Mapped[int | None] = mapped_column(Integer)
    key_word: Mapped[int | None] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)


class MentionRow(Base):
    """A coreference mention: words [start_word, end_word] of a segment, with its head word.

    `entity` is the source's cluster id (unique within a document); `head_source` says where
    the head came from (gold-dependencies, silver-dependencies or last-word).
    """

    __tablename__ = "mentions"
    __table_args__ = (UniqueConstraint("segment_id", "mention_index"),)

    id: Mapped[int] = surrogate_key("mentions")
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    mention_index: Mapped[int] = mapped_column(Integer)
    start_word: Mapped[int] = mapped_column(Integer)
    end_word: Mapped[int] = mapped_column(Integer)
    head_word: Mapped[int] = mapped_column(Integer)
    entity: Mapped[str] = mapped_column(String(100))
    mention_type: Mapped[str] = mapped_column(String(10))
    head_source: Mapped[str] = mapped_column(String(30))


class CorefBaseline(Base):
    """A baseline's antecedent choice for an evaluable mention (computed at ingestion)."""

    __tablename__ = "coref_baselines"

    mention_id: Mapped[int] = mapped_column(ForeignKey("mentions.id"), primary_key=True, autoincrement=False)
    baseline: Mapped[str] = mapped_column(String(20), primary_key=True)
    predicted_mention_id: Mapped[int] = mapped_column(ForeignKey("mentions.id"))
    correct: Mapped[bool] = mapped_column(Boolean)
    # For the sieve: which pass chose the antecedent.
    detail: Mapped[str | None] = mapped_column(String(40))


class CorefPrediction(Base):
    """A head's antecedent choice for an evaluable mention: among the earlier mentions, the
    one whose head word gets the most attention from this mention's head word."""

    __tablename__ = "coref_predictions"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), primary_key=True, autoincrement=False)
    mention_id: Mapped[int] = mapped_column(ForeignKey("mentions.id"), primary_key=True, autoincrement=False)
    layer: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    head: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    predicted_mention_id: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    correct: Mapped[bool] = mapped_column(Boolean)


class PaperCoref(Base):
    """The paper's Table 2 rows, for side-by-side comparison (app/data/paper_table2.csv)."""

    __tablename__ = "paper_coref"

    method: Mapped[str] = mapped_column(String(40), primary_key=True)
    sort_order: Mapped[int] = mapped_column(Integer)
    paper_all: Mapped[float] = mapped_column(Double)
    paper_pronoun: Mapped[float | None] = mapped_column(Double)
    paper_proper: Mapped[float | None] = mapped_column(Double)
    paper_nominal: Mapped[float | None] = mapped_column(Double)


class FeatureCache(Base):
    """Word-level attention maps (and one layer's hidden states) of a corpus, on disk.

    The probes re-read features every epoch, so they are extracted once: float16 shards in
    `path`, one per chunk of segments, so that an interrupted extraction resumes. `sha256`
    covers the shards once the cache is complete.
    """

    __tablename__ = "feature_caches"
    __table_args__ = (UniqueConstraint("encoder_id", "corpus_id", "config_hash"),)

    id: Mapped[int] = surrogate_key("feature_caches")
    encoder_id: Mapped[int] = mapped_column(ForeignKey("encoders.id"))
    corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    config_hash: Mapped[str] = mapped_column(String(16))
    config_json: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    # "partial" while shards are being written, "complete" after.
    status: Mapped[str] = mapped_column(String(10))
    n_segments: Mapped[int | None] = mapped_column(Integer)
    skipped_json: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ProbeRun(Base):
    """One probing classifier trained and evaluated (paper Table 3), mirrored in MLflow.

    `config_hash` covers the probe kind, encoder, corpora, annotation layer and training
    options, so rerunning the same probe is a no-op.
    """

    __tablename__ = "probe_runs"
    __table_args__ = (UniqueConstraint("config_hash"),)

    id: Mapped[int] = surrogate_key("probe_runs")
    kind: Mapped[str] = mapped_column(String(20))
    # NULL for probes that read no attention (right-branching, distances + GloVe).
    encoder_id: Mapped[int | None] = mapped_column(ForeignKey("encoders.id"))
    train_corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    dev_corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    test_corpus_id: Mapped[int] = mapped_column(ForeignKey("corpora.id"))
    annotation: Mapped[str] = mapped_column(String(40))
    # Attention layers the probe may read ("0,3"), NULL for all.
    layers: Mapped[str | None] = mapped_column(String(200))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(10))
    # "uas", or "uuas" for the structural probe (undirected trees).
    metric: Mapped[str] = mapped_column(String(10))
    dev_score: Mapped[float | None] = mapped_column(Double)
    test_score: Mapped[float | None] = mapped_column(Double)
    n_train_words: Mapped[int | None] = mapped_column(Integer)
    n_test_words: Mapped[int | None] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class PaperProbe(Base):
    """The paper's Table 3 rows, for side-by-side comparison (app/data/paper_table3.csv)."""

    __tablename__ = "paper_probes"

    model: Mapped[str] = mapped_column(String(40), primary_key=True)
    sort_order: Mapped[int] = mapped_column(Integer)
    paper_score: Mapped[float] = mapped_column(Double)
    paper_metric: Mapped[str] = mapped_column(String(10))


class MlflowBacklog(Base):
    """A database run (kind "analysis" or "probe", `ref_id` its id) whose MLflow run is not
    complete, e.g. the tracking server was down: `headlens runs --relog` logs it again."""

    __tablename__ = "mlflow_backlog"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    ref_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    error: Mapped[str | None] = mapped_column(Text)
    since: Mapped[datetime] = mapped_column(DateTime)


class RunClaim(Base):
    """Which live process is computing a run: claimed atomically, heartbeated, released.

    One row per unit of work in progress, for analysis runs (`kind = 'analysis'`, runs.id)
    and probes (`kind = 'probe'`, probe_runs.id) alike. A second process finding the row
    says "in progress" instead of resuming; a row whose process died (same host: the PID is
    gone; any host: no heartbeat for HEADLENS_STALE_AFTER seconds) is taken over and its run
    marked failed. A table rather than columns on runs/probe_runs: the primary key makes the
    claim atomic on every backend, and DuckDB cannot drop columns of a table that foreign
    keys reference, so columns could not be downgraded.
    """

    __tablename__ = "run_claims"

    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    pid: Mapped[int] = mapped_column(Integer)
    host: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)
