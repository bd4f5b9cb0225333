"""The whole path on a tiny random BERT: ingest -> analyze -> store -> query, rerun, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from app import pipeline
from app.config import ExtractConfig
from app.errors import ModelNotFound, UnknownName
from app.store.db import session_scope
from app.store.schema import HeadMetric, Run, RunCheckpoint

LINES = [
    "The quick brown fox jumps over the lazy dog .",
    "Colorless green ideas sleep furiously .\tThey never wake up , do they ?",
    "A short one .",
    "Attention heads look at separators , commas and periods .",
    "Unbelievably , the tokenizer splits some words into pieces .",
] * 6  # 30 segments


@pytest.fixture
def text_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"{line} ({i})" for i, line in enumerate(LINES)) + "\n")
    return path


@pytest.fixture
def ready(settings, tiny_bert: Path, text_corpus: Path):  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "lines", fmt="text", path=str(text_corpus))
    return settings


CONFIG = ExtractConfig(batch_size=4, chunk_size=8)


def surface_values(engine, run_id: int) -> dict[tuple[int, int, str], float]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        rows = (
            session.execute(select(HeadMetric).where(HeadMetric.run_id == run_id)).scalars().all()
        )
        return {(r.layer, r.head, r.metric): r.value for r in rows}


def test_full_pipeline_on_a_tiny_random_bert(ready, engine) -> None:  # type: ignore[no-untyped-def]
    (summary,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    assert summary.state == "new" and summary.n_segments == 30 and summary.skipped == {}
    by_layer = pipeline.run_query(ready, "surface_by_layer")
    assert list(by_layer["layer"]) == [1, 2]
    assert ((by_layer["attn_cls"] >= 0) & (by_layer["attn_cls"] <= 1)).all()
    assert (by_layer["entropy"] <= by_layer["uniform_entropy"] + 1e-6).all()
    with session_scope(engine) as session:
        run = session.get(Run, summary.run_id)
        assert run.status == "done" and run.mlflow_run_id == summary.mlflow_run_id
        assert session.scalar(select(func.count()).select_from(RunCheckpoint)) == 0

    from mlflow.tracking import MlflowClient

    mlflow_run = MlflowClient(tracking_uri=ready.mlflow_uri).get_run(summary.mlflow_run_id)
    assert mlflow_run.data.tags["headlens.run_id"] == str(summary.run_id)
    assert mlflow_run.data.params["max_tokens"] == "128"
    assert mlflow_run.info.status == "FINISHED"
    assert "max_attn_prev" in mlflow_run.data.metrics


def test_rerun_is_a_no_op_and_force_redoes(ready, engine) -> None:  # type: ignore[no-untyped-def]
    (first,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    values = surface_values(engine, first.run_id)
    (again,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    assert again.state == "done" and again.run_id == first.run_id
    (forced,) = pipeline.analyze(
        ready, ["surface"], model="tiny", corpus="lines", config=CONFIG, force=True
    )
    assert forced.state == "new" and forced.run_id == first.run_id
    assert surface_values(engine, first.run_id) == pytest.approx(values)


def test_interrupted_run_resumes_to_the_same_result(ready, engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (clean,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    expected = surface_values(engine, clean.run_id)

    from app.analysis.surface import SurfaceAnalysis

    real_update = SurfaceAnalysis.update
    calls = {"n": 0}

    def interrupt_in_third_chunk(self, batch, layer, maps):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 2 * 2 * 2:  # 2 batches per chunk x 2 layers x 2 chunks done
            raise KeyboardInterrupt
        real_update(self, batch, layer, maps)

    monkeypatch.setattr(SurfaceAnalysis, "update", interrupt_in_third_chunk)
    config = ExtractConfig(batch_size=4, chunk_size=8, seed=1)  # another identity: a new run
    with pytest.raises(KeyboardInterrupt):
        pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config)
    with session_scope(engine) as session:
        run = session.scalars(select(Run).where(Run.id != clean.run_id)).one()
        assert run.status == "failed"
        assert session.get(RunCheckpoint, run.id).segments_done == 16

    monkeypatch.setattr(SurfaceAnalysis, "update", real_update)
    events: list[str] = []
    (resumed,) = pipeline.analyze(
        ready, ["surface"], model="tiny", corpus="lines", config=config, on_event=events.append
    )
    assert resumed.state == "resume" and resumed.run_id == run.id
    assert any("resuming" in event and "after 16 of 30" in event for event in events)
    assert surface_values(engine, resumed.run_id) == pytest.approx(expected, rel=1e-9)


def test_unknown_or_missing_models_say_what_to_do(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        UnknownName, match=r"unknown model 'bert-base-uncased'; known: minilm, mpnet.*--path"
    ):
        pipeline.ingest_model(settings, "bert-base-uncased")
    with pytest.raises(ModelNotFound, match="no model directory.*never downloads"):
        pipeline.ingest_model(settings, "mine", str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="no config.json"):
        pipeline.ingest_model(settings, "mine", str(tmp_path / "empty"))


def test_random_init_copy_is_its_own_encoder(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    pretrained = pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    random = pipeline.ingest_model(settings, "tiny-random", str(tiny_bert), random_init_seed=3)
    assert pretrained.details["init"] == "pretrained" and random.details["init"] == "random:3"
    assert not pipeline.ingest_model(
        settings, "tiny-random", str(tiny_bert), random_init_seed=3
    ).created


def test_clustering_and_example_maps_through_the_pipeline(ready) -> None:  # type: ignore[no-untyped-def]
    pipeline.analyze(ready, ["clustering", "examples"], model="tiny", corpus="lines", config=CONFIG)
    distances = pipeline.run_query(ready, None, sql="select * from head_distances")
    assert len(distances) == 8 * 7 // 2 and (distances["jsd"] >= 0).all()
    coords = pipeline.run_query(ready, None, sql="select * from head_coords")
    assert len(coords) == 8
    sums = pipeline.run_query(
        ready,
        None,
        sql="select segment_id, layer, head, query_unit, sum(weight) as total from example_maps group by all",
    )
    assert sums["segment_id"].nunique() == 3  # the first three segments of 8-20 words
    assert np.allclose(sums["total"].to_numpy(dtype=float), 1.0, atol=1e-5)
