"""Gradients of the masked-LM loss w.r.t. attention, on a tiny random BertForMaskedLM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app import pipeline
from app.analysis.importance import TARGETS, mask_tokens
from app.config import ExtractConfig
from app.errors import AnalysisUnavailable
from tests.conftest import FIXTURES
from tests.test_surface import make_batch


def test_gradient_analysis_gives_finite_nonzero_values_per_layer_head_and_target(
    settings, tiny_bert_mlm: Path
) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny-mlm", str(tiny_bert_mlm))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    (summary,) = pipeline.analyze(
        settings, ["gradients"], model="tiny-mlm", corpus="toy", config=ExtractConfig()
    )
    rows = pipeline.run_query(
        settings,
        None,
        sql="select layer, head, metric, value from head_metrics where run_id = :r",
        params={"r": summary.run_id},
    )
    assert len(rows) == 2 * 4 * len(TARGETS)
    assert set(rows["metric"]) == {f"grad_{target}" for target in TARGETS}
    values = rows["value"].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (values > 0).all()


def test_an_encoder_without_mlm_head_is_refused_clearly(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    pipeline.ingest_model(settings, "tiny", str(tiny_bert))
    pipeline.ingest_corpus(settings, "toy", fmt="conllu", path=str(FIXTURES / "toy.conllu"))
    with pytest.raises(AnalysisUnavailable, match="no masked-LM head"):
        pipeline.analyze(
            settings, ["gradients"], model="tiny", corpus="toy", config=ExtractConfig()
        )
    runs = pipeline.run_query(settings, None, sql="select count(*) as n from runs")
    assert runs["n"][0] == 0  # refused before any run was opened


def test_masking_depends_on_the_segment_not_the_batch() -> None:
    kinds = [[1, 0, 0, 0, 0, 0, 0, 0, 2]] * 2
    batch = make_batch(kinds, [[0] * 9] * 2)
    batch.input_ids = torch.arange(18).view(2, 9) + 1000
    batch.segment_ids = np.array([7, 8])
    masked, labels = mask_tokens(batch, mask_id=103, rate=0.3, seed=0)
    alone = make_batch(kinds[:1], [[0] * 9])
    alone.input_ids = batch.input_ids[1:].clone()
    alone.segment_ids = np.array([8])
    masked_alone, _ = mask_tokens(alone, mask_id=103, rate=0.3, seed=0)
    assert torch.equal(masked[1], masked_alone[0])
    assert int((labels[0] != -100).sum()) == 2  # round(0.3 * 7 word tokens)
    assert (masked[:, [0, 8]] != 103).all()  # special tokens are never masked
