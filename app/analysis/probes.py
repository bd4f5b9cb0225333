"""Attention-based probing classifiers for dependency parsing (paper section 5, Table 3).

Pure torch/numpy: examples in, trained weights and scores out; the pipeline reads the
feature cache and logs to MLflow and the database. Four probes (`ProbeConfig.kind`):

- `attn`: the paper's attention-only probe. For dependent i and candidate head j,
  logit = sum_k w_k alpha^k[i, j] + u_k alpha^k[j, i] over all K maps (no bias; attention
  to self is not excluded, as in the released code).
- `attn_glove`: attention + GloVe. The weight of each map and direction depends on the
  word pair: [w; u] = Linear(v_i ⊕ v_j) (2K outputs, with bias); GloVe stays fixed.
- `distance_glove`: the "Distances + GloVe" baseline, the released `words_and_distances`: an
  MLP (one tanh hidden layer) over v_i ⊕ v_j ⊕ the authors' 8 distance features.
- `structural`: Hewitt & Manning's (2019) distance probe over one layer's hidden states;
  it predicts undirected trees and is scored by UUAS, never UAS.

Candidates for the head of word i are [ROOT, word 1, ..., word n] (index 0 = ROOT, the
corpus convention). ROOT, following the released code:
- attention probes: ROOT's "attention" is root_cls * alpha[i, CLS] + root_sep * alpha[i, SEP]
  (the authors' ROOT_start / ROOT_end, two scalars shared over maps), and for the transposed
  direction root_cls * alpha[CLS, i] + root_sep * alpha[SEP, i]; both weighted by w / u;
- GloVe probes: ROOT's word vector is a learned `root_vector`, initialised to zero (the
  released code feeds zeros for the whole ROOT pair; here the dependent's vector still
  acts, and ROOT can learn a vector);
- distance features of ROOT are all zero except the ROOT indicator.

Training: softmax cross-entropy over the candidates of each dependent, summed over the words
of a sentence (punctuation included, as the authors did) and averaged over the sentences of
a mini-batch, so one step weighs like one of the authors' batch-size-1 steps. Adam. Early
stopping on dev UAS (UUAS for `structural`); the best epoch's weights are restored.
Scores: UAS = percent of words with a known gold head (heads >= 0) whose argmax candidate is
the gold head, excluding relation "punct" (standard for Stanford Dependencies).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.sparse.csgraph import minimum_spanning_tree
from torch import nn

from app.analysis.probe_models import (  # noqa: F401 - re-exported: the probes' public API
    ATTENTION_KINDS,
    GLOVE_KINDS,
    IGNORE,
    MAP_AXIS,
    PROBE_KINDS,
    PUNCT,
    AttentionGloveProbe,
    AttentionProbe,
    CollatedSet,
    DistanceGloveProbe,
    ProbeBatch,
    ProbeExample,
    ProbeKind,
    StructuralProbe,
    batches,
    collate,
    distance_features,
    scored_words,
    tree_distances,
)
from app.errors import AnalysisUnavailable, UnknownName
from app.heap import released_if_grown


@dataclass(frozen=True)
class ProbeConfig:
    """What is trained and how; logged whole to MLflow via `as_params()`."""

    kind: ProbeKind
    lr: float = 2e-3  # the authors' Adam learning rate
    # The authors trained 1 epoch at batch size 1; we take mini-batches and stop early.
    max_epochs: int = 10
    patience: int = 2  # epochs without a better dev score before stopping
    batch_size: int = 32  # sentences per step, grouped by length and padded
    seed: int = 0
    hidden_size: int = 256  # distance_glove MLP, as the released words_and_distances
    rank: int = 64  # structural probe: rank of B (Hewitt & Manning's default max rank is 1024)
    n_heads: int | None = None  # with `layers`: maps k belong to layer k // n_heads
    layers: tuple[int, ...] | None = None  # attention probes only: use these layers' maps

    def __post_init__(self) -> None:
        if self.kind not in PROBE_KINDS:
            raise UnknownName("probe kind", self.kind, PROBE_KINDS)
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(layer) for layer in self.layers))
            if self.kind not in ATTENTION_KINDS:
                raise ValueError(f"layers restrict attention maps; probe {self.kind!r} has none")
            if self.n_heads is None or not self.layers:
                raise ValueError("layers needs n_heads and at least one layer")
        if min(self.max_epochs, self.batch_size, self.hidden_size, self.rank) < 1:
            raise ValueError("max_epochs, batch_size, hidden_size and rank must be >= 1")

    def as_params(self) -> dict[str, Any]:
        """Flat params for MLflow; `layers` as "0,3" (None: all maps)."""
        params = {name: getattr(self, name) for name in self.__dataclass_fields__}
        if self.layers is not None:
            params["layers"] = ",".join(str(layer) for layer in self.layers)
        return params

    @property
    def metric(self) -> str:
        """The score `evaluate` returns: "uuas" for the structural probe, else "uas"."""
        return "uuas" if self.kind == "structural" else "uas"


@dataclass
class EpochLog:
    epoch: int  # 1-based: the number of passes over the training set so far
    train_loss: float  # mean over sentences of the per-sentence summed loss
    dev_score: float  # dev UAS (UUAS for structural), percent


@dataclass
class TrainedProbe:
    config: ProbeConfig
    module: nn.Module
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0  # the epoch whose weights `module` holds

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learned weights (module state dict as numpy), for saving as an artifact.

        attn: w, u [map], root_weight [2] (CLS, SEP), map_index [map];
        attn_glove: pair.weight [2 map, 2 dim] (rows: map k forward, then map k transposed;
        columns: dependent then candidate vector), pair.bias [2 map], root_vector [dim],
        root_weight [2], map_index [map];
        distance_glove: hidden.weight [hidden, 2 dim + 8], hidden.bias, out.weight, out.bias,
        root_vector [dim]; structural: proj [hidden, rank].
        `map_index` holds the indices (layer * n_heads + head) of the maps the probe reads.
        """
        return {
            name: value.detach().cpu().numpy() for name, value in self.module.state_dict().items()
        }


