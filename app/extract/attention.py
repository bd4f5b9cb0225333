"""The attention engine: one batched forward pass feeds every enabled analysis.

Segments are sorted by length (deterministically, so a resumed run sees the same order),
cut into batches by a budget of padded tokens (`batch_bounds`), padded per batch, and run
through the encoder with eager attention. Each layer's token maps, and word maps when an
analysis asks for them, go to every analysis as soon as the layer has computed them, from a
forward hook on its attention module, before the next layer runs (`attention_modules`): one
layer's maps are alive at a time, and the analyses read them while they are still in the
CPU's cache. Encoders without those hook points return every layer's maps at the end of the
forward, and the analyses get them in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps
from app.compiled import worth_compiling
from app.config import PAPER_MAX_TOKENS
from app.extract.align import EncodedSegment
from app.extract.value_norms import ValueCapture, norm_maps
from app.extract.word_level import pooling_matrices, to_word_level
from app.heap import HeapGuard


class _Ordered(Protocol):
    """What `length_order` sorts by: an EncodedSegment, or a ContrastivePair of two."""

    @property
    def n_tokens(self) -> int: ...
    @property
    def segment_id(self) -> int: ...


OrderedT = TypeVar("OrderedT", bound=_Ordered)


def length_order(segments: Sequence[OrderedT]) -> list[OrderedT]:
    """Sort by token count, then segment id: similar lengths share a batch (less padding)."""
    return sorted(segments, key=lambda segment: (segment.n_tokens, segment.segment_id))


def batch_bounds(
    lengths: Sequence[int],
    *,
    max_segments: int | None = None,
    max_tokens: int | None = None,
    max_cells: int | None = None,
) -> list[tuple[int, int]]:
    """Cut length-ordered segments into [start, stop) batches.

    A batch costs rows x its longest segment in padded tokens, and rows x longest² in
    attention cells (each head's map); it closes before either would pass its budget
    (`max_tokens`, `max_cells`), or before it holds more than `max_segments` rows. A token
    budget keeps each forward pass about the same size: short sentences come many at a time
    (fewer, fuller passes). The maps grow as rows x length², so the cell budget is what keeps
    memory flat for long inputs: 512-token segments come one at a time under a budget of
    16 x 128². A segment over a whole budget goes alone. No limit: one batch.
    """
    bounds: list[tuple[int, int]] = []
    start, longest = 0, 0
    for index, length in enumerate(lengths):
        grown = max(longest, length)
        rows = index - start + 1
        full = rows > 1 and (
            (max_segments is not None and rows > max_segments)
            or (max_tokens is not None and rows * grown > max_tokens)
            or (max_cells is not None and rows * grown * grown > max_cells)
        )
        if full:
            bounds.append((start, index))
            start, grown = index, length
        longest = grown
    if start < len(lengths):
        bounds.append((start, len(lengths)))
    return bounds


def cell_budget(batch_tokens: int | None) -> int | None:
    """Attention cells per batch for a token budget: those of a full batch of 128-piece
    segments (the paper's length), so inputs up to 128 pieces are cut by tokens alone (the
    same batches as without it) and longer ones hold no larger maps."""
    return None if batch_tokens is None else batch_tokens * PAPER_MAX_TOKENS


def collate(
    segments: Sequence[EncodedSegment], pad_id: int, device: str = "cpu"
) -> tuple[AttentionBatch, dict[str, torch.Tensor]]:
    """Pad a list of encoded segments into an AttentionBatch and the model's inputs."""
    size = len(segments)
    n_tokens = max(segment.n_tokens for segment in segments)
    n_units = max(segment.n_units for segment in segments)
    input_ids = np.full((size, n_tokens), pad_id, dtype=np.int64)
    token_type = np.zeros((size, n_tokens), dtype=np.int64)
    valid = np.zeros((size, n_tokens), dtype=bool)
    token_unit = np.full((size, n_tokens), n_units, dtype=np.int64)
    token_kind = np.full((size, n_tokens), -1, dtype=np.int8)
    token_punct = np.zeros((size, n_tokens), dtype=np.int8)
    unit_kind = np.full((size, n_units), -1, dtype=np.int8)
    unit_word = np.full((size, n_units), -1, dtype=np.int64)
    for row, segment in enumerate(segments):
        length, units = segment.n_tokens, segment.n_units
        input_ids[row, :length] = segment.input_ids
        token_type[row, :length] = segment.token_type_ids
        valid[row, :length] = True
        token_unit[row, :length] = segment.token_unit
        token_kind[row, :length] = segment.unit_kind[segment.token_unit]
        token_punct[row, :length] = segment.token_punct
        unit_kind[row, :units] = segment.unit_kind
        unit_word[row, :units] = segment.unit_word

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).to(device)

    batch = AttentionBatch(
        segment_ids=np.array([segment.segment_id for segment in segments], dtype=np.int64),
        input_ids=tensor(input_ids),
        token_valid=tensor(valid),
        token_kind=tensor(token_kind),
        token_punct=tensor(token_punct),
        token_unit=tensor(token_unit),
        unit_kind=tensor(unit_kind),
        unit_word=tensor(unit_word),
        n_words=np.array([segment.n_words for segment in segments], dtype=np.int64),
    )
    inputs = {
        "input_ids": batch.input_ids,
        "attention_mask": batch.token_valid.to(torch.int64),
        "token_type_ids": tensor(token_type),
    }
    return batch, inputs


