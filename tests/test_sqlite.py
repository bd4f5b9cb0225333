"""The models stay portable: the whole write path on SQLite (Core executemany, not Arrow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import pipeline
from app.config import ExtractConfig, Settings
from app.store.db import upgrade
from tests.conftest import FIXTURES, fresh_mlflow_store


@pytest.fixture
def sqlite_settings(tmp_path: Path, _mlflow_template: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'headlens.sqlite'}"
    upgrade(url)
    fresh_mlflow_store(tmp_path / "mlruns", _mlflow_template)
    return Settings(db_url=url, mlruns_dir=tmp_path / "mlruns", data_dir=None, cache_dir=tmp_path / "cache")


def test_ingest_analyze_and_query_on_sqlite(sqlite_settings: Settings, tiny_bert: Path) -> None:
    settings = sqlite_settings
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    pipeline.ingest_corpus(settings, "story", fmt="corefud", path=str(FIXTURES / "coref" / "story.conllu"))
    pipeline.analyze(settings, ["surface", "syntax"], model="tiny", corpus="toy", config=ExtractConfig())
    pipeline.analyze(settings, ["coref"], model="tiny", corpus="story", config=ExtractConfig(overflow="truncate"))
    by_layer = pipeline.run_query(settings, "surface_by_layer")
    assert list(by_layer["layer"]) == [1, 2]
    counts = pipeline.run_query(
        settings, None,
        sql="select (select count(*) from head_predictions) as predictions, "
            "(select count(*) from arc_scores) as scores, "
            "(select count(*) from coref_predictions) as coref, "
            "(select count(*) from head_predictions where predicted_index is null) as nulls",
    ).iloc[0]
    assert counts["predictions"] == 10 * 2 * 4  # words x layers x heads
    assert counts["scores"] > 0 and counts["coref"] == 3 * 2 * 4
    assert counts["nulls"] == 0
    # Re-ingesting is a no-op here too.
    assert not pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu")).created
