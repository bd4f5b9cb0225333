"""Probes through the pipeline: feature cache, MLflow run <-> probe_runs row, Table 3."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from app import pipeline
from app.config import ExtractConfig
from app.extract.cache import read_shards
from app.pipeline.probe import extract_features, probe, probe_group
from tests.conftest import FIXTURES, fresh_mlflow_store

SPLITS = {"train": "toy", "dev": "toy", "test": "toy"}
QUICK = {"max_epochs": 2, "lr": 0.05, "batch_size": 2}


@pytest.fixture
def ready(settings, tiny_bert: Path):  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    return settings


def test_probe_run_and_mlflow_run_point_at_each_other(ready) -> None:  # type: ignore[no-untyped-def]
    result = probe(ready, "attn_glove", model="tiny", options=QUICK, **SPLITS)
    assert result.state == "new" and result.metric == "uas" and result.n_test_words == 8  # 10 words - 2 punct
    assert 0 <= result.test_score <= 100
    run = MlflowClient(tracking_uri=ready.mlflow_uri).get_run(result.mlflow_run_id)
    assert run.data.tags["headlens.probe_run_id"] == str(result.probe_run_id)
    assert run.data.params["kind"] == "attn_glove" and run.data.params["n_train_sentences"] == "3"
    assert run.data.metrics["test_uas"] == pytest.approx(result.test_score)
    history = MlflowClient(tracking_uri=ready.mlflow_uri).get_metric_history(result.mlflow_run_id, "dev_uas")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 1
    artifacts = {a.path for a in MlflowClient(tracking_uri=ready.mlflow_uri).list_artifacts(result.mlflow_run_id)}
    assert {"weights.npz", "probe.json"} <= artifacts
    row = pipeline.run_query(ready, None, sql="select * from probe_runs where id = :i", params={"i": result.probe_run_id})
    assert row["mlflow_run_id"][0] == result.mlflow_run_id and row["status"][0] == "done"
    again = probe(ready, "attn_glove", model="tiny", options=QUICK, **SPLITS)
    assert again.state == "done" and again.probe_run_id == result.probe_run_id


def test_table3_rows_for_baselines_and_probes(ready) -> None:  # type: ignore[no-untyped-def]
    probe(ready, "right_branching", model=None, **SPLITS)
    probe(ready, "distance_glove", model=None, options=QUICK, **SPLITS)
    probe(ready, "attn", model="tiny", options=QUICK, **SPLITS)
    probe(ready, "attn_glove", model="tiny", layers=(1,), options=QUICK, **SPLITS)
    probe(ready, "structural", model="tiny", options=QUICK, **SPLITS)
    table = pipeline.run_query(
        ready, "table3_probes", params={"model": "tiny", "random_model": "none", "test_corpus": "toy"}
    ).set_index("probe")
    assert list(table.index) == ["right_branching", "distance_glove", "attn", "structural", "attn_glove, layer 1"]
    assert table.loc["structural", "metric"] == "uuas" and table.loc["attn", "metric"] == "uas"
    # Right-branching by hand on toy.conllu (each word's head is the next word, the last word
    # is ROOT; punctuation not scored):
    # s1 The->cat right, cat->sat right, sat->'.' wrong (root)        -> 2 of 3;
    # s2 Do->n't wrong, n't->go right, go->'.' wrong (root)            -> 1 of 3;
    # s3 Dogs->bark right, bark is last -> ROOT right                    -> 2 of 2.
    assert table.loc["right_branching", "test"] == pytest.approx(100 * 5 / 8)
    assert table.loc["right_branching", "paper"] == 26


def test_a_probe_group_records_each_probe_as_if_trained_alone(ready, tiny_bert, _migrated_template, _mlflow_template, tmp_path_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline import probe as probe_module

    logged: list[tuple[int, bool]] = []  # (epoch, heartbeat) of every member's epoch log
    log_epoch = probe_module._log_epoch

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        logged.append((args[5].epoch, kwargs.get("heartbeat", True)))
        return log_epoch(*args, **kwargs)

    monkeypatch.setattr(probe_module, "_log_epoch", spy)
    group = [("attn", None), ("attn_glove", (1,)), ("attn_glove", None)]
    together = probe_group(ready, group, model="tiny", options=QUICK, **SPLITS)
    assert [result.state for result in together] == ["new"] * 3
    # Every member logs each of its epochs; one heartbeat an epoch renews all the claims.
    epochs = {epoch for epoch, _ in logged}
    assert len(logged) > len(epochs) and all(sum(beat for e, beat in logged if e == epoch) == 1 for epoch in epochs)
    client = MlflowClient(tracking_uri=ready.mlflow_uri)
    for (kind, _), result in zip(group, together):
        run = client.get_run(result.mlflow_run_id)
        assert run.data.tags["headlens.probe_run_id"] == str(result.probe_run_id)
        assert run.data.params["kind"] == kind and run.info.status == "FINISHED"
        assert run.data.metrics["test_uas"] == pytest.approx(result.test_score)
        history = client.get_metric_history(result.mlflow_run_id, "dev_uas")
        assert len(history) == len({m.step for m in history}) >= 1
    # The attention-only probe reads no GloVe: its gaps are not its exclusions.
    assert not any("GloVe" in reason for reason in together[0].excluded)
    # Alone, in another project over the same data: the same scores.
    folder = tmp_path_factory.mktemp("alone")
    shutil.copy(_migrated_template, folder / "headlens.duckdb")
    fresh_mlflow_store(folder / "mlruns", _mlflow_template)
    alone = replace(ready, db_url=f"duckdb:///{folder / 'headlens.duckdb'}", mlruns_dir=folder / "mlruns",
                    cache_dir=folder / "cache")
    pipeline.ingest_model(alone, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(alone, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    for (kind, layers), result in zip(group, together):
        single = probe(alone, kind, model="tiny", layers=layers, options=QUICK, **SPLITS)
        assert (single.dev_score, single.test_score, single.best_epoch) == (
            result.dev_score, result.test_score, result.best_epoch)
        # And a group over probes already done trains nothing.
        assert probe(ready, kind, model="tiny", layers=layers, options=QUICK, **SPLITS).state == "done"
    assert [r.state for r in probe_group(ready, group, model="tiny", options=QUICK, **SPLITS)] == ["done"] * 3


def test_feature_cache_resumes_and_matches_a_clean_extraction(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import app.extract.cache as cache

    config = ExtractConfig(chunk_size=1)
    real_write = cache.write_shard
    written: list[Path] = []

    def write_then_stop(path, features):  # type: ignore[no-untyped-def]
        if written:
            raise KeyboardInterrupt
        written.append(path)
        real_write(path, features)

    monkeypatch.setattr(cache, "write_shard", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        extract_features(ready, "tiny", "toy", hidden_layer=1, config=config)
    monkeypatch.setattr(cache, "write_shard", real_write)
    messages: list[str] = []
    directory = extract_features(ready, "tiny", "toy", hidden_layer=1, config=config, say=messages.append)
    assert messages and "resuming after 1 of 3" in messages[0]
    resumed = {segment: (maps, hidden) for segment, maps, hidden in read_shards(directory)}
    assert len(resumed) == 3
    for maps, hidden in resumed.values():
        n = maps.shape[-1] - 2
        assert maps.shape[0] == 2 * 4 and hidden.shape == (n, 32)
        np.testing.assert_allclose(maps.astype(np.float32).sum(-1), 1.0, atol=2e-3)  # float16 rows
    cache_row = pipeline.run_query(ready, None, sql="select status, n_segments, sha256 from feature_caches")
    assert cache_row.values.tolist()[0][:2] == ["complete", 3] and len(cache_row["sha256"][0]) == 64


def test_spill_left_by_a_killed_probe_is_removed_by_the_next(ready) -> None:  # type: ignore[no-untyped-def]
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    spill = ready.cache_dir / "probe-spill"
    dead = spill / f"{socket.gethostname()}-{gone.stdout.strip()}-abc"
    alive = spill / f"{socket.gethostname()}-{os.getppid()}-abc"  # pytest's parent: a live process
    elsewhere = spill / f"another-host-{gone.stdout.strip()}-abc"  # not ours to judge
    for folder in (dead, alive, elsewhere):
        folder.mkdir(parents=True)
        (folder / "by_query-0003.f16").write_bytes(b"\0" * 64)
    probe(ready, "attn", model="tiny", options=QUICK, **SPLITS)
    assert not dead.exists() and alive.exists() and elsewhere.exists()
    assert sorted(spill.iterdir()) == sorted([alive, elsewhere])  # the probe removed its own
