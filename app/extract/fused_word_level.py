"""Token -> word-level maps on CPU as one compiled loop per (segment, head) (numba).

`word_level.to_word_level` is the definition (tensor code: a scatter-add over keys, row adds
over queries, a division). Here the aligner's layout is used: a unit's pieces are
consecutive tokens and units are numbered in token order (extract/align.py), so "sum to a
unit" reads each query row once, taking the first piece of every unit with one gather and
adding a split word's further pieces after it. The additions are the tensor code's, in its
order (0 + first piece + second piece ..., then query pieces in token order), so the maps are
the same bits (a test); layouts that are not in token order go to the tensor code.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

from app.compiled import loop_input, numba_threads_as_torch


@njit(parallel=True, cache=True)
def _word_level(attention: np.ndarray, token_unit: np.ndarray, first: np.ndarray, n_real: np.ndarray,
                counts: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    """out [b, h, u, u], any contents; unit v of row b covers tokens first[b, v]..first[b, v + 1].

    Each job zeroes its own (b, h) slab first: the zeros are written by the thread that adds
    into them, while the slab is in its cache, instead of by one np.zeros over the whole
    output before the loop (0.7 s of 2.4 in a cProfile over the 1000 Wikipedia segments)."""
    size, heads, tokens, _ = attention.shape
    for job in prange(size * heads):
        b, h = job // heads, job % heads
        out[b, h] = 0.0
        units = n_real[b]
        summed = scratch[job]
        for q in range(tokens):
            u = token_unit[b, q]
            if u >= units:  # padding
                continue
            for v in range(units):
                summed[v] = attention[b, h, q, first[b, v]]
            for v in range(units):
                for k in range(first[b, v] + 1, first[b, v + 1]):
                    summed[v] += attention[b, h, q, k]
            for v in range(units):
                out[b, h, u, v] += summed[v]
        for u in range(units):
            for v in range(units):
                out[b, h, u, v] /= counts[b, u]


def layout_in_token_order(token_unit: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(first token of each unit [b, u + 1], real units [b], pieces per unit [b, u]) when every
    row is the aligner's layout: units 0, 1, 2, ... over consecutive tokens, then padding
    (`n_units`); else None."""
    size = len(token_unit)
    valid = token_unit < n_units
    steps = np.diff(token_unit, axis=1)
    aligned = (
        (token_unit >= 0).all() and (token_unit <= n_units).all()
        and not (valid[:, 1:] & ~valid[:, :-1]).any()  # padding only at the end
        and not (valid[:, 0] & (token_unit[:, 0] != 0)).any()  # the first unit is 0
        and not (valid[:, 1:] & (steps != 0) & (steps != 1)).any()  # then each unit the next
    )
    if not aligned:
        return None
    pieces = np.zeros((size, n_units + 1), np.int64)
    np.add.at(pieces, (np.arange(size)[:, None], token_unit), 1)
    pieces = pieces[:, :n_units]
    first = np.zeros((size, n_units + 1), np.int64)
    np.cumsum(pieces, axis=1, out=first[:, 1:])
    return first, (pieces > 0).sum(1), pieces


def to_word_level(attention: torch.Tensor, token_unit: torch.Tensor, n_units: int) -> torch.Tensor | None:
    """`word_level.to_word_level` for CPU float32 maps, or None where its layout does not fit."""
    maps, units = loop_input(attention), loop_input(token_unit)
    size, heads, tokens, keys = maps.shape
    if maps.dtype != np.float32 or keys != tokens or units.shape != (size, tokens):
        return None
    layout = layout_in_token_order(units, n_units)
    if layout is None:
        return None
    first, n_real, pieces = layout
    out = np.empty((size, heads, n_units, n_units), np.float32)  # each slab zeroed in the loop
    scratch = np.empty((size * heads, max(n_units, 1)), np.float32)
    divisor = np.maximum(pieces, 1).astype(np.float32)
    with numba_threads_as_torch():
        _word_level(maps, units, first, n_real, divisor, scratch, out)
    return torch.from_numpy(out)
