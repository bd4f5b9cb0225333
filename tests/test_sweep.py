"""Probe sweeps: nested MLflow runs, selection on dev, one test evaluation, Table 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from app import pipeline
from app.errors import AppError, UnknownName
from app.pipeline.probe import STRUCTURAL_MAX_EPOCHS, probe
from app.pipeline.sweep import parse_sweep, sweep
from tests.conftest import FIXTURES

SPLITS = {"train": "toy", "dev": "toy", "test": "toy"}


@pytest.fixture
def ready(settings, tiny_bert: Path):  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    return settings


def test_parse_sweep() -> None:
    assert parse_sweep(["lr=1e-3,2e-3", "layer=0,1"]) == {"lr": [0.001, 0.002], "layer": [0, 1]}
    with pytest.raises(UnknownName, match="sweep key"):
        parse_sweep(["dropout=0.1"])
    with pytest.raises(AppError, match="KEY=V1,V2"):
        parse_sweep(["lr"])


def test_sweep_nests_children_selects_on_dev_and_tests_once(ready) -> None:  # type: ignore[no-untyped-def]
    result = sweep(ready, "attn_glove", {"lr": [0.05, 0.001], "layer": [0, 1]}, model="tiny",
                   options={"max_epochs": 2, "batch_size": 2}, **SPLITS)
    assert [s for s in result.settings_] == [
        {"lr": 0.05, "layer": 0}, {"lr": 0.05, "layer": 1}, {"lr": 0.001, "layer": 0}, {"lr": 0.001, "layer": 1}
    ]
    client = MlflowClient(tracking_uri=ready.mlflow_uri)
    for child in result.children:
        assert client.get_run(child.mlflow_run_id).data.tags["mlflow.parentRunId"] == result.mlflow_run_id
    best_dev = max(child.dev_score for child in result.children)
    assert result.best.dev_score == best_dev
    # Only the selected configuration was evaluated on test.
    rows = pipeline.run_query(
        ready, None, sql="select id, test_score from probe_runs where kind = 'attn_glove' order by id"
    )
    scored = rows[rows["test_score"].notna()]
    assert scored["id"].tolist() == [result.best.probe_run_id]
    parent = client.get_run(result.mlflow_run_id)
    assert parent.data.metrics["test_uas"] == pytest.approx(result.best.test_score)
    assert parent.data.params["sweep.lr"] == "0.05,0.001"
    # Table 3 shows the selected run and nothing of the others.
    table = pipeline.run_query(
        ready, "table3_probes", params={"model": "tiny", "random_model": "none", "test_corpus": "toy"}
    )
    assert table["mlflow_run_id"].tolist() == [result.best.mlflow_run_id]
    # A rerun is a no-op for every child and selects the same one.
    again = sweep(ready, "attn_glove", {"lr": [0.05, 0.001], "layer": [0, 1]}, model="tiny",
                  options={"max_epochs": 2, "batch_size": 2}, **SPLITS)
    assert {child.state for child in again.children} == {"done"}
    assert again.best.probe_run_id == result.best.probe_run_id


def test_structural_probe_trains_until_dev_stops_improving(ready) -> None:  # type: ignore[no-untyped-def]
    result = probe(ready, "structural", model="tiny", options={"lr": 0.05, "batch_size": 2}, **SPLITS)
    client = MlflowClient(tracking_uri=ready.mlflow_uri)
    run = client.get_run(result.mlflow_run_id)
    assert run.data.params["max_epochs"] == str(STRUCTURAL_MAX_EPOCHS)
    epochs = len(client.get_metric_history(result.mlflow_run_id, "dev_uuas"))
    patience = int(run.data.params["patience"])
    assert epochs == result.best_epoch + patience < STRUCTURAL_MAX_EPOCHS


def test_probe_command_with_sweep(ready) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(cli, [
        "--db", ready.db_url, "--mlruns", str(ready.mlruns_dir), "--cache-dir", str(ready.cache_dir),
        "probe", "attn", "--model", "tiny", "--train", "toy", "--dev", "toy", "--test", "toy",
        "--epochs", "1", "--batch-size", "2", "--sweep", "lr=0.05,0.01",
    ])
    assert result.exit_code == 0, result.output
    assert "{'lr': 0.05}: dev uas" in result.output and "{'lr': 0.01}: dev uas" in result.output
    assert "sweep attn (tiny): best dev uas" in result.output and "MLflow parent run" in result.output
