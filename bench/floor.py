"""The floor under `headlens reproduce`: its encoder passes alone, bare, in float32.

Issue 15 asks for `reproduce` in 6 minutes on this 2-core machine with the same tables.
Whatever the engine does around them, `reproduce` has to run its encoders over these
inputs; this script times only that, as bare as it gets, in one process:

  forward    SDPA attention (no weights returned), `torch.inference_mode`, length-ordered
             batches cut by the engine's own token budget (`batch_bounds`, 2048 padded
             tokens): the passes of the surface, syntax, coreference and probe stages
  gradients  the contrastive stage's floor: both texts of each Wikipedia pair, 16 pairs a
             batch, one forward with autograd and one backward from the pooled embeddings
             to the input (weights frozen, as the engine freezes them), SDPA attention.
             The engine runs each batch twice (GradCache, for flat memory): this counts once.

The inputs are the ones `reproduce` encodes: its 1000 Wikipedia segments, UD EWT dev,
OntoGUM dev and LitBank (documents truncated to 128 pieces, as the coreference stage does),
and UD EWT train, dev and test for the probes' features, for MiniLM and its randomly
initialised copy where `reproduce` runs both. Nothing is written to a database but the
scratch one the corpora are ingested into. The sum is a lower bound: it leaves out imports,
model loading, the attention maps themselves, every analysis and write, and the probes'
training epochs (`bench/probes.py` times one epoch of each).

`--attention N` instead times, interleaved N times over the same 1000 Wikipedia segments, the
bare SDPA forward against the engine's way: eager attention returning every layer's weights
(each read once as float32), with the engine's allocator settings in both. It says whether
returning the maps costs anything above the floor.

Usage: python bench/floor.py [--threads 2] [--quick] [--attention N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADLENS_DATA") or ROOT / "../shared/data").resolve()
REPRODUCE_TARGET_S = 360.0


def forward_seconds(model, segments, *, pad_id: int, budget: int) -> tuple[float, int]:
    """Seconds of bare forward passes over encoded segments, and the padded tokens they took."""
    import torch

    from app.extract.attention import batch_bounds, cell_budget, collate, length_order

    ordered = length_order(segments)
    bounds = batch_bounds([s.n_tokens for s in ordered], max_tokens=budget, max_cells=cell_budget(budget))
    padded = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for start, stop in bounds:
            _, inputs = collate(ordered[start:stop], pad_id, "cpu")
            padded += inputs["input_ids"].numel()
            model(**inputs)
    return time.perf_counter() - started, padded


def gradient_seconds(model, pairs, *, pad_id: int, pairs_per_batch: int) -> tuple[float, int]:
    """Seconds of one forward with autograd and one backward per side of each batch of pairs,
    and the padded tokens they took."""
    import torch

    from app.analysis.contrastive import pool
    from app.extract.attention import collate
    from app.extract.contrastive import input_gradients_only

    padded = 0
    started = time.perf_counter()
    with input_gradients_only(model):  # the engine's own: weights frozen, gradients reach the input
        for start in range(0, len(pairs), pairs_per_batch):
            group = pairs[start : start + pairs_per_batch]
            for side in ([p.anchor for p in group], [p.positive for p in group]):
                batch, inputs = collate(side, pad_id, "cpu")
                padded += inputs["input_ids"].numel()
                with torch.enable_grad():
                    hidden = model(**inputs).last_hidden_state
                    pool(hidden, batch.token_valid, "mean").sum().backward()
    return time.perf_counter() - started, padded


def compare_attention(directory: Path, segments, *, pad_id: int, budget: int, rounds: int) -> None:
    """Bare SDPA forwards against eager ones that return (and read) every layer's weights."""
    import statistics

    import torch
    from transformers import AutoModel

    from app.extract.attention import (
        batch_bounds,
        cell_budget,
        collate,
        keep_freed_memory,
        length_order,
    )

    keep_freed_memory()
    models = {impl: AutoModel.from_pretrained(directory, attn_implementation=impl).eval() for impl in ("sdpa", "eager")}
    ordered = length_order(segments)
    bounds = batch_bounds([s.n_tokens for s in ordered], max_tokens=budget, max_cells=cell_budget(budget))
    batches = [collate(ordered[start:stop], pad_id, "cpu")[1] for start, stop in bounds]
    times: dict[str, list[float]] = {impl: [] for impl in models}
    with torch.inference_mode():
        for model in models.values():  # one-time set-up, not counted
            model(**batches[0])
        for _ in range(rounds):
            for impl, model in models.items():
                started = time.perf_counter()
                for inputs in batches:
                    outputs = model(**inputs, output_attentions=impl == "eager")
                    for attention in outputs.attentions or ():
                        attention.float().sum()
                times[impl].append(time.perf_counter() - started)
    for impl, seconds in times.items():
        print(f"{impl:6s} median {statistics.median(seconds):6.2f} s  ({', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"sdpa / eager: {statistics.median(a / b for a, b in zip(times['sdpa'], times['eager'])):.3f}")


def ingest(settings, plan, wiki: str, *, everything: bool = True) -> list[str]:
    """The corpora `reproduce` encodes (or only its Wikipedia segments), into the scratch
    database; the probes' corpora."""
    from app import pipeline
    from app.store.db import upgrade

    upgrade(settings.db_url)
    pipeline.ingest_corpus(settings, wiki, options={"source": "wiki-segments", "n_segments": plan.wiki_segments})
    probe_corpora = sorted({plan.probe_train, "ud-ewt-dev", "ud-ewt-test"})
    for corpus in ["ud-ewt-dev", *plan.coref_corpora, *probe_corpora] if everything else []:
        pipeline.ingest_corpus(settings, corpus)
    return probe_corpora


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="reproduce --quick's inputs instead (a smoke test)")
    parser.add_argument("--attention", type=int, metavar="N", help="SDPA against eager with weights, N rounds")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        os.environ.update({
            "HEADLENS_DB": str(scratch / "floor.duckdb"), "HEADLENS_MLRUNS": str(scratch / "mlruns"),
            "HEADLENS_DATA": str(DATA), "HEADLENS_CACHE": str(ROOT / "cache"),
        })
        sys.path.insert(0, str(ROOT))
        import torch
        from transformers import AutoConfig, AutoModel

        from app.config import (
            CONTRASTIVE_PAIRS,
            PAPER_MAX_TOKENS,
            ExtractConfig,
            Overflow,
            Settings,
        )
        from app.extract.align import Aligner, Skipped
        from app.extract.contrastive import encode_pairs
        from app.ingest.models import load_tokenizer, resolve_model_path
        from app.pipeline.common import open_db
        from app.reproduce import RANDOM_SEED, Plan
        from app.store.corpora import find_corpus, segment_inputs
        from app.store.db import session_scope

        torch.set_num_threads(args.threads)
        plan = Plan.quick() if args.quick else Plan()
        settings = Settings.resolve()
        wiki = "wiki-segments-quick" if args.quick else "wiki-segments"
        probe_corpora = ingest(settings, plan, wiki, everything=not args.attention)
        db = open_db(settings)

        directory = resolve_model_path("minilm", None, settings.cache_dir)
        tokenizer = load_tokenizer(directory)
        pad_id, budget = tokenizer.pad_token_id or 0, ExtractConfig().batch_tokens
        trained = AutoModel.from_pretrained(directory, attn_implementation="sdpa").eval()
        torch.manual_seed(RANDOM_SEED)
        random = AutoModel.from_config(AutoConfig.from_pretrained(directory), attn_implementation="sdpa").eval()

        def inputs_of(corpus: str, limit: int | None = None):
            with session_scope(db) as session:
                return segment_inputs(session, find_corpus(session, corpus).id, limit=limit)

        def encoded(corpus: str, *, overflow: Overflow = "skip", limit: int | None = None):
            aligner = Aligner(tokenizer, max_tokens=PAPER_MAX_TOKENS, overflow=overflow, on_unaligned="error")
            return aligner.encode(inputs_of(corpus, limit), Skipped())

        # (stage, encoder, model, corpus, segments), in the order `reproduce` runs them
        if args.attention:
            compare_attention(directory, encoded(wiki), pad_id=pad_id, budget=budget, rounds=args.attention)
            return
        jobs: list[tuple[str, str, object, str, list]] = [
            ("surface", "minilm", trained, wiki, encoded(wiki)),
            ("surface", "minilm-random", random, wiki, encoded(wiki)),
            ("syntax", "minilm", trained, "ud-ewt-dev", encoded("ud-ewt-dev", limit=plan.syntax_limit)),
        ]
        jobs += [("coreference", "minilm", trained, corpus, encoded(corpus, overflow="truncate"))
                 for corpus in plan.coref_corpora]
        for name, model in (("minilm-random", random), ("minilm", trained)):
            jobs += [("probe features", name, model, corpus, encoded(corpus)) for corpus in probe_corpora]
        aligner = Aligner(tokenizer, max_tokens=PAPER_MAX_TOKENS, overflow="skip", on_unaligned="error")
        pairs = encode_pairs(aligner, inputs_of(wiki), Skipped(), corpus=wiki)

        # First passes pay one-time set-up (threads, kernels, autograd): not counted.
        for model in (trained, random):
            forward_seconds(model, jobs[0][4][:32], pad_id=pad_id, budget=budget)
        gradient_seconds(trained, pairs[:CONTRASTIVE_PAIRS], pad_id=pad_id, pairs_per_batch=CONTRASTIVE_PAIRS)
        rows = []
        for stage, name, model, corpus, segments in jobs:
            seconds, padded = forward_seconds(model, segments, pad_id=pad_id, budget=budget)
            rows.append((stage, name, corpus, len(segments), padded, seconds))
        seconds, padded = gradient_seconds(trained, pairs, pad_id=pad_id, pairs_per_batch=CONTRASTIVE_PAIRS)
        rows.append(("gradients (fwd + bwd)", "minilm", f"{wiki} pairs", len(pairs), padded, seconds))

    print(f"{'stage':22s} {'encoder':14s} {'corpus':22s} {'segments':>8s} {'tokens':>9s} {'seconds':>8s}")
    for stage, name, corpus, n, padded, seconds in rows:
        print(f"{stage:22s} {name:14s} {corpus:22s} {n:8d} {padded:9d} {seconds:8.1f}")
    total = sum(row[-1] for row in rows)
    print(f"encoder passes alone, bare: {total:.0f} s ({total / REPRODUCE_TARGET_S:.2f} of the 360 s asked), "
          f"{args.threads} threads")


if __name__ == "__main__":
    main()
