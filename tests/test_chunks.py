"""Checkpoint chunks of a local analyze pass (app/pipeline/analyze.py chunk_bounds)."""

from __future__ import annotations

from app.config import ExtractConfig
from app.pipeline.analyze import chunk_bounds


def test_fixed_chunks_are_chunk_size_segments_from_the_start() -> None:
    config = ExtractConfig(chunk_size=3)
    assert chunk_bounds([5] * 8, 0, config) == [(0, 3), (3, 6), (6, 8)]
    assert chunk_bounds([5] * 8, 3, config, [3, 3]) == [(3, 6), (6, 8)]  # a resumed pass
    assert chunk_bounds([5] * 8, 8, config) == []


def test_a_piece_budget_takes_short_segments_many_at_a_time() -> None:
    config = ExtractConfig(chunk_size=2, chunk_tokens=10)  # chunk_size no longer counts
    lengths = [2, 2, 3, 3, 4, 6, 11, 12]
    # 2+2+3+3 = 10 fits; 4+6 = 10; 11 and 12 each pass the budget alone.
    assert chunk_bounds(lengths, 0, config) == [(0, 4), (4, 6), (6, 7), (7, 8)]


def test_a_run_resuming_further_on_starts_a_chunk_of_its_own() -> None:
    # `surface` stopped after 4 segments and `syntax` joins the pass from 0: without a cut
    # at 4, the chunk [0, 8) could not go to `surface` (segments 0-3 are in its checkpoint)
    # and it would skip segments 4-7.
    config = ExtractConfig(chunk_tokens=100)
    assert chunk_bounds([3] * 10, 0, config, [4, 0]) == [(0, 4), (4, 10)]
    assert chunk_bounds([3] * 10, 0, ExtractConfig(chunk_size=3), [4, 0]) == [(0, 3), (3, 4), (4, 7), (7, 10)]


def test_chunking_is_not_part_of_a_runs_identity() -> None:
    assert ExtractConfig(chunk_tokens=64).config_hash() == ExtractConfig().config_hash()