def keep_freed_memory() -> None:
    """Ask glibc's malloc to reuse freed blocks instead of returning them to the OS.

    Every layer allocates map-sized temporaries (megabytes each). By default glibc serves
    such blocks with mmap and unmaps them on free, so each new block is page-faulted and
    zeroed again: measurable system time on every layer. With a high mmap threshold and no
    trimming they come from the heap and are reused; the process keeps its peak (which is
    flat: one batch of maps at a time). A no-op where glibc is absent.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux") or getattr(keep_freed_memory, "done", False):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum (64-bit)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
        libc.mallopt(m_top_pad, 64 << 20)
    except (OSError, AttributeError):
        return
    keep_freed_memory.done = True  # type: ignore[attr-defined]


NO_WEIGHTS = "the model returned no attention weights; load it with attn_implementation='eager'"


@dataclass(frozen=True)
class AttentionModules:
    """Each layer's attention module, in layer order, and where its output holds the weights."""

    modules: tuple[torch.nn.Module, ...]
    index: int


def attention_modules(model) -> AttentionModules | None:
    """The modules whose outputs transformers itself records as `attentions`
    (`_can_record_outputs`), one per layer; None where a model declares none (older
    architectures such as MPNet), or not one per layer: those return all maps at the end."""
    spec = (getattr(type(model), "_can_record_outputs", None) or {}).get("attentions")
    index, layer_name = 1, None
    if spec is not None and not isinstance(spec, type):  # transformers' OutputRecorder
        index, layer_name = spec.index, spec.layer_name
        spec = spec.target_class
    if not isinstance(spec, type):
        return None
    named: list[tuple[str, torch.nn.Module]] = list(model.named_modules())
    modules = [
        module for name, module in named if isinstance(module, spec) and (layer_name is None or layer_name in name)
    ]
    if len(modules) != model.config.num_hidden_layers:
        return None
    return AttentionModules(tuple(modules), index)


