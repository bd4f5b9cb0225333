"""Shards written before a migration that dropped a column still load (resume across upgrades)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from app import pipeline
from app.analysis.base import Rows
from app.config import ExtractConfig
from app.store.shards import ShardManifest, load_shard, shard_folder, write_shard
from tests.conftest import FIXTURES


def test_a_shard_with_the_weight_column_0011_dropped_loads_its_other_columns(  # type: ignore[no-untyped-def]
    settings, engine, tiny_bert: Path, tmp_path: Path
) -> None:
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    (run,) = pipeline.analyze(settings, ["surface"], model="tiny", corpus="toy", config=ExtractConfig())
    columns = {
        "segment_id": np.array([99999, 99999], dtype=np.int32),  # no real segment: these rows only
        "word_index": np.array([0, 1], dtype=np.int16),
        "layer": np.array([0, 0], dtype=np.int16),
        "head": np.array([2, 2], dtype=np.int16),
        "predicted_index": np.array([1, 0], dtype=np.int16),
        "weight": np.array([0.5, 0.25], dtype=np.float32),  # what a 0010 worker wrote
        "attended_by_index": np.array([1, 1], dtype=np.int16),
        "cls_weight": np.array([0.125, 0.0625], dtype=np.float32),
        "sep_weight": np.array([0.25, 0.5], dtype=np.float32),
    }
    manifest = ShardManifest(run_id=run.run_id, config_hash="h", shard=0, first_segment=0, n_segments=1,
                             rows={}, worker="host:1")
    folder = shard_folder(tmp_path, 0)
    write_shard(folder, manifest, [Rows("head_predictions", columns)], {})
    with Session(engine) as session, session.begin():
        load_shard(session, folder)
    with engine.connect() as connection:
        stored = connection.execute(text(
            "select word_index, predicted_index, cls_weight, sep_weight from head_predictions "
            f"where run_id = {run.run_id} and segment_id = 99999 order by word_index")).all()
    assert [tuple(row) for row in stored] == [(0, 1, 0.125, 0.25), (1, 0, 0.0625, 0.5)]
