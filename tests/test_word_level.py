"""Token -> word conversion: a hand-computed example, padding, and the reference oracle."""

from __future__ import annotations

import numpy as np
import torch

from app.extract.reference import word_level as reference_word_level
from app.extract.word_level import pooling_matrices, to_word_level

# [CLS] a b1 b2 [SEP]: word "b" is split into two pieces (query side and key side).
TOKEN_UNIT = [0, 1, 2, 2, 3]
ATTENTION = [
    [0.2, 0.2, 0.2, 0.2, 0.2],  # [CLS]
    [0.1, 0.3, 0.4, 0.1, 0.1],  # a
    [0.5, 0.1, 0.1, 0.1, 0.2],  # b1
    [0.3, 0.3, 0.2, 0.0, 0.2],  # b2
    [0.0, 0.0, 0.0, 0.0, 1.0],  # [SEP]
]
# By hand: "to b" sums columns b1 + b2; "from b" averages rows b1 and b2
# (b1 -> [.5, .1, .2, .2], b2 -> [.3, .3, .2, .2], mean [.4, .2, .2, .2]).
EXPECTED = [
    [0.2, 0.2, 0.4, 0.2],
    [0.1, 0.3, 0.5, 0.1],
    [0.4, 0.2, 0.2, 0.2],
    [0.0, 0.0, 0.0, 1.0],
]
ATOL = 1e-6  # float32 matmuls of numbers with one decimal


def convert(attention: torch.Tensor, token_unit: torch.Tensor, n_units: int) -> torch.Tensor:
    """The tensor code's conversion; the compiled loop's must be the same bits."""
    words = to_word_level(attention, token_unit, n_units)
    assert torch.equal(to_word_level(attention, token_unit, n_units, fused=True), words)
    return words


def test_scatter_conversion_equals_the_pooling_matrix_products() -> None:
    generator = torch.Generator().manual_seed(3)
    token_unit = torch.tensor([[0, 1, 1, 2, 3, 3, 3, 4], [0, 1, 2, 2, 3, 5, 5, 5]])  # row 2 padded
    attention = torch.randn(2, 3, 8, 8, generator=generator).softmax(-1)
    attention[1, :, :, 5:] = 0  # padding keys carry no weight
    sum_to, mean_from = pooling_matrices(token_unit, 5)
    expected = mean_from.unsqueeze(1) @ attention @ sum_to.unsqueeze(1)
    np.testing.assert_allclose(convert(attention, token_unit, 5).numpy(), expected.numpy(), atol=1e-6)


def test_hand_computed_example_with_split_word() -> None:
    attention = torch.tensor([[ATTENTION]])  # [batch 1, head 1, 5, 5]
    words = convert(attention, torch.tensor([TOKEN_UNIT]), 4)
    assert words.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(words[0, 0].numpy(), EXPECTED, atol=ATOL)
    np.testing.assert_allclose(words.sum(-1).numpy(), 1.0, atol=ATOL)


def test_padding_does_not_leak_into_a_shorter_row() -> None:
    # Row 2 is the same sentence padded by two tokens (unit index n_units marks padding).
    padded = torch.zeros(7, 7)
    padded[:5, :5] = torch.tensor(ATTENTION)
    attention = torch.stack([torch.eye(7) / 1.0, padded]).unsqueeze(1)  # [2, 1, 7, 7]
    token_unit = torch.tensor([[0, 1, 2, 3, 4, 5, 6], TOKEN_UNIT + [7, 7]])
    words = convert(attention, token_unit, 7)
    np.testing.assert_allclose(words[1, 0, :4, :4].numpy(), EXPECTED, atol=ATOL)
    assert float(words[1, 0, 4:].abs().sum()) == 0.0
    assert float(words[1, 0, :, 4:].abs().sum()) == 0.0