# ------------------------------------------------------------------ training and scoring


def _loss(module: nn.Module, batch: ProbeBatch, kind: str) -> torch.Tensor:
    """Mean over the batch's sentences of each sentence's summed (or H&M-normalised) loss."""
    output = module(batch)
    if kind == "structural":
        assert batch.tree_distance is not None
        known = batch.tree_distance >= 0
        error = (output - batch.tree_distance).abs().masked_fill(~known, 0.0).sum((1, 2))
        return (error / batch.n_words.float() ** 2).mean()  # L1 / n^2 per sentence (H&M)
    flat = output.reshape(-1, output.shape[-1])  # [batch * query, 1 + key]
    total = nn.functional.cross_entropy(
        flat, batch.target.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return total / len(batch.n_words)


def _check(config: ProbeConfig, examples: Sequence[ProbeExample], n_maps: int | None) -> None:
    """Raise on malformed examples or a missing input the probe needs (n_maps None: the
    maps are not checked here)."""
    for index, example in enumerate(examples):
        n, heads = example.n_words, np.asarray(example.heads)
        if n < 1 or heads.ndim != 1 or len(example.relations) != n:
            raise ValueError(f"example {index}: heads and relations must be [word], n >= 1")
        if heads.min() < -1 or heads.max() > n:
            raise ValueError(f"example {index}: heads must lie in -1..{n}")
        if config.kind in ATTENTION_KINDS and n_maps is not None and example.maps.shape != (n_maps, n + 2, n + 2):
            raise ValueError(
                f"example {index}: maps {example.maps.shape}, expected ({n_maps}, {n + 2}, {n + 2})"
            )
        for name, needed in (("vectors", GLOVE_KINDS), ("hidden", ("structural",))):
            array = getattr(example, name)
            if config.kind in needed and (array is None or len(array) != n):
                raise AnalysisUnavailable(
                    f"probe {config.kind!r} needs {name} [word, dim]; example {index} has "
                    f"{None if array is None else array.shape}"
                )


def _map_index(config: ProbeConfig, n_maps: int) -> np.ndarray:
    """The maps an attention probe reads: all, or those of `config.layers`."""
    if config.layers is None:
        return np.arange(n_maps)
    assert config.n_heads is not None
    n_layers = n_maps // config.n_heads
    if n_maps % config.n_heads or not all(0 <= layer < n_layers for layer in config.layers):
        raise ValueError(f"{n_maps} maps, n_heads={config.n_heads}: layers {config.layers}")
    layer_of_map = np.arange(n_maps) // config.n_heads
    return np.flatnonzero(np.isin(layer_of_map, config.layers))


def _build(config: ProbeConfig, example: ProbeExample) -> nn.Module:
    if config.kind == "attn":
        return AttentionProbe(_map_index(config, example.maps.shape[0]))
    if config.kind == "structural":
        assert example.hidden is not None
        return StructuralProbe(example.hidden.shape[1], config.rank)
    assert example.vectors is not None
    dim = example.vectors.shape[1]
    if config.kind == "attn_glove":
        return AttentionGloveProbe(_map_index(config, example.maps.shape[0]), dim)
    return DistanceGloveProbe(dim, config.hidden_size)


def restore_probe(config: ProbeConfig, arrays: dict[str, np.ndarray]) -> TrainedProbe:
    """A probe from `state_arrays()` output (history is not restored)."""
    if config.kind == "structural":
        module: nn.Module = StructuralProbe(*arrays["proj"].shape)
    elif config.kind == "distance_glove":
        module = DistanceGloveProbe(len(arrays["root_vector"]), len(arrays["hidden.bias"]))
    elif config.kind == "attn":
        module = AttentionProbe(arrays["map_index"])
    else:
        module = AttentionGloveProbe(arrays["map_index"], len(arrays["root_vector"]))
    module.load_state_dict({name: torch.from_numpy(np.asarray(a)) for name, a in arrays.items()})
    return TrainedProbe(config, module.eval())


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _map_index_of(module: nn.Module) -> np.ndarray | None:
    index = getattr(module, "map_index", None)
    return None if index is None else index.cpu().numpy()


def uuas_counts(
    distances: np.ndarray, heads: np.ndarray, relations: Sequence[str]
) -> tuple[int, int]:
    """(correct, gold) undirected edges of the MST of predicted distances, as Hewitt & Manning.

    Punctuation words (relation "punct"; H&M drop the PTB punctuation tags) are removed from
    both graphs first. Gold edges are the MST of the gold tree distances over the remaining
    words: the gold edges between non-punct words, plus, where a punct word joined two parts,
    one distance-2 edge that H&M's evaluation also counts. Words with an unknown head (-1) stay
    in the graph; pairs the gold tree cannot connect have no gold edge.

    Args:
        distances: [word, word] predicted (squared) distances.
        heads: [word] gold heads (0 = ROOT, 1-based, -1 unknown).
    """
    keep = np.array([relation != PUNCT for relation in relations], dtype=bool)
    if keep.sum() < 2:
        return 0, 0
    gold = tree_distances(np.asarray(heads))[np.ix_(keep, keep)]
    predicted = np.asarray(distances, dtype=np.float64)[np.ix_(keep, keep)]
    gold_edges = _mst_edges(np.where(np.isfinite(gold), gold, 0.0))  # 0 = no edge
    predicted_edges = _mst_edges(np.maximum(predicted, np.finfo(np.float64).tiny))
    return len(gold_edges & predicted_edges), len(gold_edges)


def _mst_edges(weights: np.ndarray) -> set[tuple[int, int]]:
    tree = minimum_spanning_tree(np.triu(weights, k=1)).tocoo()  # zero entries are non-edges
    return {(int(min(a, b)), int(max(a, b))) for a, b in zip(tree.row, tree.col)}


@torch.no_grad()
def _score(
    module: nn.Module,
    config: ProbeConfig,
    examples: Sequence[ProbeExample],
    collated: CollatedSet | None = None,
) -> tuple[float, int]:
    if collated is None:
        collated = CollatedSet(examples, config.kind, _map_index_of(module), _device(module))
    return _score_many([_Member(config, module, collated)], examples, collated)[0]


@torch.no_grad()
def _score_many(members: Sequence[_Member], examples: Sequence[ProbeExample],
                collated: CollatedSet) -> list[tuple[float, int]]:
    """Each member's (score, count) on `collated`; a batch is read once for all of them."""
    counts = [[0, 0] for _ in members]
    for member in members:
        member.module.eval()
    for whole in batches(collated.lengths, members[0].config.batch_size, None):
        read = _BatchReader(collated)
        for member, count in zip(members, counts):
            for indices in member.parts(whole, collated.lengths):
                batch = read(indices, member)
                output = member.module(batch)
                if member.config.kind == "structural":
                    for b, index in enumerate(indices.tolist()):
                        example = examples[index]
                        n = example.n_words
                        hits, gold = uuas_counts(
                            output[b, :n, :n].cpu().numpy(), example.heads, example.relations
                        )
                        count[0], count[1] = count[0] + hits, count[1] + gold
                else:
                    hit = (output.argmax(-1) == batch.target) & batch.scored
                    count[0] += int(hit.sum())
                    count[1] += int(batch.scored.sum())
    return [((100.0 * correct / total if total else float("nan")), total) for correct, total in counts]


# A batch's widest tensor (float32 elements: sentences x width^2 x channels) above which it
# is evaluated in parts, its gradients summed before the step. Batches of the longest
# sentences (EWT train has some of 150+ words) would otherwise dominate peak memory.
MAX_BATCH_ELEMENTS = 8_000_000


def _parts(config: ProbeConfig, indices: np.ndarray, lengths: np.ndarray,
           map_index: np.ndarray | None) -> list[np.ndarray]:
    """`indices` split into consecutive parts that each stay under MAX_BATCH_ELEMENTS."""
    channels = {"structural": 1, "distance_glove": config.hidden_size}.get(
        config.kind, 1 if map_index is None else len(map_index))
    width = int(lengths[indices].max())
    per_part = max(1, MAX_BATCH_ELEMENTS // (width * (width + 1) * channels))
    return [indices[start : start + per_part] for start in range(0, len(indices), per_part)]


def train_probe(
    config: ProbeConfig,
    train: Sequence[ProbeExample],
    dev: Sequence[ProbeExample],
    *,
    on_epoch: Callable[[EpochLog], None] | None = None,
    device: str | torch.device = "cpu",
    release_train: bool = False,
    train_maps: Iterable[tuple[int, np.ndarray]] | None = None,
    dev_maps: Iterable[tuple[int, np.ndarray]] | None = None,
    spill: Path | None = None,
) -> TrainedProbe:
    """Train a probe with Adam, early-stopping on the dev score; returns the best epoch's weights.

    Deterministic given `config.seed` on one device: the initial weights come from a forked,
    seeded global RNG (the caller's RNG state is left alone) and shuffling from a seeded
    torch.Generator. Only one batch is held as float32 at a time.

    Args:
        train, dev: sentences; attention probes read `maps`, GloVe probes `vectors`, the
            structural probe `hidden` (every example must carry what its probe reads).
        on_epoch: called after each epoch (for MLflow metrics).
        release_train: `train` is a list whose examples' maps and hidden states may be dropped once
            they are collated (the caller does not need them again): they are then held once.
        train_maps, dev_maps: (index, maps) of every train / dev sentence, in any order,
            instead of the examples' own maps (streamed from the feature cache); the
            examples' maps are then not read (the model's map count comes from the first
            streamed dev sentence).
        spill: a directory for the collated maps, read back batch by batch, so that memory
            does not grow with the data (removed when training ends).
    """
    report = None if on_epoch is None else (lambda _position, log: on_epoch(log))
    return train_probes([config], train, dev, on_epoch=report, device=device, release_train=release_train,
                        train_maps=train_maps, dev_maps=dev_maps, spill=spill)[0]


def train_probes(
    configs: Sequence[ProbeConfig],
    train: Sequence[ProbeExample],
    dev: Sequence[ProbeExample],
    *,
    on_epoch: Callable[[int, EpochLog], None] | None = None,
    device: str | torch.device = "cpu",
    release_train: bool = False,
    train_maps: Iterable[tuple[int, np.ndarray]] | None = None,
    dev_maps: Iterable[tuple[int, np.ndarray]] | None = None,
    spill: Path | None = None,
) -> list[TrainedProbe]:
    """Several probes over the same sentences, trained side by side: each one exactly as
    `train_probe` would train it alone, but the data are collated once and every batch is
    read once for all of them.

    What makes that exact: probes with the same seed and batch size draw the same batches,
    and a probe that reads some of the maps (`layers`) gets the batch's rows of those maps,
    the values it would have collated itself. Each probe keeps its own Adam state, early
    stopping and best weights. `on_epoch(position, log)` names the probe by its position in
    `configs`. Other arguments as in `train_probe`.
    """
    if not configs:
        raise ValueError("train_probes needs at least one probe")
    if not train or not dev:
        raise ValueError("train_probe needs at least one train and one dev sentence")
    kind = _shared_kind(configs)
    if len({(config.seed, config.batch_size) for config in configs}) > 1:
        raise ValueError("probes trained together need the same seed and batch size (the same batches)")
    if kind in ATTENTION_KINDS and dev_maps is not None:
        first, dev_maps = _peek(dev_maps)
        template = replace(dev[first[0]], maps=first[1])
    else:
        template = dev[0]
    n_maps = template.maps.shape[0] if kind in ATTENTION_KINDS else None
    for config in configs:
        _check(config, train, None if train_maps is not None else n_maps)
        _check(config, dev, None if dev_maps is not None else n_maps)
    device = torch.device(device)
    modules = []
    for config in configs:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            modules.append(_build(config, template).to(device))
    map_index = _union_map_index(modules)
    with contextlib.ExitStack() as stack:
        # Padded once, per sentence length: an epoch is tensor gathers, not per-sentence Python.
        train_set = _collated_set(stack, train, kind, map_index, device, train_maps, spill, release_train)
        dev_set = _collated_set(stack, dev, kind, map_index, device, dev_maps, spill)
        members = [_Member(config, module, train_set) for config, module in zip(configs, modules)]
        return _train(members, train_set, dev, dev_set, on_epoch)


def _shared_kind(configs: Sequence[ProbeConfig]) -> str:
    """The kind whose collated data serve every probe: one kind, or attention probes (with
    GloVe vectors when any of them reads them)."""
    kinds = {config.kind for config in configs}
    if len(kinds) == 1:
        return kinds.pop()
    if kinds <= set(ATTENTION_KINDS):
        return "attn_glove"
    raise ValueError(f"probes of kinds {sorted(kinds)} read different inputs: train them apart")


def _union_map_index(modules: Sequence[nn.Module]) -> np.ndarray | None:
    """Every map any of the modules reads, sorted (None: no attention probe)."""
    indices = [index for index in map(_map_index_of, modules) if index is not None]
    return np.unique(np.concatenate(indices)) if indices else None


class _Member:
    """One probe of a group that shares a collated set: its module and where its maps sit
    among the set's maps."""

    def __init__(self, config: ProbeConfig, module: nn.Module, collated: CollatedSet):
        self.config, self.module = config, module
        self.map_index = _map_index_of(module)
        self.positions: torch.Tensor | None = None
        self.run: tuple[int, int] | None = None  # (start, count) when the positions are consecutive
        if self.map_index is not None and collated.map_index is not None and not np.array_equal(
            self.map_index, collated.map_index
        ):
            positions = np.searchsorted(collated.map_index, self.map_index)
            self.positions = torch.from_numpy(positions).to(_device(module))
            if np.array_equal(positions, np.arange(positions[0], positions[0] + len(positions))):
                self.run = int(positions[0]), len(positions)

    def parts(self, indices: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        return _parts(self.config, indices, lengths, self.map_index)


class _BatchReader:
    """The batches of one step for every member: each distinct part is read once, and a
    member that reads some of the maps takes them from a part already read with all maps,
    or reads only its maps (its parts can be larger: they are sized for fewer maps)."""

    def __init__(self, collated: CollatedSet):
        self.collated = collated
        self.read: dict[tuple[bytes, bool], ProbeBatch] = {}

    def __call__(self, indices: np.ndarray, member: _Member) -> ProbeBatch:
        key = np.asarray(indices).tobytes()
        positions = member.positions
        if positions is None or (key, False) in self.read:
            if (key, False) not in self.read:
                self.read[key, False] = self.collated.batch(indices, widen=False)
            return _view(self.read[key, False], positions, member.run)
        return self.collated.batch(indices, maps=positions, widen=False)  # used by this member only


def _view(batch: ProbeBatch, positions: torch.Tensor | None, run: tuple[int, int] | None = None) -> ProbeBatch:
    """The batch with only the maps at `positions` (the same batch for None).

    A `run` of consecutive maps (start, count: one layer's heads, the maps being layer-major)
    is a view, not a copy: the kernels read any strides, and copying six layers' maps out of
    the batch cost more than the six probes' matmuls.
    """
    if positions is None:
        return batch
    if run is not None:
        chosen = {name: getattr(batch, name).narrow(axis, *run) for name, axis in MAP_AXIS.items()}
    else:
        chosen = {name: getattr(batch, name).index_select(axis, positions) for name, axis in MAP_AXIS.items()}
    return replace(batch, **chosen)


def _collated_set(stack: contextlib.ExitStack, examples: Sequence[ProbeExample], kind: str,
                  map_index: np.ndarray | None, device: torch.device,
                  maps: Iterable[tuple[int, np.ndarray]] | None, spill: Path | None,
                  release: bool = False) -> CollatedSet:
    """A CollatedSet whose spill files (in a folder of their own under `spill`) live, and are
    closed and removed, with `stack`."""
    folder = None
    if spill is not None:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=spill, prefix=spill_prefix())))
    # Collating frees a few small tensors per sentence, interleaved with the buckets that
    # stay: without a trim those holes stay resident for the whole training (EWT train's
    # attention set: 0.13 GiB, on top of the set's own 0.15 GiB; it grew the process 320 MiB).
    with released_if_grown():
        collated = CollatedSet(examples, kind, map_index, device, release=release, maps=maps, spill=folder)
    stack.callback(collated.close)
    return collated


