"""Ray, for `--workers N`: connecting to (or starting) a cluster, and the shard worker actor.

Ray does all the distribution: each worker is a Ray actor that loads the encoder once and
runs the existing streaming engine over the shards an `ActorPool` hands it; a worker whose
process dies is restarted by Ray and its shard retried (`max_restarts`,
`max_task_retries`). Nothing here is imported, and Ray is never imported, unless a command
is given `--workers`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import ExtractConfig
from app.errors import AppError

# A dead worker is restarted, and its shard retried, this many times before the run fails.
MAX_RESTARTS = 3
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP2_EMPTY_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # length 0, type SETTINGS, stream 0
HTTP2_SETTINGS_TYPE = 4
# Ray's own knob for how many seconds a joining driver waits for the cluster's GCS.
JOIN_WAIT_VARIABLE = "RAY_gcs_server_port_wait_time_s"


@dataclass(frozen=True)
class Distribute:
    """How a pass is spread over Ray workers (the CLI's --workers/--threads/--ray-address)."""

    workers: int
    # torch threads per worker; None: the machine's cores split between the workers.
    threads: int | None = None
    # An existing cluster (`ray start --head` prints it); None starts Ray on this machine.
    address: str | None = None
    # Test hook, shipped to every worker: called with the shard index before it is computed.
    before_shard: Callable[[int], None] | None = field(default=None, compare=False)
    # Test hook, in the driver: called after each shard is loaded, with the shard and worker.
    after_load: Callable[[int, str], None] | None = field(default=None, compare=False)

    def threads_per_worker(self) -> int:
        if self.threads is not None:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.workers)


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _check_reachable(address: str) -> None:
    """Fail in one line, before any work, when a cluster address does not answer."""
    if address == "auto":
        return
    host_port = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise AppError(
            f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379, printed by "
            "`ray start --head`)"
        )
    try:
        connection = socket.create_connection((host, int(port)), timeout=3)
    except OSError as error:
        raise AppError(
            f"cannot reach the Ray cluster at {address} ({error.strerror or error}); start it "
            "with `ray start --head` on that machine, or drop --ray-address to run on this one"
        ) from None
    # Ray's GCS is a gRPC (HTTP/2) server: it answers the HTTP/2 preface with a SETTINGS
    # frame. Anything else (a socket that hangs up, another protocol) would make ray.init
    # retry for a long time, so it is refused here.
    with connection:
        try:
            connection.sendall(HTTP2_PREFACE + HTTP2_EMPTY_SETTINGS)
            frame = connection.recv(9)
        except OSError:
            frame = b""
    if len(frame) < 4 or frame[3] != HTTP2_SETTINGS_TYPE:
        raise AppError(
            f"no Ray cluster answered at {address} (something listens there, but not Ray's "
            "GCS); use the address `ray start --head` printed"
        )


@contextlib.contextmanager
def _joining() -> Iterator[None]:
    """Joining a cluster: give up after 5 s, not Ray's 20, and keep its C++ retry warnings
    (one per second, straight to file descriptor 2) off the terminal unless the join works."""
    waited = os.environ.get(JOIN_WAIT_VARIABLE)
    os.environ.setdefault(JOIN_WAIT_VARIABLE, "5")
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        joined = False
        try:
            yield
            joined = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if waited is None:
                os.environ.pop(JOIN_WAIT_VARIABLE, None)
            if joined:  # nothing to hide: pass on whatever Ray said
                captured.seek(0)
                os.write(2, captured.read())


