"""The probes' feature cache: word-level maps of all heads, and one layer's hidden states.

Probes read every sentence's features each epoch, so the encoder runs once and the features
go to disk as float16, in one `.npz` shard per chunk of segments (written to a temporary
name and renamed, so a shard is whole or absent). An interrupted extraction resumes by
skipping the shards already there. Units are reordered to the probes' layout:
0 = [CLS], 1..n = the words, n + 1 = [SEP] (the model's first and last special tokens).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows
from app.types import CLS, SEP, WORD


class FeatureWriter(Analysis):
    """Collects per-segment features from the engine; the pipeline writes them as shards."""

    name: ClassVar[str] = "features"
    needs_word_maps: ClassVar[bool] = True

    def __init__(self, n_layers: int, n_heads: int, *, hidden_layer: int | None):
        super().__init__(n_layers, n_heads)
        self.hidden_layer = hidden_layer
        self._layers: list[torch.Tensor] = []
        self._pending: list[tuple[int, np.ndarray, np.ndarray | None]] = []

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.word is not None
        self._layers.append(maps.word)

    def end_batch(self, batch: AttentionBatch) -> None:
        # [batch, layer, head, unit, unit] -> [batch, layer * head, unit, unit], layer-major
        maps = torch.stack(self._layers, dim=1).flatten(1, 2)
        self._layers = []
        for row, segment_id in enumerate(batch.segment_ids.tolist()):
            kinds = batch.unit_kind[row]
            words = torch.nonzero(kinds == WORD).flatten()
            cls = torch.nonzero(kinds == CLS).flatten()[:1]
            sep = torch.nonzero(kinds == SEP).flatten()[-1:]
            if len(cls) == 0 or len(sep) == 0:
                raise ValueError("the probes need a first ([CLS]) and last ([SEP]) special token")
            order = torch.cat([cls, words, sep])
            features = maps[row][:, order][:, :, order].to(torch.float16).cpu().numpy()
            hidden = None
            if batch.hidden is not None:
                hidden = batch.hidden[row, words].to(torch.float16).cpu().numpy()
            self._pending.append((segment_id, features, hidden))

    def take(self) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
        pending, self._pending = self._pending, []
        return pending

    def finish(self) -> list[Rows]:
        return []


def shard_path(directory: Path, start: int) -> Path:
    return directory / f"shard-{start:07d}.npz"


def write_shard(path: Path, features: list[tuple[int, np.ndarray, np.ndarray | None]]) -> None:
    """One chunk's features, flattened with offsets; atomic (temporary name, then rename)."""
    segment_ids = np.array([f[0] for f in features], dtype=np.int64)
    units = np.array([f[1].shape[-1] for f in features], dtype=np.int64)
    maps = np.concatenate([f[1].ravel() for f in features]) if features else np.zeros(0, np.float16)
    has_hidden = bool(features) and features[0][2] is not None
    arrays = {"segment_ids": segment_ids, "units": units, "maps": maps, "n_maps": np.array(features[0][1].shape[0] if features else 0)}
    if has_hidden:
        arrays["hidden"] = np.concatenate([f[2] for f in features])
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)  # type: ignore[arg-type]  # numpy's stub: allow_pickle vs **kwds
    partial.rename(path)


def read_shards(directory: Path, *, maps: bool = True,
                hidden: bool = True) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """(segment id, maps [map, unit, unit], hidden [word, dim]) for every segment, one shard
    in memory at a time; without `maps` / `hidden` (or a shard without states) that part is
    None and is not read."""
    for path in sorted(directory.glob("shard-*.npz")):
        with np.load(path) as shard:
            n_maps = int(shard["n_maps"])
            units = shard["units"]
            flat = shard["maps"] if maps else None
            states = shard["hidden"] if hidden and "hidden" in shard.files else None
            map_offset = word_offset = 0
            for segment_id, n_units in zip(shard["segment_ids"].tolist(), units.tolist()):
                size = n_maps * n_units * n_units
                # A copy, not a view: a consumer that drops a segment's maps frees them
                # (a view would keep the whole shard alive).
                block = None
                if flat is not None:
                    block = flat[map_offset : map_offset + size].reshape(n_maps, n_units, n_units).copy()
                map_offset += size
                words = None
                if states is not None:
                    words = states[word_offset : word_offset + n_units - 2]
                    word_offset += n_units - 2
                yield segment_id, block, words


def directory_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("shard-*.npz")):
        digest.update(hashlib.sha256(path.read_bytes()).hexdigest().encode())
    return digest.hexdigest()
