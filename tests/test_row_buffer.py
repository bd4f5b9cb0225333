"""RowBuffer: a chunk's streamed rows, the same whatever the storage (arenas or blocks)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.analysis import base
from app.analysis.base import RowBuffer


def block(first: int, size: int) -> dict[str, np.ndarray]:
    ids = np.arange(first, first + size)
    return {
        "segment_id": ids.astype(np.int32),
        "weight": (ids / 8).astype(np.float32),
        "word": np.ma.masked_array(ids.astype(np.int16), mask=ids % 3 == 0),
        "metric": np.array([f"m{i}" for i in ids], dtype=object),
    }


def test_the_rows_come_back_in_order_across_growth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base._Arena, "ARENA_BYTES", 16)  # 4 int32 rows: grows twice below
    buffer = RowBuffer("head_predictions")
    for first, size in [(0, 3), (3, 5), (8, 0), (8, 13)]:
        buffer.append(block(first, size))
    rows = buffer.take()
    assert rows is not None and rows.table == "head_predictions" and len(rows) == 21
    assert rows.columns["segment_id"].tolist() == list(range(21))
    assert rows.columns["segment_id"].dtype == np.int32
    assert rows.columns["weight"].tolist() == [i / 8 for i in range(21)]
    word = rows.columns["word"]
    assert isinstance(word, np.ma.MaskedArray) and word.dtype == np.int16
    assert word.mask.tolist() == [i % 3 == 0 for i in range(21)]
    assert rows.columns["metric"].tolist() == [f"m{i}" for i in range(21)]


def test_a_take_empties_the_buffer() -> None:
    buffer = RowBuffer("t")
    assert buffer.take() is None
    buffer.append(block(0, 4))
    assert len(buffer.take()) == 4  # type: ignore[arg-type]
    assert buffer.take() is None
    buffer.append(block(4, 2))
    rows = buffer.take()
    assert rows is not None and rows.columns["segment_id"].tolist() == [4, 5]


def test_a_column_that_turns_masked_keeps_its_earlier_rows() -> None:
    buffer = RowBuffer("t")
    buffer.append({"x": np.array([1, 2], dtype=np.int16)})
    buffer.append({"x": np.ma.masked_array(np.array([3, 4], dtype=np.int16), mask=[True, False])})
    buffer.append({"x": np.array([5.5], dtype=np.float64)})  # another type: joined as numpy joins
    rows = buffer.take()
    assert rows is not None
    assert rows.columns["x"].tolist() == [1, 2, None, 4, 5.5]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/maps is Linux's")
def test_a_chunks_rows_are_not_on_the_heap() -> None:
    """The point of the arenas: rows that live through a chunk do not fragment the heap."""
    buffer = RowBuffer("t")
    buffer.append(block(0, 1000))
    address = buffer._columns["segment_id"].rows.ctypes.data  # type: ignore[union-attr]
    with open("/proc/self/maps") as maps:
        heap = [line.split()[0] for line in maps if line.rstrip().endswith("[heap]")]
    for span in heap:
        low, high = (int(bound, 16) for bound in span.split("-"))
        assert not low <= address < high
