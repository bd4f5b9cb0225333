"""Section-5 probes on synthetic sentences whose answers are known, plus hand-computed scores."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from app.analysis import probes
from app.analysis.probes import (
    ProbeConfig,
    ProbeExample,
    evaluate,
    predict_heads,
    restore_probe,
    right_branching_uas,
    train_probe,
    uuas_counts,
)
from app.errors import AnalysisUnavailable, UnknownName

N_LAYERS, N_HEADS = 2, 3
N_MAPS = N_LAYERS * N_HEADS
TREE_MAP = 1 * N_HEADS + 1  # layer 1, head 1: its rows ARE the gold trees
DIM, HIDDEN = 8, 16
# Tiny synthetic sets take few steps: a larger learning rate than the paper's 2e-3.
FAST = {"lr": 0.05, "batch_size": 8, "max_epochs": 8, "patience": 3}


def random_tree(rng: np.random.Generator, n: int) -> np.ndarray:
    """[word] heads of a random tree (0 = ROOT, 1-based): words attach to earlier-placed ones."""
    order = rng.permutation(n) + 1
    heads = np.zeros(n, dtype=np.int64)
    for position, word in enumerate(order[1:], start=1):
        heads[word - 1] = order[rng.integers(position)]
    return heads


def make_example(
    rng: np.random.Generator,
    heads: np.ndarray,
    *,
    tree_map: int | None = TREE_MAP,
    uniform: bool = False,
    relations: tuple[str, ...] | None = None,
) -> ProbeExample:
    """Random [map, query_unit, key_unit] maps (Dirichlet rows) where map `tree_map` puts 0.9
    of each word's attention on its head word ([CLS] for the root); random GloVe vectors; hidden
    states whose squared distances are the tree distances (sums of orthonormal vectors along the
    path from the root)."""
    n, units = len(heads), len(heads) + 2
    if uniform:
        maps = np.full((N_MAPS, units, units), 1.0 / units)
    else:
        maps = rng.dirichlet(np.ones(units), size=(N_MAPS, units))
    if tree_map is not None and not uniform:
        for word, head in enumerate(heads, start=1):
            row = np.full(units, 0.1 / (units - 1))
            row[head] = 0.9  # unit 0 = [CLS] stands for ROOT
            maps[tree_map, word] = row
    basis = np.linalg.qr(rng.normal(size=(HIDDEN, HIDDEN)))[0][:n]  # [word, hidden] orthonormal
    hidden = np.zeros((n, HIDDEN))
    for word in range(n):
        node = word + 1
        while node != 0:  # h_i = sum of the basis vectors of i and its ancestors
            hidden[word] += basis[node - 1]
            node = heads[node - 1]
    return ProbeExample(
        maps=maps.astype(np.float16),
        heads=heads,
        relations=relations or tuple("dep" if h else "root" for h in heads),
        vectors=rng.normal(size=(n, DIM)).astype(np.float32),
        hidden=hidden.astype(np.float32),
    )


def make_split(seed: int, size: int, **options: object) -> list[ProbeExample]:
    rng = np.random.default_rng(seed)
    heads = [random_tree(rng, int(rng.integers(5, 11))) for _ in range(size)]
    return [make_example(rng, h, **options) for h in heads]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tree_task() -> tuple[list[ProbeExample], list[ProbeExample], list[ProbeExample]]:
    return make_split(0, 120), make_split(1, 30), make_split(2, 30)


def test_attention_probe_finds_the_head_whose_map_is_the_tree(tree_task) -> None:
    train, dev, test = tree_task
    logs: list[probes.EpochLog] = []
    probe = train_probe(ProbeConfig("attn", **FAST), train, dev, on_epoch=logs.append)
    uas, n_scored = evaluate(probe, test)
    assert uas >= 99.0
    assert n_scored == sum(e.n_words for e in test)
    assert logs == probe.history
    # The best epoch's weights are the ones kept.
    assert evaluate(probe, dev)[0] == probe.history[probe.best_epoch - 1].dev_score
    weights = probe.state_arrays()
    assert np.argmax(weights["w"]) == TREE_MAP
    assert set(weights) == {"w", "u", "root_weight", "map_index"}


def test_attention_probe_stays_near_chance_on_uniform_maps() -> None:
    train, test = make_split(3, 60, uniform=True), make_split(4, 30, uniform=True)
    probe = train_probe(ProbeConfig("attn", **FAST), train, test)
    assert evaluate(probe, test)[0] < 50.0


def test_attention_and_glove_probe_learns_the_tree(tree_task) -> None:
    train, dev, test = tree_task
    probe = train_probe(ProbeConfig("attn_glove", **FAST), train, dev)
    assert evaluate(probe, test)[0] >= 99.0
    assert predict_heads(probe, test[0]).tolist() == test[0].heads.tolist()


def test_distance_glove_baseline_learns_next_word_heads() -> None:
    rng = np.random.default_rng(5)

    def chain(n: int) -> ProbeExample:
        heads = np.append(np.arange(2, n + 1), 0)  # word i -> i + 1; the last is the root
        return make_example(rng, heads)

    train = [chain(int(n)) for n in rng.integers(4, 11, size=80)]
    test = [chain(int(n)) for n in rng.integers(4, 11, size=20)]
    probe = train_probe(ProbeConfig("distance_glove", hidden_size=32, **FAST), train, test)
    assert evaluate(probe, test)[0] >= 99.0


def test_structural_probe_recovers_trees_encoded_in_distances(tree_task) -> None:
    train, dev, test = tree_task
    config = ProbeConfig("structural", rank=HIDDEN, lr=0.01, batch_size=8, max_epochs=6)
    probe = train_probe(config, train, dev)
    uuas, n_edges = evaluate(probe, test)
    assert config.metric == "uuas"
    assert uuas >= 90.0
    assert n_edges == sum(e.n_words - 1 for e in test)  # no punct: n - 1 gold edges each
    with pytest.raises(ValueError):
        predict_heads(probe, test[0])


def test_layer_restriction_reads_only_that_layers_maps(tree_task) -> None:
    train, dev, test = tree_task
    layer0 = ProbeConfig("attn", n_heads=N_HEADS, layers=(0,), **FAST)
    layer1 = ProbeConfig("attn", n_heads=N_HEADS, layers=(1,), **FAST)
    without_tree = train_probe(layer0, train, dev)
    with_tree = train_probe(layer1, train, dev)
    assert evaluate(without_tree, test)[0] < 50.0
    assert evaluate(with_tree, test)[0] >= 99.0
    assert with_tree.state_arrays()["map_index"].tolist() == [3, 4, 5]
    assert layer1.as_params()["layers"] == "1"


def test_training_is_deterministic_given_the_seed(tree_task) -> None:
    train, dev, _ = tree_task
    config = ProbeConfig("attn_glove", **{**FAST, "max_epochs": 2})
    first, second = train_probe(config, train, dev), train_probe(config, train, dev)
    other = train_probe(ProbeConfig("attn_glove", seed=1, **{**FAST, "max_epochs": 2}), train, dev)
    assert first.history == second.history
    for name, value in first.state_arrays().items():
        np.testing.assert_array_equal(value, second.state_arrays()[name])
    assert not np.array_equal(
        first.state_arrays()["pair.weight"], other.state_arrays()["pair.weight"]
    )


def test_uas_skips_punctuation_and_unknown_heads() -> None:
    # "dogs bark ." with a hand-set probe that follows map 0: dogs -> bark, bark -> [CLS] (ROOT),
    # "." -> dogs (wrong: gold is bark). Only the two non-punct words are scored.
    maps = np.zeros((1, 5, 5), dtype=np.float32)
    maps[0, 1, 2] = maps[0, 2, 0] = maps[0, 3, 1] = 1.0
    maps[0, 0, 0] = maps[0, 4, 4] = 1.0
    example = ProbeExample(maps, np.array([2, 0, 2]), ("nsubj", "root", "punct"))
    arrays = {
        "w": np.array([1.0], dtype=np.float32),
        "u": np.zeros(1, dtype=np.float32),
        "root_weight": np.array([1.0, 0.0], dtype=np.float32),  # ROOT scored by attention to [CLS]
        "map_index": np.array([0]),
    }
    probe = restore_probe(ProbeConfig("attn"), arrays)
    assert predict_heads(probe, example).tolist() == [2, 0, 1]
    assert evaluate(probe, [example]) == (100.0, 2)
    unknown = ProbeExample(maps, np.array([2, -1, 2]), ("nsubj", "root", "nsubj"))
    assert evaluate(probe, [unknown]) == (50.0, 2)  # "." -> dogs is wrong, bark is unscored


def test_right_branching_baseline_by_hand() -> None:
    rng = np.random.default_rng(0)
    # "the dog barks ." -> predicted [2, 3, 4, 0]: the, dog right; barks wrong; "." not scored.
    first = make_example(rng, np.array([2, 3, 0, 3]), relations=("det", "nsubj", "root", "punct"))
    # "she ran home" -> predicted [2, 3, 0]: she right; ran wrong; home has no gold head.
    second = make_example(rng, np.array([2, 0, -1]), relations=("nsubj", "root", "dobj"))
    assert right_branching_uas([first, second]) == (60.0, 5)


def test_uuas_drops_punctuation_before_the_spanning_trees() -> None:
    # "a b , c": gold a-b, ,-b, c-b. Without ",", gold edges are {a-b, b-c}. The prediction puts
    # "," next to everything (ignored) and links a-c, a-b: one of two gold edges.
    heads, relations = np.array([2, 0, 2, 2]), ("det", "root", "punct", "dep")
    distances = np.array(
        [[0, 1, 0.1, 1], [1, 0, 0.1, 5], [0.1, 0.1, 0, 0.1], [1, 5, 0.1, 0]], dtype=np.float64
    )
    assert uuas_counts(distances, heads, relations) == (1, 2)
    assert uuas_counts(distances, heads, ("det", "root", "dep", "dep")) == (1, 3)


def test_attention_and_glove_logits_match_the_pairwise_formula() -> None:
    rng = np.random.default_rng(6)
    example = make_example(rng, random_tree(rng, 5))
    torch.manual_seed(0)
    module = probes.AttentionGloveProbe(np.arange(N_MAPS), DIM)
    with torch.no_grad():
        module.root_vector.normal_()
        module.pair.bias.normal_()
    batch = probes.collate([example], "attn_glove", np.arange(N_MAPS), torch.device("cpu"))
    with torch.no_grad():
        logits = module(batch)[0].numpy()  # [query, 1 + key]

    maps = example.maps.astype(np.float64)  # [map, query_unit, key_unit]
    vectors = example.vectors.astype(np.float64)
    weight, bias = (
        module.pair.weight.detach().double().numpy(),
        module.pair.bias.detach().double().numpy(),
    )
    root_vector = module.root_vector.detach().double().numpy()
    start, end = module.root_weight.detach().double().numpy()
    n = example.n_words
    expected = np.zeros((n, n + 1))
    for i in range(1, n + 1):
        for j in range(0, n + 1):
            candidate = root_vector if j == 0 else vectors[j - 1]
            pair = weight @ np.concatenate([vectors[i - 1], candidate]) + bias  # [2 map]
            if j == 0:
                forward = start * maps[:, i, 0] + end * maps[:, i, n + 1]
                backward = start * maps[:, 0, i] + end * maps[:, n + 1, i]
            else:
                forward, backward = maps[:, i, j], maps[:, j, i]
            expected[i - 1, j] = pair[:N_MAPS] @ forward + pair[N_MAPS:] @ backward
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)  # float32 vs float64


def test_distance_features_match_the_released_code() -> None:
    n = 4
    features = probes.distance_features(torch.tensor([n, 2]), n)[0].numpy()  # [query, 1 + key, 8]
    ahead = np.array([[max(j - i, 0) / n for j in range(n)] for i in range(n)])
    released = [ahead, ahead.T] + [np.eye(n, k=k) for k in (0, -1, 1, -2, 2)]
    np.testing.assert_allclose(features[:, 1:, :7], np.stack(released, -1))
    assert (features[:, 1:, 7] == 0).all() and (features[:, 0] == np.eye(8)[7]).all()


def test_config_validation_and_params() -> None:
    with pytest.raises(UnknownName, match="attn_glove"):
        ProbeConfig("attention")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ProbeConfig("attn", layers=(0,))  # which maps are layer 0 needs n_heads
    with pytest.raises(ValueError):
        ProbeConfig("structural", n_heads=3, layers=(0,))
    params = ProbeConfig("attn").as_params()
    assert params["kind"] == "attn" and params["lr"] == 2e-3 and params["layers"] is None
    example = make_split(7, 1)[0]
    bare = ProbeExample(example.maps, example.heads, example.relations)
    with pytest.raises(AnalysisUnavailable, match="vectors"):
        train_probe(ProbeConfig("attn_glove"), [bare], [bare])


@pytest.mark.parametrize("kind", ["attn_glove", "structural", "distance_glove"])
def test_pre_collated_batches_equal_per_sentence_collation(kind: str) -> None:
    rng = np.random.default_rng(5)
    examples = []
    for n in (3, 5, 3, 4, 5, 1, 4):
        example = make_example(rng, random_tree(rng, n))
        # float16 maps and states, as in the feature cache: buckets keep them float16.
        examples.append(ProbeExample(
            maps=example.maps.astype(np.float16), heads=example.heads, relations=example.relations,
            vectors=example.vectors, hidden=None if example.hidden is None else example.hidden.astype(np.float16),
        ))
    map_index = np.array([1, 4])
    collated = probes.CollatedSet(examples, kind, map_index, torch.device("cpu"))
    for indices in ([6, 0, 2], [1, 4, 3, 0], [5]):
        expected = probes.collate([examples[i] for i in indices], kind, map_index, torch.device("cpu"))
        got = collated.batch(np.array(indices))
        for name, value in vars(expected).items():
            other = getattr(got, name)
            assert (value is None) == (other is None), name
            if value is not None:
                assert other.dtype == value.dtype and torch.equal(other, value), name


def test_streamed_and_spilled_maps_batch_like_in_memory_ones(tmp_path: Path) -> None:
    """Maps arriving in another order and kept in files give the same batches and training."""
    rng = np.random.default_rng(11)
    examples = [make_example(rng, random_tree(rng, n)) for n in (4, 2, 6, 4, 3, 6, 2)]
    examples = [replace(example, maps=example.maps.astype(np.float16)) for example in examples]
    map_index = np.array([0, 3, 5])
    in_memory = probes.CollatedSet(examples, "attn_glove", map_index, torch.device("cpu"))
    order = rng.permutation(len(examples)).tolist()
    placeholders = [replace(example, maps=np.zeros((0, 0, 0), np.float16)) for example in examples]
    streamed = probes.CollatedSet(placeholders, "attn_glove", map_index, torch.device("cpu"),
                                  maps=((i, examples[i].maps) for i in order), spill=tmp_path)
    # One layout in files: by_key is a transposed view of by_query.
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"by_query-{n:04d}.f16" for n in (2, 3, 4, 6)]
    for indices in ([6, 0, 2], [1, 4, 3, 0, 5], [5]):
        expected, got = in_memory.batch(np.array(indices)), streamed.batch(np.array(indices))
        for name, value in vars(expected).items():
            other = getattr(got, name)
            assert (value is None) == (other is None), name
            if value is not None:
                assert torch.equal(other, value), name
    streamed.close()
    with pytest.raises(ValueError, match="no maps for example 1"):
        probes.CollatedSet(placeholders, "attn", map_index, torch.device("cpu"),
                           maps=((i, examples[i].maps) for i in (0, 2, 3, 4, 5, 6)))
    config = ProbeConfig("attn_glove", max_epochs=2)
    dev = examples[:3]
    plain = train_probe(config, examples, dev)
    spilled = train_probe(config, placeholders, dev, train_maps=((i, examples[i].maps) for i in order),
                          spill=tmp_path)
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]  # the run's spill folder is removed
    for name, value in plain.module.state_dict().items():
        assert torch.equal(spilled.module.state_dict()[name], value), name


def test_the_heap_is_trimmed_after_a_collation_that_grew_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Collating frees small per-sentence tensors among the buckets that stay: when that grew
    the process past the slack, the holes are given back before training (not kept for the
    whole run); a small set is not worth the trim."""
    import itertools

    from app import heap

    rng = np.random.default_rng(5)
    examples = [make_example(rng, random_tree(rng, n)) for n in (3, 4, 5, 3)]
    grown = heap.BLOCK_SLACK + 1
    # train: before, after (grown past the slack); dev: before, after (a little)
    readings = itertools.chain([0, grown, grown, grown + 10], itertools.repeat(grown + 10))
    trims: list[int] = []
    monkeypatch.setattr(heap, "resident_bytes", lambda: next(readings))
    monkeypatch.setattr(heap, "trim_heap", lambda: trims.append(1) or True)
    train_probe(ProbeConfig("attn", max_epochs=1), examples, examples[:2])
    assert trims == [1]  # the train set's collation only


