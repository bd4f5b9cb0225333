"""Attention heads as parsers (paper section 4.2), on word-level maps.

For every word and head, the engine pass records the other word the word attends to most
(`predicted_index`) and the other word that attends most to it (`attended_by_index`, the
authors' code's "transpose" mode), plus how much attention the word sends to [CLS] and
[SEP]. Accuracies are then SQL joins with any dependency layer (queries/table1_relations.sql),
so gold and silver annotations, and relation mappings, are chosen at query time.

Rules (the paper's): candidates are the segment's words other than the word itself;
special tokens are excluded; ties go to the leftmost word (torch.argmax); a segment with a
single word predicts nothing (NULL). Root arcs have no head word and are not scored.

Directions, for an arc dependent d -> head h:
- `d2h`: d's most-attended word is h (the paper's "dependent attends to head");
- `h2d`: h's most-attended word is d ("head attends to dependent");
- `h2d_col`: of all words, h is the one attending most to d (the released code's transpose).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, RowBuffer, Rows
from app.types import CLS, SEP, WORD

OFFSETS = (-3, -2, -1, 1, 2, 3)


def word_predictions(word_maps: torch.Tensor, unit_kind: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per query unit and head: argmax over other words, both ways, and special-token mass.

    Args:
        word_maps: [batch, head, query_unit, key_unit] word-level attention.
        unit_kind: [batch, unit] WORD / CLS / SEP / OTHER_SPECIAL, -1 for padding.

    Returns:
        predicted, attended_by: [batch, head, unit] unit indices (-1: no candidate);
        weight: [batch, head, unit] attention to `predicted`;
        cls_weight, sep_weight: [batch, head, unit] attention to [CLS] / all [SEP]s.
    """
    n_units = word_maps.shape[-1]
    is_word = unit_kind == WORD  # [batch, unit]
    not_self = ~torch.eye(n_units, dtype=torch.bool, device=word_maps.device)
    # candidate[b, q, k]: key k is a word other than q. The same mask, read [b, k, q], picks
    # the candidate queries for the transposed ("attended by") direction.
    candidate = (is_word.unsqueeze(1) & not_self).unsqueeze(1)  # [batch, 1, query, key]
    has_candidate = candidate.any(-1)  # [batch, 1, query]
    # Weights lie in [0, 1], so subtracting 2 from non-candidates excludes them from the max
    # without a masked copy; max/argmax return the first (leftmost) of tied maxima.
    penalty = torch.where(candidate, 0.0, -2.0).to(word_maps.dtype)
    weight, predicted = (word_maps + penalty).max(-1)
    # The transposed penalty picks, for each key k, the queries q that are words other than k.
    attended_by = (word_maps + penalty.transpose(-1, -2)).argmax(-2)
    none = torch.full_like(predicted, -1)
    predicted = torch.where(has_candidate, predicted, none)
    attended_by = torch.where(has_candidate, attended_by, none)
    specials = torch.stack([unit_kind == CLS, unit_kind == SEP], dim=-1).to(word_maps.dtype)
    to_special = word_maps @ specials.unsqueeze(1)  # [batch, head, query, 2]
    return {
        "predicted": predicted,
        "attended_by": attended_by,
        "weight": torch.where(has_candidate, weight, torch.zeros_like(weight)),
        "cls_weight": to_special[..., 0],
        "sep_weight": to_special[..., 1],
    }


class HeadPredictions(Analysis):
    """Streams `head_predictions` rows: one per word, layer and head."""

    name: ClassVar[str] = "syntax"
    needs_word_maps: ClassVar[bool] = True

    def __init__(self, n_layers: int, n_heads: int):
        super().__init__(n_layers, n_heads)
        self._buffer = RowBuffer("head_predictions")
        self.n_rows = np.zeros((), dtype=np.int64)

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.word is not None
        result = word_predictions(maps.word, batch.unit_kind)
        is_word = batch.unit_kind == WORD  # [batch, unit]
        rows, units = torch.nonzero(is_word, as_tuple=True)  # word query units
        n_heads = maps.word.shape[1]

        def per_word(values: torch.Tensor) -> np.ndarray:  # [batch, head, unit] -> [word, head]
            return values[rows, :, units].cpu().numpy()

        def to_word_index(unit_index: torch.Tensor) -> np.ndarray:
            picked = unit_index[rows, :, units]  # [word, head]
            words = batch.unit_word[rows.unsqueeze(1), picked.clamp(min=0)]
            return torch.where(picked >= 0, words, -1).cpu().numpy()

        word_index = batch.unit_word[rows, units].cpu().numpy()
        segment = batch.segment_ids[rows.cpu().numpy()]
        self._buffer.append(
            {
                "segment_id": np.repeat(segment, n_heads),
                "word_index": np.repeat(word_index, n_heads),
                "layer": np.full(len(word_index) * n_heads, layer, dtype=np.int64),
                "head": np.tile(np.arange(n_heads), len(word_index)),
                "predicted_index": to_word_index(result["predicted"]).ravel(),
                "attended_by_index": to_word_index(result["attended_by"]).ravel(),
                "weight": per_word(result["weight"]).ravel(),
                "cls_weight": per_word(result["cls_weight"]).ravel(),
                "sep_weight": per_word(result["sep_weight"]).ravel(),
            }
        )

    def flush(self) -> list[Rows]:
        rows = self._buffer.take()
        if rows is None:
            return []
        columns = rows.columns
        self.n_rows = self.n_rows + len(columns["word_index"])
        no_prediction = columns["predicted_index"] < 0  # a one-word segment: NULL
        for key in ("predicted_index", "attended_by_index", "weight"):
            columns[key] = np.ma.masked_array(columns[key], mask=no_prediction)
        return [rows]

    def finish(self) -> list[Rows]:
        return self.flush()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"n_rows": self.n_rows}

    def summary(self) -> dict[str, Any]:
        return {"n_prediction_rows": int(self.n_rows)}


# ------------------------------------------------------------ Python reference scoring


def score_arcs(
    predictions: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]],
    arcs: Iterable[tuple[int, int, int | None, str]],
) -> dict[tuple[str, str, int, int], tuple[int, int]]:
    """Per (relation, direction, layer, head): (correct, total). A reference for the SQL.

    Args:
        predictions: (segment, word) -> (predicted [layer, head], attended_by [layer, head]),
            word indices with -1 for none.
        arcs: (segment, dependent, head or None for root, relation).
    """
    counts: dict[tuple[str, str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    for segment, dependent, head, relation in arcs:
        if head is None:
            continue
        predicted_dep, attended_dep = predictions[(segment, dependent)]
        predicted_head, _ = predictions[(segment, head)]
        hits = {
            "d2h": predicted_dep == head,
            "h2d": predicted_head == dependent,
            "h2d_col": attended_dep == head,
        }
        for direction, hit in hits.items():
            for layer, head_index in np.ndindex(hit.shape):
                cell = counts[(relation, direction, layer, head_index)]
                cell[0] += int(hit[layer, head_index])
                cell[1] += 1
    return {key: (correct, total) for key, (correct, total) in counts.items()}


def score_offsets(
    arcs: Iterable[tuple[int, int, int | None, str]],
) -> dict[tuple[str, int], tuple[int, int]]:
    """Per (relation, offset): (correct, total) of predicting the word at dependent + offset."""
    counts: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for _segment, dependent, head, relation in arcs:
        if head is None:
            continue
        for offset in OFFSETS:
            cell = counts[(relation, offset)]
            cell[0] += int(head == dependent + offset)
            cell[1] += 1
    return {key: (correct, total) for key, (correct, total) in counts.items()}
