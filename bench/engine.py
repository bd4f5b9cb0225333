"""Benchmark of the attention engine on the default model at (up to) 128 tokens.

Measured side by side in one run (interleaved repeats, medians), on real Wikipedia segments:

  bare         SDPA forward, no attention weights (the ceiling)
  eager        eager forward with output_attentions, no analysis (the engine's own ceiling)
  surface      the engine with surface statistics (`headlens analyze surface`)
  surface+words  ... plus token->word conversion of every layer and head
  full         ... plus per-word head predictions (`headlens analyze surface syntax`),
               without the database write (word conversion and predictions in numba's
               compiled loops, as the CLI runs them on passes large enough)
  full-tensors the same with the tensor code for both (the same bits)
  full-collected  the full engine with every layer's maps collected to the end of the
               forward, as before the engine streamed each layer from a hook (same bits)
  per-sent     word conversion + surface statistics + head predictions per sentence and head
               in numpy loops, the way the original research code worked (app/extract/reference.py)
  full-bf16    the full engine in bfloat16 (AMX CPUs), with its largest deviation from fp32

Peak memory is measured in child processes for N and 4N segments, to show that it does not
grow with the corpus.

Inputs: `--corpus wiki` (Wikipedia paragraph pairs, up to 128 tokens) or `--corpus ud-ewt-dev`
(the treebank's dev sentences: short, so per-word work weighs more); `--model minilm` or
`--model bert-base-random` (a randomly initialised BERT-base-shaped encoder, 12 x 12, hidden
768, with MiniLM's tokenizer).

Usage: python bench/engine.py [--segments 128] [--baseline-segments 24] [--repeats 3]
                              [--corpus wiki|ud-ewt-dev] [--model minilm|bert-base-random]
                              [--modes full,full-collected] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.analysis.base import Analysis  # noqa: E402
from app.analysis.surface import SurfaceAnalysis  # noqa: E402
from app.analysis.syntax import HeadPredictions  # noqa: E402
from app.extract import reference  # noqa: E402
from app.extract.align import Aligner, Skipped  # noqa: E402
from app.extract.attention import AttentionEngine, collate, length_order  # noqa: E402
from app.ingest.models import load_encoder, resolve_model_path  # noqa: E402
from app.ingest.unlabeled import WikiConfig, build_wiki_segments  # noqa: E402
from app.types import SegmentInput  # noqa: E402

CACHE = Path(__file__).resolve().parents[1] / "cache"
DATA = Path(__file__).resolve().parents[1] / "../shared/data"


def ud_inputs(n: int) -> list[SegmentInput]:
    """The first n sentences of UD EWT dev, as single-sequence segments."""
    from app.ingest.conll import read_conll

    sentences = read_conll(DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu")
    inputs = []
    for i, sentence in zip(range(n), sentences):
        forms = [word.form for word in sentence.words]
        inputs.append(SegmentInput(i, f"ud-{i}", forms, [0] * len(forms)))
    return inputs


def load(model: str, dtype: str = "float32"):  # type: ignore[no-untyped-def]
    """MiniLM, or a random BERT-base-shaped encoder (12 layers x 12 heads, hidden 768)."""
    loaded = load_encoder(resolve_model_path("minilm", None, CACHE), dtype=dtype)
    if model == "bert-base-random":
        from dataclasses import replace

        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=loaded.tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
            num_attention_heads=12, intermediate_size=3072, attn_implementation="eager",
        )
        torch.manual_seed(0)
        to = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
        loaded.model = BertModel(config).eval().to(to)
        loaded.info = replace(loaded.info, n_layers=12, n_heads=12, hidden_size=768)
    return loaded


def wiki_inputs(tokenizer, n: int) -> list[SegmentInput]:  # type: ignore[no-untyped-def]
    corpus = build_wiki_segments("bench", tokenizer, WikiConfig(n_segments=n, seed=1))
    return [
        SegmentInput(i, s.label, s.forms, [w.part for w in s.words])
        for i, s in enumerate(corpus.segments)
    ]


def encode(loaded, inputs):  # type: ignore[no-untyped-def]
    aligner = Aligner(loaded.tokenizer, max_tokens=128, overflow="skip", on_unaligned="skip")
    return length_order(aligner.encode(inputs, Skipped()))


def run_bare(loaded, encoded, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    """The same weights with SDPA attention and no attention weights: the ceiling."""
    model = getattr(run_bare, "model", None)
    if model is None:
        import copy

        config = copy.deepcopy(loaded.model.config)  # the engine's model stays eager
        config._attn_implementation = "sdpa"
        model = type(loaded.model)(config).eval()
        model.load_state_dict(loaded.model.state_dict())
        run_bare.model = model  # type: ignore[attr-defined]
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            _, inputs = collate(encoded[start : start + batch_size], loaded.tokenizer.pad_token_id)
            model(**inputs)


class WordMapsOnly(Analysis):
    """Asks the engine for word-level maps and does nothing with them."""

    name = "words-only"
    needs_word_maps = True

    def update(self, batch, layer, maps) -> None:  # type: ignore[no-untyped-def]
        pass

    def finish(self):  # type: ignore[no-untyped-def]
        return []


def run_engine(loaded, encoded, batch_size: int, mode: str = "full", compiled: bool = True,  # type: ignore[no-untyped-def]
               streamed: bool = True) -> dict[str, np.ndarray]:
    """`compiled`: numba's loops for the word conversion and head predictions (the CLI takes
    them when a pass repays numba's start, app/compiled.py), else the tensor code.
    `streamed`: each layer's maps from a hook as the layer finishes (the engine's way), else
    all layers' maps at the end of the forward."""
    info = loaded.info
    engine = AttentionEngine(loaded.model, pad_id=loaded.tokenizer.pad_token_id, batch_size=batch_size)
    if not streamed:
        engine.attention_modules = None
    engine.compiled_loops = lambda segments: compiled and loaded.model.device.type == "cpu"  # type: ignore[method-assign]
    surface = SurfaceAnalysis(info.n_layers, info.n_heads)
    analyses: list[Analysis] = {
        "eager": [],
        "surface": [surface],
        "surface+words": [surface, WordMapsOnly(info.n_layers, info.n_heads)],
        "full": [surface, HeadPredictions(info.n_layers, info.n_heads)],
    }[mode]
    engine.run(encoded, analyses)
    for analysis in analyses:
        analysis.flush()
    return surface.grids()


