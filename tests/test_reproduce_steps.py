"""reproduce's stage lines: each stage's wall time and its own peak memory."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.config import Settings
from app.reproduce import _Steps, stage_peak_rss


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_each_stage_reports_its_own_peak(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    steps = _Steps(Settings.resolve(db=f"duckdb:///{tmp_path / 'x.duckdb'}"), lines.append)
    steps.heading("big")
    block = np.ones(400 * 2**20 // 8)  # 400 MiB, touched
    del block
    steps.heading("small")
    steps.heading(None)
    big, small = (line for line in lines if line.startswith("-- "))
    peak = lambda line: float(line.split("peak RSS ")[1].split(" GiB")[0])  # noqa: E731
    assert big.startswith("-- big: ") and small.startswith("-- small: ")
    # The second stage's peak is measured from its own start, after the block was freed.
    assert peak(big) - peak(small) > 0.3
    assert steps.peak is not None and steps.peak >= peak(big) * 2**30 * 0.99
    assert stage_peak_rss() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_step_says_its_own_peak_and_it_counts_toward_its_stage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    steps = _Steps(Settings.resolve(db=f"duckdb:///{tmp_path / 'x.duckdb'}"), lines.append)
    steps.heading("probes")
    block = np.ones(400 * 2**20 // 8)  # the first step's 400 MiB
    del block
    first, second = steps.step_peak(), steps.step_peak()
    steps.heading(None)
    peak = lambda text: float(text.split("peak RSS ")[1].split(" GiB")[0])  # noqa: E731
    assert peak(first) - peak(second) > 0.3  # the second step starts after the block was freed
    stage = next(line for line in lines if line.startswith("-- probes: "))
    assert peak(stage) >= peak(first) - 0.01  # the stage's peak is its largest step's, not its last
