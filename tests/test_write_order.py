"""insert_rows sorts rows by the table's append_order through one composite int64 key; the
permutation must be np.lexsort's exactly (so the stored rows and their order do not change)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.store.write import _composite_order, _in_append_order


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 300),
    st.lists(st.tuples(st.sampled_from(["int16", "int32", "int64", "uint8"]), st.integers(1, 50), st.integers(-5, 5)), min_size=1, max_size=4),
    st.integers(0, 2**32 - 1),
)
def test_the_composite_key_orders_rows_exactly_like_lexsort(n, kinds, seed) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    keys = [
        (rng.integers(0, span, n) + (shift if dtype != "uint8" else 0)).astype(dtype)
        for dtype, span, shift in kinds
    ]  # small spans: many ties, which a stable sort must keep in row order like lexsort
    order = _composite_order(keys)
    assert order is not None
    np.testing.assert_array_equal(order, np.lexsort(list(reversed(keys))))


def test_keys_that_do_not_fit_fall_back_to_lexsort() -> None:
    assert _composite_order([np.array([0.5, 0.1])]) is None  # not integers
    wide = np.array([0, 2**40], dtype=np.int64)
    assert _composite_order([wide, wide]) is None  # 2^80 combinations
    columns = {"a": np.array([2, 1, 1]), "b": np.array([0.0, 2.0, 1.0]), "v": np.array([10, 20, 30])}
    ordered = _in_append_order(("a", "b"), columns)  # float key: lexsort, same result
    np.testing.assert_array_equal(ordered["v"], [30, 20, 10])
    assert _in_append_order(("a",), {"a": np.array([1, 2]), "v": np.array([5, 6])})["v"].tolist() == [5, 6]
