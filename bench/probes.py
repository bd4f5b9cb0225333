"""Benchmark of one probe training epoch: the probes' kernels against the plain tensor code.

Synthetic sentences with the lengths of UD EWT train (read from the data directory), 72
float16 attention maps each (MiniLM's 6 x 12), 50-d vectors; one epoch of Adam steps at
batch 32 for each probe kind, timed side by side:

  before      the previous code: each batch's float16 maps widened to float32 copies (both
              layouts) and mixed by plain matmuls; distance_glove's MLP over the whole
              [batch, query, key, hidden] tensor, kept by autograd for backward
  in memory   `CollatedSet` buckets in memory, float16 batches, app.analysis.probe_kernels
              (maps widened a cache-sized chunk at a time; the MLP a chunk of pairs at a time)
  spilled     the same, with the maps streamed in and the word maps kept in files, read
              back per batch (what `headlens probe` does: memory does not grow with the data)

The epoch time over the whole train set is extrapolated from `--sentences` (a random sample
of the lengths) when it is smaller than the treebank.

Usage: python bench/probes.py [--sentences 2000] [--kinds attn_glove,attn] [--threads 2]
"""

from __future__ import annotations

import argparse
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


def epoch(config: ProbeConfig, examples: list[ProbeExample], mode: str, spill: str = "") -> float:
    """CPU seconds (time of this process) of one epoch of `mode`, collation excluded."""
    torch.manual_seed(0)
    module = _build(config, examples[0])
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    map_index = probes._map_index_of(module)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    if mode == "spilled":
        placeholders = [replace(example, maps=np.zeros((0, 0, 0), np.float16)) for example in examples]
        stream = ((i, example.maps) for i, example in enumerate(examples))
        collated = CollatedSet(placeholders, config.kind, map_index, device, maps=stream, spill=Path(spill))
    else:
        collated = CollatedSet(examples, config.kind, map_index, device)
    kernels = probe_kernels.map_mix, probe_kernels.pair_mlp
    if mode == "before":  # the previous code's forward and backward
        probe_kernels.map_mix = lambda coeff, maps: probe_kernels.plain_map_mix(coeff, maps)  # type: ignore[assignment]
        probe_kernels.pair_mlp = probe_kernels.plain_pair_mlp  # type: ignore[assignment]
    start = time.process_time()
    try:
        for indices in batches(collated.lengths, config.batch_size, generator):
            optimizer.zero_grad()
            for part in _parts(config, indices, collated.lengths, map_index):
                batch = collated.batch(part, widen=mode == "before")
                (_loss(module, batch, config.kind) * (len(part) / len(indices))).backward()
            optimizer.step()
    finally:
        probe_kernels.map_mix, probe_kernels.pair_mlp = kernels
        collated.close()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--kinds", default="attn_glove,attn,structural,distance_glove")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    all_lengths = treebank_lengths(TRAIN)
    rng = np.random.default_rng(1)
    lengths = all_lengths if args.sentences >= len(all_lengths) else rng.choice(all_lengths, args.sentences, replace=False)
    scale = len(all_lengths) / len(lengths)
    examples = synthetic(lengths, 72)
    print(f"{len(lengths)} sentences with UD EWT train lengths (mean {lengths.mean():.1f} words; the train set has "
          f"{len(all_lengths)}), 72 float16 maps, batch 32, {torch.get_num_threads()} threads")
    print("CPU seconds of one epoch (process time: steadier than wall time on a shared machine), scaled to all of EWT train")
    print(f"{'kind':15} {'before':>8} {'in memory':>10} {'spilled':>8} {'speed-up':>9}")
    for kind in args.kinds.split(","):
        config = ProbeConfig(kind=kind)  # type: ignore[arg-type]
        before = epoch(config, examples, "before")
        in_memory = epoch(config, examples, "in memory")
        with tempfile.TemporaryDirectory() as spill:
            spilled = epoch(config, examples, "spilled", spill)
        print(f"{kind:15} {before * scale:8.1f} {in_memory * scale:10.1f} {spilled * scale:8.1f} "
              f"{before / min(in_memory, spilled):8.1f}x")


if __name__ == "__main__":
    main()
