"""Scale measurement (issue 15 item 5): `analyze surface syntax` over a whole corpus.

In a fresh project folder (a new DuckDB file at the newest revision, its own mlruns):
ingest the model and the corpus, then run, each as a whole process under /usr/bin/time:

  first run   `headlens analyze surface syntax --model M --corpus C [--limit N] [--max-tokens T]`
  redo        the same with `--force` (the run's old rows are dropped first)

and report, per run, wall time and peak RSS; then

  rows           head_predictions rows of the syntax run
  write rows/s   rows / seconds spent in the transactions that wrote them (insert_rows,
                 the checkpoint row and the COMMIT), timed inside the process: the command
                 runs as `python bench/scale.py --child ...`, which wraps the pipeline's
                 session_scope and insert_rows with timers and then calls app.cli.main
                 exactly as the `headlens` script does
  bytes/row      database file size after CHECKPOINT / rows (the file also holds the corpus,
                 surface metrics, ...), and head_predictions' own compressed size from
                 `pragma storage_info` (segment extents within blocks: approximate) / rows,
                 per column too
  table1 s       `queries/table1_relations.sql` over the syntax run: the SQL only, median of
                 --repeats executions on one read-only connection (after one warm-up)

`--table1 FOLDER` only times Table 1 on a finished project, and 0011's arc_scores against
counting arc_hits (0002's definition) side by side, checking that they agree.
`--quantise-check FOLDER` instead checks, on a finished project written before the weights
were rounded, whether storing cls_weight and sep_weight to 6 decimals (`--quantise-to 6`, as
the schema now does) or as another type (`--quantise-to 'DECIMAL(5,4)'`) keeps the noop
queries' outputs to 3 decimals.

Usage (gold data in HEADLENS_DATA, e.g. /work/shared/data):
  OMP_NUM_THREADS=2 python bench/scale.py --corpus ud-ewt-train            # the full run
  python bench/scale.py --corpus ud-ewt-train --limit 500 --no-redo        # a quick look
  python bench/scale.py --corpus ud-ewt-train --max-tokens 512 --keep /tmp/scale512
  python bench/scale.py --quantise-check /tmp/scale512
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIME_FORMAT = "BENCH_TIME wall=%e rss_kb=%M"


def child(stats_path: str, argv: list[str]) -> None:
    """Run `headlens ARGV` in this process with the write path timed; stats to a JSON file."""
    import atexit
    import importlib

    sys.path.insert(0, str(ROOT))
    # By module path: app.pipeline re-exports a function named `analyze`.
    analyze = importlib.import_module("app.pipeline.analyze")
    write = importlib.import_module("app.store.write")

    stats: dict[str, Any] = {"insert_s": {}, "rows": {}, "write_s": 0.0, "transactions": 0}
    real_insert, real_scope = write.insert_rows, analyze.session_scope
    writing = [False]

    def insert_rows(connection, table_name, columns, constants=None):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        n = real_insert(connection, table_name, columns, constants)
        stats["insert_s"][table_name] = stats["insert_s"].get(table_name, 0.0) + time.perf_counter() - start
        stats["rows"][table_name] = stats["rows"].get(table_name, 0) + n
        writing[0] = writing[0] or (table_name == "head_predictions" and n > 0)
        return n

    @contextmanager
    def session_scope(engine):  # type: ignore[no-untyped-def]
        writing[0] = False
        start = time.perf_counter()
        with real_scope(engine) as session:
            yield session
        if writing[0]:  # a transaction that wrote prediction rows, COMMIT included
            stats["write_s"] += time.perf_counter() - start
            stats["transactions"] += 1

    write.insert_rows = insert_rows  # type: ignore[attr-defined]  # analyze imports it at call time
    analyze.session_scope = session_scope  # type: ignore[attr-defined]
    atexit.register(lambda: Path(stats_path).write_text(json.dumps(stats)))
    from app.cli import main

    sys.argv = ["headlens", *argv]
    main()


def headlens(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=ROOT, check=True)


def timed_analyze(env: dict[str, str], work: Path, tag: str, args: list[str]) -> dict[str, Any]:
    """One whole `analyze` process under /usr/bin/time: wall, peak RSS and the write stats."""
    stats_path = work / f"{tag}.json"
    command = ["/usr/bin/time", "-f", TIME_FORMAT, sys.executable, str(Path(__file__).resolve()),
               "--child", str(stats_path), "--", "analyze", *args]
    done = subprocess.run(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{tag}: analyze failed ({done.returncode})")
    match = re.search(r"BENCH_TIME wall=([\d.]+) rss_kb=(\d+)", done.stderr)
    assert match, done.stderr[-2000:]
    stats = json.loads(stats_path.read_text())
    rows = stats["rows"].get("head_predictions", 0)
    return {
        "wall_s": float(match.group(1)),
        "peak_rss_gb": int(match.group(2)) / 1024**2,
        "prediction_rows_written": rows,
        "write_s": round(stats["write_s"], 3),
        "insert_predictions_s": round(stats["insert_s"].get("head_predictions", 0.0), 3),
        "write_rows_per_s": round(rows / stats["write_s"]) if stats["write_s"] else None,
        "write_transactions": stats["transactions"],
    }


def storage(db_file: Path, run_id: int) -> dict[str, Any]:
    """File size after CHECKPOINT, head_predictions' compressed size (approximate)."""
    import duckdb

    with duckdb.connect(str(db_file)) as connection:
        connection.execute("CHECKPOINT")
        rows = connection.execute("SELECT count(*) FROM head_predictions").fetchone()[0]  # type: ignore[index]
        run_rows = connection.execute(
            "SELECT count(*) FROM head_predictions WHERE run_id = ?", [run_id]
        ).fetchone()[0]  # type: ignore[index]
        block_size = connection.execute(
            "SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()"
        ).fetchone()[0]  # type: ignore[index]
        # A segment's extent: from its offset to the next segment's offset in the same block
        # (or the block's end); overflow blocks count whole.
        per_column = connection.execute(
            """
            with segments as (
                select column_name, block_id, block_offset, len(additional_block_ids) as extra,
                       lead(block_offset) over (partition by block_id order by block_offset) as next_offset
                from pragma_storage_info('head_predictions')
                where block_id >= 0 and segment_type <> 'VALIDITY'
            )
            select column_name, sum(coalesce(next_offset, ?) - block_offset + extra * ?) as bytes
            from segments group by column_name order by bytes desc
            """,
            [block_size, block_size],
        ).fetchall()
        validity = connection.execute(
            """
            with segments as (
                select block_id, block_offset,
                       lead(block_offset) over (partition by block_id order by block_offset) as next_offset,
                       segment_type
                from pragma_storage_info('head_predictions') where block_id >= 0
            )
            select coalesce(sum(coalesce(next_offset, ?) - block_offset), 0) from segments
            where segment_type = 'VALIDITY'
            """,
            [block_size],
        ).fetchone()[0]  # type: ignore[index]
    size = db_file.stat().st_size
    table_bytes = sum(b for _, b in per_column) + validity
    return {
        "prediction_rows": rows,
        "run_rows": run_rows,
        "file_mb": round(size / 1e6, 1),
        "file_bytes_per_row": round(size / rows, 2),
        "table_bytes_per_row": round(table_bytes / rows, 2),
        "column_bytes_per_row": {name: round(b / rows, 2) for name, b in per_column},
        "validity_bytes_per_row": round(validity / rows, 2),
    }


