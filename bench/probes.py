"""Benchmark of one probe training epoch: the probes' kernels against the plain tensor code.

Synthetic sentences with the lengths of UD EWT train (read from the data directory), 72
float16 attention maps each (MiniLM's 6 x 12), 50-d vectors; one epoch of Adam steps at
batch 32 for each probe kind, timed side by side:

  before      the previous forwards (kept below, verbatim): each batch's float16 maps widened
              to float32 copies (both layouts) and mixed by plain matmuls; distance_glove's
              MLP over the whole [batch, query, key, hidden] tensor, kept for backward
  after       the probes' modules today: float16 batches, app.analysis.probe_kernels (both
              layouts widened into one reused float32 buffer, one matmul per word row; the
              MLP a chunk of word pairs at a time, recomputed in backward)
  in memory   `CollatedSet` buckets in memory
  spilled     the maps streamed in and the word maps kept in files, read back per batch
              (what `headlens probe` does: memory does not grow with the data)

The epoch time over the whole train set is extrapolated from `--sentences` (a random sample
of the lengths) when it is smaller than the treebank. Samples have flattered "after" (attn_glove
spilled: 0.75x of before at 1000-4000 sentences, 1.0x over all 12544): compare on the full set.

`--compare-threads 1,2` times instead today's spilled epoch (what `headlens probe` runs) in wall
seconds at each torch thread count, interleaved: a probe's operations are many small ones,
which a second thread may slow down rather than speed up. With `--pair-kernels` it times the
distance + GloVe probe's pair MLP both ways at each count, interleaved: the fused loop
(app/analysis/fused_pair_mlp.py, today's CPU path) and the chunked tensor code before it.

`--pair-kernel-ns` times the pair MLP alone, forward and backward, both ways, in nanoseconds
per (pair, hidden unit), on batches of 32 sentences of 15 to 100 words.

Usage: python bench/probes.py [--sentences 2000] [--kinds attn_glove,attn] [--threads 2] [--repeats 3]
                              [--compare-threads 1,2 [--pair-kernels]] [--pair-kernel-ns]
"""

from __future__ import annotations

import argparse
import functools
import gzip
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.analysis import probe_kernels, probes  # noqa: E402
from app.analysis.probe_models import (  # noqa: E402
    AttentionGloveProbe,
    AttentionProbe,
    DistanceGloveProbe,
    ProbeBatch,
    _candidate_logits,
    distance_features,
)
from app.analysis.probes import (  # noqa: E402
    CollatedSet,
    ProbeConfig,
    ProbeExample,
    _build,
    _loss,
    _parts,
    batches,
)

TRAIN = Path(__file__).resolve().parents[1] / "../shared/data/ud_english_ewt/en_ewt-ud-train.conllu.gz"


def treebank_lengths(path: Path) -> np.ndarray:
    lengths, n = [], 0
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                if n:
                    lengths.append(n)
                n = 0
            elif not line.startswith("#") and line.split("\t", 1)[0].isdigit():
                n += 1
    return np.array(lengths)


def synthetic(lengths: np.ndarray, n_maps: int, seed: int = 0) -> list[ProbeExample]:
    rng = np.random.default_rng(seed)
    examples = []
    for n in lengths.tolist():
        units = n + 2
        maps = rng.random((n_maps, units, units), dtype=np.float32)
        maps /= maps.sum(-1, keepdims=True)
        heads = np.array([0] + [int(rng.integers(1, n + 1)) for _ in range(n - 1)])
        examples.append(ProbeExample(
            maps=maps.astype(np.float16), heads=heads, relations=("dep",) * n,
            vectors=rng.normal(size=(n, 50)).astype(np.float32),
            hidden=rng.normal(size=(n, 384)).astype(np.float16),
        ))
    return examples


# ------------------------------------------------------------------ the previous code, verbatim
# (the forwards before app.analysis.probe_kernels; batches widened to float32 by batch())


