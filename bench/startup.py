"""Benchmark of command start-up: whole-process wall time of the commands people type most.

Each command runs as its own process (`python -m app ...`, what the `headlens` script does)
against a freshly migrated DuckDB file holding one tiny run, `--repeats` times after one
warm-up, in turn (A B C A B C ...) so that a drift of the machine's speed hits all alike.
Prints the median and range per command; issue 15 asks for <= 2 s for `--help`, `runs` and
`query`.

Usage: python bench/startup.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "runs": ["runs"],
    "query runs": ["query", "runs"],
    "query --list": ["query", "--list"],
}


def timed(arguments: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "app", *arguments], env=env, check=True, capture_output=True
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "HEADLENS_DB": str(Path(scratch) / "headlens.duckdb"),
            "HEADLENS_MLRUNS": str(Path(scratch) / "mlruns"),
        }
        subprocess.run([sys.executable, "-m", "app", "db", "upgrade"], env=env, check=True,
                       capture_output=True)
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for arguments in COMMANDS.values():  # warm-up: bytecode, page cache
            timed(arguments, env)
        for _ in range(args.repeats):
            for name, arguments in COMMANDS.items():
                times[name].append(timed(arguments, env))
    print(f"{'command':14} {'median s':>9} {'min-max s':>13}  ({args.repeats} runs each)")
    for name, values in times.items():
        print(f"{name:14} {statistics.median(values):9.2f} {min(values):6.2f}-{max(values):<6.2f}")


if __name__ == "__main__":
    main()