def test_release_drops_the_examples_maps_once_collated() -> None:
    rng = np.random.default_rng(7)
    examples = [make_example(rng, random_tree(rng, n)) for n in (3, 4, 3)]
    expected = probes.collate(examples, "attn", np.arange(N_MAPS), torch.device("cpu"))
    owned = list(examples)
    collated = probes.CollatedSet(owned, "attn", np.arange(N_MAPS), torch.device("cpu"), release=True)
    assert all(example.maps.size == 0 for example in owned)
    assert all(example.maps.size > 0 for example in examples)  # only the given list changes
    assert torch.equal(collated.batch(np.arange(3)).by_query, expected.by_query)


@pytest.mark.parametrize("kind", ["attn_glove", "structural"])
def test_batches_over_the_memory_budget_train_in_parts(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch split into parts takes the same step (gradients summed), up to rounding."""
    train, dev = make_split(21, 12), make_split(22, 5)
    config = ProbeConfig(kind, max_epochs=2, batch_size=6)
    whole = train_probe(config, train, dev)
    monkeypatch.setattr(probes, "MAX_BATCH_ELEMENTS", 1)  # one sentence per part
    parts = train_probe(config, train, dev)
    for name, value in whole.module.state_dict().items():
        torch.testing.assert_close(parts.module.state_dict()[name], value, rtol=1e-4, atol=1e-5)
    assert [log.dev_score for log in parts.history] == [log.dev_score for log in whole.history]
    assert [log.train_loss for log in parts.history] == pytest.approx([log.train_loss for log in whole.history])
    assert evaluate(parts, dev) == evaluate(whole, dev)
    # The parts' weighted losses add up to the batch's loss, so their gradients do too.
    module, batch = whole.module.train(), list(range(6))
    collated = probes.CollatedSet(train, kind, probes._map_index_of(module), torch.device("cpu"))
    module.zero_grad()
    probes._loss(module, collated.batch(np.array(batch)), kind).backward()
    expected = [parameter.grad.clone() for parameter in module.parameters()]
    module.zero_grad()
    for part in probes._parts(config, np.array(batch), collated.lengths, probes._map_index_of(module)):
        (probes._loss(module, collated.batch(part), kind) * (len(part) / len(batch))).backward()
    for parameter, grad in zip(module.parameters(), expected):
        torch.testing.assert_close(parameter.grad, grad, rtol=1e-4, atol=1e-6)


def test_structural_distances_are_squared_distances_of_the_projections() -> None:
    """The Gram-matrix form equals ||B h_i - B h_j||^2 computed pair by pair, diagonal 0."""
    torch.manual_seed(0)
    module = probes.StructuralProbe(HIDDEN, 4)
    hidden = torch.randn(2, 5, HIDDEN)
    batch = probes.ProbeBatch(n_words=torch.tensor([5, 5]), valid=torch.ones(2, 5, dtype=torch.bool),
                              target=torch.zeros(2, 5, dtype=torch.long), scored=torch.ones(2, 5, dtype=torch.bool),
                              hidden=hidden)
    projected = (hidden @ module.proj).detach().numpy().astype(np.float64)
    expected = np.array([[[((p[i] - p[j]) ** 2).sum() for j in range(5)] for i in range(5)] for p in projected])
    got = module(batch).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert (np.diagonal(got, axis1=1, axis2=2) == 0).all()
