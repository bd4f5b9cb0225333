"""The probes' data (ProbeExample, padded batches) and their torch modules.

See probes.py for the method, the ROOT conventions and training; this module holds what a
forward pass needs, so that each file stays about one thing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import shortest_path
from torch import nn

from app.analysis import probe_kernels

ProbeKind = Literal["attn", "attn_glove", "distance_glove", "structural"]
PROBE_KINDS: tuple[str, ...] = get_args(ProbeKind)
ATTENTION_KINDS = ("attn", "attn_glove")
GLOVE_KINDS = ("attn_glove", "distance_glove")
PUNCT = "punct"
IGNORE = -100  # cross-entropy target of padded dependents and of words with no gold head
# The released code's distance features: how far ahead / behind the candidate is (divided by
# the sentence length), indicators for offsets j - i in DISTANCE_OFFSETS, and "is ROOT".
DISTANCE_OFFSETS = (0, -1, 1, -2, 2)
N_DISTANCE_FEATURES = 2 + len(DISTANCE_OFFSETS) + 1


@dataclass(frozen=True)
class ProbeExample:
    """One sentence of n words.

    `maps` covers units 0 = [CLS], 1..n = the words, n + 1 = [SEP]; maps are ordered
    layer-major (map k = layer * n_heads + head), as [layer head query key] flattened.
    """

    maps: np.ndarray  # [map, query_unit, key_unit] word-level attention, float16 or float32
    heads: np.ndarray  # [word] gold head: 0 = ROOT, j >= 1 = word j (1-based), -1 = not scored
    relations: tuple[str, ...]  # [word] relation labels ("punct" is not scored)
    vectors: np.ndarray | None = None  # [word, dim] GloVe, zeros out of vocabulary
    hidden: np.ndarray | None = None  # [word, hidden] one layer's word-level states

    @property
    def n_words(self) -> int:
        return len(self.heads)


# ------------------------------------------------------------------ batches


@dataclass
class ProbeBatch:
    """Padded sentences: B sentences, N = the longest sentence's words."""

    n_words: torch.Tensor  # [batch]
    valid: torch.Tensor  # [batch, query] bool: a real word
    target: torch.Tensor  # [batch, query] gold candidate (0 = ROOT) or IGNORE
    scored: torch.Tensor  # [batch, query] bool: counts for UAS
    # Word-to-word attention in two layouts, so that every map mix is a matmul over the map
    # axis of contiguous memory (no transposed copies per step):
    by_query: torch.Tensor | None = None  # [batch, i, map, j] = alpha^map[i, j]
    by_key: torch.Tensor | None = None  # [batch, i, map, j] = alpha^map[j, i]
    to_special: torch.Tensor | None = None  # [batch, map, 2, query] word -> [CLS], [SEP]
    from_special: torch.Tensor | None = None  # [batch, map, 2, key] [CLS], [SEP] -> word
    vectors: torch.Tensor | None = None  # [batch, query, dim]
    hidden: torch.Tensor | None = None  # [batch, query, hidden]
    tree_distance: torch.Tensor | None = None  # [batch, query, key] gold path length, -1 unknown


def scored_words(example: ProbeExample) -> np.ndarray:
    """[word] bool: the words UAS counts (a gold head is known, relation is not punct)."""
    not_punct = np.array([relation != PUNCT for relation in example.relations], dtype=bool)
    return (np.asarray(example.heads) >= 0) & not_punct


def tree_distances(heads: np.ndarray) -> np.ndarray:
    """[word, word] path lengths in the undirected gold tree (ROOT ignored); inf if unknown."""
    n = len(heads)
    arcs = [(i, int(head) - 1) for i, head in enumerate(heads) if 0 < head <= n and head != i + 1]
    rows, cols = (np.array(side, dtype=np.int64) for side in zip(*arcs)) if arcs else ([], [])
    graph = coo_matrix((np.ones(len(arcs)), (rows, cols)), shape=(n, n)).tocsr()
    return shortest_path(graph, directed=False, unweighted=True)


