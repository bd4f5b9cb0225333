"""MLflow in a helper process (app/tracking.py BackgroundTracker): the CLI's `analyze`
imports MLflow on another core while it loads the encoder. The calls must land exactly as
an in-process Tracker's would, and a helper that dies must act like a server that is down."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from app.cli import cli
from app.config import Settings
from app.tracking import BackgroundTracker, Tracker, helper_process, shared_tracker, tracker_for

FIXTURES = Path(__file__).parent / "fixtures"


def test_calls_in_the_helper_land_in_the_store(settings: Settings) -> None:
    """Within `helper_process()` every pass gets the same helper (one MLflow import for a
    whole `reproduce`); it exits cleanly when the block ends."""
    with helper_process():
        tracker = shared_tracker(settings)
        assert isinstance(tracker, BackgroundTracker)
        run_id = tracker.start("headlens/x", "surface:tiny", {"model": "tiny", "n": 3}, {"headlens.run_id": "7"})
        later_pass = tracker_for(settings)  # what a later pass (a probe) asks for
        assert later_pass is tracker
        later_pass.log_metrics(run_id, {"a?b": 1.5, "skip": float("nan")})
        later_pass.finish(run_id)
        assert tracker.ok and tracker.exists(run_id) and not tracker.exists("0" * 32)
        process = tracker._process
    assert not process.is_alive() and process.exitcode == 0  # the pipe closed: the helper exited
    run = MlflowClient(tracking_uri=settings.mlflow_uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "surface:tiny"
    assert run.data.params == {"model": "tiny", "n": "3"} and run.data.tags["headlens.run_id"] == "7"
    assert run.data.metrics == {"a_b": 1.5}  # the same key cleaning, NaN left out


def test_ctrl_c_is_left_to_the_command(settings: Settings) -> None:
    import signal
    import time

    tracker = BackgroundTracker(settings)
    try:
        assert tracker.exists("0" * 32) is False  # ready: its SIGINT handler is set
        os.kill(tracker._process.pid, signal.SIGINT)
        time.sleep(0.2)
        assert tracker._process.is_alive() and tracker.exists("0" * 32) is False
    finally:
        tracker.close()
    assert tracker._process.exitcode == 0


def test_a_helper_that_dies_makes_the_tracker_inert(settings: Settings) -> None:
    tracker = BackgroundTracker(settings)
    tracker._process.kill()
    tracker._process.join()
    assert tracker.start("headlens/x", "r", {}, {}) is None
    assert tracker.error is not None and "helper" in tracker.error and not tracker.ok
    assert tracker.finish("abc") is None  # later calls do nothing, raise nothing
    tracker.close()


def test_only_inside_helper_process_is_a_helper_started(settings: Settings) -> None:
    assert shared_tracker(settings) is None  # a notebook: the pass makes an in-process Tracker
    assert isinstance(tracker_for(settings), Tracker)
    with helper_process():
        assert shared_tracker(settings, local=False) is None  # Ray workers' passes track in their own way
        tracker = shared_tracker(settings)
        assert isinstance(tracker, BackgroundTracker)
        assert shared_tracker(settings) is tracker  # one helper, every pass
        process = tracker._process
    assert not process.is_alive()  # never called: stopped on the way out, not left behind
    assert shared_tracker(settings) is None  # the switch does not outlive its block


def test_the_cli_analysis_is_tracked_through_the_helper(settings: Settings, tiny_bert: Path) -> None:
    args = ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir)]
    runner = CliRunner()
    for command in (
        ["ingest", "model", "tiny", "--path", str(tiny_bert)],
        ["ingest", "corpus", "sentences", "--format", "conllu", "--path", str(FIXTURES / "sentences.conllu")],
        ["analyze", "surface", "syntax", "--model", "tiny", "--corpus", "sentences"],
    ):
        result = runner.invoke(cli, [*args, *command])
        assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=settings.mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(run.info.run_name for run in runs) == ["surface:tiny", "syntax:tiny"]
    assert all(run.info.status == "FINISHED" and "n_segments" in run.data.metrics for run in runs)
