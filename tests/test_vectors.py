"""Word-vector lookup: lowercased, zeros and a count for unknown words, from memory or a memmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.ingest.vectors import WordVectors


@pytest.mark.parametrize("mapped", [False, True])
def test_lookup_by_hand(tmp_path: Path, mapped: bool) -> None:
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    if mapped:
        np.save(tmp_path / "vectors.npy", table)
        table = np.load(tmp_path / "vectors.npy", mmap_mode="r")
    vectors = WordVectors({"the": 0, "cat": 1, "sat": 2}, table, "hand-made")
    out, unknown = vectors.lookup(["The", "dog", "sat", "CAT", "the"])
    assert out.dtype == np.float32 and type(out) is np.ndarray  # not a view of the file
    assert out.tolist() == [[1, 2], [0, 0], [5, 6], [3, 4], [1, 2]]
    assert unknown == 1
    empty, none = vectors.lookup([])
    assert empty.shape == (0, 2) and none == 0
