"""Benchmark of `analyze --workers N`: scaling over Ray actors, driver load cost, same answers.

On all-MiniLM-L6-v2 over UD EWT dev (the first --segments sentences), `analyze surface
syntax` (one forward pass: head_metrics and head_predictions rows) runs three ways, each
on its own copy of the model so each is a fresh run of the same database:

  single   one process, torch threads = all cores (no Ray)
  w1       --workers 1 --threads <cores>
  w2       --workers 2 --threads <cores / 2>   (the threads split between the workers)

For each: wall time of the whole call (actors start and load the model inside it) and the
compute throughput from the first shard started to the last shard loaded (actor start-up
excluded), in segments/s; the scaling efficiency thr(w2) / (2 x thr(w1)); the driver's time spent loading
shards (Parquet -> database, one transaction per shard) per million rows; and the
same-answers check of w2 against single: max |head_metrics difference| and the number of
head_predictions rows and Table 1 cells that differ (both must be 0).

Usage: python bench/ray_scaling.py [--segments 256] [--shard-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import pipeline  # noqa: E402
from app.config import REPO_ROOT, ExtractConfig, Settings  # noqa: E402
from app.pipeline.cluster import Distribute  # noqa: E402
from app.store.db import upgrade  # noqa: E402


def sql(settings: Settings, text: str):  # type: ignore[no-untyped-def]
    return pipeline.run_query(settings, None, sql=text)


def run_id(settings: Settings, model: str, analysis: str) -> int:
    frame = sql(
        settings,
        "select runs.id from runs join encoders on encoders.id = runs.encoder_id "
        f"where encoders.name = '{model}' and analysis = '{analysis}' and status = 'done'",
    )
    return int(frame.iloc[0, 0])


def cells_differing(a, b) -> int:  # type: ignore[no-untyped-def]
    """Cells that differ between two frames of the same shape, NULL equal to NULL."""
    same = (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
    return int((~same).to_numpy().sum())


def _stamp(path: Path) -> None:
    with open(path, "a") as log:
        log.write(f"{time.time()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--segments", type=int, default=256, help="first N sentences of UD EWT dev")
    parser.add_argument("--shard-size", type=int, default=32, help="segments per shard")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = parser.parse_args()

    import ray

    from app.store import shards

    cores = os.cpu_count() or 1
    root = Path(tempfile.mkdtemp(prefix="headlens-ray-bench-"))
    upgrade(f"duckdb:///{root / 'bench.duckdb'}")
    settings = Settings(
        db_url=f"duckdb:///{root / 'bench.duckdb'}",
        mlruns_dir=root / "mlruns",
        data_dir=REPO_ROOT.parent / "shared" / "data",
        cache_dir=root / "cache",
    )
    pipeline.ingest_model(settings, "minilm")
    source = sql(settings, "select source from encoders where name = 'minilm'").iloc[0, 0]
    for name in ("single", "w1", "w2"):
        pipeline.ingest_model(settings, name, source)
    pipeline.ingest_corpus(settings, "ud-ewt-dev")

    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray_start = time.perf_counter() - started

    load_seconds = [0.0]
    original_load = shards.load_shard

    def timed_load(session, folder):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        manifest = original_load(session, folder)
        session.flush()
        load_seconds[0] += time.perf_counter() - began
        return manifest

    shards.load_shard = timed_load  # the driver imports it at call time

    results = {}
    config = ExtractConfig(limit=args.segments, chunk_size=args.shard_size, batch_size=args.batch_size)
    for name, distribute in (
        ("single", None),
        ("w1", Distribute(workers=1, threads=cores)),
        ("w2", Distribute(workers=2, threads=max(1, cores // 2))),
    ):
        loads: list[float] = []
        starts = root / f"starts-{name}"
        if distribute is not None:
            distribute = Distribute(
                workers=distribute.workers,
                threads=distribute.threads,
                before_shard=lambda shard, path=starts: _stamp(path),
                after_load=lambda shard, worker, loads=loads: loads.append(time.time()),
            )
        else:
            import torch

            torch.set_num_threads(cores)
        load_seconds[0] = 0.0
        began = time.perf_counter()
        (summary, _) = pipeline.analyze(
            settings, ["surface", "syntax"], model=name, corpus="ud-ewt-dev", config=config,
            distribute=distribute,
        )
        wall = time.perf_counter() - began
        n = summary.n_segments or 0
        entry = {"segments": n, "wall_s": round(wall, 2), "wall_seg_per_s": round(n / wall, 1)}
        if loads:
            # Workers stamp the wall clock (one machine: one clock) as they start a shard.
            first_start = min(float(line) for line in starts.read_text().split())
            entry["compute_seg_per_s"] = round(n / (loads[-1] - first_start), 1)
            rows = sql(
                settings,
                "select count(*) from head_predictions where run_id = "
                f"{run_id(settings, name, 'syntax')}",
            ).iloc[0, 0]
            entry["load_s"] = round(load_seconds[0], 2)
            entry["load_s_per_million_rows"] = round(load_seconds[0] / rows * 1e6, 2)
        results[name] = entry
    ray.shutdown()

    results["scaling_efficiency_w2"] = round(
        results["w2"]["compute_seg_per_s"] / (2 * results["w1"]["compute_seg_per_s"]), 2
    )
    results["ray_start_s"] = round(ray_start, 2)

    metrics = "select metric, layer, head, value from head_metrics where run_id = {} order by all"
    single = sql(settings, metrics.format(run_id(settings, "single", "surface")))
    w2 = sql(settings, metrics.format(run_id(settings, "w2", "surface")))
    keys = "segment_id, word_index, layer, head, predicted_index, attended_by_index"
    predictions = "select {} from head_predictions where run_id = {} order by all"
    p_single = sql(settings, predictions.format(keys, run_id(settings, "single", "syntax")))
    p_w2 = sql(settings, predictions.format(keys, run_id(settings, "w2", "syntax")))
    tables = [
        pipeline.run_query(settings, "table1_relations", params={"run_id": run_id(settings, m, "syntax")})
        for m in ("single", "w2")
    ]
    results["same_answers"] = {
        "head_metrics_max_abs_diff": float((single["value"] - w2["value"]).abs().max()),
        "head_predictions_rows": len(p_single),
        "head_predictions_rows_differing": int((p_single != p_w2).any(axis=1).sum())
        if len(p_single) == len(p_w2)
        else -1,
        "table1_cells_differing": cells_differing(*tables),
    }
    results["machine"] = {"cores": cores, "segments_asked": args.segments, "shard_size": args.shard_size}
    print(json.dumps(results, indent=1))
    if args.keep:
        print(f"kept {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
