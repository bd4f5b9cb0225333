"""Feature shards read back segment by segment: the same arrays as were written."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.extract.cache import read_shards, shard_path, write_shard


def test_shards_read_back_one_segment_at_a_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    written = []
    for start, units in ((0, (3, 5)), (2, (4,))):  # two shards, segments of 3, 5 and 4 units
        features = [(start * 10 + i, rng.random((6, n, n)).astype(np.float16), rng.random((n - 2, 4)).astype(np.float16))
                    for i, n in enumerate(units)]
        write_shard(shard_path(tmp_path, start), features)
        written += features
    read = list(read_shards(tmp_path))
    assert [segment for segment, _, _ in read] == [0, 1, 20]
    for (_, maps, hidden), (_, want_maps, want_hidden) in zip(read, written):
        assert maps is not None and maps.dtype == np.float16 and np.array_equal(maps, want_maps)
        assert hidden is not None and np.array_equal(hidden, want_hidden)
        maps[0, 0, 0] = 1  # a writable array of its own
    assert [maps for _, maps, _ in read_shards(tmp_path, maps=False)] == [None, None, None]
    assert [hidden for _, _, hidden in read_shards(tmp_path, hidden=False)] == [None, None, None]
