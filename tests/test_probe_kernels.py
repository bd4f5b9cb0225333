"""The probes' chunked kernels against the plain tensor code they replace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app.analysis import probe_kernels
from app.analysis.probe_kernels import map_mix, pair_mlp, plain_map_mix, plain_pair_mlp
from app.analysis.probe_models import (
    CollatedSet,
    ProbeExample,
    both_layouts,
    distance_features,
    distance_table,
)

# Float32 sums in another order (chunked partial sums, numpy's tanh within 1 ulp of torch's):
# relative differences of about 1e-7, so 1e-5 holds with room; atol covers gradients near 0.
RTOL, ATOL = 1e-5, 1e-6


def test_map_mix_by_hand() -> None:
    coeff = torch.tensor([[[[1.0, 2.0]]]], requires_grad=True)  # [b=1, i=1, c=1, map=2]
    maps = torch.tensor([[[[1.0, 0.0], [0.5, 0.25]]]], dtype=torch.float16)  # [1, 1, map, j=2]
    out = map_mix(coeff, maps)
    assert out.dtype == torch.float32
    assert out.tolist() == [[[[1 * 1 + 2 * 0.5, 1 * 0 + 2 * 0.25]]]]
    out.sum().backward()  # d/d coeff_m = sum_j maps[m, j]
    assert coeff.grad is not None and coeff.grad.tolist() == [[[[1.0, 0.75]]]]


@pytest.mark.parametrize("layout", ["contiguous", "transposed view", "float32", "two layouts"])
def test_map_mix_matches_the_plain_matmul(layout: str) -> None:
    g = torch.Generator().manual_seed(0)
    size, width, n_coeff, n_maps = 5, 7, 2, 6
    maps = (torch.rand(size, width, n_maps, width, generator=g).half(),)
    if layout == "transposed view":
        maps = (maps[0].permute(0, 3, 2, 1),)
    elif layout == "float32":
        maps = (maps[0].float(),)
    elif layout == "two layouts":  # stacked along the map axis: by_query then by_key
        maps = (maps[0], maps[0].permute(0, 3, 2, 1))
    coeff = torch.randn(size, width, n_coeff, n_maps * len(maps), generator=g, requires_grad=True)
    grad_out = torch.randn(size, width, n_coeff, width, generator=g)
    expected = plain_map_mix(coeff, *maps)
    (expected_grad,) = torch.autograd.grad(expected, coeff, grad_out)
    got = map_mix(coeff, *maps)
    (got_grad,) = torch.autograd.grad(got, coeff, grad_out)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(got_grad, expected_grad, rtol=RTOL, atol=ATOL)


def test_map_mix_backward_after_another_batch_reused_the_buffer() -> None:
    """Two forwards, then the first one's backward: its maps are widened again."""
    g = torch.Generator().manual_seed(4)
    first, second = (torch.rand(2, 3, 4, 3, generator=g).half() for _ in range(2))
    coeff = torch.randn(2, 3, 1, 4, generator=g, requires_grad=True)
    out = map_mix(coeff, first)
    map_mix(coeff, second)  # overwrites the shared float32 buffer
    (got,) = torch.autograd.grad(out.sum(), coeff)
    (expected,) = torch.autograd.grad(plain_map_mix(coeff, first).sum(), coeff)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)


def test_map_mix_takes_an_expanded_weight_and_refuses_maps_with_gradients() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(3, 4, 5, 4, generator=g).half()
    weight = torch.randn(5, generator=g, requires_grad=True)  # one weight shared by every row
    coeff = weight.expand(3, 4, 1, 5)
    (got,) = torch.autograd.grad(map_mix(coeff, maps).sum(), weight)
    (expected,) = torch.autograd.grad(plain_map_mix(coeff, maps).sum(), weight)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="no gradient"):
        map_mix(coeff, maps.float().requires_grad_())


def _pair_inputs(seed: int, size: int = 3, width: int = 6, hidden: int = 16, n_rows: int = 5):
    g = torch.Generator().manual_seed(seed)
    dependent = torch.randn(size, width, hidden, generator=g, requires_grad=True)
    candidate = torch.randn(size, 1 + width, hidden, generator=g, requires_grad=True)
    distance = torch.randn(size, n_rows, hidden, generator=g, requires_grad=True)
    index = torch.randint(0, n_rows, (size, width, 1 + width), generator=g)
    out_weight = torch.randn(1, hidden, generator=g, requires_grad=True)
    out_bias = torch.randn(1, generator=g, requires_grad=True)
    grad_out = torch.randn(size, width, 1 + width, generator=g)
    grad_out[0, :, 3] = 0.0  # a masked candidate: the fused backward skips such pairs
    grad_out[2, 4:] = 0.0  # padded words
    return (dependent, candidate, distance, index, out_weight, out_bias), grad_out


@pytest.mark.parametrize(("fused", "chunk_bytes"), [(True, None), (False, 1), (False, 20_000), (False, 1 << 20)])
def test_pair_mlp_matches_the_plain_mlp(fused: bool, chunk_bytes: int | None) -> None:
    inputs, grad_out = _pair_inputs(2)
    dependent, candidate, distance, _, out_weight, out_bias = inputs
    trained = (dependent, candidate, distance, out_weight, out_bias)
    expected = plain_pair_mlp(*inputs)
    expected_grads = torch.autograd.grad(expected, trained, grad_out)
    got = pair_mlp(*inputs, chunk_bytes=chunk_bytes, fused=fused)
    got_grads = torch.autograd.grad(got, trained, grad_out)
    torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    for name, value, reference in zip(("dependent", "candidate", "distance", "out_weight", "out_bias"),
                                      got_grads, expected_grads):
        torch.testing.assert_close(value, reference, rtol=RTOL, atol=ATOL, msg=name)


