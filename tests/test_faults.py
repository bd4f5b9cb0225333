"""Faults inside one process: disk full mid-run, a dead claimer, an MLflow store that lost
the run, and the lifecycle that records each (issue 10, Must show 2 and 4)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from app import pipeline
from app.config import ExtractConfig
from app.errors import RunInProgress
from app.store.db import make_engine, session_scope
from app.store.schema import ProbeRun, Run, RunCheckpoint, RunClaim
from tests.conftest import FIXTURES, fresh_mlflow_store
from tests.test_pipeline import LINES, surface_values

CONFIG = ExtractConfig(batch_size=4, chunk_size=8)


@pytest.fixture
def ready(settings, tiny_bert: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"{line} ({i})" for i, line in enumerate(LINES)) + "\n")
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "lines", fmt="text", path=str(path))
    return settings


def dead_pid() -> int:
    """The PID of a process that has exited (and was reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def mlflow_status(settings, run_id: str) -> str:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.mlflow_uri).get_run(run_id).info.status


def test_disk_full_mid_run_leaves_a_readable_database_and_a_resumable_run(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(ready.db_url)
    (clean,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    expected = surface_values(engine, clean.run_id)

    import app.store.runs as runs

    real_save, calls = runs.save_checkpoint, {"n": 0}

    def fill_the_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:  # the third chunk's write: two chunks are committed
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(runs, "save_checkpoint", fill_the_disk)
    config = ExtractConfig(batch_size=4, chunk_size=8, seed=1)
    with pytest.raises(OSError, match="No space left"):
        pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config)
    # Readable, and the failure is recorded with the committed checkpoint intact.
    with session_scope(make_engine(ready.db_url, read_only=True)) as session:
        run = session.scalars(select(Run).where(Run.id != clean.run_id)).one()
        assert run.status == "failed" and "No space left" in run.error
        assert session.get(RunCheckpoint, run.id).segments_done == 16
        assert session.scalars(select(RunClaim)).all() == []
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    (resumed,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config)
    assert resumed.state == "resume" and resumed.run_id == run.id
    assert surface_values(engine, run.id) == pytest.approx(expected, rel=1e-9)


def test_when_even_the_failure_cannot_be_written_the_next_command_fails_and_resumes_it(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.analysis.surface import SurfaceAnalysis
    from app.pipeline import lifecycle

    real_update = SurfaceAnalysis.update

    def crash(self, *args):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    def cannot_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SurfaceAnalysis, "update", crash)
    monkeypatch.setattr(lifecycle, "session_scope", cannot_write)
    with pytest.raises(OSError):
        pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    with session_scope(make_engine(ready.db_url)) as session:
        (run,) = session.scalars(select(Run)).all()
        assert run.status == "running"  # as the process left it
        first_mlflow = run.mlflow_run_id
    assert mlflow_status(ready, first_mlflow) == "FAILED"  # MLflow was still reachable
    monkeypatch.setattr(SurfaceAnalysis, "update", real_update)
    monkeypatch.undo()
    events: list[str] = []
    (again,) = pipeline.analyze(
        ready, ["surface"], model="tiny", corpus="lines", config=CONFIG, on_event=events.append
    )
    assert again.run_id == run.id and again.state == "resume"
    assert any("stopped without finishing" in event and "marked failed" in event for event in events)
    assert again.mlflow_run_id != first_mlflow
    assert mlflow_status(ready, first_mlflow) == "FAILED"
    assert mlflow_status(ready, again.mlflow_run_id) == "FINISHED"


def _claim_for(settings, run_id: int, kind: str, pid: int, host: str) -> None:  # type: ignore[no-untyped-def]
    from app.store.corpora import utcnow

    with session_scope(make_engine(settings.db_url)) as session:
        now = utcnow()
        session.add(RunClaim(kind=kind, run_id=run_id, pid=pid, host=host, claimed_at=now, heartbeat_at=now))


def test_a_live_claim_is_never_resumed(ready) -> None:  # type: ignore[no-untyped-def]
    (done,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    config = ExtractConfig(batch_size=4, chunk_size=8, seed=7)
    with session_scope(make_engine(ready.db_url)) as session:
        from app.store.corpora import find_corpus
        from app.store.encoders import find_encoder
        from app.store.runs import start_run

        run = start_run(session, find_encoder(session, "tiny"), find_corpus(session, "lines"), "surface", config).run
        run_id = run.id
    # A live process on this host (this test's parent) holds it.
    _claim_for(ready, run_id, "analysis", os.getppid(), socket.gethostname())
    with pytest.raises(RunInProgress, match=f"run {run_id} is in progress in process {os.getppid()} on {socket.gethostname()}"):
        pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config)
    # A claim from another host is live until its heartbeat is older than the threshold.
    with session_scope(make_engine(ready.db_url)) as session:
        session.get(RunClaim, ("analysis", run_id)).host = "elsewhere"
    with pytest.raises(RunInProgress, match="on elsewhere"):
        pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config, force=True)
    with session_scope(make_engine(ready.db_url)) as session:
        assert session.get(Run, run_id).status == "running"
        assert session.get(Run, done.run_id).status == "done"