def spill_prefix() -> str:
    """Spill folders are named host-pid-...: a later process can tell (and remove) the
    folders of a process that was killed before it could remove its own."""
    return f"{socket.gethostname()}-{os.getpid()}-"


def _peek(items: Iterable[tuple[int, np.ndarray]]) -> tuple[tuple[int, np.ndarray], Iterator[tuple[int, np.ndarray]]]:
    """The first item of a stream, and the stream with it still in front."""
    iterator = iter(items)
    first = next(iterator, None)
    if first is None:
        raise ValueError("the streamed maps are empty")
    return first, itertools.chain([first], iterator)


@dataclass
class _Progress:
    """A member's training state: optimizer, history, early stopping."""

    member: _Member
    optimizer: torch.optim.Optimizer
    history: list[EpochLog] = field(default_factory=list)
    best_score: float = -math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    stale: int = 0
    stopped: bool = False
    loss_sum: float = 0.0

    def end_epoch(self, epoch: int, n_sentences: int, dev_score: float) -> EpochLog:
        config, module = self.member.config, self.member.module
        log = EpochLog(epoch, self.loss_sum / n_sentences, dev_score)
        self.history.append(log)
        if dev_score > self.best_score:  # NaN (nothing scored) never counts as better
            self.best_score, self.best_epoch, self.stale = dev_score, epoch, 0
            self.best_state = {name: value.detach().clone() for name, value in module.state_dict().items()}
        else:
            self.stale += 1
            self.stopped = self.stale >= config.patience
        self.stopped = self.stopped or epoch >= config.max_epochs
        return log

    def result(self) -> TrainedProbe:
        config, module = self.member.config, self.member.module
        best_epoch = self.best_epoch
        if self.best_state is not None:
            module.load_state_dict(self.best_state)
        else:
            best_epoch = self.history[-1].epoch
        return TrainedProbe(config, module.eval(), self.history, best_epoch)


