"""reproduce's stages: each in a fresh process (or here), its wall time and its own peak memory,
its lines relayed, its facts passed on, its error re-raised as if it ran here."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import pytest

from app import reproduce as reproduce_module
from app.config import Settings
from app.errors import AppError
from app.fresh import RemoteTraceback, in_fresh_process
from app.reproduce import Stage, StageRun, _Steps, stage_peak_rss

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")


def _big(run: StageRun) -> dict[str, Any]:
    block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    del block
    run.echo(f"big ran in {os.getpid()}")
    return {"big_pid": os.getpid()}


def _small(run: StageRun) -> None:
    run.echo(f"small ran in {os.getpid()}, after big in {run.found['big_pid']}")


def _fails(run: StageRun) -> None:
    run.echo("failing")
    raise AppError("stage says no")


def _crashes(run: StageRun) -> None:
    raise ZeroDivisionError("not a clean error")


def _never(run: StageRun) -> None:
    raise AssertionError("a stage after a failed one ran")


def _reproduce(monkeypatch, tmp_path, listed: list[Stage], fresh: bool) -> list[str]:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(reproduce_module, "stages", lambda: listed)
    lines: list[str] = []
    settings = Settings.resolve(db=f"duckdb:///{tmp_path / 'x.duckdb'}", mlruns=tmp_path / "mlruns")
    reproduce_module.reproduce(settings, quick=True, echo=lines.append, fresh_processes=fresh)
    return lines


def _peak(line: str) -> float:
    return float(line.split("peak RSS ")[1].split(" GiB")[0])


@linux_only
@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-processes", "one-process"])
def test_each_stage_reports_its_own_peak_and_passes_its_facts_on(monkeypatch, tmp_path, fresh: bool) -> None:  # type: ignore[no-untyped-def]
    lines = _reproduce(monkeypatch, tmp_path, [Stage("big", _big), Stage("small", _small)], fresh)
    big, small = (line for line in lines if line.startswith("-- "))
    assert big.startswith("-- big: ") and small.startswith("-- small: ")
    # The second stage's peak is measured from its own start, after the block was freed.
    assert _peak(big) - _peak(small) > 0.3
    ran_big = next(line for line in lines if line.startswith("big ran in "))
    ran_small = next(line for line in lines if line.startswith("small ran in "))
    big_pid = int(ran_big.split()[-1])
    assert ran_small.endswith(f"after big in {big_pid}")  # the facts reached the next stage
    pids = {big_pid, int(ran_small.split()[3].rstrip(","))}
    if fresh:
        assert os.getpid() not in pids and len(pids) == 2
    else:
        assert pids == {os.getpid()}
    assert lines[-1].startswith("total time: ") and _peak(lines[-1]) >= _peak(big) - 0.01
    assert ("this driver process" in lines[-1]) == fresh


@pytest.mark.parametrize("fresh", [True, False], ids=["fresh-processes", "one-process"])
def test_a_failed_stage_stops_reproduce_with_its_own_error(monkeypatch, tmp_path, fresh: bool) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AppError, match="^stage says no$") as raised:
        _reproduce(monkeypatch, tmp_path, [Stage("fails", _fails), Stage("never", _never)], fresh)
    if fresh:  # the fresh process's traceback is the cause, for --debug
        assert isinstance(raised.value.__cause__, RemoteTraceback)
        assert "_fails" in str(raised.value.__cause__)


def test_an_error_of_any_kind_comes_back_as_itself(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    settings = Settings.resolve(db=f"duckdb:///{tmp_path / 'x.duckdb'}", mlruns=tmp_path / "mlruns")
    args = (Stage("crashes", _crashes), settings, reproduce_module.Plan.quick(), True, "float32", {})
    with pytest.raises(ZeroDivisionError, match="not a clean error"):
        in_fresh_process(reproduce_module.run_stage, args, echo=lines.append)


@linux_only
def test_a_step_says_its_own_peak_and_it_counts_toward_its_stage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    steps = _Steps(Settings.resolve(db=f"duckdb:///{tmp_path / 'x.duckdb'}"), lambda line: None)
    stage_peak_rss()
    block = np.ones(400 * 2**20 // 8)  # the first step's 400 MiB
    del block
    first, second = steps.step_peak(), steps.step_peak()
    stage = steps.stage_peak()
    assert _peak(first) - _peak(second) > 0.3  # the second step starts after the block was freed
    assert stage is not None and stage / 2**30 >= _peak(first) - 0.01  # the largest step's, not the last