def test_matches_per_sentence_reference_on_random_maps() -> None:
    generator = torch.Generator().manual_seed(0)
    token_unit = torch.tensor([0, 1, 1, 1, 2, 3, 3, 4, 5, 5, 6])  # three split words
    logits = torch.randn(3, 11, 11, generator=generator)  # [head, query, key]
    attention = logits.softmax(-1)
    words = convert(attention.unsqueeze(0), token_unit.unsqueeze(0), 7)[0]
    expected = reference_word_level(attention.double().numpy(), token_unit.numpy())
    np.testing.assert_allclose(words.numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(words.sum(-1).numpy(), 1.0, atol=1e-5)


def aligner_layout(generator: torch.Generator, size: int, tokens: int) -> tuple[torch.Tensor, int]:
    """Rows the way the aligner numbers them: units 0, 1, ... over consecutive tokens (some
    words split into pieces), then padding, which carries the batch's unit count."""
    rows, n_units = [], 0
    for _ in range(size):
        length = int(torch.randint(2, tokens + 1, (1,), generator=generator))
        starts_unit = torch.rand(length, generator=generator) > 0.35
        starts_unit[0] = True
        units = torch.cumsum(starts_unit.long(), 0) - 1
        rows.append(units)
        n_units = max(n_units, int(units[-1]) + 1)
    token_unit = torch.full((size, tokens), n_units, dtype=torch.long)
    for row, units in enumerate(rows):
        token_unit[row, : len(units)] = units
    return token_unit, n_units


def test_the_compiled_conversion_is_the_tensor_codes_bits() -> None:
    generator = torch.Generator().manual_seed(5)
    token_unit, n_units = aligner_layout(generator, size=6, tokens=24)
    attention = torch.randn(6, 4, 24, 24, generator=generator).masked_fill(
        (token_unit == n_units)[:, None, None, :], float("-inf")).softmax(-1)
    from app.extract.fused_word_level import to_word_level as compiled

    fused = compiled(attention, token_unit, n_units)  # not the dispatch: it could fall back
    assert fused is not None
    tensors = to_word_level(attention, token_unit, n_units, fused=False)
    assert fused.dtype == tensors.dtype and fused.shape == tensors.shape
    assert torch.equal(fused, tensors)
    assert torch.equal(to_word_level(attention, token_unit, n_units, fused=True), fused)


def test_a_layout_out_of_token_order_goes_to_the_tensor_code() -> None:
    from app.extract.fused_word_level import to_word_level as compiled

    attention = torch.tensor([[ATTENTION]])
    shuffled = torch.tensor([[0, 2, 1, 1, 3]])  # units not numbered in token order
    assert compiled(attention, shuffled, 4) is None
    assert torch.equal(to_word_level(attention, shuffled, 4, fused=True),
                       to_word_level(attention, shuffled, 4, fused=False))
    assert compiled(attention, torch.tensor([TOKEN_UNIT]), 4) is not None  # the aligner's layout


def test_the_compiled_loop_zeroes_its_own_output() -> None:
    """The loop's output comes from np.empty: every (segment, head) slab, padding included,
    must be written by the loop itself, whatever the memory held before."""
    from app.extract import fused_word_level

    generator = torch.Generator().manual_seed(7)
    token_unit, n_units = aligner_layout(generator, size=5, tokens=20)
    attention = torch.randn(5, 3, 20, 20, generator=generator).masked_fill(
        (token_unit == n_units)[:, None, None, :], float("-inf")).softmax(-1)
    layout = fused_word_level.layout_in_token_order(token_unit.numpy(), n_units)
    assert layout is not None
    first, n_real, pieces = layout
    out = np.full((5, 3, n_units, n_units), np.nan, np.float32)  # stale memory
    scratch = np.empty((5 * 3, n_units), np.float32)
    fused_word_level._word_level(attention.numpy(), token_unit.numpy(), first, n_real,
                                 np.maximum(pieces, 1).astype(np.float32), scratch, out)
    assert torch.equal(torch.from_numpy(out), to_word_level(attention, token_unit, n_units, fused=False))