def _train(members: Sequence[_Member], train_set: CollatedSet, dev: Sequence[ProbeExample],
           dev_set: CollatedSet, on_epoch: Callable[[int, EpochLog], None] | None) -> list[TrainedProbe]:
    first = members[0].config
    generator = torch.Generator().manual_seed(first.seed)
    progress = [_Progress(member, torch.optim.Adam(member.module.parameters(), lr=member.config.lr))
                for member in members]
    for epoch in range(1, max(member.config.max_epochs for member in members) + 1):
        active = [state for state in progress if not state.stopped]
        if not active:
            break
        for state in active:
            state.member.module.train()
            state.loss_sum = 0.0
        for indices in batches(train_set.lengths, first.batch_size, generator):
            read = _BatchReader(train_set)
            for state in active:
                member = state.member
                state.optimizer.zero_grad()
                for part in member.parts(indices, train_set.lengths):
                    # Each part's mean loss, weighted to its share: the parts' gradients sum to
                    # the whole batch's (one part: the weight is exactly 1).
                    loss = _loss(member.module, read(part, member), member.config.kind) * (len(part) / len(indices))
                    loss.backward()
                    state.loss_sum += loss.item() * len(indices)
                state.optimizer.step()
        scores = _score_many([state.member for state in active], dev, dev_set)
        for state, (dev_score, _) in zip(active, scores):
            log = state.end_epoch(epoch, len(train_set.lengths), dev_score)
            if on_epoch is not None:
                on_epoch(progress.index(state), log)
    return [state.result() for state in progress]


