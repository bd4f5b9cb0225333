"""The engine hands each layer's maps to the analyses while the forward pass is still running."""

from __future__ import annotations

from pathlib import Path

import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows
from app.types import SegmentInput

INPUTS = [
    SegmentInput(0, "a", ["The", "cat", "sat", "."], [0, 0, 0, 0]),
    SegmentInput(1, "b", ["Dogs", "bark", "loudly", "at", "night", "."], [0, 0, 0, 1, 1, 1]),
    SegmentInput(2, "c", ["It", "rained", "."], [0, 0, 0]),
]


class Recorder(Analysis):
    """Keeps every map it is fed, and how many encoder layers had finished at that moment."""

    name = "recorder"
    needs_word_maps = True

    def __init__(self, n_layers: int, n_heads: int, finished: list[int]):
        super().__init__(n_layers, n_heads)
        self.finished = finished
        self.seen: list[tuple[int, int]] = []  # (layer fed, layers finished by then)
        self.maps: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.word is not None
        self.seen.append((layer, self.finished[0]))
        self.maps.append((maps.token.clone(), maps.word.clone()))

    def end_batch(self, batch: AttentionBatch) -> None:
        self.finished[0] = 0

    def finish(self) -> list[Rows]:
        return []


def run(tiny_bert: Path, *, streamed: bool) -> Recorder:
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine, length_order
    from app.ingest.models import load_encoder

    loaded = load_encoder(tiny_bert)
    aligner = Aligner(loaded.tokenizer, max_tokens=64, overflow="skip", on_unaligned="error")
    segments = length_order(aligner.encode(INPUTS, Skipped()))
    engine = AttentionEngine(loaded.model, pad_id=0, batch_size=2)
    if not streamed:
        engine.attention_modules = None  # as for an encoder without hook points (MPNet)
    finished = [0]

    def count(*_: object) -> None:
        finished[0] += 1

    for layer in loaded.model.encoder.layer:
        layer.register_forward_hook(count)
    recorder = Recorder(loaded.info.n_layers, loaded.info.n_heads, finished)
    engine.run(segments, [recorder])
    return recorder


def test_each_layer_reaches_the_analyses_before_the_next_layer_runs(tiny_bert: Path) -> None:
    streamed = run(tiny_bert, streamed=True)
    # two batches (2 + 1 segments) of the 2-layer model: layer l is fed when l layers are done
    assert streamed.seen == [(0, 0), (1, 1), (0, 0), (1, 1)]
    collected = run(tiny_bert, streamed=False)
    assert collected.seen == [(0, 2), (1, 2), (0, 2), (1, 2)]


def test_streamed_and_collected_maps_are_the_same_bits(tiny_bert: Path) -> None:
    streamed = run(tiny_bert, streamed=True).maps
    collected = run(tiny_bert, streamed=False).maps
    assert len(streamed) == len(collected) == 4
    for (token, word), (token_all, word_all) in zip(streamed, collected):
        assert torch.equal(token, token_all) and torch.equal(word, word_all)


def test_hook_points_come_from_what_transformers_records_as_attentions(tiny_bert: Path) -> None:
    from transformers import BertModel, MPNetConfig, MPNetModel
    from transformers.models.bert.modeling_bert import BertSelfAttention

    from app.extract.attention import attention_modules

    bert = BertModel.from_pretrained(tiny_bert)
    found = attention_modules(bert)
    assert found is not None and found.index == 1
    assert [type(module) for module in found.modules] == [BertSelfAttention, BertSelfAttention]
    assert found.modules[1] is bert.encoder.layer[1].attention.self
    config = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)
    assert attention_modules(MPNetModel(config)) is None  # no `_can_record_outputs`: collected
