"""Probe kernels over float16 features, widened a cache-sized chunk at a time.

`map_mix` mixes attention maps with per-row coefficients (one small matmul per word row):
it reads the batch's float16 maps, both layouts stacked along the map axis so that one
matmul per row does both, widening a chunk of rows at a time into one reused float32
buffer, and saves only the float16 maps for backward (which widens them again). A batch is
thus never copied whole to float32: that copy, freshly allocated per batch, cost more than
the matmuls themselves (bench/probes.py). `pair_mlp` is the distance + GloVe probe's MLP
over (query, key) pairs: its [batch, query, key, hidden] activations are made a chunk of
pairs at a time and recomputed in backward instead of being kept.

`map_mix` is exact: each row is the same matmul over the same float32 values as
`plain_map_mix`. `pair_mlp` equals `plain_pair_mlp` up to float32 rounding (partial sums
per chunk, numpy's tanh).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

# float32 bytes of widened maps per chunk: about a core's L2 cache (1 MiB on this project's
# machines), so that the chunk stays there between the widening copy and the matmul;
# bench/probes.py measured 0.5 MiB and 4 MiB slower, a whole batch at once much slower.
CHUNK_BYTES = 1024 * 1024
# pair_mlp's chunk (float32 bytes of [pairs, hidden] activations): a few such blocks are
# live at once; larger chunks cost more in cache misses than they save in per-chunk calls.
PAIR_CHUNK_BYTES = 1024 * 1024


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


def _buffer_size(size: int, width: int, row_elements: int, chunk_bytes: int) -> int:
    """Float32 elements of the scratch that `_chunks` blocks need: a chunk, at least one row,
    at most the whole batch."""
    return min(size * width, max(1, chunk_bytes // (4 * row_elements))) * row_elements


def _widen(blocks: tuple[torch.Tensor, ...], buffer: torch.Tensor) -> torch.Tensor:
    """The blocks [rows..., map_k, j], stacked along the map axis, as contiguous float32:
    the block itself if it is one that already is, else copied (widened) into `buffer`."""
    if len(blocks) == 1 and blocks[0].dtype == torch.float32 and blocks[0].is_contiguous():
        return blocks[0]
    first = blocks[0]
    n_maps = sum(block.shape[-2] for block in blocks)
    shape = (*first.shape[:-2], n_maps, first.shape[-1])
    wide = buffer[: math.prod(shape)].view(shape)
    start = 0
    for block in blocks:
        wide[..., start : start + block.shape[-2], :].copy_(block)
        start += block.shape[-2]
    return wide


class _MapMix(torch.autograd.Function):
    """out[b, i] = coeff[b, i] @ maps[b, i]: a [c, map] by [map, j] matmul per row (b, i),
    `maps` being the given layouts stacked along the map axis."""

    @staticmethod
    def forward(ctx: Any, coeff: torch.Tensor, chunk_bytes: int, *maps: torch.Tensor) -> torch.Tensor:
        size, width, n_coeff, n_maps = coeff.shape
        key = maps[0].shape[3]
        coeff = coeff.contiguous()
        out = coeff.new_empty(size, width, n_coeff, key)
        buffer = coeff.new_empty(_buffer_size(size, width, n_maps * key, chunk_bytes))
        for chunk in _chunks(size, width, n_maps * key, chunk_bytes):
            wide = _widen(tuple(layout[chunk] for layout in maps), buffer).view(-1, n_maps, key)
            torch.bmm(coeff[chunk].view(-1, n_coeff, n_maps), wide, out=out[chunk].view(-1, n_coeff, key))
        ctx.save_for_backward(*maps)  # as given: float16 stays float16
        ctx.chunk_bytes = chunk_bytes
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        maps = ctx.saved_tensors
        nothing = (None,) * (1 + len(maps))
        if not ctx.needs_input_grad[0]:
            return (None, *nothing)
        size, width, n_coeff, key = grad.shape
        n_maps = sum(layout.shape[2] for layout in maps)
        grad = grad.contiguous()
        grad_coeff = grad.new_empty(size, width, n_coeff, n_maps)
        buffer = grad.new_empty(_buffer_size(size, width, n_maps * key, ctx.chunk_bytes))
        for chunk in _chunks(size, width, n_maps * key, ctx.chunk_bytes):
            wide = _widen(tuple(layout[chunk] for layout in maps), buffer).view(-1, n_maps, key)
            # grad_coeff = grad_out @ maps^T, row by row
            torch.bmm(grad[chunk].view(-1, n_coeff, key), wide.transpose(1, 2),
                      out=grad_coeff[chunk].view(-1, n_coeff, n_maps))
        return (grad_coeff, *nothing)


def map_mix(coeff: torch.Tensor, *maps: torch.Tensor, chunk_bytes: int | None = None) -> torch.Tensor:
    """[batch, i, c, map] float32 coefficients @ [batch, i, map, j] maps -> [batch, i, c, j] float32.

    Several `maps` (layouts) are stacked along the map axis (coeff's map axis is their total),
    so one matmul per row mixes them all. They may be float16 and any strides: they are
    widened a chunk of rows at a time, never copied whole, and get no gradient. Equal to
    `torch.matmul(coeff, torch.cat(maps, 2).float())`, forward and backward.
    """
    if any(layout.requires_grad for layout in maps):
        raise ValueError("map_mix: the maps get no gradient; detach them")
    return _MapMix.apply(coeff, chunk_bytes or CHUNK_BYTES, *maps)


class _PairMLP(torch.autograd.Function):
    """logits[b, q, k] = out(tanh(dependent[b, q] + candidate[b, k] + distance[index[b, q, k]])),
    a chunk of (b, q) rows at a time; backward recomputes each chunk's tanh."""

    @staticmethod
    def forward(ctx: Any, dependent: torch.Tensor, candidate: torch.Tensor, distance: torch.Tensor,
                index: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor,
                chunk_bytes: int) -> torch.Tensor:
        size, width, hidden = dependent.shape
        n_keys = candidate.shape[1]
        logits = dependent.new_empty(size, width, n_keys)
        # One table of the three terms' rows, and per pair the rows it sums (in the plain
        # forward's order: dependent + candidate, then distance).
        table = torch.cat([dependent.reshape(-1, hidden), candidate.reshape(-1, hidden), distance])
        rows = _pair_rows(size, width, n_keys, index)  # [b, q, key, 3]
        for chunk in _chunks(size, width, n_keys * hidden, chunk_bytes):
            activation = _activation(table, rows[chunk])  # [pairs, hidden]
            torch.addmm(out_bias, activation, out_weight.t(), out=logits[chunk].reshape(-1, 1))
        ctx.save_for_backward(table, rows, out_weight)
        ctx.sizes = size, width, n_keys, hidden, len(distance), chunk_bytes
        return logits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        table, rows, out_weight = ctx.saved_tensors
        size, width, n_keys, hidden, n_distances, chunk_bytes = ctx.sizes
        grad = grad.contiguous()
        grad_dependent = table.new_empty(size, width, hidden)
        grad_candidate = table.new_zeros(size, n_keys, hidden)
        grad_distance = table.new_zeros(n_distances, hidden)
        grad_out_weight = torch.zeros_like(out_weight)
        first_distance = size * (width + n_keys)  # the distance rows' offset in the table
        for chunk in _chunks(size, width, n_keys * hidden, chunk_bytes):
            block = rows[chunk]
            nb, nq = block.shape[:2]
            activation = _activation(table, block)  # [pairs, hidden]
            g = grad[chunk].reshape(-1)  # [pairs]
            grad_out_weight.addmm_(g.view(1, -1), activation)  # sum of grad * tanh
            # d tanh: (grad * out_weight) * (1 - tanh^2), as autograd's tanh_backward
            grad_pre = torch.mul(g.view(-1, 1), out_weight.view(hidden))
            torch.ops.aten.tanh_backward.grad_input(grad_pre, activation, grad_input=grad_pre)
            by_pair = grad_pre.view(nb, nq, n_keys, hidden)
            torch.sum(by_pair, 2, out=grad_dependent[chunk])
            grad_candidate[chunk[0]] += by_pair.sum(1)
            grad_distance.index_add_(0, block[..., 2].reshape(-1) - first_distance, grad_pre)
        grad_out_bias = grad.sum().reshape(1)
        return (grad_dependent, grad_candidate, grad_distance, None, grad_out_weight, grad_out_bias, None)


def _pair_rows(size: int, width: int, n_keys: int, index: torch.Tensor) -> torch.Tensor:
    """[b, q, key, 3] rows of (dependent, candidate, distance) in the table of `_PairMLP`."""
    device = index.device
    dependent = torch.arange(size * width, device=device).view(size, width, 1)
    candidate = size * width + torch.arange(size * n_keys, device=device).view(size, 1, n_keys)
    distance = size * (width + n_keys) + index
    return torch.stack(torch.broadcast_tensors(dependent, candidate, distance), -1)


def _activation(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """tanh of the sum of each pair's three table rows: [pairs, hidden] float32."""
    pre = torch.nn.functional.embedding_bag(rows.reshape(-1, 3), table, mode="sum")
    if pre.device.type == "cpu":  # numpy's tanh is SIMD (within 1 ulp); torch's CPU tanh is
        np.tanh(pre.numpy(), out=pre.numpy())  # scalar here, 5x slower
        return pre
    return pre.tanh_()


def pair_mlp(dependent: torch.Tensor, candidate: torch.Tensor, distance: torch.Tensor, index: torch.Tensor,
             out_weight: torch.Tensor, out_bias: torch.Tensor, *, chunk_bytes: int | None = None) -> torch.Tensor:
    """The distance + GloVe MLP over every (query, key) pair, without its [b, q, k, hidden] tensors.

    logits[b, q, k] = out_weight . tanh(dependent[b, q] + candidate[b, k] + distance[index[b, q, k]])
    + out_bias. Shapes: dependent [b, q, hidden], candidate [b, key, hidden], distance
    [rows, hidden] (the distance features take few values: a table of their projections),
    index [b, q, key] int64 rows of it, out_weight [1, hidden], out_bias [1]. Equal to the
    plain expression up to float32 rounding (chunked sums, numpy's tanh).
    """
    return _PairMLP.apply(dependent.contiguous(), candidate.contiguous(), distance.contiguous(), index,
                          out_weight, out_bias, chunk_bytes or PAIR_CHUNK_BYTES)


# ------------------------------------------------------------------ reference versions


def plain_map_mix(coeff: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
    """`map_mix` as one matmul over a widened copy (the previous code): tests and bench/."""
    return torch.matmul(coeff, torch.cat(maps, 2).float())


def plain_pair_mlp(dependent: torch.Tensor, candidate: torch.Tensor, distance: torch.Tensor,
                   index: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor) -> torch.Tensor:
    """`pair_mlp` over the whole [b, q, k, hidden] tensor (the previous code): tests and bench/."""
    hidden = torch.tanh(dependent[:, :, None] + candidate[:, None] + distance[index])
    return torch.nn.functional.linear(hidden, out_weight, out_bias).squeeze(-1)
