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
    """Per word query unit and head: argmax over other words, both ways, and special-token mass.

    Args:
        word_maps: [batch, head, query_unit, key_unit] word-level attention.
        unit_kind: [batch, unit] WORD / CLS / SEP / OTHER_SPECIAL, -1 for padding.

    Returns:
        predicted, attended_by: [batch, head, unit] unit indices (-1: no candidate);
        cls_weight, sep_weight: [batch, head, unit] attention to [CLS] / all [SEP]s.
        Only the rows of word units are defined (the others are never read).
    """
    batch, heads, n_units, _ = word_maps.shape
    is_word = unit_kind == WORD  # [batch, unit]
    not_self = ~torch.eye(n_units, dtype=torch.bool, device=word_maps.device)
    # pair[b, q, k]: q and k are two different words. For a word query q the candidates
    # are the keys k with pair[q, k]; for a word key k, the queries q with pair[q, k]; rows of
    # non-word units are not read, so one symmetric mask serves both directions.
    pair = is_word.unsqueeze(2) & is_word.unsqueeze(1) & not_self  # [batch, query, key]
    has_candidate = pair.any(-1).unsqueeze(1)  # [batch, 1, unit]
    # Weights lie in [0, 1], so subtracting 2 from non-candidates excludes them from the max
    # without changing a candidate's value; max returns the first (leftmost) of tied maxima.
    # Both directions take a row max over one buffer: [0] the maps, [1] the maps transposed
    # (written contiguous by the add, cheaper than an argmax along the query axis).
    penalty = torch.where(pair, 0.0, -2.0).to(word_maps.dtype).unsqueeze(1)
    both = word_maps.new_empty(2, batch, heads, n_units, n_units)
    torch.add(word_maps, penalty, out=both[0])
    torch.add(word_maps.transpose(-1, -2), penalty, out=both[1])
    _, index = both.max(-1)  # [2, batch, head, unit]
    none = torch.full_like(index[0], -1)
    # Special-token mass: gather the [CLS] and [SEP] columns (cheaper than a thin matmul).
    is_cls = (unit_kind == CLS).to(torch.int8)
    cls_unit = is_cls.argmax(-1)  # [batch]: the first [CLS]
    cls_weight = word_maps.gather(-1, cls_unit.view(batch, 1, 1, 1).expand(batch, heads, n_units, 1))
    cls_weight = cls_weight * is_cls.amax(-1).to(word_maps.dtype).view(batch, 1, 1, 1)
    is_sep = unit_kind == SEP
    sep_weight = torch.zeros_like(cls_weight)
    n_sep = int(is_sep.sum(-1).max()) if is_sep.numel() else 0
    if n_sep:
        # The SEP units of each row, in order, padded with the row's first unit at weight 0.
        order = torch.sort(is_sep.to(torch.int8), dim=-1, descending=True, stable=True)
        sep_units, present = order.indices[:, :n_sep], order.values[:, :n_sep].to(word_maps.dtype)
        columns = word_maps.gather(-1, sep_units.view(batch, 1, 1, n_sep).expand(batch, heads, n_units, n_sep))
        for s in range(n_sep):
            sep_weight += columns[..., s : s + 1] * present.view(batch, 1, 1, n_sep)[..., s : s + 1]
    return {
        "predicted": torch.where(has_candidate, index[0], none),
        "attended_by": torch.where(has_candidate, index[1], none),
        "cls_weight": cls_weight.squeeze(-1),
        "sep_weight": sep_weight.squeeze(-1),
    }


def per_word_rows(word_maps: torch.Tensor, batch: AttentionBatch, rows: torch.Tensor,
                  units: torch.Tensor, *, fused: bool = False) -> dict[str, np.ndarray]:
    """`word_predictions` of the word query units (rows, units), as [word, head] columns.

    `fused`: CPU float32 maps through the compiled loop (app/analysis/fused_predictions.py:
    the same bits, several times faster), which the engine asks for when it pays
    (app/compiled.py: `LayerMaps.compiled`); otherwise the tensor code.
    """
    if fused:
        from app.analysis.fused_predictions import word_rows

        return word_rows(word_maps, batch.unit_kind, batch.unit_word)
    result = word_predictions(word_maps, batch.unit_kind)

    def per_word(values: torch.Tensor) -> np.ndarray:  # [batch, head, unit] -> [word, head]
        return values[rows, :, units].cpu().numpy()

    def to_word_index(unit_index: torch.Tensor) -> np.ndarray:
        picked = unit_index[rows, :, units]  # [word, head]
        words = batch.unit_word[rows.unsqueeze(1), picked.clamp(min=0)]
        return torch.where(picked >= 0, words, -1).to(torch.int16).cpu().numpy()

    return {
        "predicted_index": to_word_index(result["predicted"]),
        "attended_by_index": to_word_index(result["attended_by"]),
        "cls_weight": per_word(result["cls_weight"]),
        "sep_weight": per_word(result["sep_weight"]),
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
        is_word = batch.unit_kind == WORD  # [batch, unit]
        rows, units = torch.nonzero(is_word, as_tuple=True)  # word query units
        n_heads = maps.word.shape[1]
        # The table's own types (SMALLINT indices, INTEGER segment ids, REAL weights): a
        # chunk's rows take half the memory of int64 ones, and the writer's sort, its Arrow
        # conversion and DuckDB's insert have less to move (about 3x less time, bench/whole.py).
        word_index = batch.unit_word[rows, units].to(torch.int16).cpu().numpy()
        segment = batch.segment_ids[rows.cpu().numpy()].astype(np.int32)
        self._buffer.append(
            {
                "segment_id": np.repeat(segment, n_heads),
                "word_index": np.repeat(word_index, n_heads),
                "layer": np.full(len(word_index) * n_heads, layer, dtype=np.int16),
                "head": np.tile(np.arange(n_heads, dtype=np.int16), len(word_index)),
                **{key: values.ravel() for key, values in
                   per_word_rows(maps.word, batch, rows, units, fused=maps.compiled).items()},
            }
        )

    def flush(self) -> list[Rows]:
        rows = self._buffer.take()
        if rows is None:
            return []
        columns = rows.columns
        self.n_rows = self.n_rows + len(columns["word_index"])
        no_prediction = columns["predicted_index"] < 0  # a one-word segment: NULL
        for key in ("predicted_index", "attended_by_index"):
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
