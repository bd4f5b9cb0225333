"""Head clustering (paper section 6): Jensen-Shannon distances between heads, then MDS.

For two heads, the divergence is computed between their attention distributions of the same
query token of the same input, and averaged over the query tokens of the corpus (the
authors' code summed over all of them instead of averaging; the ordering of distances is
the same). By default every QUERY_STRIDE-th token of each segment is averaged, a fixed
sample that keeps the pass near the cost of the forward pass (stride 1 is exact). Natural
log, no smoothing (0 log 0 = 0; the authors mixed in 1e-3 uniform mass first). The
accumulator keeps one batch of maps for all layers and a [head_all, head_all] running sum,
so memory does not grow with the corpus.

Coordinates come from metric MDS (scikit-learn) on the mean divergences, initialised by
classical MDS so that the layout is deterministic.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from app.analysis.base import Analysis, AttentionBatch, LayerMaps, Rows

LOG_2 = math.log(2.0)
# Rows per block of the pairwise kernel, in floats of one head's rows (~32 KB).
BLOCK = 8192
# Every QUERY_STRIDE-th query token of each segment enters the average: the mean over ~30k
# tokens of 1000 Wikipedia segments moves no distance by more than the measured bound in
# bench/clustering.py (max |delta| against the exact float64 average over all tokens).
QUERY_STRIDE = 4


def js_divergence_sums(attention: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum over valid query tokens of JS(head_a, head_b), for every pair of heads.

    Args:
        attention: [head_all, batch, query, key] token-level maps of every layer's heads.
        valid: [batch, query] True for the query tokens that count.

    Returns:
        [head_all, head_all] symmetric sums, zero on the diagonal.
    """
    # [head_all, row, key]: only the counted query rows, gathered once.
    return js_divergence_row_sums(attention.permute(1, 2, 0, 3)[valid].transpose(0, 1))


def js_divergence_row_sums(rows: torch.Tensor, *, block: int = BLOCK) -> torch.Tensor:
    """Sum over rows of JS(head_a, head_b); `rows` is [head_all, row, key].

    With m = (p + q) / 2: JS = 1/2 sum p log p + 1/2 sum q log q - sum m log m, and since
    p and q each sum to 1, sum m log m = 1/2 sum (p+q) log(p+q) - log 2. The pairwise
    (p+q) log(p+q) is the whole cost; it runs over blocks of rows whose temporaries stay in
    the CPU cache (~3x faster than whole-batch temporaries). p log(p + 1e-30) differs from
    p log p by < 1e-30 per term and is 0 for p = 0.
    """
    rows = (rows if rows.dtype == torch.float64 else rows.float()).contiguous()
    n, n_rows, n_keys = rows.shape
    plogp = (torch.log(rows + 1e-30) * rows).sum(-1)  # [head_all, row]
    sums = torch.zeros(n, n, dtype=torch.float64)
    step = max(1, block // max(n_keys, 1))
    buffer = rows.new_empty(max(n - 1, 1), min(step, n_rows), n_keys)
    for first in range(0, n_rows, step):
        chunk = rows[:, first : first + step]  # [head_all, c, key]
        own = plogp[:, first : first + step]  # [head_all, c]
        for a in range(n - 1):
            total = buffer[: n - a - 1, : chunk.shape[1]]  # p + q for heads b > a
            torch.add(chunk[a + 1 :], chunk[a], out=total)
            mlogm = 0.5 * (total + 1e-30).log_().mul_(total).sum(-1) - LOG_2  # [b, c]
            js = 0.5 * (own[a] + own[a + 1 :]) - mlogm
            sums[a, a + 1 :] += js.clamp(min=0).sum(-1).double()
    return sums + sums.T


def sampled_queries(valid: torch.Tensor, segment_ids: np.ndarray, stride: int) -> torch.Tensor:
    """[batch, query] the valid tokens at positions p with (p + segment id) % stride == 0.

    A fixed, documented sample: it depends only on the segment, so a resumed run sees the
    same rows, and stride 1 is every token. The offset rotates with the segment id so that
    [CLS] (position 0) and the other fixed positions are not over-represented.
    """
    position = torch.arange(valid.shape[1], device=valid.device)
    offset = torch.as_tensor(np.asarray(segment_ids) % stride, device=valid.device)
    return valid & ((position[None, :] + offset[:, None]) % stride == 0)


def mds_coordinates(distances: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, float]:
    """2-D metric MDS of a symmetric distance matrix; returns (coords [n, 2], stress)."""
    from sklearn.manifold import MDS

    model = MDS(
        n_components=2,
        metric="precomputed",
        init="classical_mds",
        n_init=1,
        max_iter=1000,
        random_state=seed,
        normalized_stress="auto",
    )
    coordinates = model.fit_transform(distances)
    return coordinates, float(model.stress_)


class HeadClustering(Analysis):
    """Streams JS divergence sums over a corpus; emits pairwise distances and MDS coords."""

    name: ClassVar[str] = "clustering"

    def __init__(self, n_layers: int, n_heads: int, *, query_stride: int = QUERY_STRIDE):
        super().__init__(n_layers, n_heads)
        n = n_layers * n_heads
        self.query_stride = query_stride
        self.sums = np.zeros((n, n), dtype=np.float64)
        self.n_queries = np.zeros((), dtype=np.int64)
        self._layers: list[torch.Tensor] = []

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        # Keep only the sampled query rows: [batch, head, query, key] -> [row, head, key].
        sample = sampled_queries(batch.token_valid, batch.segment_ids, self.query_stride)
        self._layers.append(maps.token.transpose(1, 2)[sample])

    def end_batch(self, batch: AttentionBatch) -> None:
        # [layer][row, head, key] -> [layer * head, row, key], layer-major.
        rows = torch.cat(self._layers, dim=1).transpose(0, 1)
        self._layers = []
        self.sums += js_divergence_row_sums(rows).numpy()
        self.n_queries = self.n_queries + rows.shape[1]

    def mean_divergences(self) -> np.ndarray:
        return self.sums / max(int(self.n_queries), 1)

    def finish(self) -> list[Rows]:
        distances = self.mean_divergences()
        coordinates, _stress = mds_coordinates(distances)
        n = distances.shape[0]
        a, b = np.triu_indices(n, k=1)
        layer, head = np.divmod(np.arange(n), self.n_heads)
        return [
            Rows(
                "head_distances",
                {
                    "layer_a": layer[a],
                    "head_a": head[a],
                    "layer_b": layer[b],
                    "head_b": head[b],
                    "jsd": distances[a, b],
                },
            ),
            Rows(
                "head_coords",
                {"layer": layer, "head": head, "x": coordinates[:, 0], "y": coordinates[:, 1]},
            ),
        ]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"sums": self.sums, "n_queries": self.n_queries}

    def summary(self) -> dict[str, Any]:
        distances = self.mean_divergences()
        upper = distances[np.triu_indices(distances.shape[0], k=1)]
        return {"mean_jsd": float(upper.mean()) if upper.size else 0.0}