def collate(
    examples: Sequence[ProbeExample],
    kind: str,
    map_index: np.ndarray | None,
    device: torch.device,
    dtype: type = np.float32,
    hidden_dtype: type = np.float32,
    key_layout: bool = True,
) -> ProbeBatch:
    """Pad sentences into one batch; `dtype` is the attention's, `hidden_dtype` the states'.

    Without `key_layout` the batch has by_query only (CollatedSet builds by_key per batch).
    """
    size, width = len(examples), max(example.n_words for example in examples)
    n_words = np.array([example.n_words for example in examples])
    target = np.full((size, width), IGNORE, dtype=np.int64)
    scored = np.zeros((size, width), dtype=bool)
    for b, example in enumerate(examples):
        heads = np.asarray(example.heads)
        target[b, : len(heads)] = np.where(heads >= 0, heads, IGNORE)
        scored[b, : len(heads)] = scored_words(example)
    tensor = lambda array: torch.from_numpy(array).to(device)  # noqa: E731
    batch = ProbeBatch(
        n_words=tensor(n_words),
        valid=tensor(np.arange(width)[None, :] < n_words[:, None]),
        target=tensor(target),
        scored=tensor(scored),
    )
    if kind in ATTENTION_KINDS:
        assert map_index is not None
        shape = (size, len(map_index))
        words: np.ndarray = np.zeros((*shape, width, width), dtype=dtype)
        to_special: np.ndarray = np.zeros((*shape, 2, width), dtype=dtype)
        from_special: np.ndarray = np.zeros((*shape, 2, width), dtype=dtype)
        for b, example in enumerate(examples):
            n, maps = example.n_words, example.maps  # maps: [map, query_unit, key_unit]
            inner = slice(1, n + 1)  # the word units
            words[b, :, :n, :n] = maps[map_index, inner, inner]
            to_special[b, :, 0, :n] = maps[map_index, inner, 0]
            to_special[b, :, 1, :n] = maps[map_index, inner, n + 1]
            from_special[b, :, 0, :n] = maps[map_index, 0, inner]
            from_special[b, :, 1, :n] = maps[map_index, n + 1, inner]
        # words: [batch, map, query, key] -> the two layouts of ProbeBatch.
        batch.by_query = tensor(np.ascontiguousarray(words.transpose(0, 2, 1, 3)))
        if key_layout:
            batch.by_key = tensor(np.ascontiguousarray(words.transpose(0, 3, 1, 2)))
        batch.to_special = tensor(to_special)
        batch.from_special = tensor(from_special)
    if kind in GLOVE_KINDS:
        batch.vectors = tensor(_pad([example.vectors for example in examples], width))
    if kind == "structural":
        batch.hidden = tensor(_pad([example.hidden for example in examples], width, hidden_dtype))
        distance = np.full((size, width, width), -1.0, dtype=np.float32)
        for b, example in enumerate(examples):
            n, gold = example.n_words, tree_distances(np.asarray(example.heads))
            distance[b, :n, :n] = np.where(np.isfinite(gold), gold, -1.0)
        batch.tree_distance = tensor(distance)
    return batch


