"""The engine's contrastive gradient pass: paragraph pairs, in-batch negatives.

Each paired segment (`[CLS] paragraph-1 [SEP] paragraph-2 [SEP]` in wiki-segments) is
split into its two texts, encoded separately as the sentence encoder was trained
(`[CLS] text [SEP]`). Per batch of pairs: one forward of the anchors and one of the
positives, with gradients; the loss of analysis/contrastive.py; one backward; then the
attention and its gradient of both forwards go to the analyses like any gradient pass
(each text counts as one segment in the per-segment averages of analysis/importance.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from app.analysis.base import Analysis, LayerMaps
from app.analysis.contrastive import DEFAULT_SCALE, SentenceObjective, contrastive_loss, pool
from app.config import CONTRASTIVE_PAIRS
from app.errors import AnalysisUnavailable
from app.extract.align import EncodedSegment, Skipped
from app.extract.attention import _feed, collate
from app.types import SegmentInput


def read_objective(model_dir: Path) -> SentenceObjective:
    """Pooling from the sentence-transformers files beside the model, where present."""
    pooling_config = model_dir / "1_Pooling" / "config.json"
    if not pooling_config.is_file():
        return SentenceObjective()
    modes = json.loads(pooling_config.read_text())
    if modes.get("pooling_mode_mean_tokens"):
        pooling = "mean"
    elif modes.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif modes.get("pooling_mode_max_tokens"):
        pooling = "max"
    else:
        raise AnalysisUnavailable(
            f"{pooling_config}: no pooling mode this objective supports (mean, cls, max) is on"
        )
    return SentenceObjective(pooling=pooling, scale=DEFAULT_SCALE, source=str(pooling_config))  # type: ignore[arg-type]


@dataclass
class ContrastivePair:
    """The two texts of one paired segment, encoded separately."""

    segment_id: int
    anchor: EncodedSegment
    positive: EncodedSegment

    @property
    def n_tokens(self) -> int:
        return max(self.anchor.n_tokens, self.positive.n_tokens)


def split_pair(segment: SegmentInput) -> tuple[SegmentInput, SegmentInput] | None:
    """A paired segment's first and second text as single segments; None if unpaired."""
    first = [form for form, part in zip(segment.forms, segment.parts) if part == 0]
    second = [form for form, part in zip(segment.forms, segment.parts) if part == 1]
    if not first or not second:
        return None
    return (
        SegmentInput(segment.segment_id, segment.label, first, [0] * len(first)),
        SegmentInput(segment.segment_id, segment.label, second, [0] * len(second)),
    )


def encode_pairs(aligner: Any, inputs: Iterable[SegmentInput], skipped: Skipped, *, corpus: str) -> list[ContrastivePair]:
    """Encode both texts of every paired segment; unpaired segments are counted as skipped."""
    halves = []
    for segment in inputs:
        pair = split_pair(segment)
        if pair is None:
            skipped.add("not a pair", segment.label)
        else:
            halves.append(pair)
    if not halves:
        raise AnalysisUnavailable(
            f"the contrastive objective needs paragraph pairs, and corpus {corpus!r} has none: "
            "use wiki-segments, or a text corpus with `first<TAB>second` lines"
        )
    anchors = {seg.segment_id: seg for seg in aligner.encode([a for a, _ in halves], skipped)}
    positives = {seg.segment_id: seg for seg in aligner.encode([b for _, b in halves], skipped)}
    return [
        ContrastivePair(segment_id, anchors[segment_id], positives[segment_id])
        for segment_id in anchors
        if segment_id in positives
    ]


def pair_loss(engine: Any, anchors: Sequence[EncodedSegment], positives: Sequence[EncodedSegment], objective: SentenceObjective):  # type: ignore[no-untyped-def]
    """Forward both sides with gradients on; (loss, [(batch, outputs) for each side])."""
    sides = []
    embeddings = []
    for segments in (anchors, positives):
        batch, inputs = collate(segments, engine.pad_id, engine.device)
        if not engine.use_token_types:
            inputs.pop("token_type_ids")
        outputs = engine.model(**inputs, output_attentions=True, return_dict=True)
        if torch.is_grad_enabled():
            for attention in outputs.attentions:
                attention.retain_grad()
        embeddings.append(pool(outputs.last_hidden_state, batch.token_valid, objective.pooling))
        sides.append((batch, outputs))
    return contrastive_loss(embeddings[0], embeddings[1], scale=objective.scale), sides


def run_contrastive(
    engine: Any,
    pairs: Sequence[ContrastivePair],
    analyses: Sequence[Analysis],
    *,
    objective: SentenceObjective,
    progress=None,  # type: ignore[no-untyped-def]
) -> None:
    """Feed attention and d contrastive loss / d attention, anchors then positives."""
    size = engine.batch_size or CONTRASTIVE_PAIRS  # a count: the batch is part of the loss
    for start in range(0, len(pairs), size):
        group = pairs[start : start + size]
        engine.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss, sides = pair_loss(
                engine, [p.anchor for p in group], [p.positive for p in group], objective
            )
            loss.backward()
        for batch, outputs in sides:
            layer_maps = (
                LayerMaps(token=attention.detach().float(), word=None, grad=attention.grad.float())
                for attention in outputs.attentions
            )
            _feed(batch, layer_maps, analyses, None)
        if progress is not None:
            progress.update(len(group))


def contrastive_feed(engine: Any, model_dir: Path):  # type: ignore[no-untyped-def]
    """The pipeline's feed for a contrastive gradient pass over encoded pairs."""
    objective = read_objective(model_dir)

    def feed(chunk, analyses, progress=None):  # type: ignore[no-untyped-def]
        run_contrastive(engine, chunk, analyses, objective=objective, progress=progress)

    return feed
