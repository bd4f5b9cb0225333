"""Peak resident memory of the heavy commands and of `reproduce`'s stages, before and after.

Runs against a finished project folder (a `headlens reproduce` folder: database, MLflow
store, probe features in cache/), which it modifies: pass a copy. Every measurement redoes
work with `--force`, so the folder's results stay those of the same code.

  commands  each command a fresh process (`python -m app ...`); its peak is getrusage's
            ru_maxrss of the child (what `/usr/bin/time` reports):
              coref     analyze coref --corpus litbank --force
              syntax    analyze syntax examples syntax:norm --corpus ud-ewt-dev --force
              probe     probe attn_glove --model minilm --epochs E --force
              long      analyze surface syntax --max-tokens 512 on a 512-piece wiki-segments
                        corpus (ingested once, `--long-limit` segments)
  stages    one process running reproduce's heavy stages in turn on the folder (surface of
            `--limit` Wikipedia segments, syntax on UD EWT dev, coreference on OntoGUM dev and
            LitBank, the probes with E epochs), each stage closed by reproduce's own
            `_Steps.heading`, so each line is that stage's VmHWM (reset between stages, as
            `reproduce` prints it) and the resident size it started from (what the stages
            before it left).

With `--baseline TREE` (another checkout, e.g. `git worktree add /tmp/before <commit>`) the
same runs are made from that tree too, interleaved, and printed side by side.

Usage: python bench/memory.py FOLDER [--baseline TREE] [--only coref,syntax,probe,long,stages]
                              [--epochs 1] [--limit 256] [--long-limit 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HEADLENS_DATA") or ROOT / "../shared/data").resolve()
GIB = 2**30


def command_lines(epochs: int, long_limit: int) -> dict[str, list[str]]:
    return {
        "coref": ["analyze", "coref", "--corpus", "litbank", "--force"],
        "syntax": ["analyze", "syntax", "examples", "syntax:norm", "--corpus", "ud-ewt-dev", "--force"],
        "probe": ["probe", "attn_glove", "--model", "minilm", "--epochs", str(epochs), "--force"],
        "long": ["analyze", "surface", "syntax", "--corpus", f"wiki-long-{long_limit}", "--max-tokens", "512",
                 "--force"],
    }


def environment(tree: Path, threads: int) -> dict[str, str]:
    # PYTHONSAFEPATH: a reproduce folder is a clone of the project, so `python -m app` run in it
    # would import the folder's own app/ (the working directory comes first on sys.path).
    return {**os.environ, "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1", "HEADLENS_DATA": str(DATA),
            "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def measured(command: list[str], env: dict[str, str], folder: Path) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (GiB: the child's ru_maxrss, from
    wait4) and stdout of one child."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        child = subprocess.Popen(command, env=env, cwd=folder, stdout=subprocess.PIPE, stderr=null)
        assert child.stdout is not None
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {child.returncode}); run it by hand to see why")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / GIB, out.decode()


def ensure_long_corpus(tree: Path, folder: Path, threads: int, limit: int) -> None:
    """A wiki-segments corpus cut at 512 pieces (`limit` segments), ingested once (a no-op after)."""
    subprocess.run([sys.executable, "-m", "app", "ingest", "corpus", f"wiki-long-{limit}", "--from", "wiki-segments",
                    "--segments", str(limit), "--max-tokens", "512"], env=environment(tree, threads), cwd=folder,
                   check=True, capture_output=True)


def stages_child(folder: Path, epochs: int, limit: int, threads: int) -> None:
    """reproduce's heavy stages in one process: one JSON line per stage (peak, start RSS)."""
    import torch

    from app import pipeline
    from app.config import CHUNK_TOKENS, DEFAULT_MODEL, ExtractConfig, Settings
    from app.heap import release_memory
    from app.pipeline.probe import probe, probe_group
    from app.reproduce import stage_peak_rss

    torch.set_num_threads(threads)
    os.chdir(folder)
    settings = Settings.resolve()
    quiet = lambda message: None  # noqa: E731
    model, random_model = DEFAULT_MODEL, f"{DEFAULT_MODEL}-random"
    splits = {"train": "ud-ewt-train", "dev": "ud-ewt-dev", "test": "ud-ewt-test"}
    chunked = ExtractConfig(chunk_tokens=CHUNK_TOKENS)
    options = {"max_epochs": epochs}

    def surface() -> None:
        config = ExtractConfig(limit=limit, chunk_tokens=CHUNK_TOKENS)
        pipeline.analyze(settings, ["surface", "clustering", "surface:norm"], model=model, corpus="wiki-segments",
                         config=config, force=True, on_event=quiet)
        pipeline.analyze(settings, ["surface"], model=random_model, corpus="wiki-segments", config=config,
                         force=True, on_event=quiet)

    def syntax() -> None:
        pipeline.analyze(settings, ["syntax", "examples", "syntax:norm"], model=model, corpus="ud-ewt-dev",
                         config=chunked, force=True, on_event=quiet)

    def coref() -> None:
        for corpus in ("ontogum-dev", "litbank"):
            pipeline.analyze(settings, ["coref"], model=model, corpus=corpus, config=chunked, force=True,
                             on_event=quiet)

    def probes() -> None:
        for kind, encoder in (("distance_glove", None), ("attn_glove", random_model), ("structural", model)):
            probe(settings, kind, model=encoder, options=options, force=True, **splits)
        group = [("attn", None), ("attn_glove", None)] + [("attn_glove", (layer,)) for layer in range(6)]
        probe_group(settings, group, model=model, options=options, force=True, **splits)

    for name, stage in (("surface", surface), ("syntax", syntax), ("coreference", coref), ("probes", probes)):
        release_memory()  # what the stage before freed goes back; its peak starts here
        stage_peak_rss()
        start_rss = _resident()
        began = time.perf_counter()
        stage()
        seconds = time.perf_counter() - began
        peak = _hwm()
        print(json.dumps({"stage": name, "start_gib": start_rss / GIB, "peak_gib": peak / GIB, "seconds": seconds}),
              flush=True)


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))


