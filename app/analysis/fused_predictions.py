"""Per-word head predictions on CPU as one compiled loop per (segment, head) (numba).

`syntax.word_predictions` is the definition (tensor code, any device). Its tensor form pays
for every (query, key) cell of the padded batch several times: a masked copy of the maps and
of their transpose, a max with indices over both, gathers, then an index into the word rows.
That was the largest cost of `analyze syntax` beyond the forward pass (bench/engine.py).
Here each (segment, head) reads its word-by-word block once, keeping the row's best key and
every column's best query as it goes, and writes the rows' values straight into the table's
[word, head] layout. The results are the same bits: the same comparisons pick the same
(leftmost) maxima, and the [SEP] mass adds the same values in the same order (a test).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from app.compiled import loop_input, numba_threads_as_torch
from app.types import CLS, SEP, WORD


@njit(parallel=True, cache=True)
def _predict(maps: np.ndarray, unit_kind: np.ndarray, unit_word: np.ndarray, first_row: np.ndarray,
             predicted: np.ndarray, attended_by: np.ndarray, cls_weight: np.ndarray,
             sep_weight: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Fills the [word, head] outputs; segment b's words are rows first_row[b]..first_row[b + 1]."""
    size, heads, n_units, _ = maps.shape
    for job in prange(size * heads):
        b, h = job // heads, job % heads
        n_words = first_row[b + 1] - first_row[b]
        words = np.empty(n_words, np.int64)
        cls, found = 0, 0
        for unit in range(n_units):
            if unit_kind[b, unit] == WORD:
                words[found] = unit
                found += 1
        for unit in range(n_units - 1, -1, -1):
            if unit_kind[b, unit] == CLS:
                cls = unit  # the first [CLS]
        has_cls = np.float32(1.0) if unit_kind[b, cls] == CLS else np.float32(0.0)
        # Weights lie in [0, 1]: -1 is below every candidate, and a strict > keeps the
        # leftmost of tied maxima, as torch.max does.
        column_best = np.full(n_words, np.float32(-1.0))
        column_query = np.full(n_words, -1, np.int64)
        for i in range(n_words):
            query = words[i]
            best, best_key = np.float32(-1.0), -1
            for j in range(n_words):
                if j == i:
                    continue
                weight = maps[b, h, query, words[j]]
                if weight > best:
                    best, best_key = weight, words[j]
                if weight > column_best[j]:
                    column_best[j], column_query[j] = weight, query
            row = first_row[b] + i
            predicted[row, h] = unit_word[b, best_key] if best_key >= 0 else -1
            cls_weight[row, h] = maps[b, h, query, cls] * has_cls
            mass = np.float32(0.0)
            for unit in range(n_units):
                if unit_kind[b, unit] == SEP:
                    mass += maps[b, h, query, unit]
            sep_weight[row, h] = mass
        for j in range(n_words):
            query = column_query[j]
            attended_by[first_row[b] + j, h] = unit_word[b, query] if query >= 0 else -1


def word_rows(word_maps: torch.Tensor, unit_kind: torch.Tensor, unit_word: torch.Tensor) -> dict[str, np.ndarray]:
    """`word_predictions` for CPU float32 maps, already in rows: [word, head] per column.

    Words are in row-major order of `unit_kind == WORD` (segment, then unit), like
    `torch.nonzero`. Predicted and attending words are word indices (int16, -1: none).
    """
    maps, kinds, words = loop_input(word_maps), loop_input(unit_kind), loop_input(unit_word)
    size, heads, n_units, _ = maps.shape
    if maps.dtype != np.float32 or maps.shape[3] != n_units or kinds.shape != (size, n_units) or words.shape != (size, n_units):
        raise ValueError(f"word_rows: maps {maps.shape} {maps.dtype}, unit_kind {kinds.shape}, "
                         f"unit_word {words.shape} do not fit [b, h, u, u] float32, [b, u], [b, u]")
    first_row = np.zeros(size + 1, np.int64)
    np.cumsum((kinds == WORD).sum(1), out=first_row[1:])
    n_rows = int(first_row[-1])
    out: dict[str, np.ndarray] = {
        "predicted_index": np.empty((n_rows, heads), np.int16),
        "attended_by_index": np.empty((n_rows, heads), np.int16),
        "cls_weight": np.empty((n_rows, heads), np.float32),
        "sep_weight": np.empty((n_rows, heads), np.float32),
    }
    with numba_threads_as_torch():
        _predict(maps, kinds, words, first_row, out["predicted_index"], out["attended_by_index"],
                 out["cls_weight"], out["sep_weight"])
    return out