class SpilledRows:
    """A bucket's float16 word maps in a file, read back a few rows at a time.

    Training sets larger than memory keep their one big field (by_query) on disk: each
    batch reads its rows with positional reads, which go through the page cache without
    mapping the file, so the process's resident memory stays one batch, whatever the corpus.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...]):
        self.path, self.row_shape, self.rows = path, row_shape, 0
        self.row_bytes = int(np.prod(row_shape)) * 2
        self._file = open(path, "ab")  # noqa: SIM115 - closed by finish() before any read
        self._fd: int | None = None

    def append(self, row: torch.Tensor) -> None:
        self._file.write(row.numpy().tobytes())
        self.rows += 1

    def finish(self) -> None:
        self._file.close()
        self._fd = os.open(self.path, os.O_RDONLY)

    def index_select(self, axis: int, rows: torch.Tensor) -> torch.Tensor:
        """The rows (axis 0), as a float16 tensor; the same call as on an in-memory bucket."""
        assert axis == 0 and self._fd is not None
        out = np.empty((len(rows), *self.row_shape), dtype=np.float16)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        for position, row in enumerate(rows.tolist()):
            self._read(row, flat[position])
        return torch.from_numpy(out)

    def select_maps(self, rows: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The rows with only some maps (axis 2 of a [row, i, map, j] bucket), read one row at
        a time: memory holds the selected maps, not the whole rows."""
        assert self._fd is not None
        out = np.empty((len(rows), self.row_shape[0], len(maps), *self.row_shape[2:]), dtype=np.float16)
        buffer = np.empty(self.row_shape, dtype=np.float16)
        chosen = maps.numpy()
        for position, row in enumerate(rows.tolist()):
            self._read(row, buffer.reshape(-1).view(np.uint8))
            out[position] = buffer[:, chosen]
        return torch.from_numpy(out)

    def _read(self, row: int, into: Any) -> None:  # a uint8 view of a row (numpy's stub is no Buffer)
        assert self._fd is not None
        if os.preadv(self._fd, [into], row * self.row_bytes) != self.row_bytes:
            raise OSError(f"{self.path}: row {row} is short")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    __del__ = close


