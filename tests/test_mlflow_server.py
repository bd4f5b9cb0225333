"""A team's MLflow: a real `mlflow server` (PostgreSQL backend store, proxied artifacts) gets
every run; when it is down the database run still finishes, `headlens runs` says MLflow
missed it, and `headlens runs --relog` logs it once the server is back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import pipeline
from app.config import ExtractConfig, Settings
from app.pipeline.probe import probe
from tests.conftest import FIXTURES

MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def _free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with one worker and no job runner (~0.5 GB)."""

    def __init__(self, backend: str, artifacts: Path):
        self.backend, self.artifacts = backend, artifacts
        self.process: subprocess.Popen[bytes] | None = None
        self.uri = ""

    def start(self) -> None:
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [MLFLOW, "server", "--backend-store-uri", self.backend, "--artifacts-destination",
             str(self.artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "mlflow server exited"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError("mlflow server did not answer /health in 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def mlflow_server(postgres, tmp_path: Path) -> Iterator[MlflowServer]:  # type: ignore[no-untyped-def]
    server = MlflowServer(postgres.create_database("mlflow"), tmp_path / "mlflow-artifacts")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _runs_with_tag(client, key: str, value: str):  # type: ignore[no-untyped-def]
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"tags.`{key}` = '{value}'")


def test_runs_go_to_the_server_and_a_missed_run_is_relogged(
    settings: Settings, tiny_bert: Path, mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    from app.cli import cli

    team = replace(settings, tracking_uri=mlflow_server.uri)
    pipeline.ingest_model(team, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(team, "sentences", fmt="conllu", path=str(FIXTURES / "sentences.conllu"))
    (surface,) = pipeline.analyze(team, ["surface"], model="tiny", corpus="sentences", config=ExtractConfig())
    splits = {"train": "sentences", "dev": "sentences", "test": "sentences"}
    probed = probe(team, "attn", model="tiny", options={"max_epochs": 1}, **splits)

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    run = client.get_run(surface.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["headlens.run_id"] == str(surface.run_id)
    assert run.data.params["model"] == "tiny" and "max_attn_prev" in run.data.metrics
    probe_run = client.get_run(probed.mlflow_run_id)
    assert probe_run.data.metrics["test_uas"] == pytest.approx(probed.test_score)
    assert len(client.get_metric_history(probed.mlflow_run_id, "train_loss")) == 1  # one epoch
    artifacts = {item.path for item in client.list_artifacts(probed.mlflow_run_id)}
    assert artifacts == {"probe.json", "weights.npz"}
    assert (mlflow_server.artifacts).is_dir()  # uploaded through the server, stored there

    # The server goes down: the analysis still finishes in the database, flagged.
    mlflow_server.stop()
    (syntax,) = pipeline.analyze(team, ["syntax"], model="tiny", corpus="sentences", config=ExtractConfig())
    assert syntax.state == "new"
    listing = pipeline.run_query(team, "runs").set_index("run")
    assert listing.loc[syntax.run_id, "status"] == "done"
    assert listing.loc[syntax.run_id, "mlflow"] == "pending"
    assert listing.loc[surface.run_id, "mlflow"] == "logged"
    args = ["--db", team.db_url, "--mlruns", str(team.mlruns_dir), "--mlflow-uri", mlflow_server.uri]
    said = CliRunner().invoke(cli, [*args, "runs"])
    assert said.exit_code == 0 and "1 run(s) or probe(s) not logged to MLflow" in said.output

    # Back up (same backend store, new port): --relog logs the missed run.
    mlflow_server.start()
    args[-1] = mlflow_server.uri
    said = CliRunner().invoke(cli, [*args, "runs", "--relog"])
    assert said.exit_code == 0, said.output
    assert f"analysis {syntax.run_id}: logged" in said.output
    (relogged,) = _runs_with_tag(MlflowClient(tracking_uri=mlflow_server.uri), "headlens.run_id", str(syntax.run_id))
    assert relogged.info.status == "FINISHED" and relogged.data.params["analysis"] == "syntax"
    assert relogged.data.metrics["n_segments"] == syntax.n_segments
    assert pipeline.run_query(team, "runs").set_index("run").loc[syntax.run_id, "mlflow"] == "logged"


def test_a_server_dying_mid_run_leaves_the_run_recorded_and_relog_completes_it(
    settings: Settings, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "sentences", fmt="conllu", path=str(FIXTURES / "sentences.conllu"))
    calls = {"n": 0}
    real = MlflowClient.set_terminated

    def dies(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        raise ConnectionError("connection refused")

    monkeypatch.setattr(MlflowClient, "set_terminated", dies)
    (surface,) = pipeline.analyze(settings, ["surface"], model="tiny", corpus="sentences", config=ExtractConfig())
    assert calls["n"] == 1  # the run was opened and logged, then the server went away
    listing = pipeline.run_query(settings, "runs").set_index("run")
    assert listing.loc[surface.run_id, "status"] == "done"
    assert listing.loc[surface.run_id, "mlflow"] == "pending"
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    assert client.get_run(surface.mlflow_run_id).info.status == "RUNNING"

    monkeypatch.setattr(MlflowClient, "set_terminated", real)
    from app.pipeline.relog import relog

    (done,) = relog(settings)
    assert (done.outcome, done.mlflow_run_id) == ("logged", surface.mlflow_run_id)  # completed in place
    assert client.get_run(surface.mlflow_run_id).info.status == "FINISHED"
    assert relog(settings) == []


def test_the_tracking_uri_comes_from_the_option_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    local = Settings.resolve(db="x.duckdb", mlruns="/tmp/m")
    assert local.mlflow_is_local and local.mlflow_uri == "sqlite:////tmp/m/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert Settings.resolve(db="x.duckdb").mlflow_uri == "http://env:5000"
    chosen = Settings.resolve(db="x.duckdb", mlflow_uri="http://option:5000")
    assert chosen.mlflow_uri == "http://option:5000" and not chosen.mlflow_is_local
