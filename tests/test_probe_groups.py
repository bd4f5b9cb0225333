"""Probes trained side by side over one collated set are the probes trained alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.analysis import probes
from app.analysis.probes import ProbeConfig, evaluate, evaluate_probes, train_probe, train_probes
from tests.test_probes import FAST, N_HEADS, make_split


@pytest.fixture(scope="module")
def splits():
    return make_split(10, 40), make_split(11, 12), make_split(12, 12)


# Different early stopping on purpose: patience 1 with a short budget, and a longer run.
GROUP = [
    ProbeConfig("attn", **{**FAST, "max_epochs": 3}),
    ProbeConfig("attn_glove", **FAST),
    ProbeConfig("attn_glove", n_heads=N_HEADS, layers=(0,), **{**FAST, "patience": 1}),
    ProbeConfig("attn", n_heads=N_HEADS, layers=(1,), **FAST),
]


def _same(alone, together) -> None:
    assert together.history == alone.history
    assert together.best_epoch == alone.best_epoch
    arrays = together.state_arrays()
    assert arrays.keys() == alone.state_arrays().keys()
    for name, value in alone.state_arrays().items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)


@pytest.mark.parametrize("budget", [None, 2_000], ids=["one part a batch", "parts of different sizes"])
def test_probes_trained_together_equal_each_trained_alone(splits, tmp_path: Path, monkeypatch, budget) -> None:
    """With a small budget a batch is cut into parts whose size depends on how many maps a
    probe reads: a one-layer probe then reads its own (larger) parts, with its maps only."""
    if budget is not None:
        monkeypatch.setattr(probes, "MAX_BATCH_ELEMENTS", budget)
        widths = [max(example.n_words for example in splits[0])] * 2
        assert [len(probes._parts(config, np.arange(8), np.array(widths * 4), np.arange(n)))
                for config, n in ((GROUP[0], 6), (GROUP[2], 3))] == [3, 2]  # the sizes do differ
    train, dev, test = splits
    alone = [train_probe(config, train, dev) for config in GROUP]
    logs: list[tuple[int, int]] = []
    together = train_probes(GROUP, train, dev, on_epoch=lambda position, log: logs.append((position, log.epoch)),
                            spill=tmp_path)
    for one, other in zip(alone, together):
        _same(one, other)
    # Every probe reported each of its own epochs, and only those.
    for position, probe in enumerate(alone):
        assert [epoch for who, epoch in logs if who == position] == [log.epoch for log in probe.history]
    assert len({len(probe.history) for probe in alone}) > 1  # the probes did stop at different epochs
    scores = evaluate_probes(together, test, spill=tmp_path)
    assert scores == [evaluate(probe, test) for probe in alone]
    assert list(tmp_path.iterdir()) == []  # the spill folders are gone


def test_streamed_maps_serve_the_whole_group(splits) -> None:
    train, dev, test = splits
    stream = lambda split: ((i, example.maps) for i, example in reversed(list(enumerate(split))))  # noqa: E731
    bare = lambda split: [example.__class__(**{**vars(example), "maps": example.maps[:0]}) for example in split]  # noqa: E731
    together = train_probes(GROUP[1:3], bare(train), bare(dev), train_maps=stream(train), dev_maps=stream(dev))
    for config, probe in zip(GROUP[1:3], together):
        _same(train_probe(config, train, dev), probe)


def test_probes_that_cannot_share_batches_are_refused(splits) -> None:
    train, dev, _ = splits
    with pytest.raises(ValueError, match="same seed and batch size"):
        train_probes([GROUP[0], ProbeConfig("attn", seed=1, **FAST)], train, dev)
    with pytest.raises(ValueError, match="read different inputs"):
        train_probes([GROUP[0], ProbeConfig("structural", **FAST)], train, dev)


def test_a_members_maps_are_the_chosen_maps_viewed_when_consecutive_copied_otherwise(splits) -> None:
    import torch

    from app.analysis.probe_models import MAP_AXIS, collate

    n_maps = splits[0][0].maps.shape[0]
    batch = collate(splits[0][:4], "attn", np.arange(n_maps), torch.device("cpu"))
    for positions, run in ((torch.tensor([1, 2]), (1, 2)), (torch.tensor([0, 2]), None)):
        viewed = probes._view(batch, positions, run)
        for name, axis in MAP_AXIS.items():
            whole, chosen = getattr(batch, name), getattr(viewed, name)
            assert torch.equal(chosen, whole.index_select(axis, positions)), name
            shared = chosen.untyped_storage().data_ptr() == whole.untyped_storage().data_ptr()
            assert shared == (run is not None), name  # a view of the batch, or a copy