class CollatedSet:
    """Examples pre-collated once into padded tensors, one bucket per sentence length.

    An epoch then gathers each mini-batch from at most a few buckets with a handful of
    tensor operations (no per-sentence Python), and attention stays float16 until a batch
    is formed. `batch(indices)` equals `collate([examples[i] for i in indices], ...)`, value
    for value: the same rows in the same order, padded with zeros to the longest sentence.

    The word maps are kept in one layout (by_query), and `batch()` gives by_key as a
    transposed view of it (or a widened copy). Sentences are collated one at a time as their
    maps arrive, so a corpus's maps never need to be in memory at once: `maps` streams them
    from the feature cache, and `spill` puts the buckets' word maps in files there.
    """

    def __init__(
        self,
        examples: Sequence[ProbeExample],
        kind: str,
        map_index: np.ndarray | None,
        device: torch.device,
        *,
        release: bool = False,
        maps: Iterable[tuple[int, np.ndarray]] | None = None,
        spill: Path | None = None,
    ):
        """Args:
            release: `examples` must be a list: each example's attention maps and hidden
                states are dropped from it (maps replaced by an empty array, hidden by None)
                as soon as they are collated.
            maps: (example index, maps [map, unit, unit]) for every example, in any order,
                instead of the examples' own `maps`.
            spill: a directory for the buckets' word maps (attention probes).
        """
        self.kind, self.device = kind, device
        self.map_index = None if map_index is None else np.asarray(map_index)  # the maps collated
        self.lengths = np.array([example.n_words for example in examples])
        self.bucket_of = np.full(len(examples), -1, dtype=np.int64)  # example -> its row in its bucket
        rows: dict[int, dict[str, list[torch.Tensor]]] = {}
        spilled: dict[tuple[int, str], SpilledRows] = {}
        # In files, one layout: the probes' kernel reads by_key as a transposed view of it.
        on_disk = ("by_query",) if spill is not None else ()
        source = maps if maps is not None else ((i, example.maps) for i, example in enumerate(examples))
        for index, example_maps in source:
            example = examples[index]
            if self.bucket_of[index] >= 0:
                raise ValueError(f"example {index}: maps given twice")
            width = example.n_words
            if kind in ATTENTION_KINDS and example_maps.shape[1:] != (width + 2, width + 2):
                raise ValueError(f"example {index}: maps {example_maps.shape} for {width} words")
            collated = self._row(replace(example, maps=example_maps), map_index)
            bucket = rows.setdefault(width, {})
            self.bucket_of[index] = len(next(iter(bucket.values()), ()))
            for name in on_disk:
                if name in collated:
                    if (width, name) not in spilled:
                        path = spill / f"{name}-{width:04d}.f16"  # type: ignore[operator]
                        spilled[width, name] = SpilledRows(path, tuple(collated[name].shape[1:]))
                    spilled[width, name].append(collated.pop(name)[0])
            for name, value in collated.items():
                bucket.setdefault(name, []).append(value)
            if release:  # the maps and hidden states are now in the set (or its files) only
                examples[index] = replace(example, maps=np.zeros((0, 0, 0), np.float16), hidden=None)  # type: ignore[index]
        if np.any(self.bucket_of < 0):
            raise ValueError(f"no maps for example {int(np.flatnonzero(self.bucket_of < 0)[0])}")
        # Bucket by bucket, each bucket's rows dropped once joined: the rows and the joined
        # tensors are held together for one bucket, not for the whole set (the structural
        # probe's hidden states of EWT train are 157 MB).
        self.buckets: dict[int, dict[str, Any]] = {}
        for width in list(rows):
            fields = rows.pop(width)
            self.buckets[width] = {name: torch.cat(fields.pop(name)) for name in list(fields)}
        for (width, name), file in spilled.items():
            file.finish()
            self.buckets.setdefault(width, {})[name] = file

    def _row(self, example: ProbeExample, map_index: np.ndarray | None) -> dict[str, torch.Tensor]:
        # Float16 inputs stay float16 (exactly widened per batch), others become float32.
        def narrow(array: np.ndarray | None) -> type:
            return np.float16 if array is not None and array.dtype == np.float16 else np.float32

        batch = collate(
            [example], self.kind, map_index, self.device,
            dtype=narrow(example.maps), hidden_dtype=narrow(example.hidden), key_layout=False,
        )
        return {
            name: value
            for name, value in vars(batch).items()
            if isinstance(value, torch.Tensor) and name not in ("n_words", "valid")
        }

    def close(self) -> None:
        """Close the spill files (they are read until then)."""
        for fields in self.buckets.values():
            for value in fields.values():
                if isinstance(value, SpilledRows):
                    value.close()

    def batch(self, indices: np.ndarray, maps: torch.Tensor | None = None, *, widen: bool = True) -> ProbeBatch:
        """The padded ProbeBatch of `indices`, in their order.

        `maps` (positions among the collated maps): only those maps, selected before anything
        is widened. `widen=False` leaves the word maps as stored (float16 from the feature
        cache) for the probes' kernel, which widens them into a buffer it reuses (by_key: the
        file's layout, or in memory a transposed view of by_query).
        """
        indices = np.asarray(indices)
        lengths = self.lengths[indices]
        width = int(lengths.max())
        parts: dict[str, list[torch.Tensor]] = {}
        order = []
        for length in np.unique(lengths).tolist():
            chosen = np.flatnonzero(lengths == length)
            order.append(chosen)
            rows = torch.from_numpy(self.bucket_of[indices[chosen]]).to(self.device)
            for name, value in self.buckets[length].items():
                parts.setdefault(name, []).append(_pad_to(_gather(value, name, rows, maps), name, width))
        position = np.argsort(np.concatenate(order), kind="stable")
        in_order = bool(np.all(position == np.arange(len(position))))
        tensors = {}
        for name, values in parts.items():
            value = values[0] if len(values) == 1 else torch.cat(values)
            if not in_order:  # batches() gives length-sorted indices: usually already in order
                value = value.index_select(0, torch.from_numpy(position).to(self.device))
            tensors[name] = value
        for name in ("to_special", "from_special", "hidden"):
            if name in tensors:
                tensors[name] = tensors[name].float()
        if "by_query" in tensors:
            tensors["by_query"], tensors["by_key"] = both_layouts(
                tensors["by_query"], tensors.get("by_key"), widen=widen)
        n_words = torch.from_numpy(lengths).to(self.device)
        valid = torch.arange(width, device=self.device)[None, :] < n_words[:, None]
        return ProbeBatch(n_words=n_words, valid=valid, **tensors)


# The map axis of each attention field, in a bucket ([row, ...]) and in a ProbeBatch alike.
MAP_AXIS = {"by_query": 2, "by_key": 2, "to_special": 1, "from_special": 1}


