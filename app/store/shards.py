"""Parquet shards of distributed passes: written by workers, loaded by the driver exactly once.

A worker writes one shard of a run as a folder under the run's folder
(`<cache>/runs/<run id>/shard-00003/`): one Parquet file per table, the accumulator's
mergeable state (`state.npz`) and, last, `manifest.json` with the shard's row counts.
The folder is written under a temporary name and renamed, so a shard is whole or absent.
The driver loads a shard's rows (through `write.insert_rows`, the one bulk writer) and
its `loaded_shards` row in one transaction: the unique (run, shard) key makes a second
load fail instead of duplicating rows, and a crash before the commit leaves neither.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.analysis.base import Rows
from app.errors import AppError
from app.store.corpora import utcnow
from app.store.runs import pack_state, unpack_state
from app.store.schema import LoadedShard

MANIFEST = "manifest.json"
STATE = "state.npz"
# Columns a later migration dropped (0011: head_predictions.weight, read by no query). A shard
# written before the upgrade still carries them; resuming its run loads the other columns.
DROPPED_COLUMNS: dict[str, frozenset[str]] = {"head_predictions": frozenset({"weight"})}


@dataclass
class ShardManifest:
    """What a worker wrote for one shard of one run."""

    run_id: int
    config_hash: str  # of the run: a folder left by another database's run is not reused
    shard: int
    first_segment: int
    n_segments: int
    rows: dict[str, int]  # table -> row count
    worker: str  # host:pid


def run_folder(cache_dir: Path, run_id: int) -> Path:
    return cache_dir / "runs" / str(run_id)


def shard_folder(folder: Path, shard: int) -> Path:
    return folder / f"shard-{shard:05d}"


def write_shard(
    folder: Path, manifest: ShardManifest, rows: list[Rows], state: dict[str, np.ndarray]
) -> ShardManifest:
    """Write one shard atomically (temporary folder, then rename); returns its manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from app.store.write import _as_arrow

    tables: dict[str, pa.Table] = {}
    for block in rows:
        if len(block) == 0:
            continue
        table = _as_arrow(block.columns)
        tables[block.table] = (
            pa.concat_tables([tables[block.table], table]) if block.table in tables else table
        )
    manifest.rows = {name: table.num_rows for name, table in tables.items()}
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, table in tables.items():
        pq.write_table(table, partial / f"{name}.parquet")
    (partial / STATE).write_bytes(pack_state(state))
    (partial / MANIFEST).write_text(json.dumps(asdict(manifest), sort_keys=True))
    # A retried task may find the folder of an earlier attempt that died after its rename.
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return manifest


def read_manifest(folder: Path) -> ShardManifest | None:
    """The manifest of a complete shard folder, or None when the shard was not finished."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    return ShardManifest(**json.loads(path.read_text()))


def pack_folder(folder: Path) -> dict[str, bytes]:
    """A shard folder's files, to ship from a worker on another machine to the driver."""
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def unpack_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Recreate a shipped shard folder on the driver, atomically, manifest written last."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, data in sorted(files.items(), key=lambda item: item[0] == MANIFEST):
        (partial / name).write_bytes(data)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def _columns(path: Path) -> dict[str, np.ndarray]:
    """A Parquet file as `insert_rows` columns: NULLs become masked entries or None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    columns: dict[str, np.ndarray] = {}
    for name, chunked in zip(table.column_names, table.columns):
        values = chunked.combine_chunks()
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            columns[name] = np.array(values.to_pylist(), dtype=object)
        elif values.null_count:
            mask = values.is_null().to_numpy(zero_copy_only=False)
            data = values.fill_null(0).to_numpy(zero_copy_only=False)
            columns[name] = np.ma.masked_array(data, mask=mask)
        else:
            columns[name] = values.to_numpy(zero_copy_only=False)
    return columns


def has_shards(session: Session, run_id: int) -> bool:
    """Whether a distributed pass has loaded part of this run (so it must resume as one)."""
    query = select(LoadedShard.id).where(LoadedShard.run_id == run_id).limit(1)
    return session.scalar(query) is not None


def recorded_shard_size(session: Session, run_ids: list[int]) -> int | None:
    """The shard size an interrupted distributed pass used, so that a rerun cuts the same way."""
    rows = session.execute(
        select(LoadedShard.shard, LoadedShard.first_segment, LoadedShard.n_segments)
        .where(LoadedShard.run_id.in_(run_ids))
        .order_by(LoadedShard.shard.desc())
        .limit(1)
    ).all()
    if not rows:
        return None
    shard, first, n_segments = rows[0]
    # Shard 0 alone says its size only (it is full unless it is the only shard).
    return first // shard if shard > 0 else n_segments


def loaded_shards(session: Session, run_id: int) -> set[int]:
    return set(session.scalars(select(LoadedShard.shard).where(LoadedShard.run_id == run_id)))


def shard_states(session: Session, run_id: int) -> list[dict[str, np.ndarray]]:
    """The mergeable states of a run's loaded shards, in shard order."""
    blobs = session.scalars(
        select(LoadedShard.state).where(LoadedShard.run_id == run_id).order_by(LoadedShard.shard)
    )
    return [unpack_state(blob) for blob in blobs if blob is not None]


def load_shard(session: Session, folder: Path) -> ShardManifest:
    """Insert a complete shard's rows and record it, in the caller's transaction.

    Row counts are checked against the manifest before anything is inserted.
    """
    from app.store.write import insert_rows

    manifest = read_manifest(folder)
    if manifest is None:
        raise AppError(f"shard {folder} is incomplete (no {MANIFEST}); rerun to recompute it")
    tables = {
        name: {column: values for column, values in _columns(folder / f"{name}.parquet").items()
               if column not in DROPPED_COLUMNS.get(name, frozenset())}
        for name in manifest.rows
    }
    for name, columns in tables.items():
        found = len(next(iter(columns.values()))) if columns else 0
        if found != manifest.rows[name]:
            raise AppError(
                f"shard {folder}: {name}.parquet has {found} rows, its manifest says "
                f"{manifest.rows[name]}; delete the folder and rerun to recompute it"
            )
    for name, columns in tables.items():
        insert_rows(session, name, columns, constants={"run_id": manifest.run_id})
    session.add(
        LoadedShard(
            run_id=manifest.run_id,
            shard=manifest.shard,
            first_segment=manifest.first_segment,
            n_segments=manifest.n_segments,
            rows_json=json.dumps(manifest.rows, sort_keys=True),
            state=(folder / STATE).read_bytes(),
            worker=manifest.worker[:120],
            loaded_at=utcnow(),
        )
    )
    session.flush()
    return manifest


def record_feature_shard(
    session: Session,
    feature_cache_id: int,
    shard: int,
    *,
    first_segment: int,
    n_segments: int,
    worker: str,
) -> None:
    """Book a probe-feature shard (its .npz is the cache itself; nothing goes to tables)."""
    exists = session.scalar(
        select(LoadedShard.id).where(
            LoadedShard.feature_cache_id == feature_cache_id, LoadedShard.shard == shard
        )
    )
    if exists is not None:
        return
    session.add(
        LoadedShard(
            feature_cache_id=feature_cache_id,
            shard=shard,
            first_segment=first_segment,
            n_segments=n_segments,
            rows_json=json.dumps({"segments": n_segments}),
            worker=worker[:120],
            loaded_at=utcnow(),
        )
    )
