"""Jensen-Shannon head distances and MDS, against hand-made distributions and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from app.analysis.base import AttentionBatch, LayerMaps
from app.analysis.clustering import (
    QUERY_STRIDE,
    HeadClustering,
    js_divergence_sums,
    mds_coordinates,
    sampled_queries,
)


def test_identical_heads_are_at_distance_zero_and_the_matrix_is_symmetric() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 2, 5, 5, generator=generator).softmax(-1)  # [head_all, batch, query, key]
    maps = torch.cat([maps, maps[:1]])  # head 3 is a copy of head 0
    sums = js_divergence_sums(maps, torch.ones(2, 5, dtype=torch.bool)).numpy()
    assert sums[0, 3] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(sums, sums.T)
    assert np.all(np.diag(sums) == 0) and np.all(sums[np.triu_indices(4, 1)][[0, 1, 3, 4]] > 0)


def test_against_scipy_on_hand_made_rows_and_padding_is_ignored() -> None:
    p = torch.tensor([0.5, 0.5, 0.0, 0.0])
    q = torch.tensor([0.0, 0.5, 0.5, 0.0])
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    # Two query rows: (p vs q) and (r vs q); a third, padding row must not count.
    head_a = torch.stack([p, r, torch.full((4,), 0.25)]).unsqueeze(0)  # [batch 1, query 3, key 4]
    head_b = torch.stack([q, q, r]).unsqueeze(0)
    valid = torch.tensor([[True, True, False]])
    sums = js_divergence_sums(torch.stack([head_a, head_b]), valid).numpy()
    # scipy's jensenshannon is the square root of the divergence (natural log by default).
    expected = jensenshannon(p.numpy(), q.numpy()) ** 2 + jensenshannon(r.numpy(), q.numpy()) ** 2
    assert sums[0, 1] == pytest.approx(expected, rel=1e-5)
    # By hand: JS(p, q) = 0.5 ln 2 (half the mass is shared).
    assert jensenshannon(p.numpy(), q.numpy()) ** 2 == pytest.approx(0.5 * np.log(2))


def test_mds_of_a_hand_made_distance_matrix_recovers_it() -> None:
    # A 3-4-5 right triangle plus its hypotenuse midpoint: exactly embeddable in 2-D.
    points = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [1.5, 2.0]])
    distances = np.linalg.norm(points[:, None] - points[None], axis=-1)
    coordinates, stress = mds_coordinates(distances)
    recovered = np.linalg.norm(coordinates[:, None] - coordinates[None], axis=-1)
    np.testing.assert_allclose(recovered, distances, atol=1e-3)
    assert stress < 1e-3
    again, _ = mds_coordinates(distances)
    np.testing.assert_allclose(again, coordinates)  # deterministic


def test_query_sample_rotates_with_the_segment_and_stride_one_is_every_token() -> None:
    valid = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    sample = sampled_queries(valid, np.array([8, 3]), 4)
    # Segment 8: offset 0 -> positions 0 and 4; segment 3: offset 3 -> position 1 (5 is padding).
    assert sample.tolist() == [
        [True, False, False, False, True, False],
        [False, True, False, False, False, False],
    ]
    assert torch.equal(sampled_queries(valid, np.array([8, 3]), 1), valid)


def test_accumulator_averages_the_sampled_rows_only() -> None:
    generator = torch.Generator().manual_seed(1)
    maps = torch.randn(2, 1, 2, 5, 5, generator=generator).softmax(-1)  # [layer, batch, head, q, k]
    batch = AttentionBatch(
        segment_ids=np.array([0]), input_ids=torch.zeros(1, 5), token_valid=torch.ones(1, 5, dtype=torch.bool),
        token_kind=torch.zeros(1, 5), token_punct=torch.zeros(1, 5), token_unit=torch.zeros(1, 5),
        unit_kind=torch.zeros(1, 5), unit_word=torch.zeros(1, 5), n_words=np.array([3]),
    )
    for stride, rows in ((1, [0, 1, 2, 3, 4]), (2, [0, 2, 4])):
        accumulator = HeadClustering(2, 2, query_stride=stride)
        for layer in range(2):
            accumulator.update(batch, layer, LayerMaps(token=maps[layer], word=None))
        accumulator.end_batch(batch)
        heads = maps.transpose(1, 2).flatten(0, 1)[:, :, rows]  # [head_all, batch, row, key]
        expected = js_divergence_sums(heads, torch.ones(1, len(rows), dtype=torch.bool)).numpy() / len(rows)
        np.testing.assert_allclose(accumulator.mean_divergences(), expected, rtol=1e-6)


def test_the_query_sample_is_part_of_a_clustering_run_identity() -> None:
    """A run averaged over every token must never be taken for a sampled one (or back)."""
    from app.analysis.registry import ANALYSES
    from app.config import ExtractConfig
    from app.pipeline.analyze import _run_config

    sampled = _run_config(ExtractConfig(), ANALYSES["clustering"], "weight", "mlm")
    assert sampled.option("query_stride", None) == QUERY_STRIDE
    before_sampling = _run_config(ExtractConfig(), ANALYSES["surface"], "weight", "mlm")
    assert before_sampling.config_hash() != sampled.config_hash()
    assert _run_config(ExtractConfig(), ANALYSES["surface"], "weight", "mlm").options == ()
