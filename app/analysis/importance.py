"""Gradient-based importance of attention (paper section 3, Figure 2 right).

The gradient of the masked-LM loss with respect to every attention weight, averaged in
absolute value by the kind of token attended to: [CLS], [SEP], punctuation ('.' and ','),
and other tokens, per layer and head. The paper found it near zero for [SEP] from layer 5
on: changing attention to [SEP] barely changes the output, the "no-op" reading.

Masking: 15% of each segment's word tokens (at least one) are replaced by the mask token,
chosen by a generator seeded with (seed, segment id), so the result does not depend on
batching. The loss is each segment's mean cross-entropy over its masked tokens, summed over
the batch, so every segment's gradients have the same scale. Needs an encoder with its MLM
head; the pipeline refuses others with a clear message.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows, head_metric_rows
from app.types import CLS, COMMA, PERIOD, SEP, WORD

TARGETS = ("cls", "sep", "punct", "other")
MASK_RATE = 0.15


def mask_tokens(
    batch: AttentionBatch, *, mask_id: int, rate: float = MASK_RATE, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked input ids and MLM labels (-100 where nothing is predicted): [batch, token] each."""
    masked = batch.input_ids.clone()
    labels = torch.full_like(batch.input_ids, -100)
    candidates = batch.token_valid & (batch.token_kind == WORD)
    for row, segment_id in enumerate(batch.segment_ids.tolist()):
        positions = torch.nonzero(candidates[row]).flatten()
        if len(positions) == 0:
            continue
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(segment_id))
        count = max(1, round(rate * len(positions)))
        chosen = positions[torch.randperm(len(positions), generator=generator)[:count]]
        labels[row, chosen] = batch.input_ids[row, chosen]
        masked[row, chosen] = mask_id
    return masked, labels


def per_segment_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over segments of each segment's mean cross-entropy on its masked tokens."""
    losses = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )
    counts = (labels != -100).sum(-1).clamp(min=1)
    return (losses.sum(-1) / counts).sum()


def target_masks(batch: AttentionBatch) -> torch.Tensor:
    """[target, batch, key] masks of the key tokens of each target kind (TARGETS order)."""
    valid, kind, punct = batch.token_valid, batch.token_kind, batch.token_punct
    is_punct = (punct == PERIOD) | (punct == COMMA)
    cls, sep = valid & (kind == CLS), valid & (kind == SEP)
    return torch.stack([cls, sep, valid & is_punct & ~cls & ~sep, valid & ~cls & ~sep & ~is_punct])


class GradientImportance(Analysis):
    """Accumulates mean |d loss / d attention| per layer, head and target kind."""

    name: ClassVar[str] = "gradients"
    needs_gradients: ClassVar[bool] = True

    def __init__(self, n_layers: int, n_heads: int):
        super().__init__(n_layers, n_heads)
        self.sums = np.zeros((len(TARGETS), n_layers, n_heads), dtype=np.float64)
        self.counts = np.zeros((len(TARGETS), n_layers), dtype=np.int64)

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.grad is not None, "the gradient analysis needs the engine's gradient mode"
        magnitude = maps.grad.abs()  # [batch, head, query, key]
        queries = batch.token_valid.to(magnitude.dtype)  # [batch, query]
        for index, keys in enumerate(target_masks(batch)):
            keys = keys.to(magnitude.dtype)  # [batch, key]
            total = torch.einsum("bhqk,bq,bk->bh", magnitude, queries, keys)
            entries = queries.sum(-1) * keys.sum(-1)  # [batch]
            has = entries > 0
            per_segment = total[has] / entries[has].unsqueeze(1)  # [segments, head]
            self.sums[index, layer] += per_segment.sum(0).double().numpy()
            self.counts[index, layer] += int(has.sum())

    def grids(self) -> dict[str, np.ndarray]:
        means = self.sums / np.maximum(self.counts, 1)[:, :, None]
        return {f"grad_{target}": means[index] for index, target in enumerate(TARGETS)}

    def finish(self) -> list[Rows]:
        counts = {
            f"grad_{target}": self.counts[index][:, None] for index, target in enumerate(TARGETS)
        }
        return [head_metric_rows(self.grids(), counts)]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"sums": self.sums, "counts": self.counts}

    def summary(self) -> dict[str, Any]:
        return {name: float(grid.mean()) for name, grid in self.grids().items()}