def _resident() -> int:
    return _status("VmRSS:")


def _hwm() -> int:
    return _status("VmHWM:")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a copy of a finished reproduce folder (it is modified)")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (before/after)")
    parser.add_argument("--only", default="coref,syntax,probe,long,stages")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit", type=int, default=256, help="Wikipedia segments of the surface stage")
    parser.add_argument("--long-limit", type=int, default=64, help="512-piece segments of the long command")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stages-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.folder.resolve()
    if args.stages_child:
        stages_child(folder, args.epochs, args.limit, args.threads)
        return
    trees = {"after": ROOT} | ({"before": args.baseline.resolve()} if args.baseline else {})
    wanted = args.only.split(",")
    lines = command_lines(args.epochs, args.long_limit)
    results: dict[tuple[str, str], str] = {}
    for name in [name for name in lines if name in wanted]:
        if name == "long":
            ensure_long_corpus(ROOT, folder, args.threads, args.long_limit)
        for label, tree in trees.items():
            extra = ["--threads", str(args.threads)] if lines[name][0] == "analyze" else []
            seconds, cpu, peak, _ = measured([sys.executable, "-m", "app", *lines[name], *extra],
                                             environment(tree, args.threads), folder)
            results[name, label] = f"{peak:.2f} GiB ({seconds:.0f} s wall, {cpu:.0f} s CPU)"
            print(f"{name:8} {label:6} peak {peak:.2f} GiB, {seconds:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    if "stages" in wanted:
        for label, tree in trees.items():
            _, _, _, out = measured([sys.executable, str(Path(__file__).resolve()), str(folder), "--stages-child",
                                  "--epochs", str(args.epochs), "--limit", str(args.limit),
                                  "--threads", str(args.threads)], environment(tree, args.threads), folder)
            for line in out.splitlines():
                if line.startswith("{"):
                    stage = json.loads(line)
                    key = f"stage {stage['stage']}"
                    results[key, label] = (
                        f"{stage['peak_gib']:.2f} GiB (from {stage['start_gib']:.2f}, {stage['seconds']:.0f} s)")
                    print(f"{key:18} {label:6} {results[key, label]}", flush=True)
    print("\n| measurement | " + " | ".join(trees) + " |\n|---|" + "---|" * len(trees))
    for key in dict.fromkeys(name for name, _ in results):
        print(f"| {key} | " + " | ".join(results.get((key, label), "-") for label in trees) + " |")


if __name__ == "__main__":
    main()
