"""Benchmark of the store's write path and storage: per-head prediction rows, side by side.

In one run, on the same synthetic rows shaped like `analyze syntax` output (segments of
`--words` words, 6 layers x 12 heads, written a chunk of 256 segments per transaction, as
the pipeline does):

  write rows/s     insert_rows into head_predictions: DuckDB (Arrow) and PostgreSQL (COPY,
                   a throwaway embedded server on a Unix socket); then statistics_s, the
                   ANALYZE that `analyze` runs after its writes on PostgreSQL
  bytes/row        DuckDB file growth per prediction row after CHECKPOINT
  table1 s         `queries/table1_relations.sql` over the run (gold arcs on every word)
  redo s           a `--force` redo's delete of the run's rows (clear_results + COMMIT),
                   against the first write's time

Usage: python bench/store.py [--segments 2000] [--words 20] [--no-postgres] [--compare-revision 0006]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402

from app.store.db import make_engine, refresh_statistics, session_scope, upgrade  # noqa: E402
from app.store.runs import clear_results  # noqa: E402
from app.store.write import insert_rows  # noqa: E402

N_LAYERS, N_HEADS, CHUNK = 6, 12, 256
LABELS = np.array(["det", "nsubj", "obj", "amod", "case", "nmod", "advmod", "punct", "aux", "conj"], dtype=object)


def build_corpus(url: str, n_segments: int, n_words: int, seed: int = 0) -> int:
    """Encoder, corpus, words, a gold dependency layer and a finished run; returns its id."""
    rng = np.random.default_rng(seed)
    engine = make_engine(url)
    now = "2026-12-01 00:00:00"
    with engine.begin() as connection:
        connection.execute(text(
            "insert into encoders values (1, 'bench', '-', 'bert', '0', 'pretrained', :l, :h, 384, 30522, 512, "
            "false, false, '{}', :now)"), {"l": N_LAYERS, "h": N_HEADS, "now": now})
        connection.execute(text(
            "insert into corpora values (1, 'bench', 'conllu', '-', '0', 1, :s, :w, '{}', '{}', :now)"),
            {"s": n_segments, "w": n_segments * n_words, "now": now})
        connection.execute(text("insert into documents values (1, 1, 0, 'd')"))
        connection.execute(text("insert into annotation_layers values (1, 1, 'gold', 'gold', 'ud', null, :now)"), {"now": now})
        connection.execute(text(
            "insert into runs (id, encoder_id, corpus_id, analysis, config_json, config_hash, status, started_at, "
            "code_version) values (1, 1, 1, 'syntax', '{}', 'bench', 'done', :now, 'bench')"), {"now": now})
        segment_ids = np.arange(1, n_segments + 1)
        insert_rows(connection, "segments", {
            "id": segment_ids, "seg_index": segment_ids - 1, "label": np.full(n_segments, "s", dtype=object),
            "n_words": np.full(n_segments, n_words)}, constants={"corpus_id": 1, "document_id": 1})
        seg = np.repeat(segment_ids, n_words)
        word = np.tile(np.arange(n_words), n_segments)
        insert_rows(connection, "words", {
            "segment_id": seg, "word_index": word, "form": np.full(len(seg), "w", dtype=object),
            "part": np.zeros(len(seg), dtype=np.int64), "sent_index": np.zeros(len(seg), dtype=np.int64)})
        heads = np.where(word == 0, -1, np.maximum(word + rng.integers(-3, 3, len(word)), 0))
        heads = np.where(heads == word, word - 1, heads)
        insert_rows(connection, "dependencies", {
            "segment_id": seg, "word_index": word,
            "head_index": np.ma.masked_array(heads, mask=heads < 0),
            "relation": LABELS[rng.integers(0, len(LABELS), len(word))]}, constants={"layer_id": 1})
    return 1


def prediction_chunks(n_segments: int, n_words: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Rows as HeadPredictions emits them: per layer, (segment, word, head) in a batch."""
    rng = np.random.default_rng(seed)
    for start in range(1, n_segments + 1, CHUNK):
        segments = np.arange(start, min(start + CHUNK, n_segments + 1))
        columns: dict[str, list[np.ndarray]] = {}
        for layer in range(N_LAYERS):
            n = len(segments) * n_words * N_HEADS
            block = {
                "segment_id": np.repeat(segments, n_words * N_HEADS),
                "word_index": np.tile(np.repeat(np.arange(n_words), N_HEADS), len(segments)),
                "layer": np.full(n, layer),
                "head": np.tile(np.arange(N_HEADS), len(segments) * n_words),
                "predicted_index": rng.integers(0, n_words, n),
                "attended_by_index": rng.integers(0, n_words, n),
                "cls_weight": rng.random(n, dtype=np.float32),
                "sep_weight": rng.random(n, dtype=np.float32),
            }
            for key, value in block.items():
                columns.setdefault(key, []).append(value)
        yield {key: np.concatenate(parts) for key, parts in columns.items()}


