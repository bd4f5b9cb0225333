"""The contract between the attention engine and the analyses.

One forward pass feeds every enabled analysis: for each batch the engine calls
`update(batch, layer, maps)` once per layer (token maps always, word maps when an analysis
asks for them), then `end_batch(batch)`. Streamed rows come out of `flush()` after each
chunk of segments, aggregates out of `finish()`. `state_dict()` is saved with every chunk so
that an interrupted run resumes where it stopped; memory never grows with the corpus.
States are additive: `merge()` combines a checkpoint, or the shards of distributed workers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class AttentionBatch:
    """A padded batch of segments and its unit layout (see extract/align.py).

    Shapes: B segments, T tokens (padded), U units (padded). Padding tokens have
    `token_valid` False; padding units have `unit_kind` -1.
    """

    segment_ids: np.ndarray  # [batch]
    input_ids: torch.Tensor  # [batch, token]
    token_valid: torch.Tensor  # [batch, token] bool
    token_kind: torch.Tensor  # [batch, token] kind of the token's unit
    token_punct: torch.Tensor  # [batch, token] NO_PUNCT / PERIOD / COMMA
    token_unit: torch.Tensor  # [batch, token] unit index (padding -> U)
    unit_kind: torch.Tensor  # [batch, unit] WORD / CLS / SEP / OTHER_SPECIAL, -1 padding
    unit_word: torch.Tensor  # [batch, unit] word index in the segment, -1 otherwise
    n_words: np.ndarray  # [batch] words the maps cover
    # [batch, unit, hidden]: one layer's hidden states pooled to words (mean over pieces),
    # set by the engine only when an analysis asks for them (its `hidden_layer`).
    hidden: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.segment_ids)


@dataclass
class LayerMaps:
    """One layer's attention for a batch."""

    token: torch.Tensor  # [batch, head, query, key]
    word: torch.Tensor | None  # [batch, head, query_unit, key_unit]
    # d loss / d attention, [batch, head, query, key]: only in the engine's gradient mode.
    grad: torch.Tensor | None = None
    # The engine chose numba's compiled loops for this pass (app/compiled.py): analyses may
    # take them too. The results are the same bits either way.
    compiled: bool = False


@dataclass
class Rows:
    """Rows for one table, as equal-length column arrays."""

    table: str
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class _Arena:
    """One plain numeric column's rows in a single array that doubles when full.

    Its first array is `ARENA_BYTES` or more, which glibc serves by mmap, outside the heap
    (attention.py's `keep_freed_memory` puts the threshold there): a chunk's rows live
    through many batches, and as small blocks on the heap they sat among the freed map-sized
    temporaries of every layer and fragmented it. Untouched pages cost no memory.
    """

    # glibc's largest mmap threshold: an array at least this large never lands on the heap.
    ARENA_BYTES = 32 << 20

    def __init__(self, dtype: np.dtype):
        self.rows = np.empty(-(-self.ARENA_BYTES // dtype.itemsize), dtype=dtype)
        self.filled = 0

    def append(self, values: np.ndarray) -> None:
        stop = self.filled + len(values)
        if stop > len(self.rows):
            grown = np.empty(2 * stop, dtype=self.rows.dtype)
            grown[: self.filled] = self.rows[: self.filled]
            self.rows = grown
        self.rows[self.filled : stop] = values
        self.filled = stop

    def taken(self) -> np.ndarray:
        return self.rows[: self.filled]


def _arena_fits(values: np.ndarray) -> bool:
    return not isinstance(values, np.ma.MaskedArray) and values.dtype.kind in "biuf"


class RowBuffer:
    """Column blocks collected batch by batch, handed out as one Rows at flush time.

    Plain numeric columns go into arenas (`_Arena`: off the heap, one copy); masked and
    other columns are kept as blocks and concatenated at flush time.
    """

    def __init__(self, table: str):
        self.table = table
        self._columns: dict[str, _Arena | list[np.ndarray]] = {}

    def append(self, block: dict[str, np.ndarray]) -> None:
        for key, values in block.items():
            column = self._columns.get(key)
            if column is None:
                column = _Arena(values.dtype) if _arena_fits(values) else []
                self._columns[key] = column
            if isinstance(column, _Arena):
                if _arena_fits(values) and values.dtype == column.rows.dtype:
                    column.append(values)
                    continue
                column = self._columns[key] = [column.taken()]
            column.append(values)

    def take(self) -> Rows | None:
        """Everything appended since the last take (masked arrays stay masked), or None."""
        if not self._columns:
            return None
        columns, self._columns = self._columns, {}
        return Rows(self.table, {key: _joined(column) for key, column in columns.items()})


def _joined(column: _Arena | list[np.ndarray]) -> np.ndarray:
    if isinstance(column, _Arena):
        return column.taken()
    if any(isinstance(block, np.ma.MaskedArray) for block in column):
        return np.ma.concatenate(column)
    return np.concatenate(column)


def head_metric_rows(grids: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> Rows:
    """[layer, head] grids of named metrics -> long `head_metrics` rows."""
    layers, heads, metrics, values, ns = [], [], [], [], []
    for metric, grid in grids.items():
        n_layers, n_heads = grid.shape
        layer_index, head_index = np.meshgrid(
            np.arange(n_layers), np.arange(n_heads), indexing="ij"
        )
        layers.append(layer_index.ravel())
        heads.append(head_index.ravel())
        metrics.append(np.full(grid.size, metric, dtype=object))
        values.append(grid.ravel().astype(np.float64))
        ns.append(np.broadcast_to(counts[metric], grid.shape).ravel().astype(np.int64))
    return Rows(
        "head_metrics",
        {
            "layer": np.concatenate(layers),
            "head": np.concatenate(heads),
            "metric": np.concatenate(metrics),
            "value": np.concatenate(values),
            "n": np.concatenate(ns),
        },
    )


class Analysis(ABC):
    """A streaming accumulator over the engine's batches."""

    name: ClassVar[str]
    needs_word_maps: ClassVar[bool] = False
    # Gradient analyses run in their own pass, on masked input, with the MLM head.
    needs_gradients: ClassVar[bool] = False
    # Which maps the engine feeds: attention weights, or norm-based maps (Kobayashi et al.
    # 2020, see extract/value_norms.py). Set by the pipeline from the run's config.
    weighting: str = "weight"

    def __init__(self, n_layers: int, n_heads: int):
        self.n_layers = n_layers
        self.n_heads = n_heads

    @abstractmethod
    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        """Consume one layer of one batch."""

    def end_batch(self, batch: AttentionBatch) -> None:  # noqa: B027 - an optional hook
        """Called after the last layer of a batch."""

    def flush(self) -> list[Rows]:
        """Rows streamed since the last flush (written with each checkpoint)."""
        return []

    @abstractmethod
    def finish(self) -> list[Rows]:
        """Aggregate rows, once the whole corpus has been seen."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def merge(self, state: dict[str, np.ndarray]) -> None:
        """Add a `state_dict()` (a checkpoint's, or a worker's shard's) to this accumulator.

        The one merge of partial results: the single-process path resumes from a checkpoint
        with it and the distributed path (pipeline/distributed.py) combines shards with it.
        States are sums and counts (value x count), so merging is addition; an analysis
        whose state is not additive must override this.
        """
        for key, value in state.items():
            setattr(self, key, getattr(self, key) + value)

    def summary(self) -> dict[str, Any]:
        """A few headline numbers for MLflow and the terminal."""
        return {}
