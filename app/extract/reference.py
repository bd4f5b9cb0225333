"""Straightforward per-sentence implementations, the way the original research code works.

They loop over words in Python and numpy. They are the test oracle for the batched
versions (word_level.py, surface.py) and the baseline that bench/engine.py measures the
engine against. Not used by the pipeline.
"""

from __future__ import annotations

import numpy as np


def word_level(attention: np.ndarray, token_unit: np.ndarray) -> np.ndarray:
    """[head, token, token] -> [head, unit, unit]: sum over key pieces, mean over query pieces."""
    n_units = int(token_unit.max()) + 1
    n_heads = attention.shape[0]
    to_words = np.zeros((n_heads, attention.shape[1], n_units))
    for unit in range(n_units):
        to_words[:, :, unit] = attention[:, :, token_unit == unit].sum(-1)
    result = np.zeros((n_heads, n_units, n_units))
    for unit in range(n_units):
        result[:, unit, :] = to_words[:, token_unit == unit, :].mean(1)
    return result


def surface_statistics(
    attention: np.ndarray, kinds: np.ndarray, punct: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-head statistics of one segment: [head, token, token] -> metric -> [head]."""
    from app.types import CLS, COMMA, PERIOD, SEP

    n = attention.shape[-1]
    stats: dict[str, np.ndarray] = {}
    for name, mask in (
        ("attn_cls", kinds == CLS),
        ("attn_sep", kinds == SEP),
        ("attn_period", punct == PERIOD),
        ("attn_comma", punct == COMMA),
    ):
        stats[name] = attention[:, :, mask].sum(-1).mean(-1)
    stats["attn_prev"] = np.stack([attention[:, i, i - 1] for i in range(1, n)], -1).mean(-1)
    stats["attn_next"] = np.stack([attention[:, i, i + 1] for i in range(n - 1)], -1).mean(-1)
    stats["attn_self"] = np.stack([attention[:, i, i] for i in range(n)], -1).mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(attention > 0, attention * np.log(attention), 0.0)
    entropy = -plogp.sum(-1)
    stats["entropy"] = entropy.mean(-1)
    stats["uniform_entropy"] = np.full(attention.shape[0], np.log(n))
    stats["cls_entropy"] = entropy[:, int(np.argmax(kinds == CLS))]
    seps = kinds == SEP
    stats["sep_to_sep"] = attention[:, seps][:, :, seps].sum(-1).mean(-1)
    return stats
