"""Token-level -> word-level attention, for a whole batch and all heads at once.

The paper's rule (section 4.1): attention *to* a split word is the sum over its pieces,
attention *from* a split word is the mean over its pieces, so every word-level row still
sums to 1. (The authors' released code defaults to the first piece's row instead of the
mean; we follow the paper.) Both are matrix products with pooling matrices built from each
token's unit index:

    word[b, h] = mean_from[b] @ token[b, h] @ sum_to[b]
    [unit, unit] = [unit, token] @ [token, token] @ [token, unit]
"""

from __future__ import annotations

import torch


def pooling_matrices(token_unit: torch.Tensor, n_units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooling matrices for a batch.

    Args:
        token_unit: [batch, token] unit index of each token; padding tokens carry `n_units`
            (a dummy unit that is dropped).
        n_units: number of real unit slots per row (the batch maximum).

    Returns:
        sum_to: [batch, token, unit], 1 where the token belongs to the unit.
        mean_from: [batch, unit, token], sum_to transposed with each unit row divided by its
            piece count (rows of padding units are all zero).
    """
    one_hot = torch.nn.functional.one_hot(token_unit, n_units + 1)[..., :n_units]
    sum_to = one_hot.to(torch.float32)  # [batch, token, unit]
    counts = sum_to.sum(dim=1)  # [batch, unit]
    mean_from = sum_to.transpose(1, 2) / counts.clamp(min=1).unsqueeze(-1)  # [batch, unit, token]
    return sum_to, mean_from


def to_word_level(
    attention: torch.Tensor, sum_to: torch.Tensor, mean_from: torch.Tensor
) -> torch.Tensor:
    """[batch, head, query, key] token maps -> [batch, head, query_unit, key_unit] maps."""
    pooled_keys = attention @ sum_to.unsqueeze(1)  # [batch, head, token, unit]
    return mean_from.unsqueeze(1) @ pooled_keys  # [batch, head, unit, unit]
