"""Real processes on one DuckDB file: two writers both finish, readers never break them, an
identical analysis is told who holds the run, and a killed run is taken over (issue 10
Must show 2, issue 11 item 4, DuckDB part)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from app import pipeline
from app.config import REPO_ROOT, Settings
from app.store.db import make_engine, session_scope
from app.store.schema import Run, RunClaim

# `headlens` in a child process whose forward pass sleeps a little per chunk, so that runs
# overlap and the kill lands mid-run. Everything else is the real command.
SLOW_HEADLENS = """
import os, sys, time
import app.extract.attention as attention
real = attention.AttentionEngine.run
def slow(self, *args, **kwargs):
    time.sleep(float(os.environ.get("SLOW_CHUNK", "0")))
    return real(self, *args, **kwargs)
attention.AttentionEngine.run = slow
from app.cli import main
main()
"""


def headlens(settings: Settings, *args: str, slow: float = 0.0) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "OMP_NUM_THREADS": "1",
        "SLOW_CHUNK": str(slow),
        "HEADLENS_LOCK_WAIT": "120",
    }
    base = ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir), "--cache-dir", str(settings.cache_dir)]
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_HEADLENS, *base, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=settings.cache_dir.parent,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


@pytest.fixture
def big(settings: Settings, tiny_bert: Path, tmp_path: Path) -> Settings:
    """A tiny model and a 600-line corpus: 3 chunks of 256 segments per run."""
    lines = [f"Line {i} says that the cat sat on mat number {i % 17} ." for i in range(600)]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "lines", fmt="text", path=str(tmp_path / "lines.txt"))
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    # MLflow creates its store on first use; two processes doing that at once is not what
    # this test is about.
    from app.tracking import Tracker

    Tracker(settings).experiment_id("headlens/lines")
    return settings


def test_two_writers_and_a_stream_of_readers_all_finish(big: Settings) -> None:
    first = headlens(big, "analyze", "surface", "--model", "tiny", "--corpus", "lines", slow=0.5)
    second = headlens(big, "analyze", "clustering", "--model", "tiny", "--corpus", "lines", slow=0.5)
    readers = []
    while first.poll() is None or second.poll() is None:
        readers.append(finish(headlens(big, "runs"), timeout=120))
        readers.append(finish(headlens(big, "query", "--sql", "select count(*) as n from runs"), timeout=120))
    for code, output in [finish(first), finish(second), *readers]:
        assert code == 0, output
        assert "Traceback" not in output
    assert len(readers) >= 2
    with session_scope(make_engine(big.db_url, read_only=True)) as session:
        runs = session.scalars(select(Run).order_by(Run.analysis)).all()
        assert [(run.analysis, run.status, run.n_segments) for run in runs] == [
            ("clustering", "done", 600),
            ("surface", "done", 600),
        ]
        n_heads = session.execute(
            text("select count(*) from head_metrics where metric = 'attn_cls'")
        ).scalar()
        assert n_heads == 2 * 4  # every head of the surface run is there
        assert session.scalars(select(RunClaim)).all() == []


def _wait_for_claim(settings: Settings, process: subprocess.Popen, timeout: float = 120) -> int:
    engine = make_engine(settings.db_url, read_only=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        with session_scope(engine) as session:
            claim = session.scalars(select(RunClaim)).first()
            if claim is not None:
                assert claim.pid == process.pid and claim.host == socket.gethostname()
                return claim.run_id
        time.sleep(0.3)
    raise AssertionError("the analysis never claimed its run")


def test_an_identical_analysis_is_told_who_holds_it_and_a_killed_run_is_taken_over(big: Settings) -> None:
    from mlflow.tracking import MlflowClient

    args = ("analyze", "surface", "--model", "tiny", "--corpus", "lines")
    first = headlens(big, *args, slow=3.0)
    run_id = _wait_for_claim(big, first)
    code, output = finish(headlens(big, *args))
    assert code == 1, output
    assert output.strip().splitlines()[-1].startswith(
        f"Error: run {run_id} is in progress in process {first.pid} on {socket.gethostname()}"
    )
    # Wait for the MLflow run of the first process, then kill it without warning.
    engine = make_engine(big.db_url, read_only=True)
    deadline = time.monotonic() + 120
    mlflow_id = None
    while mlflow_id is None and time.monotonic() < deadline:
        with session_scope(engine) as session:
            mlflow_id = session.get(Run, run_id).mlflow_run_id
        time.sleep(0.3)
    assert mlflow_id is not None
    first.send_signal(signal.SIGKILL)
    first.wait()
    client = MlflowClient(tracking_uri=big.mlflow_uri)
    assert client.get_run(mlflow_id).info.status == "RUNNING"  # nobody told MLflow
    code, output = finish(headlens(big, *args))
    assert code == 0, output
    assert f"run {run_id}: process {first.pid} on {socket.gethostname()} stopped without finishing" in output
    assert f"surface: run {run_id} finished (600 segments" in output
    assert client.get_run(mlflow_id).info.status == "FAILED"
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run.status == "done" and run.mlflow_run_id != mlflow_id
        assert client.get_run(run.mlflow_run_id).info.status == "FINISHED"


HOLD_LOCK = """
import sys, duckdb
connection = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
connection.close()
"""


def _holder(settings: Settings) -> subprocess.Popen:
    path = settings.db_url.removeprefix("duckdb:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _cli(settings: Settings, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "app", "--db", settings.db_url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def test_a_held_lock_is_waited_for_naming_the_holder_and_readers_run_side_by_side(settings: Settings) -> None:
    holder = _holder(settings)
    readers = [_cli(settings, "query", "--sql", "select count(*) as n from runs") for _ in range(3)]
    readers.append(_cli(settings, "runs"))
    for reader in readers:  # each says whom it waits for, then keeps waiting
        assert reader.stdout is not None
        line = reader.stdout.readline()
        assert line.startswith(f"waiting for the database lock held by process {holder.pid}"), line
    holder.communicate("")  # release the lock
    for reader in readers:
        code, output = finish(reader, timeout=120)
        assert code == 0 and "Traceback" not in output, output
    # Nobody holds it now: readers side by side, no waiting.
    readers = [_cli(settings, "query", "--sql", "select 1 as one") for _ in range(4)]
    for reader in readers:
        code, output = finish(reader, timeout=120)
        assert code == 0 and "waiting" not in output, output


def test_a_lock_held_past_the_wait_is_one_line(settings: Settings) -> None:
    holder = _holder(settings)
    try:
        code, output = finish(_cli(settings, "--lock-wait", "1", "runs"), timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert output.strip().splitlines()[-1].startswith("Error: ")
    assert f"is locked by process {holder.pid} (waited 1 s)" in output and "--lock-wait" in output
    assert "Traceback" not in output
