"""Surface statistics against a tiny map computed by hand, and against the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from app.analysis.base import AttentionBatch, LayerMaps
from app.analysis.surface import METRICS, SurfaceAnalysis, _key_mass, segment_statistics
from app.extract.reference import surface_statistics as reference_statistics
from app.types import CLS, NO_PUNCT, PERIOD, SEP, WORD
from tests.test_word_level import ATTENTION


def make_batch(kinds: list[list[int]], puncts: list[list[int]]) -> AttentionBatch:
    """A batch of segments given token kinds and punctuation classes (shorter rows padded)."""
    width = max(len(row) for row in kinds)
    kind = torch.full((len(kinds), width), -1, dtype=torch.int8)
    punct = torch.zeros((len(kinds), width), dtype=torch.int8)
    valid = torch.zeros((len(kinds), width), dtype=torch.bool)
    for row, (k, p) in enumerate(zip(kinds, puncts)):
        kind[row, : len(k)] = torch.tensor(k)
        punct[row, : len(p)] = torch.tensor(p)
        valid[row, : len(k)] = True
    return AttentionBatch(
        segment_ids=np.arange(len(kinds)),
        input_ids=torch.zeros((len(kinds), width), dtype=torch.long),
        token_valid=valid,
        token_kind=kind,
        token_punct=punct,
        token_unit=torch.zeros((len(kinds), width), dtype=torch.long),
        unit_kind=kind,
        unit_word=torch.zeros((len(kinds), width), dtype=torch.long),
        n_words=np.zeros(len(kinds), dtype=np.int64),
    )


# [CLS] a b1 b2 [SEP], where token 3 is a period.
KINDS = [CLS, WORD, WORD, WORD, SEP]
PUNCT = [NO_PUNCT, NO_PUNCT, NO_PUNCT, PERIOD, NO_PUNCT]
# Hand computation from the ATTENTION rows (5 query tokens):
HAND = {
    "attn_cls": (0.2 + 0.1 + 0.5 + 0.3 + 0.0) / 5,  # column 0
    "attn_sep": (0.2 + 0.1 + 0.2 + 0.2 + 1.0) / 5,  # column 4
    "attn_period": (0.2 + 0.1 + 0.1 + 0.0 + 0.0) / 5,  # column 3
    "attn_comma": 0.0,
    "attn_prev": (0.1 + 0.1 + 0.2 + 0.0) / 4,  # A[1,0] A[2,1] A[3,2] A[4,3]
    "attn_next": (0.2 + 0.4 + 0.1 + 0.2) / 4,  # A[0,1] A[1,2] A[2,3] A[3,4]
    "attn_self": (0.2 + 0.3 + 0.1 + 0.0 + 1.0) / 5,
    "sep_to_sep": 1.0,  # the only [SEP] puts all its attention on itself
    # Row entropies (nats): ln 5; 3(.1 ln 10) + .3 ln(1/.3) + .4 ln(1/.4); ...; 0 for [SEP].
    "entropy": (math.log(5) + 1.418484 + 1.359237 + 1.366159 + 0.0) / 5,
    "cls_entropy": math.log(5),
    "uniform_entropy": math.log(5),
}
TOL = 1e-5  # float32 arithmetic on one-decimal inputs; entropies rounded to 6 decimals


def test_every_metric_against_hand_computation() -> None:
    batch = make_batch([KINDS], [PUNCT])
    stats = segment_statistics(torch.tensor([[ATTENTION]]), batch)
    assert set(stats) == set(METRICS)
    for metric, expected in HAND.items():
        values, contributes = stats[metric]
        assert bool(contributes[0]), metric
        assert values[0, 0].item() == pytest.approx(expected, abs=TOL), metric


def test_padded_second_segment_and_segment_weighting() -> None:
    # Segment 2: [CLS] x [SEP] with uniform attention, padded to 5 tokens.
    third = 1 / 3
    uniform = torch.zeros(5, 5)
    uniform[:3, :3] = third
    attention = torch.stack([torch.tensor(ATTENTION), uniform]).unsqueeze(1)
    batch = make_batch([KINDS, [CLS, WORD, SEP]], [PUNCT, [NO_PUNCT] * 3])
    analysis = SurfaceAnalysis(n_layers=1, n_heads=1)
    analysis.update(batch, 0, LayerMaps(token=attention, word=None))
    grids = analysis.grids()
    # Each segment weighs the same: the mean of the two per-segment values.
    assert grids["attn_cls"][0, 0] == pytest.approx((HAND["attn_cls"] + third) / 2, abs=TOL)
    assert grids["attn_prev"][0, 0] == pytest.approx((HAND["attn_prev"] + third) / 2, abs=TOL)
    assert grids["entropy"][0, 0] == pytest.approx((HAND["entropy"] + math.log(3)) / 2, abs=TOL)
    assert grids["uniform_entropy"][0, 0] == pytest.approx((math.log(5) + math.log(3)) / 2, abs=TOL)


def test_matches_reference_on_random_maps_and_rows_are_long_format() -> None:
    generator = torch.Generator().manual_seed(1)
    kinds = [CLS] + [WORD] * 5 + [SEP] + [WORD] * 3 + [SEP]
    punct = [NO_PUNCT] * 5 + [PERIOD] + [NO_PUNCT] * 5
    attention = torch.randn(1, 3, 11, 11, generator=generator).softmax(-1)
    stats = segment_statistics(attention, make_batch([kinds], [punct]))
    expected = reference_statistics(attention[0].double().numpy(), np.array(kinds), np.array(punct))
    for metric in METRICS:
        np.testing.assert_allclose(
            stats[metric][0][0].numpy(), expected[metric], rtol=1e-5, atol=1e-6, err_msg=metric
        )

    analysis = SurfaceAnalysis(n_layers=2, n_heads=3)
    for layer in range(2):
        analysis.update(make_batch([kinds], [punct]), layer, LayerMaps(token=attention, word=None))
    (rows,) = analysis.finish()
    assert rows.table == "head_metrics"
    assert len(rows) == 2 * 3 * len(METRICS)
    assert set(rows.columns) == {"layer", "head", "metric", "value", "n"}


def test_state_dict_round_trip_resumes_exactly() -> None:
    batch = make_batch([KINDS], [PUNCT])
    maps = LayerMaps(token=torch.tensor([[ATTENTION]]), word=None)
    first = SurfaceAnalysis(1, 1)
    first.update(batch, 0, maps)
    second = SurfaceAnalysis(1, 1)
    second.load_state_dict({key: value.copy() for key, value in first.state_dict().items()})
    first.update(batch, 0, maps)
    second.update(batch, 0, maps)
    for metric in METRICS:
        assert first.grids()[metric] == pytest.approx(second.grids()[metric])


@pytest.mark.parametrize("density", [0.0, 0.1, 1.0])
def test_key_mass_over_selected_keys_is_the_full_matmul(density: float) -> None:
    """Gathering only the keys some target selects gives the full matmul's sums: segments
    with none selected, a few, or every key (the gather is then the whole map)."""
    generator = torch.Generator().manual_seed(3)
    attention = torch.rand(5, 3, 9, 9, generator=generator).softmax(-1)
    masks = (torch.rand(5, 9, 4, generator=generator) < density).float()
    masks[1] = 0  # a segment that selects nothing beside ones that do
    full = attention @ masks.unsqueeze(1)
    assert torch.allclose(_key_mass(attention, masks), full, rtol=0, atol=1e-6)
    assert _key_mass(attention, masks).shape == full.shape


def test_a_nan_row_keeps_a_nan_entropy_and_zeros_count_as_nothing() -> None:
    """0 log 0 = 0 (padding keys), but a row the encoder broke (all NaN) is not a peaked head."""
    attention = torch.tensor([[[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [float("nan")] * 3]]])
    batch = make_batch([[CLS, WORD, SEP]], [[NO_PUNCT] * 3])
    entropy = segment_statistics(attention, batch)["entropy"][0]
    assert torch.isnan(entropy).all()  # the mean over queries includes the broken row
    fine = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]])  # entropies log 2 and 0
    entropy = segment_statistics(fine, make_batch([[CLS, WORD]], [[NO_PUNCT] * 2]))["entropy"][0]
    assert entropy.item() == pytest.approx(math.log(2) / 2)
