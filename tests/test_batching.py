"""Batches cut by a budget of padded tokens: the cuts, and the same rows as fixed-size batches."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app import pipeline
from app.cli import cli
from app.config import ExtractConfig
from app.extract.attention import batch_bounds, cell_budget

LINES = [
    "A short one .",
    "The quick brown fox jumps over the lazy dog near the old river bank today .",
    "Colorless green ideas sleep furiously .\tThey never wake up , do they ?",
    "Attention heads look at separators , commas and periods .",
    "Unbelievably , the tokenizer splits some words into pieces .",
] * 4  # 20 segments of several lengths


def test_a_batch_closes_before_its_padded_tokens_pass_the_budget() -> None:
    # Length-ordered: rows x longest. 3+3+4 -> 3 rows x 4 = 12 <= 12; a fourth row (5) would be 20.
    assert batch_bounds([3, 3, 4, 5, 5, 9], max_tokens=12) == [(0, 3), (3, 5), (5, 6)]
    # A segment longer than the budget goes alone; it does not stop the next batch.
    assert batch_bounds([2, 20, 20], max_tokens=10) == [(0, 1), (1, 2), (2, 3)]


def test_the_segment_cap_and_no_limit() -> None:
    assert batch_bounds([1] * 5, max_segments=2) == [(0, 2), (2, 4), (4, 5)]
    # Both limits: whichever closes the batch first.
    assert batch_bounds([4] * 6, max_segments=4, max_tokens=8) == [(0, 2), (2, 4), (4, 6)]
    assert batch_bounds([1] * 5) == [(0, 5)]
    assert batch_bounds([], max_tokens=8) == []


def test_a_batch_closes_before_its_attention_cells_pass_the_budget() -> None:
    # Cells: rows x longest². 4 rows of 2 = 16 <= 16; a fifth row would be 5 x 4 = 20. Then
    # 3 (9 cells) and 3 (18 > 16): apart; 4 alone (16), 5 alone (25: over, but alone).
    assert batch_bounds([2, 2, 2, 2, 2, 3, 3, 4, 5], max_cells=16) == [(0, 4), (4, 5), (5, 6), (6, 7), (7, 8), (8, 9)]
    # With a token budget too, whichever closes the batch first: 8 tokens allow 4 rows of 2
    # (8) but cells 4 x 4 = 16 > 12 allow 3.
    assert batch_bounds([2, 2, 2, 2], max_tokens=8, max_cells=12) == [(0, 3), (3, 4)]


def test_the_cell_budget_is_a_full_batch_of_128_piece_segments() -> None:
    assert cell_budget(2048) == 16 * 128 * 128
    assert cell_budget(None) is None
    # Up to 128 pieces the token budget alone decides (the same cuts as without cells) ...
    short = [20] * 50 + [100] * 30 + [128] * 40
    assert batch_bounds(short, max_tokens=2048, max_cells=cell_budget(2048)) == batch_bounds(short, max_tokens=2048)
    # ... longer inputs come fewer at a time: 2048 tokens would take 4 rows of 512, the
    # cells (4 x 512² = 1M > 262,144) one; rows of 256: 4 (4 x 65,536 = 262,144), not 8.
    assert batch_bounds([512] * 3, max_tokens=2048, max_cells=cell_budget(2048)) == [(0, 1), (1, 2), (2, 3)]
    assert batch_bounds([256] * 8, max_tokens=2048, max_cells=cell_budget(2048)) == [(0, 4), (4, 8)]


@pytest.fixture
def ready(settings, tiny_bert: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(f"{line} ({i})" for i, line in enumerate(LINES)) + "\n")
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "lines", fmt="text", path=str(path))
    return settings


def _rows(settings, run_ids: list[int]):  # type: ignore[no-untyped-def]
    predictions = pipeline.run_query(
        settings, None,
        sql=f"select * exclude (run_id) from head_predictions where run_id = {run_ids[1]} "
        "order by all",
    )
    metrics = pipeline.run_query(
        settings, None,
        sql=f"select layer, head, metric, value from head_metrics where run_id = {run_ids[0]} "
        "order by layer, head, metric",
    )
    return predictions, metrics


def test_token_budget_batches_give_the_rows_of_fixed_size_batches(ready) -> None:  # type: ignore[no-untyped-def]
    fixed = ExtractConfig(batch_size=4, batch_tokens=10**6, chunk_size=8)
    runs = pipeline.analyze(ready, ["surface", "syntax"], model="tiny", corpus="lines", config=fixed)
    predictions, metrics = _rows(ready, [run.run_id for run in runs])
    # 30 padded tokens: one to five segments per batch here, never four at a time throughout.
    budget = ExtractConfig(batch_tokens=30, chunk_size=8)
    again = pipeline.analyze(
        ready, ["surface", "syntax"], model="tiny", corpus="lines", config=budget, force=True
    )
    assert [run.run_id for run in again] == [run.run_id for run in runs]  # batching is no identity
    predictions_budget, metrics_budget = _rows(ready, [run.run_id for run in again])
    assert len(predictions) > 0
    # The predicted words are the same; the special-token weights are sums over word pieces,
    # padded differently: equal up to float32 rounding (under 1e-6), then stored to 6
    # decimals, so at most one step of 1e-6 apart.
    weights = ["cls_weight", "sep_weight"]
    assert predictions.drop(columns=weights).equals(predictions_budget.drop(columns=weights))
    assert (predictions[weights] - predictions_budget[weights]).abs().max().max() < 1.1e-6
    # Surface statistics are sums of float32 maps, padded differently: equal up to rounding.
    assert (metrics[["layer", "head", "metric"]] == metrics_budget[["layer", "head", "metric"]]).all().all()
    assert (metrics["value"] - metrics_budget["value"]).abs().max() < 1e-6


def test_batch_tokens_is_a_cli_option_with_a_range(ready) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        cli, ["--db", ready.db_url, "analyze", "surface", "--model", "tiny", "--corpus", "lines",
              "--batch-tokens", "0"],
    )
    assert result.exit_code == 2 and "--batch-tokens" in result.output


def test_the_compiled_loops_wait_for_a_pass_that_repays_numbas_start(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys
    import types

    from app.compiled import numba_held_back, worth_compiling

    monkeypatch.delitem(sys.modules, "numba", raising=False)  # a fresh command
    assert not worth_compiling(74_000_000)  # UD EWT dev's maps under the default budget
    assert worth_compiling(286_000_000)  # 256 Wikipedia segments'
    with numba_held_back():  # `reproduce` keeps numba's memory out of its probe stage
        assert not worth_compiling(286_000_000)
    assert worth_compiling(286_000_000)
    monkeypatch.setitem(sys.modules, "numba", types.ModuleType("numba"))  # already paid for
    assert worth_compiling(1)
    with numba_held_back():
        assert worth_compiling(1)
