"""The driver of distributed passes (`--workers N`): shard, hand out, load each shard once.

The length-sorted segments of a pass are cut into shards of `chunk_size` segments (the same
cut on every rerun). Ray workers (pipeline/cluster.py) compute shards and write them as
Parquet under the run's folder; the driver loads each finished shard in one transaction
and books it in `loaded_shards` (store/shards.py). A rerun after a crash loads the shards
that were written but not loaded, and computes only the ones missing. Once every shard is
in, the shards' mergeable sums are combined with `Analysis.merge`, the same code the
single-process path resumes with, and `finish()` writes the aggregate rows.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from app.config import ExtractConfig, Settings
from app.errors import AppError
from app.pipeline.cluster import Distribute, ShardTask, WorkerSpec
from app.pipeline.common import progress_bar
from app.store.db import session_scope

if TYPE_CHECKING:
    from app.pipeline.analyze import RunSummary, Say, _Target
    from app.pipeline.lifecycle import Lifecycle


def plan_shards(n_segments: int, shard_size: int) -> list[tuple[int, int, int]]:
    """(shard, first, stop) over the length-sorted segments: fixed size, so reruns agree."""
    return [
        (index, start, min(start + shard_size, n_segments))
        for index, start in enumerate(range(0, n_segments, shard_size))
    ]


def run_pass_on_workers(
    settings: Settings,
    db: Engine,
    target: _Target,
    config: ExtractConfig,
    summaries: list[RunSummary],
    *,
    mode: str,
    say: Say,
    work: Lifecycle,
    distribute: Distribute,
) -> None:
    """`analyze`'s pass, on Ray workers; same rows and runs as the single-process pass."""
    from app.analysis.registry import ANALYSES
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import length_order
    from app.ingest.models import inspect_encoder, load_tokenizer
    from app.pipeline.analyze import close_mlflow_runs, open_mlflow_runs
    from app.pipeline.cluster import results, shard_context, start_workers, stop_workers
    from app.pipeline.contexts import load_context
    from app.store.corpora import segment_inputs
    from app.store.runs import finish_run, load_checkpoint
    from app.store.shards import (
        load_shard,
        loaded_shards,
        read_manifest,
        recorded_shard_size,
        run_folder,
        shard_folder,
        shard_states,
        unpack_folder,
    )
    from app.store.write import insert_rows
    from app.tracking import Tracker

    tokenizer = load_tokenizer(target.source)
    info = inspect_encoder(target.source, tokenizer)
    with session_scope(db) as session:
        inputs = segment_inputs(session, target.corpus_id, limit=config.limit)
    if not inputs:
        raise AppError(f"corpus {target.corpus!r} has no segments: nothing to analyse")
    skipped = Skipped()
    aligner = Aligner(
        tokenizer,
        max_tokens=config.max_tokens,
        overflow=config.overflow,
        on_unaligned=config.on_unaligned,
    )
    encoded = length_order(aligner.encode(inputs, skipped))
    if not encoded:
        raise AppError(
            f"no segment of corpus {target.corpus!r} can be analysed: skipped {skipped.counts}"
        )

    names = [summary.analysis for summary in summaries]
    run_ids = {summary.analysis: summary.run_id for summary in summaries}
    folders = {name: run_folder(settings.cache_dir, run_ids[name]) for name in names}
    config_hash = config.config_hash()
    tracker = Tracker(settings)
    loaded: dict[str, set[int]] = {}
    with session_scope(db) as session:
        # chunk_size is not part of a run's identity: a resumed pass keeps its first cut.
        shard_size = recorded_shard_size(session, list(run_ids.values())) or config.chunk_size
        for summary in summaries:
            if load_checkpoint(session, summary.run_id) is not None:
                raise AppError(
                    f"{summary.analysis}: run {summary.run_id} was started without --workers and "
                    "has a checkpoint; resume it without --workers, or redo it with --force"
                )
            loaded[summary.analysis] = loaded_shards(session, summary.run_id)
            if summary.state == "new":  # fresh or --force: files of an older attempt are stale
                shutil.rmtree(folders[summary.analysis], ignore_errors=True)
    open_mlflow_runs(db, tracker, settings, target, config, summaries, info, work)

    contexts = {
        name: load_context(db, ANALYSES[name].context, target.corpus_id)  # type: ignore[arg-type]
        for name in names
        if ANALYSES[name].context
    }
    shards = plan_shards(len(encoded), shard_size)
    done = sum(stop - start for shard, start, stop in shards if all(shard in loaded[n] for n in names))
    if done:
        say(f"{'+'.join(names)}: resuming after {done} of {len(encoded)} segments (loaded shards)")
    progress = progress_bar(
        len(encoded), done, f"{'+'.join(names)} {target.model} on {target.corpus} ({distribute.workers} workers)"
    )
    try:
        tasks = []
        for shard, start, stop in shards:
            missing = [name for name in names if shard not in loaded[name]]
            ready = []
            for name in missing:
                manifest = read_manifest(shard_folder(folders[name], shard))
                if manifest is not None and (
                    manifest.run_id,
                    manifest.config_hash,
                    manifest.first_segment,
                    manifest.n_segments,
                ) == (run_ids[name], config_hash, start, stop - start):
                    ready.append(name)
            if ready:  # written by a worker before the driver stopped: load, do not recompute
                with session_scope(db) as session:
                    for name in ready:
                        load_shard(session, shard_folder(folders[name], shard))
                    work.heartbeat(session)
            rest = [name for name in missing if name not in ready]
            if rest:
                targets = {
                    name: (run_ids[name], config_hash, str(shard_folder(folders[name], shard)))
                    for name in rest
                }
                segments = encoded[start:stop]
                ids = {segment.segment_id for segment in segments}
                cut = {name: shard_context(contexts[name], ids) for name in rest if name in contexts}
                tasks.append(ShardTask(shard, start, segments, targets, cut))
            elif missing:
                progress.update(stop - start)

        if tasks:
            spec = WorkerSpec(
                source=str(target.source),
                init=target.init,
                config=config,
                mode=mode,
                analyses=tuple(names),
                threads=distribute.threads_per_worker(),
                driver_host=socket.gethostname(),
            )
            pool, actors = start_workers(distribute, spec, len(tasks))
            if len(actors) < distribute.workers:
                say(
                    f"{distribute.workers} workers asked for, {len(tasks)} shard(s) to compute: "
                    f"starting {len(actors)}"
                )
            by_shard = {task.shard: task for task in tasks}
            try:
                for finished in results(pool, tasks):
                    task = by_shard[finished.shard]
                    for name, files in finished.shipped.items():
                        unpack_folder(Path(task.targets[name][2]), files)
                    with session_scope(db) as session:
                        for name in task.targets:
                            load_shard(session, Path(task.targets[name][2]))
                        work.heartbeat(session)
                    progress.update(finished.n_segments)
                    if distribute.after_load is not None:
                        distribute.after_load(finished.shard, finished.worker)
            finally:
                stop_workers(actors)

        accumulators = {}
        with session_scope(db) as session:
            for name in names:
                accumulator = ANALYSES[name].build(info.n_layers, info.n_heads, contexts.get(name))
                for state in shard_states(session, run_ids[name]):
                    accumulator.merge(state)
                for rows in accumulator.finish():
                    insert_rows(session, rows.table, rows.columns, constants={"run_id": run_ids[name]})
                finish_run(session, run_ids[name], n_segments=len(encoded), skipped=skipped.counts)
                accumulators[name] = accumulator
            work.finish(session, list(run_ids.values()))
    finally:
        progress.close()
    for name in names:
        shutil.rmtree(folders[name], ignore_errors=True)
    close_mlflow_runs(db, tracker, summaries, accumulators, len(encoded), skipped)