def table1_seconds(db_file: Path, run_id: int, repeats: int) -> tuple[float, list[float], int]:
    """Median seconds of Table 1's SQL on one read-only connection, as `headlens query` runs it."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import text

    from app.store.db import make_engine

    sql = (ROOT / "queries" / "table1_relations.sql").read_text()
    params = {"run_id": run_id, "annotation": "gold", "min_arcs": 100}
    engine = make_engine(f"duckdb:///{db_file}", read_only=True)
    times = []
    with engine.connect() as connection:
        n_rows = len(connection.execute(text(sql), params).fetchall())  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            connection.execute(text(sql), params).fetchall()
            times.append(time.perf_counter() - start)
    engine.dispose()
    return statistics.median(times), times, n_rows


# 0002's arc_scores: the hits of arc_hits counted (one row per arc and head, from a join
# of the predictions with themselves), to compare with 0011's arc_scores.
ARC_HITS_COUNTED = """
select label, layer, head,
       count(*) filter (where d2h) as d2h, count(*) filter (where h2d) as h2d,
       count(*) filter (where h2d_col) as h2d_col, count(*) as n
from arc_hits where run_id = :run_id and annotation = 'gold'
group by label, layer, head
"""
ARC_SCORES_COUNTED = """
select label, layer, head,
       sum(correct) filter (where direction = 'd2h') as d2h, sum(correct) filter (where direction = 'h2d') as h2d,
       sum(correct) filter (where direction = 'h2d_col') as h2d_col, max(n) as n
