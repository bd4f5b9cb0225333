"""The probes' feature cache: word-level maps of all heads, and one layer's hidden states.

Probes read every sentence's features each epoch, so the encoder runs once and the features
go to disk as float16, in one `.npz` shard per chunk of segments (written to a temporary
name and renamed, so a shard is whole or absent). An interrupted extraction resumes by
skipping the shards already there. Units are reordered to the probes' layout:
0 = [CLS], 1..n = the words, n + 1 = [SEP] (the model's first and last special tokens).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

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
        # float16 now (the bits are the same as converting after the reordering): half the
        # bytes for the stack and the copies below.
        self._layers.append(maps.word.to(torch.float16))

    def end_batch(self, batch: AttentionBatch) -> None:
        # [batch, layer, head, unit, unit] -> [batch, layer * head, unit, unit], layer-major
        maps = torch.stack(self._layers, dim=1).flatten(1, 2).cpu()
        self._layers = []
        for row, segment_id in enumerate(batch.segment_ids.tolist()):
            kinds = batch.unit_kind[row]
            words = torch.nonzero(kinds == WORD).flatten()
            cls = torch.nonzero(kinds == CLS).flatten()[:1]
            sep = torch.nonzero(kinds == SEP).flatten()[-1:]
            if len(cls) == 0 or len(sep) == 0:
                raise ValueError("the probes need a first ([CLS]) and last ([SEP]) special token")
            order = torch.cat([cls, words, sep]).cpu()
            n = len(order)
            if torch.equal(order, torch.arange(n)):  # BERT-style: the units are already in order
                features = maps[row, :, :n, :n].numpy().copy()  # a copy: not a view of the batch
            else:
                features = maps[row][:, order[:, None], order].numpy()
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
    """One chunk's features, flattened with offsets; atomic (temporary name, then rename).

    The file is what `np.savez` writes (a stored zip of `.npy` members), but the maps are
    streamed into it segment by segment instead of concatenated first: the last shard of a
    treebank holds its longest sentences (140 MB for EWT train), which was held twice.
    """
    segment_ids = np.array([f[0] for f in features], dtype=np.int64)
    units = np.array([f[1].shape[-1] for f in features], dtype=np.int64)
    has_hidden = bool(features) and features[0][2] is not None
    arrays = {"segment_ids": segment_ids, "units": units, "n_maps": np.array(features[0][1].shape[0] if features else 0)}
    if has_hidden:
        arrays["hidden"] = np.concatenate([f[2] for f in features])
    partial = path.with_name(path.name + ".partial.npz")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
        blocks = [np.ascontiguousarray(f[1], dtype=np.float16) for f in features]
        with archive.open("maps.npy", "w", force_zip64=True) as member:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                      "shape": (sum(block.size for block in blocks),)}
            np.lib.format.write_array_header_1_0(member, header)  # one number: always fits 1.0
            for block in blocks:
                member.write(block.reshape(-1).view(np.uint8).data)
    partial.rename(path)


def read_shards(directory: Path, *, maps: bool = True,
                hidden: bool = True) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """(segment id, maps [map, unit, unit], hidden [word, dim]) for every segment, one segment's
    maps in memory at a time; without `maps` / `hidden` (or a shard without states) that part
    is None and is not read.

    The maps are read from the shard's file segment by segment: the shards hold segments in
    length order, so the last shard of a treebank is its largest (140 MB of EWT train's maps),
    and loading it whole added that much to every probe's peak.
    """
    for path in sorted(directory.glob("shard-*.npz")):
        with np.load(path) as shard, zipfile.ZipFile(path) as archive:
            n_maps = int(shard["n_maps"])
            units = shard["units"]
            flat = _array_stream(archive, "maps") if maps else None
            states = shard["hidden"] if hidden and "hidden" in shard.files else None
            word_offset = 0
            try:
                for segment_id, n_units in zip(shard["segment_ids"].tolist(), units.tolist()):
                    block = None
                    if flat is not None:
                        stream, dtype = flat
                        block = np.empty((n_maps, n_units, n_units), dtype=dtype)
                        _read_exactly(stream, block)
                    words = None
                    if states is not None:
                        words = states[word_offset : word_offset + n_units - 2]
                        word_offset += n_units - 2
                    yield segment_id, block, words
            finally:
                if flat is not None:
                    flat[0].close()


def _array_stream(archive: zipfile.ZipFile, name: str) -> tuple[IO[bytes], np.dtype]:
    """An .npz member positioned at its array data (the shards are stored, not compressed),
    and the array's dtype."""
    stream = archive.open(f"{name}.npy")
    version = np.lib.format.read_magic(stream)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    _shape, fortran_order, dtype = read_header(stream)
    if fortran_order:
        raise ValueError(f"{archive.filename}: {name} is not in C order")
    return stream, dtype


def _read_exactly(stream: IO[bytes], into: np.ndarray) -> None:
    view = into.reshape(-1).view(np.uint8).data  # a writable memoryview of the array
    done = 0
    while done < len(view):
        count = stream.readinto(view[done:])  # type: ignore[attr-defined]
        if not count:
            raise ValueError("a feature shard ends early: delete the cache folder to extract it again")
        done += count


def directory_sha256(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(directory.glob("shard-*.npz")):
        with path.open("rb") as file:  # streamed: a shard can be 140 MB
            digest.update(hashlib.file_digest(file, "sha256").hexdigest().encode())
    return digest.hexdigest()
