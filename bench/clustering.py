"""Benchmark of the clustering pass (paper section 6) against a surface pass, with its error.

Side by side in one run (interleaved repeats, median of per-repeat ratios), on real
Wikipedia segments with the default model:

  surface             the engine with surface statistics only (`analyze surface`)
  surface+clustering  the same pass also feeding the Jensen-Shannon accumulator
                      (`analyze surface clustering`, the default query sample)
  clustering cost     (surface+clustering - surface) / surface: the clustering's own cost
                      in units of a surface pass (target <= 1)

Error: the mean divergences of the default (sampled, float32, blocked) accumulator against
the exact float64 average over every query token, computed with the straightforward
formula; max |delta| over all pairs of heads (target <= 0.01), and the same for the exact
stride 1 in float32.

Usage: python bench/clustering.py [--segments 128] [--repeats 3] [--threads 2] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.analysis.base import Analysis, AttentionBatch, LayerMaps  # noqa: E402
from app.analysis.clustering import QUERY_STRIDE, HeadClustering  # noqa: E402
from app.analysis.surface import SurfaceAnalysis  # noqa: E402
from app.extract.attention import AttentionEngine  # noqa: E402
from app.ingest.models import load_encoder, resolve_model_path  # noqa: E402
from bench.engine import CACHE, encode, wiki_inputs  # noqa: E402


class ExactFloat64(Analysis):
    """JS divergences summed over every valid query token in float64, pair by pair."""

    name = "exact"

    def __init__(self, n_layers: int, n_heads: int):
        super().__init__(n_layers, n_heads)
        self.sums = np.zeros((n_layers * n_heads,) * 2)
        self.n = 0
        self._layers: list[torch.Tensor] = []

    def update(self, batch: AttentionBatch, layer: int, maps: LayerMaps) -> None:
        self._layers.append(maps.token.transpose(1, 2)[batch.token_valid].double())  # [row, head, key]

    def end_batch(self, batch: AttentionBatch) -> None:
        rows = torch.cat(self._layers, 1).transpose(0, 1)  # [head_all, row, key]
        self._layers = []
        plogp = torch.special.xlogy(rows, rows).sum(-1)
        for a in range(rows.shape[0]):
            m = (rows[a] + rows[a + 1 :]) / 2
            js = 0.5 * (plogp[a] + plogp[a + 1 :]) - torch.special.xlogy(m, m).sum(-1)
            self.sums[a, a + 1 :] += js.sum(-1).numpy()
        self.n += rows.shape[1]

    def finish(self):  # type: ignore[no-untyped-def]
        return []

    def mean(self) -> np.ndarray:
        upper = self.sums / self.n
        return upper + upper.T


def run(loaded, encoded, batch_size: int, analyses: list[Analysis]) -> None:  # type: ignore[no-untyped-def]
    engine = AttentionEngine(loaded.model, pad_id=loaded.tokenizer.pad_token_id, batch_size=batch_size)
    engine.run(encoded, analyses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segments", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="cpu: process time (use 1 thread)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    loaded = load_encoder(resolve_model_path("minilm", None, CACHE))
    info = loaded.info
    encoded = encode(loaded, wiki_inputs(loaded.tokenizer, args.segments))
    print(
        f"MiniLM-L6 ({info.n_layers}x{info.n_heads}), {len(encoded)} Wikipedia segments, batch "
        f"{args.batch_size}, {torch.get_num_threads()} threads, {args.clock} clock, query stride {QUERY_STRIDE}"
    )
    n_l, n_h = info.n_layers, info.n_heads
    run(loaded, encoded[: args.batch_size], args.batch_size, [SurfaceAnalysis(n_l, n_h)])  # warm-up
    times: dict[str, list[float]] = {"surface": [], "surface+clustering": []}
    for _ in range(args.repeats):
        for mode in times:
            analyses: list[Analysis] = [SurfaceAnalysis(n_l, n_h)]
            if mode == "surface+clustering":
                analyses.append(HeadClustering(n_l, n_h))
            start = clock()
            run(loaded, encoded, args.batch_size, analyses)
            times[mode].append(clock() - start)
    cost = statistics.median(
        (both - surface) / surface for both, surface in zip(times["surface+clustering"], times["surface"])
    )
    for mode, values in times.items():
        print(f"{mode:20} {len(encoded) / statistics.median(values):6.1f} seq/s")
    print(f"clustering cost / surface pass: {cost:.2f}  (target <= 1)")

    sampled, exact32, exact64 = HeadClustering(n_l, n_h), HeadClustering(n_l, n_h, query_stride=1), ExactFloat64(n_l, n_h)
    run(loaded, encoded, args.batch_size, [sampled, exact32, exact64])
    reference = exact64.mean()
    for label, accumulator in ((f"stride {QUERY_STRIDE}, float32", sampled), ("stride 1, float32", exact32)):
        delta = np.abs(accumulator.mean_divergences() - reference).max()
        print(f"max |delta JS| vs exact float64, {label}: {delta:.5f}  (target <= 0.01)")
    print(f"(mean JS {reference[np.triu_indices(len(reference), 1)].mean():.3f}; ln 2 = {math.log(2):.3f})")


if __name__ == "__main__":
    main()