from arc_scores where run_id = :run_id and annotation = 'gold'
group by label, layer, head
"""


def arc_scores_vs_arc_hits(db_file: Path, run_id: int, repeats: int) -> dict[str, Any]:
    """The gold counts of both definitions, interleaved on one read-only connection: medians
    and whether they agree."""
    sys.path.insert(0, str(ROOT))
    from sqlalchemy import text

    from app.store.db import make_engine

    engine = make_engine(f"duckdb:///{db_file}", read_only=True)
    times: dict[str, list[float]] = {"arc_scores": [], "arc_hits": []}
    with engine.connect() as connection:
        answers = {
            name: sorted(tuple(int(v) if not isinstance(v, str) else v for v in row)
                         for row in connection.execute(text(sql), {"run_id": run_id}))
            for name, sql in (("arc_scores", ARC_SCORES_COUNTED), ("arc_hits", ARC_HITS_COUNTED))
        }
        for _ in range(repeats):
            for name, sql in (("arc_scores", ARC_SCORES_COUNTED), ("arc_hits", ARC_HITS_COUNTED)):
                start = time.perf_counter()
                connection.execute(text(sql), {"run_id": run_id}).fetchall()
                times[name].append(time.perf_counter() - start)
    engine.dispose()
    return {
        "arc_scores_s": round(statistics.median(times["arc_scores"]), 3),
        "arc_hits_counted_s": round(statistics.median(times["arc_hits"]), 3),
        "same_counts": answers["arc_scores"] == answers["arc_hits"],
        "groups": len(answers["arc_scores"]),
    }


def quantised_noop_check(db_file: Path, run_id: int, quantise_to: str = "6") -> dict[str, Any]:
    """Would storing cls_weight / sep_weight more coarsely keep the noop queries' outputs to
    3 decimals? Both queries (noop_by_pos for every head, noop_relation_heads on gold) on a
    copy of the database, before and after quantising the two columns: `quantise_to` is a
    number of decimals (REAL rounded to them, as the schema's `decimals` does; DuckDB's
    round() breaks exact ties away from zero, numpy's to even) or a SQL type such as
    DECIMAL(5,4). Meaningful on a run written before the rounding, whose weights are float32."""
    import shutil

    import duckdb

    copy = db_file.with_name("quantised-copy.duckdb")
    shutil.copy(db_file, copy)

    def sql(name: str) -> str:
        return re.sub(r":(\w+)", r"$\1", (ROOT / "queries" / f"{name}.sql").read_text())

    def outputs(connection) -> list[Any]:  # type: ignore[no-untyped-def]
        layers, heads = connection.execute(
            "SELECT max(layer) + 1, max(head) + 1 FROM head_predictions WHERE run_id = ?", [run_id]
        ).fetchone()
        rows = []
        for layer in range(layers):
            for head in range(heads):
                rows += connection.execute(
                    sql("noop_by_pos"), {"run_id": run_id, "head_label": f"{layer + 1}-{head + 1}", "min_words": 20}
                ).fetchall()
        return rows + connection.execute(
            sql("noop_relation_heads"), {"run_id": run_id, "annotation": "gold", "min_arcs": 100}
        ).fetchall()

    try:
        with duckdb.connect(str(copy)) as connection:
            before = outputs(connection)
            for name in ("cls_weight", "sep_weight"):
                if quantise_to.isdigit():
                    connection.execute(
                        f"UPDATE head_predictions SET {name} = round({name}::DOUBLE, {int(quantise_to)})::REAL"
                    )
                else:
                    connection.execute(f"ALTER TABLE head_predictions ALTER {name} TYPE {quantise_to}")
            after = outputs(connection)
    finally:
        copy.unlink(missing_ok=True)
    pairs = [
        (float(b), float(a))
        for row_before, row_after in zip(before, after, strict=True)
        for b, a in zip(row_before, row_after, strict=True)
        if isinstance(b, float)
    ]
    return {
        "quantised_to": f"REAL to {quantise_to} decimals" if quantise_to.isdigit() else quantise_to,
        "values": len(pairs),
        "differ_at_3_decimals": sum(round(b, 3) != round(a, 3) for b, a in pairs),
        "max_abs_difference": max((abs(b - a) for b, a in pairs), default=0.0),
    }


def syntax_run_id(db_file: Path) -> int:
    import duckdb

    with duckdb.connect(str(db_file), read_only=True) as connection:
        return connection.execute(  # type: ignore[index]
            "SELECT max(id) FROM runs WHERE analysis = 'syntax' AND status = 'done'"
        ).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="ud-ewt-train")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--repeats", type=int, default=5, help="Table 1 executions (median)")
    parser.add_argument("--no-redo", action="store_true", help="skip the --force redo")
    parser.add_argument("--keep", type=Path, help="project folder to use and keep (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--quantise-check", type=Path, metavar="FOLDER",
        help="only check coarser cls/sep weights (--quantise-to) on FOLDER's finished run, and stop",
    )
    parser.add_argument(
        "--quantise-to", default="6", metavar="DECIMALS|TYPE",
        help="for --quantise-check: decimals to round the REAL weights to (default 6), or a SQL type",
    )
    parser.add_argument(
        "--table1", type=Path, metavar="FOLDER",
        help="only time Table 1 and arc_scores against counting arc_hits on FOLDER's finished run",
    )
    args = parser.parse_args()
    if args.quantise_check:
        db_file = args.quantise_check / "headlens.duckdb"
        print(json.dumps(quantised_noop_check(db_file, syntax_run_id(db_file), args.quantise_to), indent=2))
        return
    if args.table1:
        db_file = args.table1 / "headlens.duckdb"
        run_id = syntax_run_id(db_file)
        median, times, n_rows = table1_seconds(db_file, run_id, args.repeats)
        print(json.dumps({
            "table1_s": round(median, 3), "table1_all_s": [round(t, 3) for t in times],
            "table1_rows": n_rows, **arc_scores_vs_arc_hits(db_file, run_id, args.repeats),
        }, indent=2))
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="headlens-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    db_file = work / "headlens.duckdb"
    env = {
        **os.environ,
        "HEADLENS_DB": f"duckdb:///{db_file}",
        "HEADLENS_MLRUNS": str(work / "mlruns"),
        "HEADLENS_CACHE": str(work / "cache"),
        "PYTHONPATH": str(ROOT),
    }
    headlens(env, "db", "upgrade")
    headlens(env, "ingest", "model", args.model)
    headlens(env, "ingest", "corpus", args.corpus)
    analyze_args = ["surface", "syntax", "--model", args.model, "--corpus", args.corpus]
    if args.limit:
        analyze_args += ["--limit", str(args.limit)]
    if args.max_tokens:
        analyze_args += ["--max-tokens", str(args.max_tokens)]

    results: dict[str, Any] = {
        "corpus": args.corpus, "model": args.model, "limit": args.limit, "max_tokens": args.max_tokens,
        "threads": os.environ.get("OMP_NUM_THREADS"), "folder": str(work),
    }

    def report(stage: str) -> None:  # after each stage, so that a cut-off run still tells
        text_out = json.dumps(results, indent=2)
        print(f"--- after {stage}:\n{text_out}", flush=True)
        (work / "scale.json").write_text(text_out)
        if args.json:
            args.json.write_text(text_out)

    results["first"] = timed_analyze(env, work, "first", analyze_args)
    run_id = syntax_run_id(db_file)
    results["storage"] = storage(db_file, run_id)
    report("first run")
    median, times, n_rows = table1_seconds(db_file, run_id, args.repeats)
    results["table1_s"] = round(median, 3)
    results["table1_all_s"] = [round(t, 3) for t in times]
    results["table1_rows"] = n_rows
    report("table 1")
    if not args.no_redo:
        results["redo"] = timed_analyze(env, work, "redo", [*analyze_args, "--force"])
        results["redo_vs_first"] = round(results["redo"]["wall_s"] / results["first"]["wall_s"], 2)
        report("redo")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[sys.argv.index("--") + 1 :])
    else:
        main()