def connect(distribute: Distribute, *, device: str) -> bool:
    """Join the cluster (or start Ray here) and check it can hold the workers.

    Returns True when this call started Ray (the caller shuts it down afterwards).
    """
    if distribute.workers < 1:
        raise AppError("--workers must be at least 1")
    if distribute.address is not None:
        _check_reachable(distribute.address)
    import logging

    import ray

    threads = distribute.threads_per_worker()
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
        try:
            if distribute.address is not None:
                with _joining():
                    ray.init(address=distribute.address, **options)
            else:
                ray.init(
                    num_cpus=max(distribute.workers * threads, os.cpu_count() or 1),
                    include_dashboard=False,
                    **options,
                )
        except (ConnectionError, RuntimeError) as error:
            if distribute.address is not None:
                raise AppError(
                    f"no Ray cluster answered at {distribute.address} (something listens there, "
                    "but not Ray's GCS); use the address `ray start --head` printed"
                ) from None
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise AppError(
                f"cannot start Ray on this machine ({first_line}); see `ray status`"
            ) from None
        started = True
    resources = ray.cluster_resources()
    need_cpus = distribute.workers * threads
    if resources.get("CPU", 0) < need_cpus:
        disconnect(started)
        raise AppError(
            f"the Ray cluster has {resources.get('CPU', 0):g} CPUs; --workers "
            f"{distribute.workers} x --threads {threads} needs {need_cpus}: lower them or add "
            "machines (`ray start --address=...`)"
        )
    if device.startswith("cuda") and resources.get("GPU", 0) < distribute.workers:
        disconnect(started)
        raise AppError(
            f"the Ray cluster has {resources.get('GPU', 0):g} GPUs; --device cuda runs one "
            f"worker per GPU, so --workers {distribute.workers} needs as many"
        )
    return started


def disconnect(started: bool) -> None:
    """Shut Ray down if `connect` started it (a cluster, or a Ray the caller runs, stays)."""
    if started:
        import ray

        ray.shutdown()


