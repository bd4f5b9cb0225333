"""The heap guard: when it trims (hand-made resident sizes), and the real calls on Linux; the
collector settings of a short-lived process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app import heap


def test_the_guard_trims_only_past_its_slack_and_follows_live_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    # MiB, in order: a reading before each check, and one after each trim.
    readings = iter([500, 580, 620, 450, 590, 700, 650, 720, 760, 640])
    trims: list[int] = []
    monkeypatch.setattr(heap, "resident_bytes", lambda: next(readings))
    monkeypatch.setattr(heap, "trim_heap", lambda: trims.append(1) or True)
    guard = heap.HeapGuard(slack=100)
    guard.check()  # 500: the reference (the first batch, its working set included)
    assert guard.reference == 500 and not trims
    guard.check()  # 580 <= 500 + 100: kept
    guard.check()  # 620 > 600: trimmed, down to 450; the reference stays 500
    assert len(trims) == 1 and guard.reference == 500
    guard.check()  # 590: kept
    guard.check()  # 700 > 600: trimmed, but 650 stays (live data grew): the new reference
    assert len(trims) == 2 and guard.reference == 650
    guard.check()  # 720 <= 750: kept (no trim on every batch after live growth)
    assert len(trims) == 2
    guard.check()  # 760 > 750: trimmed to 640; the reference stays 650
    assert len(trims) == 3 and guard.reference == 650 and guard.trims == 3


def test_no_reading_no_trim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "resident_bytes", lambda: None)
    monkeypatch.setattr(heap, "trim_heap", lambda: pytest.fail("trimmed without a reading"))
    guard = heap.HeapGuard(slack=0)
    guard.check()
    guard.check()
    assert guard.reference is None and guard.trims == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc and /proc are Linux's")
def test_the_real_calls_on_linux() -> None:
    resident = heap.resident_bytes()
    assert resident is not None and resident > 10 << 20  # this interpreter with pytest loaded
    block = bytearray(64 << 20)  # touched: resident
    assert heap.resident_bytes() >= resident + (32 << 20)  # type: ignore[operator]
    del block
    assert heap.trim_heap() is True
    heap.release_memory()


def test_a_block_is_released_only_if_it_grew_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A trim walks the whole heap: after small work it is skipped, after large work it runs."""
    readings = iter([0, heap.BLOCK_SLACK, 0, heap.BLOCK_SLACK + 1])
    trims: list[int] = []
    monkeypatch.setattr(heap, "resident_bytes", lambda: next(readings))
    monkeypatch.setattr(heap, "trim_heap", lambda: trims.append(1) or True)
    with heap.released_if_grown():
        pass  # grew exactly the slack: not worth a trim
    assert trims == []
    with pytest.raises(KeyError), heap.released_if_grown():
        raise KeyError("the work failed")  # what it built is freed all the same
    assert trims == [1]


def test_a_short_lived_process_collects_fully_less_often_and_freezes_at_exit() -> None:
    """In a fresh interpreter: the oldest generation's threshold is raised (the young ones
    kept), and the exit handler freezes what is alive before the interpreter's teardown.
    The probe is registered first, so it runs last (atexit is LIFO): after the freeze."""
    script = textwrap.dedent(
        """
        import atexit, gc
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
        before = gc.get_threshold()
        from app.heap import FULL_COLLECTION_EVERY, short_lived_process
        short_lived_process()
        after = gc.get_threshold()
        print("young kept:", after[:2] == before[:2], "full every:", after[2] == FULL_COLLECTION_EVERY != before[2])
        print("frozen now:", gc.get_freeze_count() > 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.split("\n")[:3] == [
        "young kept: True full every: True",
        "frozen now: False",
        "frozen at exit: True",
    ]
