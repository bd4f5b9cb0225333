"""The engine's contrastive gradient pass: paragraph pairs, in-batch negatives.

Each paired segment (`[CLS] paragraph-1 [SEP] paragraph-2 [SEP]` in wiki-segments) is
split into its two texts, encoded separately as the sentence encoder was trained
(`[CLS] text [SEP]`). Per batch of pairs: the loss of analysis/contrastive.py over both
sides' embeddings, then forwards and backwards a few texts at a time (see GRAD_CHUNK); the
attention and its gradient go to the analyses like any gradient pass
(each text counts as one segment in the per-segment averages of analysis/importance.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from app.analysis.base import Analysis, LayerMaps
from app.analysis.contrastive import (
    DEFAULT_SCALE,
    Pooling,
    SentenceObjective,
    contrastive_loss,
    pool,
)
from app.config import CONTRASTIVE_PAIRS
from app.errors import AnalysisUnavailable
from app.extract.align import EncodedSegment, Skipped
from app.extract.attention import _feed, collate
from app.types import SegmentInput

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def read_objective(model_dir: Path) -> SentenceObjective:
    """Pooling from the sentence-transformers files beside the model, where present."""
    pooling_config = model_dir / "1_Pooling" / "config.json"
    if not pooling_config.is_file():
        return SentenceObjective()
    modes = json.loads(pooling_config.read_text())
    if modes.get("pooling_mode_mean_tokens"):
        pooling: Pooling = "mean"
    elif modes.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif modes.get("pooling_mode_max_tokens"):
        pooling = "max"
    else:
        raise AnalysisUnavailable(
            f"{pooling_config}: no pooling mode this objective supports (mean, cls, max) is on"
        )
    return SentenceObjective(pooling=pooling, scale=DEFAULT_SCALE, source=str(pooling_config))


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


def pair_loss(engine: Any, anchors: Sequence[EncodedSegment], positives: Sequence[EncodedSegment], objective: SentenceObjective):
    """The batch's loss from one forward of each side: (loss, [(batch, outputs) per side])."""
    sides = [_embed(engine, segments, objective) for segments in (anchors, positives)]
    loss = contrastive_loss(sides[0][2], sides[1][2], scale=objective.scale)
    return loss, [(batch, outputs) for batch, outputs, _ in sides]


# Texts per forward with gradients. The loss needs every embedding of a batch (in-batch
# negatives), but d loss / d attention of one text depends on the others only through
# d loss / d its embedding. So the batch is embedded without gradients, the loss's gradient
# with respect to each embedding is kept, and the texts are encoded again with gradients a
# few at a time, each chunk back-propagated from its kept embedding gradients ("GradCache",
# Gao et al. 2021): the same gradients, with the activations of one chunk in memory instead
# of the whole batch's.
GRAD_CHUNK = 4


def _embed(engine: Any, segments: Sequence[EncodedSegment], objective: SentenceObjective):
    """(batch, model outputs, pooled embeddings) of one forward; attention kept for gradients."""
    batch, inputs = collate(segments, engine.pad_id, engine.device)
    if not engine.use_token_types:
        inputs.pop("token_type_ids")
    outputs = engine.model(**inputs, output_attentions=torch.is_grad_enabled(), return_dict=True)
    if torch.is_grad_enabled():
        for attention in outputs.attentions:
            attention.retain_grad()
    return batch, outputs, pool(outputs.last_hidden_state, batch.token_valid, objective.pooling)


@contextlib.contextmanager
def input_gradients_only(model: PreTrainedModel) -> Iterator[None]:
    """Backward passes reach the attention from the input embeddings, not the weights.

    Only d loss / d attention is wanted: with the weights frozen, autograd skips their
    gradients (a third of a backward's work, and a gradient buffer per weight).
    """
    flags = [parameter.requires_grad for parameter in model.parameters()]
    model.requires_grad_(False)
    embeddings = model.get_input_embeddings()
    assert isinstance(embeddings, torch.nn.Module)
    handle = embeddings.register_forward_hook(lambda module, args, output: output.requires_grad_())
    try:
        yield
    finally:
        handle.remove()
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)


def run_contrastive(
    engine: Any,
    pairs: Sequence[ContrastivePair],
    analyses: Sequence[Analysis],
    *,
    objective: SentenceObjective,
    progress=None,
    chunk: int = GRAD_CHUNK,
) -> None:
    """Feed attention and d contrastive loss / d attention, anchors then positives."""
    with input_gradients_only(engine.model):
        _run_contrastive(engine, pairs, analyses, objective=objective, progress=progress, chunk=chunk)


def _run_contrastive(engine: Any, pairs: Sequence[ContrastivePair], analyses: Sequence[Analysis], *,
                     objective: SentenceObjective, progress, chunk: int) -> None:
    size = engine.batch_size or CONTRASTIVE_PAIRS  # a count: the batch is part of the loss
    for start in range(0, len(pairs), size):
        group = pairs[start : start + size]
        sides = ([p.anchor for p in group], [p.positive for p in group])
        with torch.no_grad():
            kept = [_embed(engine, segments, objective)[2].requires_grad_() for segments in sides]
        with torch.enable_grad():
            contrastive_loss(kept[0], kept[1], scale=objective.scale).backward()
        for segments, embeddings in zip(sides, kept):
            assert embeddings.grad is not None
            for first in range(0, len(segments), chunk):
                with torch.enable_grad():
                    batch, outputs, embedded = _embed(engine, segments[first : first + chunk], objective)
                    embedded.backward(embeddings.grad[first : first + chunk])
                layer_maps = (
                    LayerMaps(token=attention.detach().float(), word=None, grad=attention.grad.float())
                    for attention in outputs.attentions
                )
                _feed(batch, layer_maps, analyses, None)
                del outputs, layer_maps
                engine.heap.check()
        if progress is not None:
            progress.update(len(group))


def contrastive_feed(engine: Any, model_dir: Path):
    """The pipeline's feed for a contrastive gradient pass over encoded pairs."""
    objective = read_objective(model_dir)

    def feed(chunk, analyses, progress=None):
        run_contrastive(engine, chunk, analyses, objective=objective, progress=progress)

    return feed
