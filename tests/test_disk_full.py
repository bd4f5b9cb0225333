"""A real size-capped write (RLIMIT_FSIZE) in the middle of an analysis: one line, the
database stays readable, and the same command afterwards resumes and finishes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from app import pipeline
from app.config import REPO_ROOT
from app.store.db import make_engine, session_scope
from app.store.schema import Run

CAPPED_HEADLENS = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails with EFBIG
cap = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
from app.cli import main
main()
"""


def test_a_full_disk_during_analyze(settings, tiny_bert: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = [f"Sentence {i} has a few words in it , like {i % 7} ." for i in range(600)]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n")
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "lines", fmt="text", path=str(tmp_path / "lines.txt"))
    from app.tracking import Tracker

    Tracker(settings).experiment_id("headlens/lines")  # the MLflow store exists beforehand
    # Every file the process writes stops at 1.5 MB: room for MLflow's runs and the first
    # chunks' log, not for the whole run (whose write-ahead log alone grows past 2 MB).
    cap = 1536 * 1024
    base = ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir)]
    args = ["analyze", "syntax", "examples", "surface", "--model", "tiny", "--corpus", "lines"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    capped = subprocess.run(
        [sys.executable, "-c", CAPPED_HEADLENS, str(cap), *base, *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert capped.returncode != 0, capped.stdout + capped.stderr
    errors = [line for line in capped.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in capped.stderr, capped.stderr
    assert "no space left on device" in errors[0] and "rerun the same command" in errors[0]
    # Readable, and consistent: no run claims to be done.
    with session_scope(make_engine(settings.db_url, read_only=True)) as session:
        assert all(run.status != "done" for run in session.scalars(select(Run)))
    again = subprocess.run(
        [sys.executable, "-m", "app", *base, *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    with session_scope(make_engine(settings.db_url, read_only=True)) as session:
        runs = session.scalars(select(Run)).all()
        assert sorted(run.analysis for run in runs) == ["examples", "surface", "syntax"]
        assert all(run.status == "done" and run.n_segments == 600 for run in runs)