def evaluate(probe: TrainedProbe, examples: Sequence[ProbeExample], *,
             maps: Iterable[tuple[int, np.ndarray]] | None = None, spill: Path | None = None) -> tuple[float, int]:
    """(UAS percent, words scored); for the structural probe (UUAS percent, gold edges).

    UAS excludes relation "punct" and words whose head is -1; UUAS follows `uuas_counts`.
    `maps` and `spill` as in `train_probe`: streamed maps, collated into files.
    """
    map_index = _map_index_of(probe.module)
    if maps is not None or spill is not None:
        return evaluate_probes([probe], examples, maps=maps, spill=spill)[0]
    if map_index is not None and examples:
        n_maps = examples[0].maps.shape[0]
        if map_index.max() >= n_maps:
            raise ValueError(f"the probe reads map {map_index.max()}; examples have {n_maps}")
        _check(probe.config, examples, n_maps)
    else:
        _check(probe.config, examples, None)
    return _score(probe.module, probe.config, examples)


def evaluate_probes(trained: Sequence[TrainedProbe], examples: Sequence[ProbeExample], *,
                    maps: Iterable[tuple[int, np.ndarray]] | None = None,
                    spill: Path | None = None) -> list[tuple[float, int]]:
    """`evaluate` of several probes over the same sentences (as trained by `train_probes`):
    collated once, each batch read once."""
    configs = [probe.config for probe in trained]
    kind = _shared_kind(configs)
    for config in configs:
        _check(config, examples, None)
    modules = [probe.module for probe in trained]
    with contextlib.ExitStack() as stack:
        collated = _collated_set(stack, examples, kind, _union_map_index(modules), _device(modules[0]), maps, spill)
        return _score_many([_Member(config, module, collated) for config, module in zip(configs, modules)],
                           examples, collated)


def predict_heads(probe: TrainedProbe, example: ProbeExample) -> np.ndarray:
    """[word] predicted heads (0 = ROOT, j >= 1 = word j) of an attention or GloVe probe."""
    if probe.config.kind == "structural":
        raise ValueError("the structural probe predicts undirected distances, not heads")
    module = probe.module.eval()
    batch = collate([example], probe.config.kind, _map_index_of(module), _device(module))
    with torch.no_grad():
        return module(batch)[0].argmax(-1).cpu().numpy()


def right_branching_uas(examples: Sequence[ProbeExample]) -> tuple[float, int]:
    """(UAS percent, words scored) of the paper's right-branching baseline.

    Every word's head is the next word; the last word's is ROOT. Punct is not scored.
    """
    correct = total = 0
    for example in examples:
        n = example.n_words
        predicted = np.append(np.arange(2, n + 1), 0)  # word i (1-based) -> i + 1; last -> ROOT
        scored = scored_words(example)
        correct += int((predicted == np.asarray(example.heads))[scored].sum())
        total += int(scored.sum())
    return (100.0 * correct / total if total else float("nan")), total
