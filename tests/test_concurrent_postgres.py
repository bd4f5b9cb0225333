"""On PostgreSQL, analyses and probes run side by side: two `headlens analyze` (different
models) and one `headlens probe`, started together as real processes, all finish with every
row present and no deadlock."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from app import pipeline
from app.config import Settings
from app.store.db import make_engine, upgrade
from tests.conftest import FIXTURES, REPO_ROOT, fresh_mlflow_store


def test_two_analyses_and_a_probe_at_once(pg_url: str, tiny_bert: Path, tmp_path: Path, _mlflow_template: Path) -> None:
    upgrade(pg_url)
    settings = Settings(db_url=pg_url, mlruns_dir=tmp_path / "mlruns", data_dir=None, cache_dir=tmp_path / "cache")
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_model(settings, "tiny-random", str(tiny_bert), random_init_seed=1)
    pipeline.ingest_corpus(settings, "sentences", fmt="conllu", path=str(FIXTURES / "sentences.conllu"))

    def headlens(name: str, *args: str) -> subprocess.Popen[bytes]:
        # Own MLflow stores: this test is about the database (a team shares one mlflow server).
        fresh_mlflow_store(tmp_path / f"mlruns-{name}", _mlflow_template)
        common = ["--db", pg_url, "--mlruns", str(tmp_path / f"mlruns-{name}"), "--cache-dir", str(tmp_path / "cache")]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": ""}
        return subprocess.Popen([sys.executable, "-m", "app", *common, *args], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    splits = ["--train", "sentences", "--dev", "sentences", "--test", "sentences"]
    processes = {
        "tiny": headlens("tiny", "analyze", "surface", "syntax", "--model", "tiny", "--corpus", "sentences"),
        "random": headlens("random", "analyze", "surface", "syntax", "--model", "tiny-random", "--corpus", "sentences"),
        "probe": headlens("probe", "probe", "attn", "--model", "tiny", "--epochs", "1", *splits),
    }
    for name, process in processes.items():
        output, _ = process.communicate(timeout=400)
        assert process.returncode == 0, f"{name}: {output.decode()[-2000:]}"

    with make_engine(pg_url).connect() as connection:
        words = connection.execute(text("select count(*) from words")).scalar()
        runs = connection.execute(text(
            "select encoders.name, runs.analysis, runs.status, encoders.n_layers * encoders.n_heads as heads, "
            "(select count(*) from head_predictions where run_id = runs.id) as predictions, "
            "(select count(*) from head_metrics where run_id = runs.id) as metrics "
            "from runs join encoders on encoders.id = runs.encoder_id order by 1, 2"
        )).all()
        probes = connection.execute(text("select kind, status, test_score from probe_runs")).all()
    assert [(name, analysis, status) for name, analysis, status, *_ in runs] == [
        ("tiny", "surface", "done"), ("tiny", "syntax", "done"),
        ("tiny-random", "surface", "done"), ("tiny-random", "syntax", "done"),
    ]
    for _, analysis, _, heads, predictions, metrics in runs:
        if analysis == "syntax":
            assert predictions == words * heads  # one row per word, layer and head
        else:
            assert predictions == 0 and metrics > 0 and metrics % heads == 0
    assert [(kind, status) for kind, status, _ in probes] == [("attn", "done")]
    assert probes[0][2] is not None