class AttentionEngine:
    """Runs an encoder over encoded segments and feeds the analyses layer by layer."""

    def __init__(
        self,
        model,
        *,
        pad_id: int,
        batch_size: int | None = None,
        batch_tokens: int | None = None,
        device: str = "cpu",
    ):
        """`batch_size` caps segments per forward pass, `batch_tokens` padded tokens (both optional)."""
        if batch_size is None and batch_tokens is None:
            raise ValueError("give batch_size, batch_tokens or both")
        if device == "cpu":
            keep_freed_memory()
        self.model = model
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.device = device
        # Trims the heap after a batch when fragmentation has grown it (app/heap.py).
        self.heap = HeapGuard()
        # Models without token types (RoBERTa-style: type_vocab_size 1) take none.
        self.use_token_types = getattr(model.config, "type_vocab_size", 0) > 1
        self.attention_modules = attention_modules(model)

    def bounds(self, segments: Sequence[EncodedSegment]) -> list[tuple[int, int]]:
        lengths = [segment.n_tokens for segment in segments]
        return batch_bounds(lengths, max_segments=self.batch_size, max_tokens=self.batch_tokens,
                            max_cells=cell_budget(self.batch_tokens))

    def compiled_loops(self, segments: Sequence[EncodedSegment]) -> bool:
        """Whether this pass takes the compiled per-layer loops: on CPU, when its maps
        (padded rows x tokens², every head and layer) repay numba's start (app/compiled.py)."""
        if self.device != "cpu":
            return False
        cells = sum((stop - start) * max(segment.n_tokens for segment in segments[start:stop]) ** 2
                    for start, stop in self.bounds(segments))
        config = self.model.config
        return worth_compiling(cells * config.num_attention_heads * config.num_hidden_layers)

    def batches(
        self, segments: Sequence[EncodedSegment]
    ) -> Iterator[tuple[AttentionBatch, dict[str, torch.Tensor]]]:
        for start, stop in self.bounds(segments):
            batch, inputs = collate(segments[start:stop], self.pad_id, self.device)
            if not self.use_token_types:
                inputs.pop("token_type_ids")
            yield batch, inputs

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor], hidden_layer: int | None = None) -> tuple[torch.Tensor, ...]:
        """Attention of every layer; with `hidden_layer`, also that layer's hidden states last."""
        outputs = self.model(
            **inputs, output_attentions=True, output_hidden_states=hidden_layer is not None, return_dict=True
        )
        attentions = outputs.attentions
        if not attentions or attentions[0] is None:
            raise RuntimeError(NO_WEIGHTS)
        if hidden_layer is not None:
            return (*attentions, outputs.hidden_states[hidden_layer])
        return attentions

    @torch.inference_mode()
    def stream(
        self,
        inputs: dict[str, torch.Tensor],
        consume: Callable[[int, torch.Tensor], None],
        hidden_layer: int | None = None,
    ) -> torch.Tensor | None:
        """Run the encoder, calling `consume(layer, attention)` for each layer in order as soon
        as that layer has its weights; returns `hidden_layer`'s hidden states (or None)."""
        if self.attention_modules is None:
            attentions = self.forward(inputs, hidden_layer)
            hidden = None
            if hidden_layer is not None:
                attentions, hidden = attentions[:-1], attentions[-1]
            for layer, attention in enumerate(attentions):
                consume(layer, attention)
            return hidden
        index = self.attention_modules.index

        def hook(layer: int, output: tuple) -> tuple:
            if len(output) <= index or output[index] is None:
                raise RuntimeError(NO_WEIGHTS)
            consume(layer, output[index])
            # The weights are consumed: nothing downstream keeps them alive.
            return (*output[:index], None, *output[index + 1 :])

        handles = [
            module.register_forward_hook(lambda _, __, output, layer=layer: hook(layer, output))
            for layer, module in enumerate(self.attention_modules.modules)
        ]
        try:
            outputs = self.model(**inputs, output_hidden_states=hidden_layer is not None, return_dict=True)
        finally:
            for handle in handles:
                handle.remove()
        return outputs.hidden_states[hidden_layer] if hidden_layer is not None else None

    def run(
        self, segments: Sequence[EncodedSegment], analyses: Sequence[Analysis], progress=None
    ) -> None:
        """Feed `segments` (already in length order) to every analysis."""
        want_words = any(analysis.needs_word_maps for analysis in analyses)
        hidden_layers: set[int] = {
            layer for analysis in analyses if (layer := getattr(analysis, "hidden_layer", None)) is not None
        }
        if len(hidden_layers) > 1:
            raise ValueError(f"one pass pools one layer's hidden states, not {sorted(hidden_layers)}")
        hidden_layer = next(iter(hidden_layers), None)
        by_norm = [analysis for analysis in analyses if analysis.weighting == "norm"]
        capture = ValueCapture(self.model, self.model.config.num_attention_heads) if by_norm else None
        compiled = want_words and self.compiled_loops(segments)
        with capture or nullcontext():
            for batch, inputs in self.batches(segments):
                n_units = batch.unit_kind.shape[1]
                consume = _layer_feeder(batch, analyses, n_units, want_words, compiled, capture)
                hidden = self.stream(inputs, consume, hidden_layer)
                if hidden is not None:  # read at the end of the batch (the feature cache)
                    _, mean_from = pooling_matrices(batch.token_unit, n_units)
                    batch.hidden = mean_from @ hidden.float()  # [batch, unit, hidden]
                _end_batch(batch, analyses, progress)
                self.heap.check()

    def run_gradients(
        self,
        segments: Sequence[EncodedSegment],
        analyses: Sequence[Analysis],
        *,
        mask: Callable[[AttentionBatch], tuple[torch.Tensor, torch.Tensor]],
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        progress=None,
    ) -> None:
        """Feed attention and d loss / d attention of a masked-LM model to the analyses.

        `mask(batch)` gives masked input ids and labels; `loss(logits, labels)` the scalar to
        differentiate. The model must have its MLM head (AutoModelForMaskedLM).
        """
        for batch, inputs in self.batches(segments):
            masked_ids, labels = mask(batch)
            inputs = {**inputs, "input_ids": masked_ids}
            self.model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                outputs = self.model(**inputs, output_attentions=True, return_dict=True)
                for attention in outputs.attentions:
                    attention.retain_grad()
                loss(outputs.logits, labels).backward()
            layer_maps = (
                LayerMaps(token=attention.detach().float(), word=None, grad=attention.grad.float())
                for attention in outputs.attentions
            )
            _feed(batch, layer_maps, analyses, progress)
            del outputs, layer_maps
            self.heap.check()


