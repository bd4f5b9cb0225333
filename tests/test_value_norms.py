"""Norm-based attention (Kobayashi et al. 2020): a hand-computed one-layer, two-head case,
the forward hooks against a manual recomputation, and weight + norm runs in one pass."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from app import pipeline
from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows
from app.config import ExtractConfig
from app.errors import AppError
from app.extract.value_norms import head_value_norms, norm_maps
from app.types import SegmentInput
from tests.conftest import FIXTURES


def test_one_layer_two_heads_by_hand() -> None:
    # hidden 2, two heads of size 1. Value-projection outputs per key token: x0 -> (1, 2),
    # x1 -> (3, 0). W_O columns are the heads' slices: head 0 -> (1, 1), head 1 -> (0, 2).
    values = torch.tensor([[[1.0, 2.0], [3.0, 0.0]]])  # [batch, key, head * head_dim]
    output_weight = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # [hidden, head * head_dim]
    norms = head_value_norms(values, output_weight, n_heads=2)
    # head 0: f(x0) = 1 * (1, 1), f(x1) = 3 * (1, 1); head 1: f(x0) = 2 * (0, 2), f(x1) = 0.
    expected_norms = torch.tensor([[[math.sqrt(2), 3 * math.sqrt(2)], [4.0, 0.0]]])
    torch.testing.assert_close(norms, expected_norms)

    attention = torch.tensor(
        [[[[0.5, 0.5], [0.25, 0.75]], [[0.9, 0.1], [0.2, 0.8]]]]
    )  # [batch, head, query, key]
    maps = norm_maps(attention, norms)
    # head 0, row 0: (0.5 sqrt2, 1.5 sqrt2) -> (0.25, 0.75); row 1: (0.25 sqrt2, 2.25 sqrt2)
    # -> (0.1, 0.9). Head 1: key 1 has a zero value vector, so it gets nothing.
    expected = torch.tensor([[[[0.25, 0.75], [0.1, 0.9]], [[1.0, 0.0], [1.0, 0.0]]]])
    torch.testing.assert_close(maps, expected)


class Recorder(Analysis):
    """Keeps every token map it is fed (test helper)."""

    name = "recorder"

    def __init__(self, n_layers: int, n_heads: int, weighting: str):
        super().__init__(n_layers, n_heads)
        self.weighting = weighting
        self.maps: dict[int, torch.Tensor] = {}

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        self.maps[layer] = maps.token.clone()

    def finish(self) -> list[Rows]:
        return []


def test_hooks_in_the_ordinary_pass_match_a_manual_recomputation(tiny_bert: Path) -> None:
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine
    from app.ingest.models import load_encoder

    loaded = load_encoder(tiny_bert)
    inputs = [
        SegmentInput(0, "a", ["The", "cat", "sat", "."], [0, 0, 0, 0]),
        SegmentInput(1, "b", ["Dogs", "bark", "loudly", "at", "night", "."], [0, 0, 0, 1, 1, 1]),
    ]
    aligner = Aligner(loaded.tokenizer, max_tokens=64, overflow="skip", on_unaligned="error")
    segments = list(aligner.encode(inputs, Skipped()))
    engine = AttentionEngine(loaded.model, pad_id=0, batch_size=2)
    by_weight, by_norm = Recorder(2, 4, "weight"), Recorder(2, 4, "norm")
    forwards = []
    handle = loaded.model.register_forward_hook(lambda *args: forwards.append(1))
    engine.run(segments, [by_weight, by_norm])
    handle.remove()
    assert len(forwards) == 1  # one forward pass feeds both weightings

    (batch, model_inputs) = next(engine.batches(segments))
    with torch.no_grad():
        outputs = loaded.model(**model_inputs, output_attentions=True, output_hidden_states=True)
    for layer, module in enumerate(loaded.model.encoder.layer):
        attention = outputs.attentions[layer]
        torch.testing.assert_close(by_weight.maps[layer], attention)
        values = module.attention.self.value(outputs.hidden_states[layer])  # [batch, key, hidden]
        n_heads, width = 4, values.shape[-1]
        per_head = values.view(*values.shape[:2], n_heads, width // n_heads)
        weight = module.attention.output.dense.weight  # [hidden, head * head_dim]
        expected = torch.zeros_like(attention)
        for head in range(n_heads):
            slice_ = weight[:, head * (width // n_heads) : (head + 1) * (width // n_heads)]
            f = per_head[:, :, head] @ slice_.T  # [batch, key, hidden]
            weighted = attention[:, head] * f.norm(dim=-1).unsqueeze(1)
            expected[:, head] = weighted / weighted.sum(-1, keepdim=True)
        valid = batch.token_valid[:, :, None] & batch.token_valid[:, None, :]
        torch.testing.assert_close(
            by_norm.maps[layer] * valid[:, None], expected * valid[:, None], atol=1e-6, rtol=1e-5
        )


@pytest.fixture
def toy(settings, tiny_bert: Path):  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    return settings


def test_weight_and_norm_runs_side_by_side(toy) -> None:  # type: ignore[no-untyped-def]
    summaries = pipeline.analyze(
        toy, ["surface", "syntax"], model="tiny", corpus="toy", config=ExtractConfig(),
        weightings=["weight", "norm"],
    )
    assert [(s.analysis, s.weighting) for s in summaries] == [
        ("surface", "weight"), ("surface", "norm"), ("syntax", "weight"), ("syntax", "norm")
    ]
    variants = pipeline.run_query(
        toy, None,
        sql="select runs.analysis, run_variants.weighting from runs "
        "join run_variants on run_variants.run_id = runs.id order by runs.id",
    )
    assert list(zip(variants["analysis"], variants["weighting"])) == [
        ("surface", "weight"), ("surface", "norm"), ("syntax", "weight"), ("syntax", "norm")
    ]
    weight = pipeline.run_query(toy, "surface_by_layer", model="tiny")
    norm = pipeline.run_query(toy, "surface_by_layer", model="tiny", params={"weighting": "norm"})
    assert not np.allclose(weight["attn_cls"], norm["attn_cls"])
    # Norm maps are renormalised: the shares over [CLS], [SEP], self... stay in [0, 1].
    assert ((norm["attn_cls"] >= 0) & (norm["attn_cls"] <= 1)).all()
    # The default stays the weight-based run; a rerun of both is a no-op.
    again = pipeline.analyze(
        toy, ["surface"], model="tiny", corpus="toy", config=ExtractConfig(),
        weightings=["weight", "norm"],
    )
    assert [s.state for s in again] == ["done", "done"]
    # NAME:WEIGHTING names one run: the same runs as --weighting gives, nothing else added.
    named = pipeline.analyze(
        toy, ["surface", "surface:norm", "syntax:norm", "surface"], model="tiny", corpus="toy",
        config=ExtractConfig(),
    )
    assert [(s.analysis, s.weighting, s.state) for s in named] == [
        ("surface", "weight", "done"), ("surface", "norm", "done"), ("syntax", "norm", "done")
    ]
    for bad, message in (("surface:value", "weighting"), ("gradients:norm", "attention weights only")):
        with pytest.raises(AppError, match=message):
            pipeline.analyze(toy, [bad], model="tiny", corpus="toy", config=ExtractConfig())


def test_projections_are_found_in_bert_and_mpnet_layers() -> None:
    from transformers import MPNetConfig, MPNetModel

    from app.extract.value_norms import projections

    config = MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32)
    model = MPNetModel(config)
    found = projections(model)
    assert len(found) == 2
    assert found[1][0] is model.encoder.layer[1].attention.attn.v
    assert found[1][1] is model.encoder.layer[1].attention.attn.o
