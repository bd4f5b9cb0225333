"""Attention heads as coreference resolvers (paper section 4.3, Table 2).

For every mention with an antecedent in its segment, a head "chooses" the earlier mention
whose head word receives the most (word-level) attention from the mention's head word; the
choice is right when it belongs to the same entity. Candidates are the mentions that end
before the mention starts, as for the baselines (coref_baselines.py); among candidates
with equal attention (for example two mentions sharing a head word) the nearest wins.

The baselines do not depend on the encoder, so they are computed once at ingestion
(`baseline_choices`); Table 2 (queries/table2_coref.sql) compares both on exactly the
mentions a run scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, RowBuffer, Rows
from app.analysis.coref_baselines import BASELINES, candidate_antecedents, evaluable
from app.types import Mention, Segment


@dataclass(frozen=True)
class ScoredMention:
    """An evaluable mention with its candidates, nearest first."""

    mention_id: int
    head: int  # word index of the mention's head in its segment
    end: int  # last word of the mention: it must be inside the analysed words
    candidate_ids: np.ndarray  # [candidate] mention ids
    candidate_heads: np.ndarray  # [candidate] head word indices
    candidate_correct: np.ndarray  # [candidate] bool: same entity as the mention


def scored_mentions(mention_ids: Sequence[int], mentions: Sequence[Mention]) -> list[ScoredMention]:
    """The evaluable mentions of one segment, ready for the accumulator."""
    scored = []
    for i in evaluable(mentions):
        candidates = sorted(
            candidate_antecedents(mentions, i),
            key=lambda j: (-mentions[j].end, -mentions[j].start, -j),
        )
        scored.append(
            ScoredMention(
                mention_id=mention_ids[i],
                head=mentions[i].head,  # type: ignore[arg-type]
                end=mentions[i].end,
                candidate_ids=np.array([mention_ids[j] for j in candidates], dtype=np.int64),
                candidate_heads=np.array([mentions[j].head for j in candidates], dtype=np.int64),
                candidate_correct=np.array(
                    [mentions[j].entity == mentions[i].entity for j in candidates]
                ),
            )
        )
    return scored


def baseline_choices(segment: Segment) -> list[tuple[int, str, int, bool, str | None]]:
    """(mention index, baseline, chosen mention index, correct, detail) for a segment."""
    mentions = segment.mentions
    rows = []
    for i in evaluable(mentions):
        for name, predictor in BASELINES.items():
            choice = predictor(segment.words, mentions, i)
            chosen, detail = choice if isinstance(choice, tuple) else (choice, None)
            rows.append((i, name, chosen, mentions[chosen].entity == mentions[i].entity, detail))
    return rows


_COLUMNS = ("mention_id", "layer", "head", "predicted_mention_id", "weight", "correct")


class CorefHeads(Analysis):
    """Streams `coref_predictions` rows: one per evaluable mention, layer and head."""

    name: ClassVar[str] = "coref"
    needs_word_maps: ClassVar[bool] = True

    def __init__(self, n_layers: int, n_heads: int, mentions: dict[int, list[ScoredMention]]):
        super().__init__(n_layers, n_heads)
        self.mentions = mentions
        self._buffer = RowBuffer("coref_predictions")
        self.correct = np.zeros((n_layers, n_heads), dtype=np.int64)
        self.total = np.zeros((), dtype=np.int64)

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.word is not None
        # One block of rows per layer and batch, concatenated here: thousands of small
        # per-mention arrays held until the chunk's write fragmented the heap (app/heap.py).
        blocks: dict[str, list[np.ndarray]] = {name: [] for name in _COLUMNS}
        for row, segment_id in enumerate(batch.segment_ids.tolist()):
            scored = self.mentions.get(segment_id)
            if not scored:
                continue
            unit_word = batch.unit_word[row].cpu().numpy()
            unit_of = {int(word): unit for unit, word in enumerate(unit_word) if word >= 0}
            n_words = int(batch.n_words[row])
            # [head, query_unit, key_unit] of this segment, as numpy once per layer
            segment_maps = maps.word[row].cpu().numpy()
            for mention in scored:
                if mention.end >= n_words:  # cut off by the token budget in this run
                    continue
                query = unit_of[mention.head]
                keys = np.array([unit_of[int(word)] for word in mention.candidate_heads])
                weights = segment_maps[:, query, keys]  # [head, candidate]
                choice = weights.argmax(-1)  # nearest first: ties go to the nearest
                correct = mention.candidate_correct[choice]
                n_heads = len(choice)
                blocks["mention_id"].append(np.full(n_heads, mention.mention_id, dtype=np.int64))
                blocks["layer"].append(np.full(n_heads, layer, dtype=np.int64))
                blocks["head"].append(np.arange(n_heads))
                blocks["predicted_mention_id"].append(mention.candidate_ids[choice])
                blocks["weight"].append(weights[np.arange(n_heads), choice])
                blocks["correct"].append(correct)
                self.correct[layer] += correct
                if layer == 0:
                    self.total = self.total + 1
        if blocks["mention_id"]:
            self._buffer.append({name: np.concatenate(parts) for name, parts in blocks.items()})

    def flush(self) -> list[Rows]:
        rows = self._buffer.take()
        return [rows] if rows is not None else []

    def finish(self) -> list[Rows]:
        return self.flush()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"correct": self.correct, "total": self.total}

    def summary(self) -> dict[str, Any]:
        total = max(int(self.total), 1)
        best = np.unravel_index(self.correct.argmax(), self.correct.shape)
        return {
            "mentions_scored": int(self.total),
            "best_head_accuracy": float(self.correct.max() / total),
            "best_head_layer": int(best[0]),
            "best_head_head": int(best[1]),
        }