def _gather(value: Any, name: str, rows: torch.Tensor, maps: torch.Tensor | None) -> torch.Tensor:
    """A bucket field's rows, with only `maps` of its attention fields."""
    if maps is None or name not in MAP_AXIS:
        return value.index_select(0, rows)
    if isinstance(value, SpilledRows):
        return value.select_maps(rows, maps)
    return value.index_select(0, rows).index_select(MAP_AXIS[name], maps)


def both_layouts(
    by_query: torch.Tensor, by_key: torch.Tensor | None = None, *, widen: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """[batch, i, map, j] maps (any float dtype) -> (by_query, by_key), by_key made if None.

    by_key[b, i, m, j] = by_query[b, j, m, i]. With `widen`, both come back float32 and
    contiguous (a made by_key is written by one strided copy that also widens). Without,
    they keep their dtype (float16 from the feature cache) and a made by_key is a transposed
    view: the probes' kernel (probe_kernels.map_mix) widens both in one copy each.
    """
    if by_key is None:
        if not widen:
            return by_query, by_query.permute(0, 3, 2, 1)
        size, width, n_maps, _ = by_query.shape
        by_key = torch.empty(size, width, n_maps, width, device=by_query.device)
        by_key.copy_(by_query.permute(0, 3, 2, 1))
    if not widen:
        return by_query, by_key
    return by_query.float(), by_key.float()


# How each ProbeBatch field is padded: the axes that run over words, and the fill value.
_PADDING = {
    "target": ((1,), IGNORE),
    "scored": ((1,), False),
    "by_query": ((1, 3), 0.0),
    "by_key": ((1, 3), 0.0),
    "to_special": ((3,), 0.0),
    "from_special": ((3,), 0.0),
    "vectors": ((1,), 0.0),
    "hidden": ((1,), 0.0),
    "tree_distance": ((1, 2), -1.0),
}


def _pad_to(value: torch.Tensor, name: str, width: int) -> torch.Tensor:
    axes, fill = _PADDING[name]
    missing = width - value.shape[axes[0]]
    if missing == 0:
        return value
    pad: list[int] = []
    for axis in range(value.dim() - 1, 0, -1):  # F.pad lists the last axis first
        pad += [0, missing if axis in axes else 0]
    return torch.nn.functional.pad(value, pad, value=fill)


def _pad(arrays: Sequence[np.ndarray | None], width: int, dtype: type = np.float32) -> np.ndarray:
    """[word, dim] arrays -> [batch, word, dim], zero-padded."""
    first = arrays[0]
    assert first is not None
    out: np.ndarray = np.zeros((len(arrays), width, first.shape[1]), dtype=dtype)
    for b, array in enumerate(arrays):
        assert array is not None
        out[b, : len(array)] = array
    return out


def batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator | None
) -> Iterator[np.ndarray]:
    """Indices of sentences of similar length; shuffled (ties and batch order) with a generator."""
    if generator is None:
        order = np.argsort(lengths, kind="stable")
    else:
        permutation = torch.randperm(len(lengths), generator=generator).numpy()
        order = permutation[np.argsort(lengths[permutation], kind="stable")]
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if generator is not None:
        chunks = [chunks[i] for i in torch.randperm(len(chunks), generator=generator).tolist()]
    yield from chunks


# ------------------------------------------------------------------ probes


