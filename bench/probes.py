"""Benchmark of one probe training epoch: per-sentence collation against pre-collated buckets.

Synthetic sentences with the lengths of UD EWT train (read from the data directory), 72
float16 attention maps each (MiniLM's 6 x 12), 50-d vectors; one epoch of Adam steps at
batch 32 for each probe kind, timed side by side:

  per-sentence  `collate` of each mini-batch from the examples (the previous training loop)
  pre-collated  `CollatedSet`: padded float16 tensors per sentence length, gathered per batch
  spilled       the same, with the maps streamed in and the word maps kept in files, read
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

from app.analysis import probes  # noqa: E402
from app.analysis.probes import (  # noqa: E402
    CollatedSet,
    ProbeConfig,
    ProbeExample,
    _build,
    _loss,
    batches,
    collate,
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


def epoch(config: ProbeConfig, examples: list[ProbeExample], mode: str, spill: str = "") -> tuple[float, float]:
    """(seconds to pre-collate, seconds of one epoch), CPU time of this process."""
    torch.manual_seed(0)
    module = _build(config, examples[0])
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    map_index = probes._map_index_of(module)
    device = torch.device("cpu")
    lengths = np.array([example.n_words for example in examples])
    generator = torch.Generator().manual_seed(0)
    start = time.process_time()
    collated = None
    if mode == "pre-collated":
        collated = CollatedSet(examples, config.kind, map_index, device)
    elif mode == "spilled":
        placeholders = [replace(example, maps=np.zeros((0, 0, 0), np.float16)) for example in examples]
        stream = ((i, example.maps) for i, example in enumerate(examples))
        collated = CollatedSet(placeholders, config.kind, map_index, device, maps=stream, spill=Path(spill))
    built = time.process_time()
    for indices in batches(lengths, config.batch_size, generator):
        if collated is None:
            batch = collate([examples[i] for i in indices], config.kind, map_index, device)
        else:
            batch = collated.batch(indices)
        loss = _loss(module, batch, config.kind)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return built - start, time.process_time() - built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--kinds", default="attn_glove,attn,structural")
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
    print("CPU seconds (process time: steadier than wall time on a shared machine), scaled to all of EWT train")
    print(f"{'kind':12} {'per-sentence':>13} {'pre-collated':>13} {'spilled':>9} {'speed-up':>9} {'(collate once)':>15}")
    for kind in args.kinds.split(","):
        config = ProbeConfig(kind=kind)  # type: ignore[arg-type]
        _, old = epoch(config, examples, "per-sentence")
        build, new = epoch(config, examples, "pre-collated")
        with tempfile.TemporaryDirectory() as spill:
            _, spilled = epoch(config, examples, "spilled", spill)
        print(f"{kind:12} {old * scale:13.1f} {new * scale:13.1f} {spilled * scale:9.1f} {old / new:8.1f}x {build * scale:15.1f}")


if __name__ == "__main__":
    main()
