"""Word-level attention maps of a few chosen segments, kept whole for figures (Figure 5).

The pipeline picks the segments (its `example_segments` context); this accumulator writes
their maps as they stream by, so it needs no state across chunks.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, RowBuffer, Rows
from app.types import WORD


class ExampleMaps(Analysis):
    name: ClassVar[str] = "examples"
    needs_word_maps: ClassVar[bool] = True

    def __init__(self, n_layers: int, n_heads: int, segment_ids: frozenset[int]):
        super().__init__(n_layers, n_heads)
        self.segment_ids = frozenset(segment_ids)
        self._buffer = RowBuffer("example_maps")

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        assert maps.word is not None
        for row, segment_id in enumerate(batch.segment_ids.tolist()):
            if segment_id not in self.segment_ids:
                continue
            n_units = int((batch.unit_kind[row] >= 0).sum())
            block = (
                maps.word[row, :, :n_units, :n_units].cpu().numpy()
            )  # [head, query_unit, key_unit]
            heads, queries, keys = np.meshgrid(
                np.arange(block.shape[0]), np.arange(n_units), np.arange(n_units), indexing="ij"
            )
            words = batch.unit_word[row, :n_units].cpu().numpy()
            is_word = (batch.unit_kind[row, :n_units] == WORD).cpu().numpy()
            word_of = np.ma.masked_array(words, mask=~is_word)
            self._buffer.append(
                {
                    "segment_id": np.full(block.size, segment_id, dtype=np.int64),
                    "layer": np.full(block.size, layer, dtype=np.int64),
                    "head": heads.ravel(),
                    "query_unit": queries.ravel(),
                    "key_unit": keys.ravel(),
                    "query_word": word_of[queries.ravel()],
                    "key_word": word_of[keys.ravel()],
                    "weight": block.ravel(),
                }
            )

    def flush(self) -> list[Rows]:
        rows = self._buffer.take()
        return [rows] if rows is not None else []

    def finish(self) -> list[Rows]:
        return self.flush()