def _candidate_logits(root: torch.Tensor, word: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[batch, query] ROOT and [batch, query, key] word logits -> [batch, query, 1 + key].

    Padded candidates get -inf."""
    logits = torch.cat([root.unsqueeze(-1), word], -1)
    candidate = torch.cat([torch.ones_like(valid[:, :1]), valid], -1)  # [batch, 1 + key]
    return logits.masked_fill(~candidate.unsqueeze(1), float("-inf"))


def _special(batch: ProbeBatch) -> torch.Tensor:
    """[batch, 2 map, 2, query]: alpha[i, s] over alpha[s, i], s = [CLS], [SEP] (constants)."""
    assert batch.to_special is not None and batch.from_special is not None
    return torch.cat([batch.to_special, batch.from_special], 1)


def _glorot(*shape: int, fan: int) -> torch.Tensor:
    """TF's glorot_uniform, the released code's default initialiser (fan_in + fan_out = fan)."""
    limit = math.sqrt(6.0 / fan)
    return torch.empty(*shape).uniform_(-limit, limit)


class AttentionProbe(nn.Module):
    """logit(i -> j) = sum_k w_k alpha^k[i, j] + u_k alpha^k[j, i]; ROOT via [CLS]/[SEP]."""

    def __init__(self, map_index: np.ndarray):
        super().__init__()
        n_maps = len(map_index)
        self.register_buffer("map_index", torch.as_tensor(np.asarray(map_index), dtype=torch.long))
        # The released code learns one [2K] vector, glorot-initialised as such.
        self.w = nn.Parameter(_glorot(n_maps, fan=4 * n_maps))
        self.u = nn.Parameter(_glorot(n_maps, fan=4 * n_maps))
        self.root_weight = nn.Parameter(_glorot(2, fan=2))  # ROOT_start (CLS), ROOT_end (SEP)

    def forward(self, batch: ProbeBatch) -> torch.Tensor:
        """-> [batch, query, 1 + key] logits over [ROOT, words]."""
        assert batch.by_query is not None and batch.by_key is not None
        size, width = batch.by_query.shape[:2]
        weights = torch.cat([self.w, self.u])  # [2 map]: forward maps, then transposed maps
        # [batch, i, 1, 2 map] @ [alpha[i, :]; alpha[:, i]] -> w . alpha[i, j] + u . alpha[j, i],
        # one matvec per row over both layouts (an unbatched weight would make matmul copy
        # the maps to put the map axis last).
        coeff = weights.expand(size, width, 1, len(weights))
        word = probe_kernels.map_mix(coeff, batch.by_query, batch.by_key).squeeze(2)  # [batch, i, j]
        # ROOT: alpha[i, ROOT] = root_weight . (alpha[i, CLS], alpha[i, SEP]), and the reverse.
        special = _special(batch)  # [batch, 2 map, 2, query]
        by_special = torch.matmul(weights, special.flatten(2)).view(size, 2, width)  # [batch, 2, query]
        root = torch.matmul(self.root_weight, by_special)  # [batch, query]
        return _candidate_logits(root, word, batch.valid)


class AttentionGloveProbe(nn.Module):
    """logit(i -> j) = sum_k W_k(v_i ⊕ v_j) alpha^k[i, j] + U_k(v_i ⊕ v_j) alpha^k[j, i].

    `pair` = Linear(2 dim -> 2 map) gives [W; U]. Computed without the [query, key, 2 map]
    weight tensor: Linear(v_i ⊕ v_j) = A v_i + C v_j + bias, each term contracted with the maps.
    """

    def __init__(self, map_index: np.ndarray, dim: int):
        super().__init__()
        n_maps = len(map_index)
        self.register_buffer("map_index", torch.as_tensor(np.asarray(map_index), dtype=torch.long))
        self.pair = nn.Linear(2 * dim, 2 * n_maps)
        with torch.no_grad():  # tf.layers.dense defaults, as released
            self.pair.weight.copy_(_glorot(2 * n_maps, 2 * dim, fan=2 * n_maps + 2 * dim))
            self.pair.bias.zero_()
        self.root_vector = nn.Parameter(torch.zeros(dim))
        self.root_weight = nn.Parameter(_glorot(2, fan=2))

    def forward(self, batch: ProbeBatch) -> torch.Tensor:
        """-> [batch, query, 1 + key] logits over [ROOT, words]."""
        by_query, by_key, vectors = batch.by_query, batch.by_key, batch.vectors
        assert by_query is not None and by_key is not None and vectors is not None
        (size, width, dim), n_maps = vectors.shape, by_query.shape[2]
        weight, bias = self.pair.weight, self.pair.bias  # [2 map, 2 dim]: rows W (forward maps), U
        # Two matvecs per row i over the stacked maps [alpha[i, :]; alpha[:, i]] (2 map):
        # row 0, i as the dependent: [W v_i + b_W, U v_i + b_U] -> logit(i -> j) terms in v_i;
        # row 1, i as the candidate: [U' v_i, W' v_i] -> at j: the v_i terms of logit(j -> i).
        # (W v_i: the dependent's columns of W, W' the candidate's.)
        coeff_weight = torch.cat([weight[:, :dim], weight[n_maps:, dim:], weight[:n_maps, dim:]])  # [W; U; U'; W']
        coeff_bias = nn.functional.pad(bias, (0, 2 * n_maps))  # [b_W, b_U, 0, 0]
        coeff = nn.functional.linear(vectors, coeff_weight, coeff_bias).view(size, width, 2, 2 * n_maps)
        mixed = probe_kernels.map_mix(coeff, by_query, by_key)  # [batch, i, 2, j]
        word = mixed[:, :, 0] + mixed[:, :, 1].transpose(1, 2)  # [batch, i, j]
        # ROOT (candidate vector root_vector): its pair weights dotted with alpha[i, ROOT] and
        # alpha[ROOT, i], where alpha[., ROOT] mixes [CLS] and [SEP] by root_weight.
        root_coeff = coeff[:, :, 0] + weight[:, dim:] @ self.root_vector  # [batch, query, 2 map]
        special = _special(batch).permute(0, 3, 1, 2)  # [batch, query, 2 map, 2]
        by_special = torch.matmul(root_coeff.unsqueeze(2), special).view(size, width, 2)
        root = by_special @ self.root_weight  # [batch, query]
        return _candidate_logits(root, word, batch.valid)


def distance_features(n_words: torch.Tensor, width: int) -> torch.Tensor:
    """The released code's distance features: [batch] lengths -> [batch, query, 1 + key, 8].

    Per (dependent i, candidate j): (j - i) / n if j > i, (i - j) / n if j < i, indicators of
    j - i in DISTANCE_OFFSETS, and "is ROOT" (candidate 0: only that feature is 1).
    """
    position = torch.arange(width, device=n_words.device)
    offset = (position[None, :] - position[:, None]).float()  # [query, key]: j - i
    length = n_words.float().clamp(min=1)[:, None, None]  # [batch, 1, 1]
    ahead, behind = offset.clamp(min=0) / length, (-offset).clamp(min=0) / length
    indicators = [(offset == k).float().expand_as(ahead) for k in DISTANCE_OFFSETS]
    words = torch.stack([ahead, behind, *indicators, torch.zeros_like(ahead)], -1)
    root = torch.zeros(len(n_words), width, 1, N_DISTANCE_FEATURES, device=n_words.device)
    root[..., -1] = 1.0
    return torch.cat([root, words], 2)


def distance_table(n_words: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`distance_features` as a table of each sentence's few distinct rows and an index into it.

    Per sentence the features depend only on the offset j - i (and the length), or are
    ROOT's: 2 width rows, so the MLP projects 2 width vectors instead of width^2.
    Returns (features [batch, 2 width, 8], index [batch, query, 1 + key] int64 rows of the
    sentence's table) with features[b, index[b]] == distance_features(n_words, width)[b].
    """
    size, device = len(n_words), n_words.device
    offset = torch.arange(-(width - 1), width, device=device).float()  # row r: offset r - (width - 1)
    length = n_words.float().clamp(min=1)[:, None]  # [batch, 1]
    ahead, behind = offset.clamp(min=0) / length, (-offset).clamp(min=0) / length  # [batch, offset]
    indicators = [(offset == k).float().expand_as(ahead) for k in DISTANCE_OFFSETS]
    words = torch.stack([ahead, behind, *indicators, torch.zeros_like(ahead)], -1)  # [batch, offset, 8]
    root = torch.zeros(size, 1, N_DISTANCE_FEATURES, device=device)
    root[..., -1] = 1.0
    features = torch.cat([words, root], 1)  # [batch, 2 width, 8]
    position = torch.arange(width, device=device)
    row = (position[None, :] - position[:, None]) + (width - 1)  # [query, key]: j - i, shifted
    row = torch.cat([torch.full((width, 1), 2 * width - 1, device=device), row], 1)  # ROOT first
    return features, row.expand(size, width, width + 1)


class DistanceGloveProbe(nn.Module):
    """logit(i -> j) = out(tanh(hidden(v_i ⊕ v_j ⊕ distance features(i, j))))."""

    def __init__(self, dim: int, hidden_size: int):
        super().__init__()
        n_in = 2 * dim + N_DISTANCE_FEATURES
        self.hidden = nn.Linear(n_in, hidden_size)
        self.out = nn.Linear(hidden_size, 1)
        with torch.no_grad():
            self.hidden.weight.copy_(_glorot(hidden_size, n_in, fan=hidden_size + n_in))
            self.out.weight.copy_(_glorot(1, hidden_size, fan=hidden_size + 1))
            self.hidden.bias.zero_()
            self.out.bias.zero_()
        self.root_vector = nn.Parameter(torch.zeros(dim))

    def forward(self, batch: ProbeBatch) -> torch.Tensor:
        """-> [batch, query, 1 + key] logits over [ROOT, words]."""
        vectors = batch.vectors  # [batch, word, dim]
        assert vectors is not None
        dim, width = vectors.shape[-1], vectors.shape[1]
        weight = self.hidden.weight  # [hidden, 2 dim + 8]: dependent, candidate, distances
        dependent = vectors @ weight[:, :dim].T + self.hidden.bias  # [batch, query, hidden]
        candidate = vectors @ weight[:, dim : 2 * dim].T  # [batch, key, hidden]
        root = (weight[:, dim : 2 * dim] @ self.root_vector).expand(len(vectors), 1, -1)
        candidate = torch.cat([root, candidate], 1)  # [batch, 1 + key, hidden]
        features, index = distance_table(batch.n_words, width)  # [batch, row, 8], [batch, query, 1 + key]
        distance = features @ weight[:, 2 * dim :].T  # [batch, row, hidden]
        # tanh(dependent_i + candidate_j + distance_ij) -> Linear(hidden, 1), without keeping
        # the [batch, query, 1 + key, hidden] activations (probe_kernels.pair_mlp)
        logits = probe_kernels.pair_mlp(dependent, candidate, distance, index,
                                        self.out.weight, self.out.bias)  # [batch, query, 1 + key]
        return _candidate_logits(logits[..., 0], logits[..., 1:], batch.valid)


class StructuralProbe(nn.Module):
    """Hewitt & Manning's distance probe: d(i, j) = ||B (h_i - h_j)||^2, B of rank `rank`."""

    def __init__(self, hidden_size: int, rank: int):
        super().__init__()
        self.proj = nn.Parameter(torch.empty(hidden_size, rank).uniform_(-0.05, 0.05))  # as H&M

    def forward(self, batch: ProbeBatch) -> torch.Tensor:
        """-> [batch, query, key] predicted squared distances.

        ||p_i - p_j||^2 = |p_i|^2 + |p_j|^2 - 2 p_i . p_j: a Gram matrix instead of the
        [batch, query, key, rank] differences (rank times the memory), so that a batch of
        long sentences needs no cutting into parts.
        """
        assert batch.hidden is not None
        projected = batch.hidden @ self.proj  # [batch, word, rank]
        norms = (projected**2).sum(-1)  # [batch, word]
        gram = projected @ projected.transpose(1, 2)  # [batch, query, key]
        distances = (norms[:, :, None] + norms[:, None, :] - 2 * gram).clamp(min=0.0)
        diagonal = torch.eye(distances.shape[1], dtype=torch.bool, device=distances.device)
        return distances.masked_fill(diagonal, 0.0)  # exactly 0, as the differences give
