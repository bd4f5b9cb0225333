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


def test_a_streamed_shard_is_an_npz_and_its_digest_reads_files_whole(tmp_path: Path) -> None:
    """The maps are streamed into the zip, not concatenated: the file must still be what
    `np.load` reads as the flat arrays, and the cache digest the files' SHA-256s."""
    import hashlib

    from app.extract.cache import directory_sha256

    rng = np.random.default_rng(1)
    features = [(i, rng.random((2, n, n)).astype(np.float16), None) for i, n in enumerate((3, 6, 4))]
    path = shard_path(tmp_path, 0)
    write_shard(path, features)
    with np.load(path) as shard:
        assert sorted(shard.files) == ["maps", "n_maps", "segment_ids", "units"]
        assert np.array_equal(shard["maps"], np.concatenate([maps.ravel() for _, maps, _ in features]))
        assert shard["units"].tolist() == [3, 6, 4] and int(shard["n_maps"]) == 2
    files = sorted(tmp_path.glob("shard-*.npz"))
    expected = hashlib.sha256("".join(hashlib.sha256(p.read_bytes()).hexdigest() for p in files).encode())
    assert directory_sha256(tmp_path) == expected.hexdigest()