def run_per_sentence(loaded, encoded) -> None:  # type: ignore[no-untyped-def]
    """Original-code style: one sentence at a time, numpy loops over layers and heads."""
    engine = AttentionEngine(loaded.model, pad_id=loaded.tokenizer.pad_token_id, batch_size=1)
    for segment in encoded:
        _, inputs = collate([segment], loaded.tokenizer.pad_token_id)
        attentions = engine.forward(inputs)
        kinds = segment.unit_kind[segment.token_unit]
        for layer_maps in attentions:
            maps = layer_maps[0].double().numpy()
            reference.surface_statistics(maps, kinds, segment.token_punct)
            for head_map in maps:
                words = reference.word_level(head_map[None], segment.token_unit)[0]
                is_word = segment.unit_kind == 0
                for query in np.flatnonzero(is_word):
                    row = np.where(is_word, words[query], -np.inf)
                    row[query] = -np.inf
                    row.argmax()
                    words[:, query].argmax()


CLOCK = time.perf_counter  # --clock cpu: process time, steadier on a shared machine (use 1 thread)


def timed(function, *args) -> float:  # type: ignore[no-untyped-def]
    start = CLOCK()
    function(*args)
    return CLOCK() - start


def peak_rss_child(n: int, batch_size: int) -> float:
    """Peak RSS (MiB) of a fresh process running the engine over n segments."""
    command = [sys.executable, __file__, "--child", str(n), "--batch-size", str(batch_size)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_mib"]


def child(n: int, batch_size: int) -> None:
    loaded = load("minilm")
    encoded = encode(loaded, wiki_inputs(loaded.tokenizer, n))
    run_engine(loaded, encoded, batch_size)
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=128)
    parser.add_argument(
        "--baseline-segments", type=int, default=24, help="the per-sentence loop is slow"
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--corpus", choices=["wiki", "ud-ewt-dev"], default="wiki")
    parser.add_argument("--model", choices=["minilm", "bert-base-random"], default="minilm")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--modes", help="comma-separated subset of the modes (bare always runs)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.child:
        child(args.child, args.batch_size)
        return

    loaded = load(args.model)
    loaded_bf16 = load(args.model, dtype="bfloat16")
    inputs = wiki_inputs(loaded.tokenizer, args.segments) if args.corpus == "wiki" else ud_inputs(args.segments)
    encoded = encode(loaded, inputs)
    baseline_set = encoded[-args.baseline_segments :]  # the longest segments, near 128 tokens
    tokens = np.mean([s.n_tokens for s in encoded])
    info = loaded.info
    print(
        f"{args.model} ({info.n_layers}x{info.n_heads}), {len(encoded)} {args.corpus} segments, mean {tokens:.0f} tokens "
        f"(per-sentence baseline: {len(baseline_set)} segments, mean {np.mean([s.n_tokens for s in baseline_set]):.0f}), "
        f"batch {args.batch_size}, {torch.get_num_threads()} threads, {args.repeats} interleaved repeats, {args.clock} clock"
    )

    # Warm-up (first calls allocate and pick kernels).
    run_bare(loaded, encoded[: args.batch_size], args.batch_size)
    run_engine(loaded, encoded[: args.batch_size], args.batch_size)
    run_engine(loaded, encoded[: args.batch_size], args.batch_size, "full", False)
    run_engine(loaded_bf16, encoded[: args.batch_size], args.batch_size)

    modes = ["bare", "eager", "surface", "surface+words", "full", "full-tensors", "full-collected", "full-bf16",
             "full (baseline set)", "per-sent"]
    if args.modes:
        modes = ["bare", *(mode for mode in args.modes.split(",") if mode != "bare")]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    sizes = {mode: len(baseline_set) if mode in ("full (baseline set)", "per-sent") else len(encoded) for mode in modes}
    runs = {
        "bare": lambda: run_bare(loaded, encoded, args.batch_size),
        **{mode: (lambda mode=mode: run_engine(loaded, encoded, args.batch_size, mode))
           for mode in ("eager", "surface", "surface+words", "full")},
        "full-tensors": lambda: run_engine(loaded, encoded, args.batch_size, "full", False),
        "full-collected": lambda: run_engine(loaded, encoded, args.batch_size, streamed=False),
        "full-bf16": lambda: run_engine(loaded_bf16, encoded, args.batch_size),
        "full (baseline set)": lambda: run_engine(loaded, baseline_set, args.batch_size),
        "per-sent": lambda: run_per_sentence(loaded, baseline_set),
    }
    for _ in range(args.repeats):
        for mode in modes:
            times[mode].append(timed(runs[mode]))

    rates = {mode: sizes[mode] / statistics.median(times[mode]) for mode in modes}

    def ratio(mode: str, base: str) -> float:
        """Median over repeats of the per-repeat speed ratio: runs measured next to each
        other share the machine's state, so their ratio is steadier than a ratio of medians."""
        return statistics.median(
            (sizes[mode] / t_mode) / (sizes[base] / t_base) for t_mode, t_base in zip(times[mode], times[base])
        )

    print(f"\n{'mode':22} {'seq/s':>7}  {'vs bare':>7}  (seq/s min-max of {args.repeats})")
    for mode in modes:
        low, high = sizes[mode] / max(times[mode]), sizes[mode] / min(times[mode])
        print(f"{mode:22} {rates[mode]:7.1f}  {ratio(mode, 'bare'):7.2f}  ({low:.1f}-{high:.1f})")
    print("\nratios (median of per-repeat ratios)")
    lines = [
        ("surface engine / bare", "surface", "bare", "   (target >= 0.8)"),
        ("surface engine / eager forward", "surface", "eager", ""),
        ("surface+words engine / bare", "surface+words", "bare", ""),
        ("full engine / bare", "full", "bare", ""),
        ("full engine, tensor code / bare", "full-tensors", "bare", ""),
        ("full engine, streamed / collected", "full", "full-collected", ""),
        ("full engine / per-sentence (same segs)", "full (baseline set)", "per-sent", "x (target >= 5x)"),
        ("full bf16 / full fp32", "full-bf16", "full", ""),
    ]
    for label, mode, base, note in lines:
        if mode in modes and base in modes:
            print(f"  {label:40} {ratio(mode, base):.2f}{note}")
    if "full-bf16" not in modes:
        return

    fp32 = run_engine(loaded, encoded, args.batch_size)
    bf16 = run_engine(loaded_bf16, encoded, args.batch_size)
    deviation = {metric: float(np.abs(fp32[metric] - bf16[metric]).max()) for metric in fp32}
    worst = max(deviation, key=deviation.get)  # type: ignore[arg-type]
    print(
        f"\nbf16 vs fp32 surface statistics: largest |difference| {deviation[worst]:.4f} ({worst}); "
        f"probabilities: {max(v for k, v in deviation.items() if 'entropy' not in k):.4f}"
    )

    if args.no_memory:
        return
    small, large = args.segments // 2, args.segments * 2
    print(
        f"\npeak RSS, fresh process: {small} segments {peak_rss_child(small, args.batch_size):.0f} MiB, "
        f"{large} segments {peak_rss_child(large, args.batch_size):.0f} MiB"
    )


if __name__ == "__main__":
    main()
