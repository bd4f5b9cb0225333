"""The sentence encoders' own training loss, for gradient importance (paper section 3).

MiniLM and MPNet ship no masked-LM head: they were fine-tuned as sentence encoders with a
contrastive objective (sentence-transformers' MultipleNegativesRankingLoss): each anchor
text is pooled to one vector, compared by cosine similarity, times a scale, with every
positive in the batch, and the cross-entropy picks its own positive out of the others
(in-batch negatives). d loss / d attention under this loss stands in for the paper's
d MLM-loss / d attention.

Defaults where the model's sentence-transformers config says nothing:
- pooling: mean over the valid tokens (the MiniLM/MPNet `1_Pooling/config.json` says so);
- similarity: cosine; scale 20 (MultipleNegativesRankingLoss's default; the scale is a
  property of the loss, not stored with the model);
- the loss is summed over anchors, not averaged, so each pair's gradient has the same
  size whatever the batch (as the masked-LM loss is summed over segments); the batch
  still matters through its negatives, so the pipeline keys runs by pairs per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Pooling = Literal["mean", "cls", "max"]
DEFAULT_SCALE = 20.0


@dataclass(frozen=True)
class SentenceObjective:
    """How embeddings are pooled and compared; `source` says where each value came from."""

    pooling: Pooling = "mean"
    scale: float = DEFAULT_SCALE
    source: str = "defaults"


def pool(hidden: torch.Tensor, valid: torch.Tensor, mode: Pooling) -> torch.Tensor:
    """[batch, token, hidden] states and [batch, token] validity -> [batch, hidden] embeddings."""
    if mode == "cls":
        return hidden[:, 0]
    mask = valid.unsqueeze(-1).to(hidden.dtype)  # [batch, token, 1]
    if mode == "max":
        return hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def contrastive_loss(anchors: torch.Tensor, positives: torch.Tensor, *, scale: float) -> torch.Tensor:
    """Sum over anchors i of cross-entropy(scale * cos(anchor_i, positive_j) over j, target i).

    Args:
        anchors: [pair, hidden] embeddings of the first texts.
        positives: [pair, hidden] embeddings of their partners (the other pairs' partners
            are the negatives).
    """
    anchors = torch.nn.functional.normalize(anchors, dim=-1)
    positives = torch.nn.functional.normalize(positives, dim=-1)
    scores = scale * anchors @ positives.T  # [anchor, positive]
    labels = torch.arange(len(anchors), device=anchors.device)
    return torch.nn.functional.cross_entropy(scores, labels, reduction="sum")
