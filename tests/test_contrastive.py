"""Gradients under the sentence encoders' contrastive objective."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from app import pipeline
from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows
from app.analysis.contrastive import contrastive_loss, pool
from app.analysis.importance import TARGETS
from app.config import ExtractConfig
from app.errors import AnalysisUnavailable
from app.extract.contrastive import read_objective
from app.types import SegmentInput
from tests.conftest import FIXTURES, _minilm_dir


def test_two_pair_loss_by_hand() -> None:
    # Anchor 1 is mean-pooled from (1, 0), (3, 0) and a padding token that must not count.
    hidden = torch.tensor([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]], [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    anchors = pool(hidden, valid, "mean")  # (2, 0) and (0, 1)
    positives = torch.tensor([[5.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    # cos: a1.b1 = 1, a1.b2 = 1/sqrt2, a2.b1 = 0, a2.b2 = 1/sqrt2; scale 20.
    # CE_1 = log(1 + e^(20/sqrt2 - 20)); CE_2 = log(1 + e^(0 - 20/sqrt2)).
    expected = math.log1p(math.exp(20 / math.sqrt(2) - 20)) + math.log1p(math.exp(-20 / math.sqrt(2)))
    loss = contrastive_loss(anchors, positives, scale=20.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pooling_is_read_from_the_sentence_transformers_config(tmp_path: Path) -> None:
    objective = read_objective(_minilm_dir())
    assert (objective.pooling, objective.scale) == ("mean", 20.0)
    assert objective.source.endswith("config.json")
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert read_objective(tmp_path).pooling == "cls"
    assert read_objective(tmp_path / "nothing").source == "defaults"


class GradRecorder(Analysis):
    """Keeps the gradient maps of every (side, layer) it is fed (test helper)."""

    name = "grad-recorder"

    def __init__(self) -> None:
        super().__init__(2, 4)
        self.grads: list[dict[int, torch.Tensor]] = [{}]

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.grad is not None
        self.grads[-1][layer] = maps.grad.clone()

    def end_batch(self, batch: AttentionBatch) -> None:
        self.grads.append({})

    def finish(self) -> list[Rows]:
        return []


def test_gradient_of_one_attention_weight_matches_a_finite_difference(tiny_bert: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from transformers.models.bert import modeling_bert

    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine
    from app.extract.contrastive import encode_pairs, pair_loss, run_contrastive
    from app.ingest.models import load_encoder

    loaded = load_encoder(tiny_bert)
    model = loaded.model.double()  # float64: the finite difference is exact to ~1e-9
    aligner = Aligner(loaded.tokenizer, max_tokens=64, overflow="skip", on_unaligned="error")
    inputs = [
        SegmentInput(0, "a", ["The", "cat", "sat", ".", "It", "slept", "."], [0, 0, 0, 0, 1, 1, 1]),
        SegmentInput(1, "b", ["Dogs", "bark", ".", "Birds", "sing", "loudly"], [0, 0, 0, 1, 1, 1]),
        SegmentInput(2, "c", ["Rain", "fell", "."], [0, 0, 0]),  # unpaired: skipped
    ]
    skipped = Skipped()
    pairs = encode_pairs(aligner, inputs, skipped, corpus="toy")
    assert [pair.segment_id for pair in pairs] == [0, 1] and skipped.counts == {"not a pair": 1}
    engine = AttentionEngine(model, pad_id=0, batch_size=2)
    objective = read_objective(tiny_bert)
    recorder = GradRecorder()
    run_contrastive(engine, pairs, [recorder], objective=objective, chunk=1)  # one text per backward
    anchor_grads = recorder.grads[0]  # anchors are fed first, then positives

    # Perturb one attention weight of the anchors' forward (layer 1, pair 0, head 2,
    # query 1, key 3) inside the model, and difference the loss.
    original = modeling_bert.eager_attention_forward
    state = {"eps": 0.0, "calls": 0}

    def perturbed(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):  # type: ignore[no-untyped-def]
        output, weights = original(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
        state["calls"] += 1
        if state["calls"] == 2:  # layer 1 of the first (anchor) forward
            bumped = weights.clone()
            bumped[0, 2, 1, 3] += state["eps"]
            output = torch.matmul(bumped, value).transpose(1, 2).contiguous()
        return output, weights

    monkeypatch.setattr(modeling_bert, "eager_attention_forward", perturbed)

    def loss_at(eps: float) -> float:
        state.update(eps=eps, calls=0)
        with torch.no_grad():
            loss, _ = pair_loss(engine, [p.anchor for p in pairs], [p.positive for p in pairs], objective)
        return float(loss)

    eps = 1e-6
    finite_difference = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    stored = float(anchor_grads[1][0, 2, 1, 3])
    assert abs(finite_difference) > 1e-6  # a weight that matters, so the check can fail
    # float32 storage of a float64 gradient, plus O(eps^2) difference error.
    assert stored == pytest.approx(finite_difference, rel=1e-4, abs=1e-7)


def test_contrastive_gradients_run_on_an_encoder_without_mlm_head(settings, tiny_bert: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("The cat sat on the mat .\tIt slept all day .\nDogs bark .\tBirds sing loudly .\n")
    pipeline.ingest_corpus(settings, "pairs", fmt="text", path=str(pairs))
    (summary,) = pipeline.analyze(
        settings, ["gradients"], model="tiny", corpus="pairs", config=ExtractConfig(),
        objective="contrastive",
    )
    first = pipeline.run_query(
        settings, None, sql="select layer, head, metric, value from head_metrics where run_id = :r order by all",
        params={"r": summary.run_id},
    )
    rows = pipeline.run_query(
        settings, "gradients_by_layer", model="tiny", params={"objective": "contrastive"}
    )
    assert len(rows) == 2 and rows[[f"grad_{t}" for t in TARGETS]].notna().all().all()
    variant = pipeline.run_query(
        settings, None, sql="select weighting, objective from run_variants where run_id = :r",
        params={"r": summary.run_id},
    )
    assert (variant["weighting"][0], variant["objective"][0]) == ("weight", "contrastive")
    # A token cut of the checkpoints (what the CLI sets) would split the two pairs into two
    # groups of one, changing the loss: contrastive passes keep whole groups, same metrics.
    (cut,) = pipeline.analyze(
        settings, ["gradients"], model="tiny", corpus="pairs", config=ExtractConfig(chunk_tokens=1),
        objective="contrastive", force=True,
    )
    metrics = "select layer, head, metric, value from head_metrics where run_id = :r order by all"
    again = pipeline.run_query(settings, None, sql=metrics, params={"r": cut.run_id})
    assert cut.run_id == summary.run_id and again.equals(first)
    # A corpus of single sentences has no pairs: refused with what to use instead.
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    with pytest.raises(AnalysisUnavailable, match="paragraph pairs"):
        pipeline.analyze(
            settings, ["gradients"], model="tiny", corpus="toy", config=ExtractConfig(),
            objective="contrastive",
        )