def _previous_root_attention(batch: ProbeBatch, root_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    assert batch.to_special is not None and batch.from_special is not None
    to_root = torch.einsum("bmsq,s->bmq", batch.to_special, root_weight)
    from_root = torch.einsum("bmsq,s->bmq", batch.from_special, root_weight)
    return to_root, from_root


def previous_attention_forward(self: AttentionProbe, batch: ProbeBatch) -> torch.Tensor:
    assert batch.by_query is not None and batch.by_key is not None
    size, width, n_maps, _ = batch.by_query.shape
    w, u = (weight.expand(size, width, 1, n_maps) for weight in (self.w, self.u))
    word = (torch.matmul(w, batch.by_query) + torch.matmul(u, batch.by_key)).squeeze(2)
    to_root, from_root = _previous_root_attention(batch, self.root_weight)
    root = torch.einsum("bmq,m->bq", to_root, self.w) + torch.einsum("bmq,m->bq", from_root, self.u)
    return _candidate_logits(root, word, batch.valid)


def previous_attention_glove_forward(self: AttentionGloveProbe, batch: ProbeBatch) -> torch.Tensor:
    by_query, by_key, vectors = batch.by_query, batch.by_key, batch.vectors
    assert by_query is not None and by_key is not None and vectors is not None
    dim, n_maps = vectors.shape[-1], by_query.shape[2]
    weight = self.pair.weight
    dependent = vectors @ weight[:, :dim].T + self.pair.bias
    candidate = vectors @ weight[:, dim:].T
    root_candidate = weight[:, dim:] @ self.root_vector
    dep_w, dep_u = dependent.split(n_maps, -1)
    cand_w, cand_u = candidate.split(n_maps, -1)
    on_query = torch.matmul(torch.stack([dep_w, cand_u], 2), by_query)
    on_key = torch.matmul(torch.stack([dep_u, cand_w], 2), by_key)
    word = on_query[:, :, 0] + on_key[:, :, 1].transpose(1, 2) + on_key[:, :, 0] + on_query[:, :, 1].transpose(1, 2)
    root_w, root_u = root_candidate.split(n_maps)
    to_root, from_root = _previous_root_attention(batch, self.root_weight)
    root = torch.einsum("bqm,bmq->bq", dep_w + root_w, to_root) + torch.einsum(
        "bqm,bmq->bq", dep_u + root_u, from_root)
    return _candidate_logits(root, word, batch.valid)


def previous_distance_forward(self: DistanceGloveProbe, batch: ProbeBatch) -> torch.Tensor:
    vectors = batch.vectors
    assert vectors is not None
    dim, width = vectors.shape[-1], vectors.shape[1]
    weight = self.hidden.weight
    dependent = vectors @ weight[:, :dim].T + self.hidden.bias
    candidate = vectors @ weight[:, dim : 2 * dim].T
    root = (weight[:, dim : 2 * dim] @ self.root_vector).expand(len(vectors), 1, -1)
    candidate = torch.cat([root, candidate], 1)
    distance = distance_features(batch.n_words, width) @ weight[:, 2 * dim :].T
    hidden = torch.tanh(dependent[:, :, None] + candidate[:, None] + distance)
    logits = self.out(hidden).squeeze(-1)
    return _candidate_logits(logits[..., 0], logits[..., 1:], batch.valid)


PREVIOUS = {AttentionProbe: previous_attention_forward, AttentionGloveProbe: previous_attention_glove_forward,
            DistanceGloveProbe: previous_distance_forward}


def epoch(config: ProbeConfig, examples: list[ProbeExample], mode: str, spill: str = "",
          clock=time.process_time) -> float:
    """CPU seconds (time of this process; or `clock`) of one epoch of `mode`, collation excluded."""
    torch.manual_seed(0)
    module = _build(config, examples[0])
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    map_index = probes._map_index_of(module)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    before = mode.startswith("before")
    if mode.endswith("spilled"):
        placeholders = [replace(example, maps=np.zeros((0, 0, 0), np.float16)) for example in examples]
        stream = ((i, example.maps) for i, example in enumerate(examples))
        collated = CollatedSet(placeholders, config.kind, map_index, device, maps=stream, spill=Path(spill))
    else:
        collated = CollatedSet(examples, config.kind, map_index, device)
    if before and type(module) in PREVIOUS:  # the previous code's forward and backward
        module.forward = PREVIOUS[type(module)].__get__(module)  # type: ignore[method-assign]
    start = clock()
    try:
        for indices in batches(collated.lengths, config.batch_size, generator):
            optimizer.zero_grad()
            for part in _parts(config, indices, collated.lengths, map_index):
                batch = collated.batch(part, widen=before)
                (_loss(module, batch, config.kind) * (len(part) / len(indices))).backward()
            optimizer.step()
    finally:
        collated.close()
    return clock() - start


FUSED_PAIR_MLP = probe_kernels.pair_mlp


def compare_threads(kinds: list[str], examples: list[ProbeExample], counts: list[int], repeats: int,
                    scale: float, pair_kernels: bool = False) -> None:
    """Wall seconds of one spilled epoch at each thread count, interleaved; the fastest of `repeats`.

    `pair_kernels`: distance_glove's pair MLP as the fused loop and as the chunked tensor code."""
    print(f"wall seconds of one spilled epoch (the fastest of {repeats}, interleaved), scaled to all of EWT train")
    print(f"{'kind':28} " + " ".join(f"{f'{n} thread(s)':>12}" for n in counts))
    variants = [("", True)]
    if pair_kernels:
        kinds, variants = ["distance_glove"], [(", fused loop", True), (", chunked tensors", False)]
    for kind in kinds:
        config = ProbeConfig(kind=kind)  # type: ignore[arg-type]
        runs: dict[tuple[str, int], list[float]] = {(name, n): [] for name, _ in variants for n in counts}
        for _ in range(repeats):
            for n in counts:
                for name, fused in variants:
                    torch.set_num_threads(n)
                    probe_kernels.pair_mlp = functools.partial(FUSED_PAIR_MLP, fused=fused)  # type: ignore[assignment]
                    with tempfile.TemporaryDirectory() as spill:
                        runs[name, n].append(epoch(config, examples, "spilled", spill, clock=time.perf_counter) * scale)
                    probe_kernels.pair_mlp = FUSED_PAIR_MLP
        for name, _ in variants:
            print(f"{kind + name:28} " + " ".join(f"{min(runs[name, n]):12.1f}" for n in counts))


def pair_kernel_ns(repeats: int) -> None:
    """ns per (pair, hidden unit) of the pair MLP's forward and backward, fused and chunked, interleaved."""
    from app.analysis.probe_models import distance_table

    print(f"pair MLP alone, forward + backward, ns per (pair, unit), the fastest of {max(repeats, 3)}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'batch x width':14} {'fused loop':>11} {'chunked':>9}")
    hidden, g = 256, torch.Generator().manual_seed(0)
    for width in (15, 30, 60, 100):
        n_words = torch.full((32,), width)
        features, index = distance_table(n_words, width)
        inputs = [torch.randn(32, width, hidden, generator=g) * 0.5, torch.randn(32, width + 1, hidden, generator=g) * 0.5,
                  torch.randn(*features.shape[:2], hidden, generator=g) * 0.5]
        weight, bias = torch.randn(1, hidden, generator=g) * 0.1, torch.zeros(1)
        grad = torch.randn(32, width, width + 1, generator=g)
        best = {True: float("inf"), False: float("inf")}
        for _ in range(max(repeats, 3)):
            for fused in (True, False):
                leaves = [t.clone().requires_grad_() for t in inputs]
                start = time.perf_counter()
                FUSED_PAIR_MLP(*leaves, index, weight, bias, fused=fused).backward(grad)
                best[fused] = min(best[fused], time.perf_counter() - start)
        elements = 32 * width * (width + 1) * hidden
        print(f"32 x {width:<9} {best[True] / elements * 1e9:11.2f} {best[False] / elements * 1e9:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--kinds", default="attn_glove,attn,structural,distance_glove")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="epochs per mode; the fastest is shown")
    parser.add_argument("--compare-threads", metavar="N,M", help="wall time of the spilled epoch at these thread counts")
    parser.add_argument("--pair-kernel-ns", action="store_true", help="the pair MLP alone, fused against chunked")
    parser.add_argument("--pair-kernels", action="store_true",
                        help="with --compare-threads: distance_glove's pair MLP fused against chunked")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.pair_kernel_ns:
        pair_kernel_ns(args.repeats)
        return
    all_lengths = treebank_lengths(TRAIN)
    rng = np.random.default_rng(1)
    lengths = all_lengths if args.sentences >= len(all_lengths) else rng.choice(all_lengths, args.sentences, replace=False)
    scale = len(all_lengths) / len(lengths)
    examples = synthetic(lengths, 72)
    print(f"{len(lengths)} sentences with UD EWT train lengths (mean {lengths.mean():.1f} words; the train set has "
          f"{len(all_lengths)}), 72 float16 maps, batch 32, {torch.get_num_threads()} threads")
    if args.compare_threads:
        compare_threads(args.kinds.split(","), examples, [int(n) for n in args.compare_threads.split(",")],
                        args.repeats, scale, args.pair_kernels)
        return
    print(f"CPU seconds of one epoch (process time: steadier than wall time on a shared machine; the fastest of "
          f"{args.repeats}), scaled to all of EWT train")
    print(f"{'kind':15} {'before: in memory':>17} {'spilled':>8} {'after: in memory':>17} {'spilled':>8} {'speed-up':>9}")
    for kind in args.kinds.split(","):
        config = ProbeConfig(kind=kind)  # type: ignore[arg-type]
        modes = ("before", "before spilled", "in memory", "spilled")
        runs: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):  # interleaved, so that load drifts hit every mode alike
            for mode in modes:
                with tempfile.TemporaryDirectory() as spill:
                    runs[mode].append(epoch(config, examples, mode, spill) * scale)
        seconds = [min(runs[mode]) for mode in modes]
        print(f"{kind:15} {seconds[0]:17.1f} {seconds[1]:8.1f} {seconds[2]:17.1f} {seconds[3]:8.1f} "
              f"{seconds[1] / seconds[3]:8.1f}x")


if __name__ == "__main__":
    main()