def _feed(batch: AttentionBatch, layer_maps: Iterable[LayerMaps], analyses: Sequence[Analysis], progress) -> None:
    """Every analysis sees layer 0, then layer 1, ...: one layer's maps are alive at a time."""
    for layer, maps in enumerate(layer_maps):
        for analysis in analyses:
            analysis.update(batch, layer, maps)
    _end_batch(batch, analyses, progress)


def _end_batch(batch: AttentionBatch, analyses: Sequence[Analysis], progress) -> None:
    for analysis in analyses:
        analysis.end_batch(batch)
    if progress is not None:
        progress.update(batch.size)


def _layer_feeder(batch: AttentionBatch, analyses: Sequence[Analysis], n_units: int, want_words: bool,
                  compiled: bool, capture: ValueCapture | None) -> Callable[[int, torch.Tensor], None]:
    """What `AttentionEngine.stream` calls with each layer's attention of this batch: weight
    maps to the weight-based analyses, norm maps (with `capture`) to the norm-based ones. The
    two groups are split once per batch, not per layer."""
    by_norm = [analysis for analysis in analyses if analysis.weighting == "norm"] if capture else []
    by_weight = [analysis for analysis in analyses if capture is None or analysis.weighting != "norm"]
    words_weight = want_words and any(analysis.needs_word_maps for analysis in by_weight)
    words_norm = any(analysis.needs_word_maps for analysis in by_norm)

    def consume(layer: int, attention: torch.Tensor) -> None:
        if by_weight:
            maps = _layer_maps(attention, batch, n_units, words_weight, compiled)
            for analysis in by_weight:
                analysis.update(batch, layer, maps)
        if capture is not None and by_norm:
            normed = norm_maps(attention.float(), capture.layer_norms(layer))
            maps = _layer_maps(normed, batch, n_units, words_norm, compiled)
            for analysis in by_norm:
                analysis.update(batch, layer, maps)

    return consume


def _layer_maps(attention: torch.Tensor, batch: AttentionBatch, n_units: int, want_words: bool,
                compiled: bool) -> LayerMaps:
    """One layer's token maps, and its word maps when an analysis wants them."""
    token = attention.float()  # [batch, head, query, key]
    word = to_word_level(token, batch.token_unit, n_units, fused=compiled) if want_words else None
    return LayerMaps(token=token, word=word, compiled=compiled)