def features_on_workers(
    settings: Settings,
    db: Engine,
    *,
    source: Path,
    init: str,
    inputs: list,
    label: str,
    directory: Path,
    hidden_layer: int,
    config: ExtractConfig,
    cache_id: int,
    distribute: Distribute,
    say: Say,
) -> tuple[int, dict[str, int]]:
    """The probes' feature extraction on Ray workers: the same `.npz` shards as one process.

    Shards already on disk are kept; each new one is booked in `loaded_shards` under the
    feature cache. Returns (segments, skipped counts) for the cache row.
    """
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import length_order
    from app.extract.cache import shard_path
    from app.ingest.models import load_tokenizer
    from app.pipeline.cluster import ray_session, results, start_workers, stop_workers
    from app.store.shards import record_feature_shard

    tokenizer = load_tokenizer(source)
    skipped = Skipped()
    aligner = Aligner(
        tokenizer, max_tokens=config.max_tokens, overflow="skip", on_unaligned=config.on_unaligned
    )
    encoded = length_order(aligner.encode(inputs, skipped))
    shards = plan_shards(len(encoded), config.chunk_size)
    tasks = [
        ShardTask(shard, start, encoded[start:stop], {"features": (cache_id, "", str(shard_path(directory, start)))})
        for shard, start, stop in shards
        if not shard_path(directory, start).is_file()
    ]
    done = len(encoded) - sum(len(task.segments) for task in tasks)
    if done:
        say(f"features of {label}: resuming after {done} of {len(encoded)} segments")
    if not tasks:
        return len(encoded), skipped.counts
    spec = WorkerSpec(
        source=str(source),
        init=init,
        config=config,
        mode="features",
        hidden_layer=hidden_layer,
        threads=distribute.threads_per_worker(),
        driver_host=socket.gethostname(),
    )
    progress = progress_bar(len(encoded), done, f"features {label} ({distribute.workers} workers)")
    by_shard = {task.shard: task for task in tasks}
    try:
        with ray_session(distribute, device=config.device):
            pool, actors = start_workers(distribute, spec, len(tasks))
            if len(actors) < distribute.workers:
                say(
                    f"{distribute.workers} workers asked for, {len(tasks)} shard(s) to compute: "
                    f"starting {len(actors)}"
                )
            try:
                for finished in results(pool, tasks):
                    task = by_shard[finished.shard]
                    path = Path(task.targets["features"][2])
                    for files in finished.shipped.values():
                        partial = path.with_name(path.name + ".shipped.npz")
                        partial.write_bytes(files[path.name])
                        partial.rename(path)
                    with session_scope(db) as session:
                        record_feature_shard(
                            session,
                            cache_id,
                            task.shard,
                            first_segment=task.first_segment,
                            n_segments=len(task.segments),
                            worker=finished.worker,
                        )
                    progress.update(finished.n_segments)
                    if distribute.after_load is not None:
                        distribute.after_load(finished.shard, finished.worker)
            finally:
                stop_workers(actors)
    finally:
        progress.close()
    return len(encoded), skipped.counts