def measure(url: str, n_segments: int, n_words: int, *, file: Path | None, revision: str = "head") -> dict[str, float]:
    upgrade(url, revision)
    run_id = build_corpus(url, n_segments, n_words)
    engine = make_engine(url)
    refresh_statistics(engine)  # what `ingest corpus` does
    size_before = _size(file, engine)
    chunks = list(prediction_chunks(n_segments, n_words))
    n_rows = sum(len(chunk["segment_id"]) for chunk in chunks)
    start = time.perf_counter()
    for chunk in chunks:
        with session_scope(engine) as session:
            insert_rows(session, "head_predictions", chunk, constants={"run_id": run_id})
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    refresh_statistics(engine)  # what `analyze` does after its writes (PostgreSQL only)
    statistics_s = time.perf_counter() - start
    size_after = _size(file, engine)
    start = time.perf_counter()
    table1 = run_query_on(url, run_id)
    table1_s = time.perf_counter() - start
    start = time.perf_counter()
    with session_scope(engine) as session:
        if revision == "head":
            clear_results(session, run_id)
        else:  # an older schema lacks later result tables: the predictions are the cost
            session.execute(text("DELETE FROM head_predictions WHERE run_id = :id"), {"id": run_id})
    redo_s = time.perf_counter() - start
    result = {"rows": n_rows, "write_s": write_s, "rows_per_s": n_rows / write_s,
              "statistics_s": statistics_s,
              "table1_s": table1_s, "table1_rows": table1, "redo_delete_s": redo_s}
    if size_before is not None and size_after is not None:
        result["bytes_per_row"] = (size_after - size_before) / n_rows
    return result


def run_query_on(url: str, run_id: int) -> int:
    from app import queries

    query = queries.load("table1_relations")
    params = {**query.defaults, "run_id": run_id, "min_arcs": 1}
    return len(queries.execute(make_engine(url), query.sql, params))


def _size(file: Path | None, engine) -> int | None:  # type: ignore[no-untyped-def]
    if file is None:
        return None
    with engine.begin() as connection:
        connection.execute(text("CHECKPOINT"))
    return file.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=2000)
    parser.add_argument("--words", type=int, default=20)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--compare-revision", metavar="REV",
                        help="also measure DuckDB at this older schema revision (e.g. 0006: keyed predictions)")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / "bench.duckdb"
        results["duckdb (Arrow)"] = measure(f"duckdb:///{file}", args.segments, args.words, file=file)
        if args.compare_revision:
            old = Path(scratch) / "old.duckdb"
            results[f"duckdb at {args.compare_revision}"] = measure(
                f"duckdb:///{old}", args.segments, args.words, file=old, revision=args.compare_revision)
        if not args.no_postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.postgres import PostgresServer

            server = PostgresServer.start()
            try:
                url = server.create_database("bench")
                results["postgresql (COPY)"] = measure(url, args.segments, args.words, file=None)
            finally:
                server.stop()
    print(json.dumps({"segments": args.segments, "words": args.words, "cpus": os.cpu_count(),
                      "results": results}, indent=1))


if __name__ == "__main__":
    main()