def test_a_claim_without_heartbeat_from_another_host_goes_stale(ready, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = ExtractConfig(batch_size=4, chunk_size=8, seed=7)
    with session_scope(make_engine(ready.db_url)) as session:
        from app.store.corpora import find_corpus
        from app.store.encoders import find_encoder
        from app.store.runs import start_run

        run_id = start_run(session, find_encoder(session, "tiny"), find_corpus(session, "lines"), "surface", config).run.id
    _claim_for(ready, run_id, "analysis", 1, "elsewhere")
    monkeypatch.setenv("HEADLENS_STALE_AFTER", "0")
    (summary,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=config)
    assert summary.run_id == run_id and summary.n_segments == 30


def test_a_killed_probe_is_failed_in_the_database_and_in_mlflow(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline.probe import probe
    from app.tracking import Tracker

    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "s", fmt="conllu", path=str(FIXTURES / "sentences.conllu"))
    splits = {"train": "s", "dev": "s", "test": "s"}
    first = probe(settings, "right_branching", model=None, **splits)
    # Make it look as a probe killed mid-training: running, MLflow RUNNING, a dead PID.
    dead_mlflow = Tracker(settings).start("headlens-probes/s", "killed", {}, {})
    with session_scope(make_engine(settings.db_url)) as session:
        row = session.get(ProbeRun, first.probe_run_id)
        row.status, row.mlflow_run_id = "running", dead_mlflow
    _claim_for(settings, first.probe_run_id, "probe", dead_pid(), socket.gethostname())
    assert mlflow_status(settings, dead_mlflow) == "RUNNING"
    events: list[str] = []
    again = probe(settings, "right_branching", model=None, say=events.append, **splits)
    assert again.probe_run_id == first.probe_run_id and again.state == "new"
    assert mlflow_status(settings, dead_mlflow) == "FAILED"
    assert mlflow_status(settings, again.mlflow_run_id) == "FINISHED"
    assert any("stopped without finishing" in event for event in events)
    with session_scope(make_engine(settings.db_url)) as session:
        assert session.get(ProbeRun, first.probe_run_id).status == "done"
        assert session.scalars(select(RunClaim)).all() == []


def test_an_mlflow_store_that_lost_the_run_is_reconciled(ready, _mlflow_template: Path) -> None:  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    from app.analysis.surface import SurfaceAnalysis

    real_update, calls = SurfaceAnalysis.update, {"n": 0}

    def interrupt(self, *args):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 8:
            raise KeyboardInterrupt
        real_update(self, *args)

    SurfaceAnalysis.update = interrupt  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    finally:
        SurfaceAnalysis.update = real_update  # type: ignore[method-assign]
    # The store lost the run: a fresh store (MLflow keeps an open engine per store in this
    # process, so a deleted file cannot stand in for it here), empty like a new one.
    ready = replace(ready, mlruns_dir=ready.mlruns_dir.parent / "mlruns-new")
    fresh_mlflow_store(ready.mlruns_dir, _mlflow_template)
    (summary,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG)
    client = MlflowClient(tracking_uri=ready.mlflow_uri)
    run = client.get_run(summary.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["headlens.run_id"] == str(summary.run_id)
    assert len(client.get_metric_history(summary.mlflow_run_id, "n_segments")) == 1  # logged once
    with session_scope(make_engine(ready.db_url)) as session:
        assert session.get(Run, summary.run_id).mlflow_run_id == summary.mlflow_run_id
    # --force with the MLflow run missing again: a new MLflow run, no error.
    ready = replace(ready, mlruns_dir=ready.mlruns_dir.parent / "mlruns-newer")
    fresh_mlflow_store(ready.mlruns_dir, _mlflow_template)
    (forced,) = pipeline.analyze(ready, ["surface"], model="tiny", corpus="lines", config=CONFIG, force=True)
    assert forced.mlflow_run_id not in (None, summary.mlflow_run_id)
    assert MlflowClient(tracking_uri=ready.mlflow_uri).get_run(forced.mlflow_run_id).info.status == "FINISHED"


def test_runs_names_runs_that_no_live_process_computes(ready) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from app.cli import cli
    from app.store.corpora import find_corpus
    from app.store.encoders import find_encoder
    from app.store.runs import start_run

    with session_scope(make_engine(ready.db_url)) as session:
        run_id = start_run(
            session, find_encoder(session, "tiny"), find_corpus(session, "lines"), "surface", CONFIG
        ).run.id
    pid = dead_pid()
    _claim_for(ready, run_id, "analysis", pid, socket.gethostname())
    result = CliRunner().invoke(cli, ["--db", ready.db_url, "runs"])
    assert result.exit_code == 0, result.output
    assert f"run {run_id} is marked running but process {pid} on {socket.gethostname()}" in result.output
    # A reader changes nothing: the run is still as the dead process left it.
    with session_scope(make_engine(ready.db_url, read_only=True)) as session:
        assert session.get(Run, run_id).status == "running"


def test_liveness_of_a_claim(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from app.store.claims import liveness
    from app.store.corpora import utcnow

    now, host = utcnow(), socket.gethostname()

    def claim(pid: int, host: str, age_s: float) -> RunClaim:
        beat = now - timedelta(seconds=age_s)
        return RunClaim(kind="analysis", run_id=1, pid=pid, host=host, claimed_at=beat, heartbeat_at=beat)

    monkeypatch.setenv("HEADLENS_STALE_AFTER", "60")
    assert liveness(claim(os.getppid(), host, 5), now)  # a live process here
    assert not liveness(claim(dead_pid(), host, 5), now)  # its process is gone
    assert not liveness(claim(os.getppid(), host, 120), now)  # silent too long: a reused PID
    assert liveness(claim(1, "elsewhere", 5), now)  # another host: only the heartbeat counts
    assert not liveness(claim(1, "elsewhere", 120), now)
    assert not liveness(claim(os.getpid(), host, 5), now)  # ours, but no longer held
