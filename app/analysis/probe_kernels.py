"""Probe kernels over float16 features, without a fresh float32 copy per batch.

`map_mix` mixes attention maps with per-row coefficients (one small matmul per word row):
both layouts are stacked along the map axis so that one matmul per row does both, widened
from float16 into a float32 buffer that is reused batch after batch; only the float16 maps
are saved for backward. Measured (bench/probes.py): the previous code's cost was not the
matmuls' memory traffic but the page faults of a freshly allocated float32 copy per batch;
widening in cache-sized chunks (tried first) saved those but added as much in per-chunk
calls and a second widening in backward. `pair_mlp` is the distance + GloVe probe's MLP
over (query, key) pairs, without its [batch, query, key, hidden] activations: on CPU one
fused loop per sentence (app/analysis/fused_pair_mlp.py), elsewhere tensor code over a
chunk of pairs at a time, recomputed in backward.

`map_mix` is exact: the same matmul over the same float32 values as `plain_map_mix`.
`pair_mlp` equals `plain_pair_mlp` up to float32 rounding (other summation orders; the
fused loop's tanh is Eigen's, the chunks' numpy's).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

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


class _Scratch(threading.local):
    """One float32 buffer per thread for widened maps, reused batch after batch.

    A batch's float32 maps are written into the same pages every time: a fresh tensor per
    batch (tens of MB) is new pages from the kernel, and those page faults cost the previous
    code more than its matmuls. `generation` counts the fills, so that a backward pass can
    tell whether the buffer still holds its batch (else it widens its float16 maps again).
    """

    buffer: torch.Tensor | None = None
    generation = 0

    def take(self, elements: int, like: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.buffer is None or self.buffer.numel() < elements or self.buffer.device != like.device:
            self.buffer = torch.empty(elements, dtype=torch.float32, device=like.device)
        self.generation += 1
        return self.buffer[:elements], self.generation


_scratch = _Scratch()


def _widen(maps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, int | None]:
    """The maps [b, i, map_k, j] stacked along the map axis as contiguous float32 [b * i, map, j],
    and the scratch generation holding them (None: the one input itself, already so)."""
    first = maps[0]
    if len(maps) == 1 and first.dtype == torch.float32 and first.is_contiguous():
        return first.flatten(0, 1), None
    n_maps = sum(layout.shape[2] for layout in maps)
    shape = (*first.shape[:2], n_maps, first.shape[3])
    buffer, generation = _scratch.take(math.prod(shape), first)
    wide = buffer.view(shape)
    start = 0
    for layout in maps:
        wide[:, :, start : start + layout.shape[2]].copy_(layout)
        start += layout.shape[2]
    return wide.flatten(0, 1), generation


class _MapMix(torch.autograd.Function):
    """out[b, i] = coeff[b, i] @ maps[b, i]: a [c, map] by [map, j] matmul per row (b, i),
    `maps` being the given layouts stacked along the map axis."""

    @staticmethod
    def forward(ctx: Any, coeff: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
        size, width, n_coeff, n_maps = coeff.shape
        wide, generation = _widen(maps)  # [rows, map, j] float32
        out = torch.bmm(coeff.reshape(-1, n_coeff, n_maps), wide)
        ctx.save_for_backward(*maps)  # as given: float16 stays float16
        ctx.wide, ctx.generation = wide, generation
        return out.view(size, width, n_coeff, -1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        maps = ctx.saved_tensors
        nothing = (None,) * len(maps)
        if not ctx.needs_input_grad[0]:
            return (None, *nothing)
        wide = ctx.wide
        if ctx.generation is not None and ctx.generation != _scratch.generation:
            wide, _ = _widen(maps)  # another batch was widened since: widen this one again
        size, width, n_coeff, key = grad.shape
        # grad_coeff = grad_out @ maps^T, row by row
        grad_coeff = torch.bmm(grad.reshape(-1, n_coeff, key), wide.transpose(1, 2))
        return (grad_coeff.view(size, width, n_coeff, -1), *nothing)


def map_mix(coeff: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
    """[batch, i, c, map] float32 coefficients @ [batch, i, map, j] maps -> [batch, i, c, j] float32.

    Several `maps` (layouts) are stacked along the map axis (coeff's map axis is their total),
    so one matmul per row mixes them all. They may be float16 and any strides: they are
    widened into a per-thread float32 buffer reused from batch to batch, and get no gradient.
    Equal to `torch.matmul(coeff, torch.cat(maps, 2).float())`, forward and backward.
    """
    if any(layout.requires_grad for layout in maps):
        raise ValueError("map_mix: the maps get no gradient; detach them")
    return _MapMix.apply(coeff, *maps)


class _PairMLP(torch.autograd.Function):
    """logits[b, q, k] = out(tanh(dependent[b, q] + candidate[b, k] + distance[index[b, q, k]])),
    `distance` and `index` over all sentences' rows, a chunk of (b, q) rows at a time;
    backward recomputes each chunk's tanh."""

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
             out_weight: torch.Tensor, out_bias: torch.Tensor, *, chunk_bytes: int | None = None,
             fused: bool | None = None) -> torch.Tensor:
    """The distance + GloVe MLP over every (query, key) pair, without its [b, q, k, hidden] tensors.

    logits[b, q, k] = out_weight . tanh(dependent[b, q] + candidate[b, k] + distance[b, index[b, q, k]])
    + out_bias. Shapes: dependent [b, q, hidden], candidate [b, key, hidden], distance
    [b, rows, hidden] (the distance features take few values per sentence: a table of their
    projections), index [b, q, key] int64 rows of the sentence's table, out_weight [1, hidden],
    out_bias [1]. Equal to the plain expression up to float32 rounding. `fused` (default: on
    CPU float32) runs the fused loop, else the chunked tensor code (`chunk_bytes` per chunk).
    """
    if fused is None:
        fused = all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (dependent, candidate, distance))
    if fused:  # numba is imported by the one probe that uses it
        from app.analysis.fused_pair_mlp import FusedPairMLP

        return FusedPairMLP.apply(dependent, candidate, distance, index, out_weight, out_bias)
    size, rows, hidden = distance.shape
    offsets = rows * torch.arange(size, device=index.device).view(size, 1, 1)  # each sentence's first row
    return _PairMLP.apply(dependent.contiguous(), candidate.contiguous(), distance.reshape(-1, hidden).contiguous(),
                          index + offsets, out_weight, out_bias, chunk_bytes or PAIR_CHUNK_BYTES)


# ------------------------------------------------------------------ reference versions


def plain_map_mix(coeff: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
    """`map_mix` as one matmul over a widened copy (the previous code): tests and bench/."""
    return torch.matmul(coeff, torch.cat(maps, 2).float())


def plain_pair_mlp(dependent: torch.Tensor, candidate: torch.Tensor, distance: torch.Tensor,
                   index: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor) -> torch.Tensor:
    """`pair_mlp` over the whole [b, q, k, hidden] tensor (the previous code): tests and bench/."""
    sentence = torch.arange(len(index), device=index.device).view(-1, 1, 1)
    hidden = torch.tanh(dependent[:, :, None] + candidate[:, None] + distance[sentence, index])
    return torch.nn.functional.linear(hidden, out_weight, out_bias).squeeze(-1)
