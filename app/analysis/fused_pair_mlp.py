"""The distance + GloVe probe's pair MLP on CPU as one fused loop per sentence (numba).

logits[b, q, k] = w . tanh(dependent[b, q] + candidate[b, k] + distance[b, index[b, q, k]]) + bias
touches every (pair, hidden unit) once in forward and once in backward (recomputing the
tanh), in registers: no [pairs, hidden] tensor is written. Tensor code needs about eleven
passes over such tensors per batch (gather-sum, tanh, matmul; in backward the same three,
then the products and three reductions), and on CPU those passes, not the arithmetic, were
the probe's cost (an epoch over EWT train's lengths, `bench/probes.py --pair-kernels`:
6.3 s with tensor code, 2.4 s with these loops, at two threads).

The tanh is Eigen's float32 rational approximation (`generic_fast_tanh_float`; TensorFlow,
which ran the paper's released probes, takes its CPU tanh from Eigen): within 3e-7 of the
exact value, and, unlike a call into libm, it vectorises. Sentences are split among threads, and each writes only its own
rows of every gradient (a sentence's distance rows are its own), so the result does not
depend on the thread count and needs no locks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from numba import njit, prange

from app.compiled import loop_input, numba_threads_as_torch

_CLAMP = np.float32(7.90531110763549805)  # tanh is 1.0f (to rounding) beyond this
# Eigen's generic_fast_tanh_float: odd numerator, even denominator, in x^2
_N0, _N1, _N2, _N3, _N4, _N5, _N6 = (np.float32(c) for c in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03))
_D0, _D1, _D2, _D3 = (np.float32(c) for c in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03))


@njit(inline="always", fastmath=True, cache=True)
def _tanh(x: np.float32) -> np.float32:  # pragma: no cover (compiled)
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = ((((((_N0 * x2 + _N1) * x2 + _N2) * x2 + _N3) * x2 + _N4) * x2 + _N5) * x2 + _N6) * x
    q = ((_D0 * x2 + _D1) * x2 + _D2) * x2 + _D3
    return p / q


@njit(inline="always", fastmath=True, cache=True)
def _activation(dependent: np.ndarray, candidate: np.ndarray, distance: np.ndarray,
                b: int, q: int, k: int, row: int, h: int) -> np.float32:  # pragma: no cover
    """Pair (q, k)'s hidden unit h: what forward sums and backward recomputes."""
    return _tanh(dependent[b, q, h] + candidate[b, k, h] + distance[b, row, h])


@njit(fastmath=True, cache=True)
def tanh(x: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """The kernels' tanh over an array (for tests: its distance from numpy's)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out.flat[i] = _tanh(x.flat[i])
    return out


@njit(parallel=True, fastmath=True, cache=True)
def _forward(dependent: np.ndarray, candidate: np.ndarray, distance: np.ndarray, index: np.ndarray,
             weight: np.ndarray, bias: np.float32, out: np.ndarray) -> None:  # pragma: no cover
    size, width, hidden = dependent.shape
    n_keys = candidate.shape[1]
    for b in prange(size):
        for q in range(width):
            for k in range(n_keys):
                row = index[b, q, k]
                total = np.float32(0.0)
                for h in range(hidden):
                    total += weight[h] * _activation(dependent, candidate, distance, b, q, k, row, h)
                out[b, q, k] = total + bias


@njit(parallel=True, fastmath=True, cache=True)
def _backward(dependent: np.ndarray, candidate: np.ndarray, distance: np.ndarray, index: np.ndarray,
              weight: np.ndarray, grad: np.ndarray, grad_dependent: np.ndarray, grad_candidate: np.ndarray,
              grad_distance: np.ndarray, grad_weight: np.ndarray) -> None:  # pragma: no cover
    """Adds into the (zeroed) gradients; grad_weight is per sentence [b, hidden]."""
    size, width, hidden = dependent.shape
    n_keys = candidate.shape[1]
    for b in prange(size):
        for q in range(width):
            for k in range(n_keys):
                g = grad[b, q, k]
                if g == 0:  # padding and masked candidates: nothing flows back
                    continue
                row = index[b, q, k]
                for h in range(hidden):
                    a = _activation(dependent, candidate, distance, b, q, k, row, h)
                    grad_weight[b, h] += g * a
                    pre = g * weight[h] * (np.float32(1.0) - a * a)
                    grad_dependent[b, q, h] += pre
                    grad_candidate[b, k, h] += pre
                    grad_distance[b, row, h] += pre


def _check(dependent: np.ndarray, candidate: np.ndarray, distance: np.ndarray, rows: np.ndarray,
           weight: np.ndarray) -> None:
    """The loops do not check bounds (a wrong shape would read other memory): check them here."""
    (size, width, hidden), n_keys, n_rows = dependent.shape, candidate.shape[1], distance.shape[1]
    if (candidate.shape != (size, n_keys, hidden) or distance.shape != (size, n_rows, hidden)
            or rows.shape != (size, width, n_keys) or weight.shape != (hidden,)):
        raise ValueError(f"pair_mlp: shapes {dependent.shape}, {candidate.shape}, {distance.shape}, "
                         f"{rows.shape}, {weight.shape} do not fit [b, q, h], [b, k, h], [b, r, h], [b, q, k], [h]")
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"pair_mlp: distance rows outside 0..{n_rows - 1}")


class FusedPairMLP(torch.autograd.Function):
    """`probe_kernels.pair_mlp` on CPU float32 tensors; keeps only its inputs for backward."""

    @staticmethod
    def forward(ctx: Any, dependent: torch.Tensor, candidate: torch.Tensor, distance: torch.Tensor,
                index: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor) -> torch.Tensor:
        arrays = loop_input(dependent), loop_input(candidate), loop_input(distance)
        rows = loop_input(index).astype(np.int32, copy=False)
        weight = loop_input(out_weight).reshape(-1)
        _check(*arrays, rows, weight)
        logits = np.empty(index.shape, np.float32)
        with numba_threads_as_torch():
            _forward(*arrays, rows, weight, np.float32(out_bias.item()), logits)
        ctx.arrays, ctx.rows, ctx.weight = arrays, rows, weight
        return torch.from_numpy(logits)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        dependent, candidate, distance = ctx.arrays
        grads = [np.zeros_like(a) for a in (dependent, candidate, distance)]
        per_sentence = np.zeros((len(dependent), dependent.shape[2]), np.float32)
        g = loop_input(grad)
        with numba_threads_as_torch():
            _backward(dependent, candidate, distance, ctx.rows, ctx.weight, g, *grads, per_sentence)
        grad_weight = torch.from_numpy(per_sentence.sum(0, dtype=np.float32)).view(1, -1)
        grad_bias = torch.tensor([g.sum(dtype=np.float32)])
        return (*(torch.from_numpy(a) for a in grads), None, grad_weight, grad_bias)