@contextlib.contextmanager
def ray_session(distribute: Distribute, *, device: str) -> Iterator[None]:
    """Ray connected for the duration of a command; shut down after if it was started here."""
    started = connect(distribute, device=device)
    try:
        yield
    finally:
        disconnect(started)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker of a pass loads once."""

    source: str
    init: str
    config: ExtractConfig
    mode: str  # "forward", "gradients" or "features"
    analyses: tuple[str, ...] = ()
    hidden_layer: int | None = None  # features: the hidden-state layer the probes read
    threads: int = 1
    driver_host: str = ""


@dataclass
class ShardTask:
    """One shard: its segments, and where each run's (or the feature cache's) files go."""

    shard: int
    first_segment: int
    segments: list[Any]  # EncodedSegment, in length order
    # analysis -> (run id, run config hash, shard folder); features: "features" -> npz path
    targets: dict[str, tuple[int, str, str]]
    # analysis -> its corpus context (pipeline/contexts.py), cut to the shard's segments
    contexts: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShardDone:
    shard: int
    n_segments: int
    worker: str
    # Files for the driver when the worker ran on another machine: target -> {name: bytes}.
    shipped: dict[str, dict[str, bytes]] = field(default_factory=dict)


def shard_context(context: Any, segment_ids: set[int]) -> Any:
    """The part of an analysis context a shard needs (contexts are keyed by segment id)."""
    if isinstance(context, dict):
        return {key: value for key, value in context.items() if key in segment_ids}
    if isinstance(context, (set, frozenset)):
        return frozenset(context & segment_ids)
    return context


class ShardWorker:
    """A Ray actor: the encoder, loaded once, run over shard after shard."""

    def __init__(self, spec: WorkerSpec, before_shard: Callable[[int], None] | None = None):
        import torch

        from app.extract.attention import AttentionEngine
        from app.ingest.models import load_encoder

        torch.set_num_threads(spec.threads)
        self.spec = spec
        self.before_shard = before_shard
        config = spec.config
        self.loaded = load_encoder(
            Path(spec.source),
            init=spec.init,
            dtype=config.dtype,
            device=config.device,
            masked_lm=spec.mode == "gradients",
        )
        self.engine = AttentionEngine(
            self.loaded.model,
            pad_id=self.loaded.tokenizer.pad_token_id or 0,
            batch_size=config.batch_size,
            batch_tokens=config.batch_tokens,
            device=config.device,
        )
        if spec.mode == "gradients":
            from app.pipeline.analyze import _gradient_feed

            self.feed = _gradient_feed(self.engine, self.loaded, config)
        else:
            self.feed = self.engine.run

    def compute(self, task: ShardTask) -> ShardDone:
        if self.before_shard is not None:
            self.before_shard(task.shard)
        if self.spec.mode == "features":
            return self._features(task)
        return self._analyses(task)

    def _analyses(self, task: ShardTask) -> ShardDone:
        from app.analysis.registry import ANALYSES
        from app.store.shards import ShardManifest, pack_folder, write_shard

        info = self.loaded.info
        names = list(task.targets)
        accumulators = [
            ANALYSES[name].build(info.n_layers, info.n_heads, task.contexts.get(name))
            for name in names
        ]
        self.feed(task.segments, accumulators, progress=None)
        done = ShardDone(task.shard, len(task.segments), worker_label())
        # On another machine the driver's cache folder is not ours: write to a scratch
        # folder and ship the files back with the result.
        scratch = Path(tempfile.mkdtemp(prefix="headlens-shard-")) if self._remote() else None
        for name, accumulator in zip(names, accumulators):
            run_id, config_hash, target = task.targets[name]
            folder = scratch / name / Path(target).name if scratch else Path(target)
            manifest = ShardManifest(
                run_id=run_id,
                config_hash=config_hash,
                shard=task.shard,
                first_segment=task.first_segment,
                n_segments=len(task.segments),
                rows={},
                worker=done.worker,
            )
            write_shard(folder, manifest, accumulator.flush(), accumulator.state_dict())
            if scratch is not None:
                done.shipped[name] = pack_folder(folder)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        return done

    def _features(self, task: ShardTask) -> ShardDone:
        from app.extract.cache import FeatureWriter, write_shard

        info = self.loaded.info
        writer = FeatureWriter(info.n_layers, info.n_heads, hidden_layer=self.spec.hidden_layer)
        self.engine.run(task.segments, [writer], None)
        path = Path(task.targets["features"][2])
        done = ShardDone(task.shard, len(task.segments), worker_label())
        if self._remote():  # ship the shard; the driver's cache folder is not on this machine
            with tempfile.TemporaryDirectory(prefix="headlens-shard-") as scratch:
                local = Path(scratch) / path.name
                write_shard(local, writer.take())
                done.shipped["features"] = {path.name: local.read_bytes()}
            return done
        path.parent.mkdir(parents=True, exist_ok=True)
        write_shard(path, writer.take())
        return done

    def _remote(self) -> bool:
        return socket.gethostname() != self.spec.driver_host


def start_workers(distribute: Distribute, spec: WorkerSpec, n_shards: int) -> tuple[Any, list[Any]]:
    """An ActorPool of min(workers, shards) ShardWorkers; returns (pool, actors)."""
    import ray
    from ray.util import ActorPool

    n_workers = min(distribute.workers, n_shards)
    remote = ray.remote(max_restarts=MAX_RESTARTS, max_task_retries=MAX_RESTARTS)(ShardWorker)
    gpus = 1 if spec.config.device.startswith("cuda") else 0
    actors = [
        remote.options(num_cpus=spec.threads, num_gpus=gpus).remote(spec, distribute.before_shard)
        for _ in range(n_workers)
    ]
    return ActorPool(actors), actors


def stop_workers(actors: list[Any]) -> None:
    """Free the workers' CPUs (and models) for the next pass."""
    import ray

    for actor in actors:
        ray.kill(actor)


def results(pool: Any, tasks: list[ShardTask]) -> Any:
    """Finished shards in completion order; worker errors come back as the original error."""
    import ray

    iterator = pool.map_unordered(lambda actor, task: actor.compute.remote(task), tasks)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, AppError):
                raise error.cause from None
            raise
        except ray.exceptions.RayActorError as error:
            raise AppError(
                f"a Ray worker died {MAX_RESTARTS + 1} times on one shard ({type(error).__name__});"
                " rerun the same command to resume: finished shards are kept"
            ) from None
