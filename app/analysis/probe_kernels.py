"""Probe kernels that read float16 features in cache-sized chunks instead of widened copies.

The attention probes' cost is memory traffic, not arithmetic: a batch's maps are read for a
matmul forward and again backward. Widening the float16 maps to float32 up front writes a
copy twice their size, which both passes then read back from memory. `map_mix` widens a
chunk of rows at a time into one reused float32 buffer that stays in cache, and saves only
the float16 maps for backward. `pair_mlp` does the same for the distance + GloVe probe's
MLP over (query, key) pairs: its [batch, query, key, hidden] activations are recomputed per
chunk in backward instead of being kept for the whole batch.

Both are exact reorderings of the plain computation in float32: each output row is the same
matmul over the same float32 values, only done a chunk of rows at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# float32 bytes of widened maps per chunk: about half of a core's L2 cache, so that the
# chunk, its coefficients and its output stay there between the widening copy and the matmul.
CHUNK_BYTES = 1024 * 1024
# pair_mlp's chunk: its three scratch buffers of this size should stay in cache together.
PAIR_CHUNK_BYTES = 256 * 1024


def _chunks(size: int, width: int, row_elements: int, chunk_bytes: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, row slice) blocks of about `chunk_bytes` float32 over [batch, width] rows.

    Whole sentences when one fits, else rows of one sentence: each block is contiguous in
    any contiguous [batch, width, ...] tensor.
    """
    rows = max(1, chunk_bytes // (4 * row_elements))
    if rows >= width:
        step = rows // max(width, 1)
        for start in range(0, size, step):
            yield slice(start, min(size, start + step)), slice(None)
    else:
        for b in range(size):
            for start in range(0, width, rows):
                yield slice(b, b + 1), slice(start, min(width, start + rows))


def _widen(block: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
    """`block` as contiguous float32: itself if it is already, else copied into `buffer`."""
    if block.dtype == torch.float32 and block.is_contiguous():
        return block
    wide = buffer[: block.numel()].view(block.shape)
    wide.copy_(block)
    return wide


class _MapMix(torch.autograd.Function):
    """out[b, i] = coeff[b, i] @ maps[b, i]: a [c, map] by [map, j] matmul per row (b, i)."""

    @staticmethod
    def forward(ctx: Any, coeff: torch.Tensor, maps: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
        size, width, n_coeff, n_maps = coeff.shape
        key = maps.shape[3]
        coeff = coeff.contiguous()
        out = coeff.new_empty(size, width, n_coeff, key)
        buffer = coeff.new_empty(chunk_bytes // 4 + n_maps * key)  # at least one row
        for rows, cols in _chunks(size, width, n_maps * key, chunk_bytes):
            wide = _widen(maps[rows, cols], buffer).view(-1, n_maps, key)
            torch.bmm(coeff[rows, cols].view(-1, n_coeff, n_maps), wide,
                      out=out[rows, cols].view(-1, n_coeff, key))
        ctx.save_for_backward(maps)  # as given: float16 stays float16
        ctx.chunk_bytes = chunk_bytes
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (maps,) = ctx.saved_tensors
        size, width, n_maps, key = maps.shape
        grad = grad.contiguous()
        n_coeff = grad.shape[2]
        grad_coeff = grad.new_empty(size, width, n_coeff, n_maps)
        buffer = grad.new_empty(ctx.chunk_bytes // 4 + n_maps * key)
        for rows, cols in _chunks(size, width, n_maps * key, ctx.chunk_bytes):
            wide = _widen(maps[rows, cols], buffer).view(-1, n_maps, key)
            # grad_coeff = grad_out @ maps^T, row by row
            torch.bmm(grad[rows, cols].view(-1, n_coeff, key), wide.transpose(1, 2),
                      out=grad_coeff[rows, cols].view(-1, n_coeff, n_maps))
        return grad_coeff, None, None


def map_mix(coeff: torch.Tensor, maps: torch.Tensor, *, chunk_bytes: int | None = None) -> torch.Tensor:
    """[batch, i, c, map] float32 coefficients @ [batch, i, map, j] maps -> [batch, i, c, j] float32.

    `maps` may be float16 and any strides (a transposed view of the other layout is widened
    chunk by chunk, never copied whole); it gets no gradient. Equal to
    `torch.matmul(coeff, maps.float())`, forward and backward, up to the matmul's rounding.
    """
    if maps.requires_grad:
        raise ValueError("map_mix: the maps get no gradient; detach them")
    return _MapMix.apply(coeff, maps, chunk_bytes or CHUNK_BYTES)


class _PairMLP(torch.autograd.Function):
    """logits[b, q, k] = out(tanh(dependent[b, q] + candidate[b, k] + features[b, q, k] @ W^T)),
    a chunk of (b, q) rows at a time; backward recomputes each chunk's tanh."""

    @staticmethod
    def forward(ctx: Any, dependent: torch.Tensor, candidate: torch.Tensor, features: torch.Tensor,
                feature_weight: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor,
                chunk_bytes: int) -> torch.Tensor:
        size, width, hidden = dependent.shape
        n_keys = candidate.shape[1]
        logits = dependent.new_empty(size, width, n_keys)
        buffers = _PairBuffers(chunk_bytes, n_keys, hidden, dependent)
        for rows, cols in _chunks(size, width, n_keys * hidden, chunk_bytes):
            activation = buffers.activation(dependent, candidate, features, feature_weight, rows, cols)
            # [rows, key, hidden] @ [hidden, 1] + bias: the Linear(hidden -> 1) of the MLP
            torch.addmm(out_bias, activation.view(-1, hidden), out_weight.t(),
                        out=logits[rows, cols].reshape(-1, 1))
        ctx.save_for_backward(dependent, candidate, features, feature_weight, out_weight)
        ctx.chunk_bytes = chunk_bytes
        return logits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        dependent, candidate, features, feature_weight, out_weight = ctx.saved_tensors
        size, width, hidden = dependent.shape
        n_keys, n_features = candidate.shape[1], features.shape[-1]
        grad = grad.contiguous()
        grad_dependent = torch.empty_like(dependent)
        grad_candidate = torch.zeros_like(candidate)
        grad_feature_weight = torch.zeros_like(feature_weight)
        grad_out_weight = torch.zeros_like(out_weight)
        buffers = _PairBuffers(ctx.chunk_bytes, n_keys, hidden, dependent)
        for rows, cols in _chunks(size, width, n_keys * hidden, ctx.chunk_bytes):
            activation = buffers.activation(dependent, candidate, features, feature_weight, rows, cols)
            block = grad[rows, cols]  # [nb, nq, key]
            nb, nq = block.shape[:2]
            flat = activation.view(-1, hidden)
            grad_out_weight.addmm_(block.reshape(1, -1), flat)  # sum of grad * tanh
            # d tanh: (grad * out_weight) * (1 - tanh^2), as autograd's tanh_backward
            grad_pre = buffers.grad_pre[: flat.numel()].view(nb, nq, n_keys, hidden)
            torch.mul(block.unsqueeze(-1), out_weight.view(hidden), out=grad_pre)
            torch.ops.aten.tanh_backward.grad_input(grad_pre, activation, grad_input=grad_pre)
            torch.sum(grad_pre, 2, out=grad_dependent[rows, cols])
            grad_candidate[rows] += grad_pre.sum(1)
            grad_feature_weight.addmm_(grad_pre.view(-1, hidden).t(),
                                       features[rows, cols].reshape(-1, n_features))
        grad_out_bias = grad.sum().reshape(1)
        return (grad_dependent, grad_candidate, None, grad_feature_weight, grad_out_weight,
                grad_out_bias, None)


class _PairBuffers:
    """The float32 scratch of one chunk of pairs, reused chunk after chunk (stays in cache)."""

    def __init__(self, chunk_bytes: int, n_keys: int, hidden: int, like: torch.Tensor):
        elements = max(chunk_bytes // 4, n_keys * hidden)  # at least one row
        self.pre = like.new_empty(elements)
        self.distance = like.new_empty(elements)
        self.grad_pre = like.new_empty(elements)

    def activation(self, dependent: torch.Tensor, candidate: torch.Tensor, features: torch.Tensor,
                   feature_weight: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
        """tanh(dependent[b, q] + candidate[b, k] + features[b, q, k] @ W^T) of the chunk,
        [nb, nq, key, hidden], summed in the order of the plain forward."""
        block = features[rows, cols]  # [nb, nq, key, feature]
        nb, nq, n_keys = block.shape[:3]
        hidden = dependent.shape[-1]
        size = nb * nq * n_keys * hidden
        distance = self.distance[:size].view(-1, hidden)
        torch.mm(block.reshape(-1, block.shape[-1]), feature_weight.t(), out=distance)
        pre = self.pre[:size].view(nb, nq, n_keys, hidden)
        torch.add(dependent[rows, cols].unsqueeze(2), candidate[rows].unsqueeze(1), out=pre)
        pre.add_(distance.view(nb, nq, n_keys, hidden))
        if pre.device.type == "cpu":  # numpy's tanh is SIMD (within 1 ulp); torch's CPU tanh is
            np.tanh(pre.numpy(), out=pre.numpy())  # scalar here, 7x slower
            return pre
        return pre.tanh_()


def pair_mlp(dependent: torch.Tensor, candidate: torch.Tensor, features: torch.Tensor,
             feature_weight: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor,
             *, chunk_bytes: int | None = None) -> torch.Tensor:
    """The distance + GloVe MLP over every (query, key) pair, without its [b, q, k, hidden] tensors.

    logits[b, q, k] = out_weight . tanh(dependent[b, q] + candidate[b, k] + features[b, q, k]
    @ feature_weight^T) + out_bias. Shapes: dependent [b, q, hidden], candidate [b, key, hidden],
    features [b, q, key, feature] (no gradient), feature_weight [hidden, feature],
    out_weight [1, hidden], out_bias [1]. Equal to the plain expression, forward; backward sums
    the same terms a chunk at a time (allclose, not bitwise).
    """
    if features.requires_grad:
        raise ValueError("pair_mlp: the distance features get no gradient; detach them")
    return _PairMLP.apply(dependent.contiguous(), candidate.contiguous(), features.contiguous(),
                          feature_weight, out_weight, out_bias, chunk_bytes or PAIR_CHUNK_BYTES)


# ------------------------------------------------------------------ reference versions


def plain_map_mix(coeff: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """`map_mix` as one matmul over a widened copy (the previous code): tests and bench/."""
    return torch.matmul(coeff, maps.float())


def plain_pair_mlp(dependent: torch.Tensor, candidate: torch.Tensor, features: torch.Tensor,
                   feature_weight: torch.Tensor, out_weight: torch.Tensor,
                   out_bias: torch.Tensor) -> torch.Tensor:
    """`pair_mlp` over the whole [b, q, k, hidden] tensor (the previous code): tests and bench/."""
    hidden = torch.tanh(dependent[:, :, None] + candidate[:, None] + features @ feature_weight.T)
    return torch.nn.functional.linear(hidden, out_weight, out_bias).squeeze(-1)
