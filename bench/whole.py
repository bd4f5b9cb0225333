"""Whole-process cost of `headlens analyze surface syntax` against a bare forward script.

Everything is a fresh process, timed from outside (wall clock) with its peak RSS:

  bare     a minimal script over the same word pieces: import torch and transformers, load
           the encoder with SDPA attention (no attention weights), run the forward passes in
           length-ordered batches of at most 2048 padded tokens (the engine's default cut;
           16 segments of 128 tokens). The ceiling of any analysis.
  first    `headlens analyze surface syntax` on a fresh copy of the ingested database:
           imports, model load, forward with attention weights, analyses, DuckDB write,
           MLflow runs.
  force    the same command with `--force` on a database that already holds the runs:
           a redo, which also drops the old rows.

The commands run in turn (bare, first, force, bare, ...), so a drift of the machine's speed
hits all alike; ratios are medians of per-round ratios (bare seconds / command seconds:
1.0 means as fast as the bare forward). Setup (schema, model and corpus ingest, the word
pieces for `bare`) is done once, untimed, in a scratch directory.

`--baseline TREE` adds `base-first` and `base-force`: the same commands run from another checkout
(e.g. `git worktree add /tmp/before <commit>`), interleaved with this one's, for before/after
ratios measured under the same load.

`--long` measures 512-token inputs instead: a wiki-segments corpus built with a 512-piece
budget, `analyze surface syntax --max-tokens 512` batched by the token budget (the default
`--batch-tokens`) against fixed batches of 16 segments: wall time and peak RSS.

`--model bert-base-random` runs both on a randomly initialised BERT-base-shaped encoder (12 x
12, hidden 768, seed 0, MiniLM's tokenizer), saved to the scratch directory and ingested with
`--path`: the shape where the forward weighs most against the per-word work.

Usage: python bench/whole.py [--corpus wiki-segments|ud-ewt-dev] [--limit 256] [--repeats 3]
                             [--threads 2] [--long] [--baseline TREE] [--profile FILE]
                             [--model minilm|bert-base-random]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADLENS_DATA") or ROOT / "../shared/data").resolve()


def measured(command: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one child process:
    CPU / wall against the thread count says how much of the machine a command left idle."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def bare_child(pieces: Path, threads: int) -> None:
    """The bare forward script: imports, load, SDPA forward over the saved word pieces."""
    import torch
    from transformers import AutoModel

    torch.set_num_threads(threads)
    saved = json.loads(pieces.read_text())
    model = AutoModel.from_pretrained(saved["model"], attn_implementation="sdpa").eval()
    segments = sorted(saved["segments"], key=len)
    groups: list[list[list[int]]] = [[]]
    for segment in segments:  # rows x longest <= 2048, as `--batch-tokens 2048` cuts
        if groups[-1] and (len(groups[-1]) + 1) * len(segment) > 2048:
            groups.append([])
        groups[-1].append(segment)
    with torch.inference_mode():
        for group in groups:
            width = max(len(ids) for ids in group)
            ids = torch.zeros(len(group), width, dtype=torch.int64)
            mask = torch.zeros(len(group), width, dtype=torch.int64)
            for row, segment in enumerate(group):
                ids[row, : len(segment)] = torch.tensor(segment)
                mask[row, : len(segment)] = 1
            model(input_ids=ids, attention_mask=mask)


def headlens(env: dict[str, str], *arguments: str) -> list[str]:
    return [sys.executable, "-m", "app", *arguments]


def random_bert_base(folder: Path, minilm_dir: Path) -> Path:
    """A randomly initialised BERT-base-shaped encoder (12 x 12, hidden 768, seed 0) with
    MiniLM's tokenizer, saved as a local model directory that `ingest model --path` takes."""
    import torch
    from transformers import BertConfig, BertModel

    from app.ingest.models import load_tokenizer

    tokenizer = load_tokenizer(minilm_dir)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=12,
                        num_attention_heads=12, intermediate_size=3072)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def setup(scratch: Path, env: dict[str, str], corpus: str, limit: int, max_tokens: int,
          model: str) -> tuple[str, Path]:
    """Migrated database with the model and corpus; the corpus' word pieces for `bare`."""
    run = lambda *a: subprocess.run(headlens(env, *a), env=env, check=True, capture_output=True)  # noqa: E731
    run("db", "upgrade")
    sys.path.insert(0, str(ROOT))
    from app.config import Settings
    from app.ingest.models import resolve_model_path

    model_dir = resolve_model_path("minilm", None, Settings.resolve().cache_dir)
    if model == "minilm":
        run("ingest", "model", "minilm")
    else:
        model_dir = random_bert_base(scratch / model, model_dir)
        run("ingest", "model", model, "--path", str(model_dir))
    name = corpus
    if corpus == "wiki-segments" and max_tokens != 128:
        name = f"wiki{max_tokens}"
        run("ingest", "corpus", name, "--from", "wiki-segments", "--segments", str(limit),
            "--max-tokens", str(max_tokens))
    else:
        run("ingest", "corpus", corpus)
    from app.extract.align import Aligner, Skipped
    from app.ingest.models import load_tokenizer
    from app.pipeline.common import open_db
    from app.store.corpora import find_corpus, segment_inputs
    from app.store.db import session_scope

    settings = Settings.resolve()
    with session_scope(open_db(settings)) as session:
        inputs = segment_inputs(session, find_corpus(session, name).id, limit=limit)
    aligner = Aligner(load_tokenizer(model_dir), max_tokens=max_tokens, overflow="skip", on_unaligned="error")
    encoded = aligner.encode(inputs, Skipped())
    pieces = scratch / "pieces.json"
    pieces.write_text(json.dumps({"model": str(model_dir), "segments": [s.input_ids.tolist() for s in encoded]}))
    tokens = sum(s.n_tokens for s in encoded) / len(encoded)
    print(f"{name}: {len(encoded)} segments, mean {tokens:.0f} word pieces, longest "
          f"{max(s.n_tokens for s in encoded)}")
    return name, pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="wiki-segments", choices=["wiki-segments", "ud-ewt-dev"])
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--model", default="minilm", choices=["minilm", "bert-base-random"],
                        help="bert-base-random: a random 12 x 12, hidden 768 encoder, MiniLM's tokenizer")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--long", action="store_true", help="512-token inputs: token budget vs 16 per batch")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (before/after)")
    parser.add_argument("--profile", type=Path, help="also write a cProfile of one `first` run here")
    parser.add_argument("--bare-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        bare_child(args.bare_child, args.threads)
        return

    max_tokens = 512 if args.long else 128
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            # `python -m app` puts the working directory first on sys.path: without this, a
            # baseline run from inside a checkout would import that checkout's code, not its own.
            "PYTHONSAFEPATH": "1",
            "HEADLENS_DB": str(scratch / "base.duckdb"),
            "HEADLENS_MLRUNS": str(scratch / "mlruns"),
            "HEADLENS_DATA": str(DATA),
            "HEADLENS_CACHE": str(ROOT / "cache"),
            "OMP_NUM_THREADS": str(args.threads),
        }
        os.environ.update(env)
        name, pieces = setup(scratch, env, args.corpus, args.limit, max_tokens, args.model)
        analyze = ["analyze", "surface", "syntax", "--model", args.model, "--corpus", name, "--limit", str(args.limit),
                   "--threads", str(args.threads), "--max-tokens", str(max_tokens)]
        if args.long:
            variants = {"budget": [], "fixed16": ["--batch-size", "16", "--batch-tokens", str(10**9)]}
        else:
            variants = {"first": [], "force": ["--force"]}
        commands = {"bare": [sys.executable, __file__, "--bare-child", str(pieces), "--threads", str(args.threads)]}
        databases = {}
        for variant, extra in variants.items():
            databases[variant] = scratch / f"{variant}.duckdb"
            commands[variant] = headlens(env, *analyze, *extra)
        trees = {variant: ROOT for variant in commands}
        if args.baseline:
            for variant, extra in list(variants.items()):
                databases[f"base-{variant}"] = scratch / f"base-{variant}.duckdb"
                commands[f"base-{variant}"] = headlens(env, *analyze, *extra)
                trees[f"base-{variant}"] = args.baseline.resolve()

        def fresh(variant: str) -> dict[str, str]:
            """`force` redoes runs that exist; every other variant starts from the ingested base."""
            if variant == "bare":
                return env
            target = databases[variant]
            if not variant.endswith("force") or not target.exists():
                shutil.copy(scratch / "base.duckdb", target)
            return {**env, "HEADLENS_DB": str(target), "PYTHONPATH": str(trees[variant])}

        for variant, command in commands.items():  # warm-up: page cache, the MLflow store, runs for --force
            measured(command, fresh(variant))
        if args.profile:
            profiled = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "app", *analyze]
            measured(profiled, fresh("first"))
            print(f"profile of one `first` run: {args.profile}")
        times: dict[str, list[float]] = {variant: [] for variant in commands}
        peaks: dict[str, list[float]] = {variant: [] for variant in commands}
        cpus: dict[str, list[float]] = {variant: [] for variant in commands}
        for _ in range(args.repeats):
            for variant, command in commands.items():
                seconds, peak, cpu = measured(command, fresh(variant))
                times[variant].append(seconds)
                peaks[variant].append(peak)
                cpus[variant].append(cpu)

    print(f"{args.repeats} interleaved rounds, {args.threads} threads, wall clock, each a fresh process")
    print(f"\n{'command':8} {'median s':>9} {'min-max s':>12} {'peak RSS MiB':>13} {'CPU s':>7} "
          f"{'CPU / wall':>10} {'bare / it':>10}")
    for variant in commands:
        ratio = statistics.median(b / t for b, t in zip(times["bare"], times[variant]))
        busy = statistics.median(c / t for c, t in zip(cpus[variant], times[variant]))
        print(f"{variant:8} {statistics.median(times[variant]):9.1f} "
              f"{min(times[variant]):5.1f}-{max(times[variant]):<6.1f} {max(peaks[variant]):13.0f} "
              f"{statistics.median(cpus[variant]):7.1f} {busy:10.2f} {ratio:10.2f}")


if __name__ == "__main__":
    main()