def test_the_fused_pair_mlp_leaves_torchs_thread_count_as_set() -> None:
    # A fresh interpreter: numba's OpenMP pool starts at the first fused call of a process.
    script = (
        "import torch; torch.set_num_threads(1)\n"
        "from app.analysis.probe_kernels import pair_mlp\n"
        "x = torch.randn(2, 3, 4, requires_grad=True)\n"
        "pair_mlp(x, torch.randn(2, 4, 4), torch.randn(2, 6, 4), torch.zeros(2, 3, 4, dtype=torch.long),\n"
        "         torch.randn(1, 4), torch.randn(1), fused=True).sum().backward()\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    assert done.stdout.split() == ["1"]


def test_the_fused_pair_mlp_refuses_what_its_loops_would_read_past() -> None:
    (dependent, candidate, distance, index, out_weight, out_bias), _ = _pair_inputs(5)
    with pytest.raises(ValueError, match="rows outside"):
        pair_mlp(dependent, candidate, distance, index + distance.shape[1], out_weight, out_bias, fused=True)
    with pytest.raises(ValueError, match="shapes"):
        pair_mlp(dependent, candidate[:, :-1], distance, index, out_weight, out_bias, fused=True)


def test_the_fused_tanh_is_within_float32_rounding_of_the_exact_one() -> None:
    from app.analysis.fused_pair_mlp import tanh

    x = np.concatenate([np.linspace(-12, 12, 200_001), np.geomspace(1e-8, 1e-2, 1001)]).astype(np.float32)
    x = np.concatenate([x, -x])
    got, exact = tanh(x), np.tanh(x.astype(np.float64))
    error = np.abs(got - exact)
    assert error.max() <= 3e-7  # 2.5 float32 ulps of 1 (saturated: 1 - 2.4e-7)
    assert np.all(error <= 4e-7 * np.abs(exact))  # small x: relative
    assert np.array_equal(got, -tanh(-x))  # odd, and saturates at +-1 without overshooting
    assert np.abs(got).max() <= 1.0


def test_the_fused_pair_mlp_gives_the_same_bits_at_any_thread_count() -> None:
    inputs, grad_out = _pair_inputs(4, size=8, width=9, hidden=32)
    trained = (inputs[0], inputs[1], inputs[2], inputs[4], inputs[5])
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = pair_mlp(*inputs, fused=True)
            results.append((out, *torch.autograd.grad(out, trained, grad_out)))
    finally:
        torch.set_num_threads(before)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_pair_mlp_by_hand() -> None:
    # One pair, hidden 2: tanh(0.5 + 0 + 0.25) = tanh(0.75), tanh(-1 + 1 + 0) = 0.
    dependent = torch.tensor([[[0.5, -1.0]]])
    candidate = torch.tensor([[[0.0, 1.0]]])
    distance = torch.tensor([[[9.0, 9.0], [0.25, 0.0]]])  # the pair reads row 1
    out = pair_mlp(dependent, candidate, distance, torch.tensor([[[1]]]), torch.tensor([[2.0, 3.0]]),
                   torch.tensor([0.25]))
    assert out.item() == pytest.approx(2 * np.tanh(0.75) + 3 * 0.0 + 0.25, rel=1e-6)


def test_distance_table_rows_are_the_distance_features() -> None:
    n_words = torch.tensor([4, 2, 1])
    features, index = distance_table(n_words, 4)
    assert features.shape == (3, 8, 8) and index.shape == (3, 4, 5)
    sentence = torch.arange(3).view(3, 1, 1)
    assert torch.equal(features[sentence, index], distance_features(n_words, 4))
    # Sentence 0, word 2 -> candidate word 3 (key 3, one ahead): (3 - 2) / 4 ahead, offset +1.
    assert features[0, index[0, 1, 3]].tolist() == [0.25, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]


def test_unwidened_batches_hold_the_same_values_in_float16() -> None:
    rng = np.random.default_rng(3)
    examples = []
    for n in (3, 5, 4):
        maps = rng.dirichlet(np.ones(n + 2), size=(4, n + 2)).astype(np.float16)
        examples.append(ProbeExample(maps=maps, heads=np.zeros(n, dtype=np.int64), relations=("dep",) * n,
                                     vectors=rng.normal(size=(n, 3)).astype(np.float32)))
    collated = CollatedSet(examples, "attn_glove", np.arange(4), torch.device("cpu"))
    wide, narrow = collated.batch(np.array([1, 0, 2])), collated.batch(np.array([1, 0, 2]), widen=False)
    assert narrow.by_query is not None and narrow.by_key is not None
    assert narrow.by_query.dtype == narrow.by_key.dtype == torch.float16
    assert torch.equal(narrow.by_query.float(), wide.by_query)
    assert torch.equal(narrow.by_key.float(), wide.by_key)
    # by_key[b, i, map, j] is alpha^map[j, i]: word 2 -> word 1 of sentence 1 in map 3
    # (units are [CLS], words, [SEP]: word w is unit w).
    assert narrow.by_key[0, 0, 3, 1] == torch.tensor(examples[1].maps[3, 2, 1])
    query, key = both_layouts(narrow.by_query, widen=False)
    assert key.data_ptr() == query.data_ptr() and torch.equal(key, narrow.by_key)  # a view


def test_chunks_cover_every_row_once() -> None:
    for size, width, row_elements, chunk_bytes in ((4, 5, 3, 1), (4, 5, 3, 4 * 3 * 7), (4, 5, 3, 1 << 20)):
        seen = torch.zeros(size, width, dtype=torch.int64)
        for rows, cols in probe_kernels._chunks(size, width, row_elements, chunk_bytes):
            seen[rows, cols] += 1
        assert bool((seen == 1).all())
