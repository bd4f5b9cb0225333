"""Jensen-Shannon head distances and MDS, against hand-made distributions and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from app.analysis.clustering import js_divergence_sums, mds_coordinates


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
