"""Probe stage (paper section 5, Table 3): cached features -> probing classifiers.

`extract_features` runs the encoder once per corpus and keeps word-level maps and one
layer's hidden states on disk (resumable shards, see extract/cache.py); `probe` builds
examples from the cache, the dependency layer and GloVe, trains with early stopping on dev,
scores test, and records the result as a `probe_runs` row and an MLflow run that point at
each other. The same probe config again is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from app.config import ExtractConfig, Settings
from app.errors import AppError, RunInProgress, UnknownName
from app.heap import released_if_grown
from app.pipeline.common import check_extract_config, check_layers, open_db, progress_bar
from app.pipeline.lifecycle import Lifecycle
from app.store.db import session_scope

if TYPE_CHECKING:
    from app.analysis.probes import ProbeKind
    from app.pipeline.cluster import Distribute
    from app.tracking import AnyTracker

Say = Callable[[str], None]
PROBES = ("right_branching", "distance_glove", "attn", "attn_glove", "structural")
NEEDS_MAPS = ("attn", "attn_glove")
NEEDS_ENCODER = ("attn", "attn_glove", "structural")
# The structural probe trains until its dev UUAS stops improving: ProbeConfig's patience
# (2 epochs without a better dev score) ends it; this cap only bounds a run that keeps
# improving. Hewitt & Manning likewise trained to convergence on dev.
STRUCTURAL_MAX_EPOCHS = 100
NO_VECTOR = "words without a GloVe vector"  # a reason build_examples counts


def default_hidden_layer(n_layers: int) -> int:
    """Hewitt & Manning probed BERT-base layer 7 of 12; the same relative depth elsewhere."""
    return max(1, round(0.6 * n_layers))


@dataclass
class ProbeResult:
    probe_run_id: int
    kind: str
    model: str | None
    state: str  # "new", or "done" when this config had already been run
    metric: str
    dev_score: float | None = None
    test_score: float | None = None
    n_test_words: int | None = None
    best_epoch: int | None = None
    mlflow_run_id: str | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    # Sweep children (score_test=False): the trained probe and test examples, kept in memory
    # so the sweep can evaluate only its best dev configuration on test, once.
    held_out: Any = None


# ------------------------------------------------------------------ feature cache


def extract_features(settings: Settings, model: str, corpus: str, *, hidden_layer: int,
                     config: ExtractConfig, say: Say | None = None,
                     distribute: Distribute | None = None) -> Path:
    """The feature cache directory for (model, corpus), extracting what is missing.

    With `distribute`, Ray workers write the shards (pipeline/distributed.py); the shard
    files are the same either way, so a cache begun one way can be finished the other.
    """
    from app.extract.align import Aligner, Skipped
    from app.extract.attention import AttentionEngine, length_order
    from app.extract.cache import FeatureWriter, shard_path, write_shard
    from app.ingest.models import load_encoder
    from app.store.corpora import find_corpus, segment_inputs, utcnow
    from app.store.encoders import find_encoder
    from app.store.schema import FeatureCache

    say = say or (lambda message: None)
    db = open_db(settings)
    key = {"max_tokens": config.max_tokens, "hidden_layer": hidden_layer, "dtype": config.dtype}
    key_hash = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    with session_scope(db) as session:
        encoder, corpus_row = find_encoder(session, model), find_corpus(session, corpus)
        cache = session.scalar(select(FeatureCache).where(
            FeatureCache.encoder_id == encoder.id, FeatureCache.corpus_id == corpus_row.id,
            FeatureCache.config_hash == key_hash))
        if cache is not None and cache.status == "complete" and Path(cache.path).is_dir():
            return Path(cache.path)
        directory = settings.cache_dir / "features" / f"{model}--{corpus}--{key_hash}"
        if cache is None:
            cache = FeatureCache(encoder_id=encoder.id, corpus_id=corpus_row.id, config_hash=key_hash,
                                 config_json=json.dumps(key, sort_keys=True), path=str(directory),
                                 status="partial", created_at=utcnow())
            session.add(cache)
        cache.status, cache.path = "partial", str(directory)
        session.flush()
        source, init, corpus_id, cache_id = Path(encoder.source), encoder.init, corpus_row.id, cache.id
        inputs = segment_inputs(session, corpus_id)
    directory.mkdir(parents=True, exist_ok=True)
    if distribute is not None:
        from app.pipeline.distributed import features_on_workers

        n_segments, skipped_counts = features_on_workers(
            settings, db, source=source, init=init, inputs=inputs, label=f"{model} on {corpus}",
            directory=directory, hidden_layer=hidden_layer, config=config, cache_id=cache_id,
            distribute=distribute, say=say)
        _complete_cache(db, cache_id, directory, n_segments, skipped_counts)
        return directory
    loaded = load_encoder(source, init=init, dtype=config.dtype, device=config.device)
    skipped = Skipped()
    aligner = Aligner(loaded.tokenizer, max_tokens=config.max_tokens, overflow="skip", on_unaligned=config.on_unaligned)
    encoded = length_order(aligner.encode(inputs, skipped))
    info = loaded.info
    writer = FeatureWriter(info.n_layers, info.n_heads, hidden_layer=hidden_layer)
    engine = AttentionEngine(loaded.model, pad_id=loaded.tokenizer.pad_token_id or 0,
                             batch_size=config.batch_size, batch_tokens=config.batch_tokens,
                             device=config.device)
    starts = range(0, len(encoded), config.chunk_size)
    done = sum(min(config.chunk_size, len(encoded) - start) for start in starts if shard_path(directory, start).is_file())
    if done:
        say(f"features of {model} on {corpus}: resuming after {done} of {len(encoded)} segments")
    progress = progress_bar(len(encoded), done, f"features {model} on {corpus}")
    try:
        for start in starts:
            path = shard_path(directory, start)
            if path.is_file():
                continue
            engine.run(encoded[start : start + config.chunk_size], [writer], progress)
            write_shard(path, writer.take())
    finally:
        progress.close()
    _complete_cache(db, cache_id, directory, len(encoded), skipped.counts)
    return directory


def _complete_cache(db: Engine, cache_id: int, directory: Path, n_segments: int,
                    skipped: dict[str, int]) -> None:
    from app.extract.cache import directory_sha256
    from app.store.schema import FeatureCache

    with session_scope(db) as session:
        cache = session.get_one(FeatureCache, cache_id)
        cache.status, cache.n_segments = "complete", n_segments
        cache.skipped_json = json.dumps(skipped, sort_keys=True)
        cache.sha256 = directory_sha256(directory)


# ------------------------------------------------------------------ examples


def _sentences(db: Engine, corpus: str, annotation: str) -> tuple[int, list[tuple[int, list[str], np.ndarray, tuple[str, ...]]]]:
    """(corpus id, [(segment id, forms, 1-based heads (0 = ROOT, -1 none), relations)])."""
    from app.store.corpora import find_corpus
    from app.store.schema import AnnotationLayer, Dependency, SegmentRow, WordRow

    with session_scope(db) as session:
        corpus_row = find_corpus(session, corpus)
        layer = session.scalar(select(AnnotationLayer).where(
            AnnotationLayer.corpus_id == corpus_row.id, AnnotationLayer.name == annotation))
        if layer is None:
            known = session.scalars(select(AnnotationLayer.name).where(AnnotationLayer.corpus_id == corpus_row.id)).all()
            raise UnknownName(f"dependency layer of {corpus}", annotation, known,
                              hint="probes need a dependency annotation (gold, or `headlens annotate`)")
        rows = session.execute(
            select(SegmentRow.id, WordRow.word_index, WordRow.form, Dependency.head_index, Dependency.relation)
            .join(WordRow, WordRow.segment_id == SegmentRow.id)
            .outerjoin(Dependency, (Dependency.segment_id == WordRow.segment_id)
                       & (Dependency.word_index == WordRow.word_index) & (Dependency.layer_id == layer.id))
            .where(SegmentRow.corpus_id == corpus_row.id)
            .order_by(SegmentRow.seg_index, WordRow.word_index)
        ).all()
        corpus_id = corpus_row.id
    forms: list[str]
    heads: list[int]
    relations: list[str]
    sentences, current, forms, heads, relations = [], None, [], [], []
    for segment_id, _index, form, head, relation in [*rows, (None, 0, "", None, None)]:
        if segment_id != current:
            if current is not None:
                sentences.append((current, forms, np.array(heads, dtype=np.int64), tuple(relations)))
            current, forms, heads, relations = segment_id, [], [], []
        forms.append(form)
        heads.append(-1 if relation is None else 0 if head is None else head + 1)
        relations.append(relation or "")
    return corpus_id, sentences


def build_examples(db: Engine, corpus: str, annotation: str, *, cache: Path | None, vectors,
                   need_maps: bool, need_hidden: bool,
                   stream: bool = False) -> tuple[list[Any], dict[str, int], Iterator[tuple[int, np.ndarray]] | None]:
    """ProbeExamples of a corpus; sentences without cached features are left out, counted.

    With `stream`, the examples hold no maps: the third value yields (example index, maps)
    from the cache one shard at a time, for `train_probe(train_maps=...)`.
    """
    from app.analysis.probes import ProbeExample
    from app.extract.cache import read_shards

    _, sentences = _sentences(db, corpus, annotation)
    features: dict[int, tuple[np.ndarray | None, np.ndarray | None]] = {}
    if cache is not None:
        features = {segment: (maps, hidden) for segment, maps, hidden
                    in read_shards(cache, maps=need_maps and not stream, hidden=need_hidden)}
    examples: list[ProbeExample]
    examples, excluded = [], {"no features (over the token budget)": 0, NO_VECTOR: 0}
    positions: dict[int, int] = {}
    for segment_id, forms, heads, relations in sentences:
        maps = hidden = None
        if cache is not None:
            if segment_id not in features:
                excluded["no features (over the token budget)"] += 1
                continue
            maps, hidden = features[segment_id]
        word_vectors = None
        if vectors is not None:
            word_vectors, unknown = vectors.lookup(forms)
            excluded[NO_VECTOR] += unknown
        positions[segment_id] = len(examples)
        examples.append(ProbeExample(
            maps=maps if maps is not None else np.zeros((0, len(forms) + 2, len(forms) + 2), np.float16),
            heads=heads, relations=relations, vectors=word_vectors, hidden=hidden if need_hidden else None))
    maps_stream = None
    if stream and need_maps and cache is not None:
        maps_stream = ((positions[segment], maps) for segment, maps, _ in read_shards(cache, hidden=False)
                       if segment in positions and maps is not None)
    return examples, {reason: n for reason, n in excluded.items() if n}, maps_stream


# ------------------------------------------------------------------ probe


def probe(settings: Settings, kind: str, *, model: str | None, train: str, dev: str, test: str,
          annotation: str = "gold", layers: tuple[int, ...] | None = None, hidden_layer: int | None = None,
          options: dict[str, Any] | None = None, vectors_path: str | None = None,
          extract: ExtractConfig | None = None, force: bool = False, say: Say | None = None,
          distribute: Distribute | None = None, score_test: bool = True,
          mlflow_parent: str | None = None) -> ProbeResult:
    """Train and evaluate one probe (or score the right-branching baseline).

    With `distribute`, the encoder's feature extraction runs on Ray workers.
    `score_test=False` (sweeps) trains and scores dev only, keeping the test evaluation for
    the configuration the sweep selects (`score_held_out`); `mlflow_parent` nests the MLflow
    run under a sweep's parent run.
    """
    selection: _Selection = {"score_test": score_test, "mlflow_parent": mlflow_parent}
    if distribute is not None and model is not None and kind in NEEDS_ENCODER:
        from app.pipeline.cluster import ray_session

        with ray_session(distribute, device=(extract or ExtractConfig()).device):
            return _probe(settings, kind, model=model, train=train, dev=dev, test=test,
                          annotation=annotation, layers=layers, hidden_layer=hidden_layer,
                          options=options, vectors_path=vectors_path, extract=extract, force=force,
                          say=say, distribute=distribute, **selection)
    with released_if_grown():  # the probe's data are gone: the next probe starts from a trimmed heap
        return _probe(settings, kind, model=model, train=train, dev=dev, test=test, annotation=annotation,
                      layers=layers, hidden_layer=hidden_layer, options=options, vectors_path=vectors_path,
                      extract=extract, force=force, say=say, distribute=None, **selection)


class _Selection(TypedDict):
    """What `probe` passes through to `_probe` on either path (local or Ray)."""

    score_test: bool
    mlflow_parent: str | None


def _probe(settings: Settings, kind: str, *, model: str | None, train: str, dev: str, test: str,
           annotation: str, layers: tuple[int, ...] | None, hidden_layer: int | None,
           options: dict[str, Any] | None, vectors_path: str | None, extract: ExtractConfig | None,
           force: bool, say: Say | None, distribute: Distribute | None, score_test: bool,
           mlflow_parent: str | None) -> ProbeResult:
    say = say or (lambda message: None)
    extract = extract or ExtractConfig()
    db = open_db(settings)
    planned = _plan(db, kind, model=model, train=train, dev=dev, test=test, annotation=annotation, layers=layers,
                    hidden_layer=hidden_layer, options=options, vectors_path=vectors_path, extract=extract,
                    score_test=score_test)
    work = Lifecycle(settings, db, "probe", say)
    try:
        state = _start(db, planned.identity, force, work)
    except BaseException:
        work.abandon()
        raise
    work.settle()
    if state.done:
        return state.result
    with work.guard():
        data = _data(settings, db, [planned], extract, say, distribute, score_test=score_test)
        return _train_and_score(settings, db, planned, data, state, say, work, score_test=score_test,
                                mlflow_parent=mlflow_parent)


def probe_group(settings: Settings, specs: Sequence[tuple[str, tuple[int, ...] | None]], *, model: str,
                train: str, dev: str, test: str, annotation: str = "gold",
                options: dict[str, Any] | None = None, vectors_path: str | None = None,
                extract: ExtractConfig | None = None, force: bool = False,
                say: Say | None = None) -> list[ProbeResult]:
    """Attention probes of one encoder (`specs`: (kind, layers) with kind attn or attn_glove)
    trained side by side: the features are read and collated once and every batch is read
    once for all of them (`probes.train_probes`). Each probe is still its own run, with the
    identity, the probe_runs row, the MLflow run and the results it would get alone, so a
    probe done either way is done for both.
    """
    from app.analysis import probes
    from app.tracking import tracker_for

    say = say or (lambda message: None)
    extract = extract or ExtractConfig()
    db = open_db(settings)
    planned = [_plan(db, kind, model=model, train=train, dev=dev, test=test, annotation=annotation, layers=layers,
                     hidden_layer=None, options=options, vectors_path=vectors_path, extract=extract, score_test=True)
               for kind, layers in specs]
    if not planned or any(one.kind not in NEEDS_MAPS for one in planned):
        raise AppError(f"a probe group trains attention probes ({', '.join(NEEDS_MAPS)}) of one encoder")
    work = Lifecycle(settings, db, "probe", say)
    states = []
    for one in planned:
        claimed = len(work.active)
        try:
            states.append(_start(db, one.identity, force, work))
        except BaseException as error:
            work.abandon(keep=claimed)
            work.fail(error)  # the probes claimed before this one will not be trained now
            raise
    work.settle()
    pending = [(one, state) for one, state in zip(planned, states) if not state.done]
    if pending:
        with released_if_grown(), work.guard():
            data = _data(settings, db, [one for one, _ in pending], extract, say, None, score_test=True)
            tracker = tracker_for(settings)
            for one, state in pending:
                _open_run(tracker, settings, db, work, one, state.result, data, mlflow_parent=None)

            beaten: set[int] = set()  # epochs whose heartbeat is written: one covers every claim

            def on_epoch(position: int, log: Any) -> None:
                one, state = pending[position]
                _log_epoch(tracker, db, work, one, state.result, log, say, heartbeat=log.epoch not in beaten)
                beaten.add(log.epoch)

            spill = _spill_folder(settings)
            trained = probes.train_probes([one.config for one, _ in pending], data.examples["train"],
                                          data.examples["dev"], on_epoch=on_epoch, release_train=True,
                                          train_maps=data.streams["train"], dev_maps=data.streams["dev"], spill=spill)
            scores = probes.evaluate_probes(trained, data.examples["test"], maps=data.streams["test"], spill=spill)
            for (one, state), probe, (test_score, n_test) in zip(pending, trained, scores):
                _record(tracker, settings, db, work, one, state.result, data, trained=probe,
                        dev_score=probe.history[probe.best_epoch - 1].dev_score, test_score=test_score,
                        n_test=n_test)
            del data, trained  # before the trim on the way out
    return [state.result for state in states]


@dataclass
class _Planned:
    """One probe of a command: its training config and the identity that names its run."""

    kind: str
    config: Any  # ProbeConfig, None for right_branching
    identity: dict[str, Any]
    hidden_layer: int | None

    @property
    def label(self) -> str:
        layers = self.identity["probe"]["layers"] if self.identity["probe"] else None
        return f"{self.kind}:{self.identity['model'] or '-'}" + (f":layers={layers}" if layers else "")


def _plan(db: Engine, kind: str, *, model: str | None, train: str, dev: str, test: str, annotation: str,
          layers: tuple[int, ...] | None, hidden_layer: int | None, options: dict[str, Any] | None,
          vectors_path: str | None, extract: ExtractConfig, score_test: bool) -> _Planned:
    """Check a probe's arguments and name it: its config and identity (hashed into its run)."""
    from app.analysis import probes
    from app.store.encoders import find_encoder

    if kind not in PROBES:
        raise UnknownName("probe", kind, PROBES)
    if kind in NEEDS_ENCODER and model is None:
        raise AppError(f"the {kind} probe reads an encoder's attention: pass --model")
    model = model if kind in NEEDS_ENCODER else None
    n_layers = n_heads = None
    if model is not None:
        with session_scope(db) as session:
            encoder = find_encoder(session, model)
            n_layers, n_heads = encoder.n_layers, encoder.n_heads
            check_layers(encoder, layers, hidden_layer)
            check_extract_config(extract, encoder)
        hidden_layer = default_hidden_layer(n_layers) if hidden_layer is None else hidden_layer
    config = None
    options = dict(options or {})
    if kind == "structural":
        options.setdefault("max_epochs", STRUCTURAL_MAX_EPOCHS)
    if kind != "right_branching":
        config = probes.ProbeConfig(kind=cast("ProbeKind", kind), n_heads=n_heads if layers else None, layers=layers,
                                    **options)
    identity = {"kind": kind, "model": model, "train": train, "dev": dev, "test": test, "annotation": annotation,
                "hidden_layer": hidden_layer if kind == "structural" else None,
                "vectors": vectors_path, "max_tokens": extract.max_tokens,
                "probe": config.as_params() if config else None}
    if not score_test:
        identity["selection"] = "sweep child: dev only, test when selected"
    return _Planned(kind, config, identity, hidden_layer)


@dataclass
class _State:
    result: ProbeResult
    done: bool


def _start(db: Engine, identity: dict[str, Any], force: bool, work: Lifecycle) -> _State:
    from app.store.corpora import find_corpus, utcnow
    from app.store.encoders import find_encoder
    from app.store.mlflow_backlog import pending
    from app.store.schema import ProbeRun

    config_hash = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    metric = "uuas" if identity["kind"] == "structural" else "uas"
    with session_scope(db) as session:
        row = session.scalar(select(ProbeRun).where(ProbeRun.config_hash == config_hash))
        if row is not None and row.status == "done" and not force:
            return _State(ProbeResult(row.id, row.kind, identity["model"], "done", row.metric, row.dev_score,
                                      row.test_score, row.n_test_words, row.best_epoch, row.mlflow_run_id), True)
        fresh = row is None
        if row is None:
            row = ProbeRun(
                kind=identity["kind"],
                encoder_id=find_encoder(session, identity["model"]).id if identity["model"] else None,
                train_corpus_id=find_corpus(session, identity["train"]).id,
                dev_corpus_id=find_corpus(session, identity["dev"]).id,
                test_corpus_id=find_corpus(session, identity["test"]).id,
                annotation=identity["annotation"],
                layers=identity["probe"]["layers"] if identity["probe"] else None,
                config_json=json.dumps(identity, sort_keys=True, default=str), config_hash=config_hash,
                status="running", metric=metric, started_at=utcnow(),
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:  # another process created the same probe a moment ago
                raise RunInProgress(
                    "this probe was just started by another process: wait for it to finish, "
                    "then rerun to use its result"
                ) from None
        work.claim(session, row, fresh=fresh)
        row.status, row.started_at, row.error, row.mlflow_run_id = "running", utcnow(), None, None
        pending(session, "probe", row.id)
        return _State(ProbeResult(row.id, row.kind, identity["model"], "new", metric), False)


def _finish(db: Engine, probe_run_id: int, work: Lifecycle | None = None, **values: Any) -> None:
    """Update the probe run's row (with a heartbeat; releasing the claim once it is done)."""
    from app.store.corpora import utcnow
    from app.store.schema import ProbeRun

    with session_scope(db) as session:
        row = session.get_one(ProbeRun, probe_run_id)
        for key, value in values.items():
            setattr(row, key, value)
        row.finished_at = utcnow()
        if work is not None:
            work.heartbeat(session)
            if values.get("status") == "done":
                work.finish(session, [probe_run_id])


@dataclass
class _ProbeData:
    """The sentences of the three splits, as the probes of one command read them."""

    examples: dict[str, list[Any]]
    streams: dict[str, Iterator[tuple[int, np.ndarray]] | None]  # split -> its maps, from the cache
    excluded: dict[str, int]  # "split: reason" -> sentences or words left out
    sizes: dict[str, int]  # n_{split}_sentences, n_{split}_words

    def excluded_for(self, kind: str) -> dict[str, int]:
        """What a probe of `kind` left out (GloVe gaps count only for the probes that read it)."""
        from app.analysis.probes import GLOVE_KINDS

        return {key: n for key, n in self.excluded.items() if kind in GLOVE_KINDS or not key.endswith(NO_VECTOR)}


def _data(settings: Settings, db: Engine, planned: Sequence[_Planned], extract: ExtractConfig, say: Say,
          distribute: Distribute | None, *, score_test: bool) -> _ProbeData:
    """Features (extracted once per encoder and corpus), gold trees and GloVe vectors of the
    splits, for probes that share an encoder, corpora and annotation."""
    from app.analysis import probes
    from app.ingest.vectors import load_vectors

    identity, kinds = planned[0].identity, {one.kind for one in planned}
    model = identity["model"]
    caches: dict[str, Path | None] = dict.fromkeys(("train", "dev", "test"))
    hidden_layer = planned[0].hidden_layer
    if model is not None and hidden_layer is not None:
        with released_if_grown():  # what an extraction freed, before the examples are built
            for split in caches:
                caches[split] = extract_features(settings, model, identity[split], hidden_layer=hidden_layer,
                                                 config=extract, say=say, distribute=distribute)
    vectors = load_vectors(identity["vectors"]) if kinds & set(probes.GLOVE_KINDS) else None
    examples, excluded, streams = {}, {}, {}
    for split in ("train", "dev", "test"):
        # The maps are streamed from the cache into files that training and scoring read
        # back batch by batch: memory stays flat however large the corpora. (A sweep keeps
        # its test maps in memory: only the selected configuration is scored, later.)
        examples[split], dropped, streams[split] = build_examples(
            db, identity[split], identity["annotation"], cache=caches[split], vectors=vectors,
            need_maps=bool(kinds & set(NEEDS_MAPS)), need_hidden="structural" in kinds,
            stream=split != "test" or score_test)
        excluded.update({f"{split}: {reason}": n for reason, n in dropped.items()})
    sizes = {f"n_{split}_sentences": len(examples[split]) for split in examples}
    sizes |= {f"n_{split}_words": int(sum(len(e.heads) for e in examples[split])) for split in examples}
    return _ProbeData(examples, streams, excluded, sizes)


def _spill_folder(settings: Settings) -> Path:
    """The probes' spill folder, without what killed processes of this host left there."""
    import shutil

    from app.store.claims import pid_alive, this_host

    spill = settings.cache_dir / "probe-spill"
    spill.mkdir(parents=True, exist_ok=True)
    for folder in spill.iterdir():
        host, pid, _ = (folder.name.rsplit("-", 2) + ["", ""])[:3]
        if folder.is_dir() and host == this_host() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
    return spill


def _open_run(tracker: AnyTracker, settings: Settings, db: Engine, work: Lifecycle, planned: _Planned,
              result: ProbeResult, data: _ProbeData, *, mlflow_parent: str | None) -> None:
    """Start the probe's MLflow run and point its probe_runs row at it."""
    identity, config = planned.identity, planned.config
    result.mlflow_run_id = tracker.start(
        experiment=f"headlens-probes/{identity['train']}", run_name=planned.label,
        params={**{k: v for k, v in identity.items() if k != "probe"}, **(config.as_params() if config else {}),
                **data.sizes},
        tags={"headlens.probe_run_id": str(result.probe_run_id), "headlens.probe": planned.kind,
              "headlens.db": settings.db_url, **({"mlflow.parentRunId": mlflow_parent} if mlflow_parent else {})},
    )
    work.mlflow[result.probe_run_id] = result.mlflow_run_id
    _finish(db, result.probe_run_id, work, mlflow_run_id=result.mlflow_run_id, status="running")


def _log_epoch(tracker: AnyTracker, db: Engine, work: Lifecycle, planned: _Planned, result: ProbeResult,
               log: Any, say: Say, *, heartbeat: bool = True) -> None:
    metric = planned.config.metric
    tracker.log_metrics(result.mlflow_run_id, {"train_loss": log.train_loss, f"dev_{metric}": log.dev_score},
                        step=log.epoch)
    say(f"{planned.label} epoch {log.epoch}: train loss {log.train_loss:.3f}, dev {metric} {log.dev_score:.1f}")
    if heartbeat:  # the Lifecycle's heartbeat renews all its claims: a group needs one an epoch
        with session_scope(db) as session:
            work.heartbeat(session)


def _record(tracker: AnyTracker, settings: Settings, db: Engine, work: Lifecycle, planned: _Planned,
            result: ProbeResult, data: _ProbeData, *, trained: Any, dev_score: float | None,
            test_score: float | None, n_test: int | None) -> None:
    """Log the probe's scores and weights to MLflow and mark its row done."""
    from app.store.mlflow_backlog import settle

    excluded = data.excluded_for(planned.kind)
    tracker.log_metrics(result.mlflow_run_id, {f"test_{result.metric}": test_score, f"best_dev_{result.metric}": dev_score,
                                               **{f"excluded {k}": v for k, v in excluded.items()}})
    with tempfile.TemporaryDirectory() as scratch:
        if trained is not None:
            np.savez(Path(scratch) / "weights.npz", **trained.state_arrays())  # numpy's stub: allow_pickle vs **kwds
            tracker.log_artifact(result.mlflow_run_id, Path(scratch) / "weights.npz")
        (Path(scratch) / "probe.json").write_text(json.dumps({**planned.identity, "excluded": excluded}, indent=1,
                                                             default=str))
        tracker.log_artifact(result.mlflow_run_id, Path(scratch) / "probe.json")
    tracker.finish(result.mlflow_run_id)
    best_epoch = None if trained is None else trained.best_epoch
    _finish(db, result.probe_run_id, work, status="done", dev_score=dev_score, test_score=test_score,
            n_train_words=data.sizes["n_train_words"], n_test_words=n_test, best_epoch=best_epoch)
    with session_scope(db) as session:
        settle(session, "probe", result.probe_run_id, tracker.error)
    result.dev_score, result.test_score, result.n_test_words = dev_score, test_score, n_test
    result.best_epoch, result.excluded = best_epoch, excluded


def _train_and_score(settings: Settings, db: Engine, planned: _Planned, data: _ProbeData, state: _State,
                     say: Say, work: Lifecycle, *, score_test: bool = True,
                     mlflow_parent: str | None = None) -> ProbeResult:
    from app.analysis import probes
    from app.tracking import tracker_for

    result, config = state.result, planned.config
    tracker = tracker_for(settings)
    _open_run(tracker, settings, db, work, planned, result, data, mlflow_parent=mlflow_parent)
    test_score: float | None
    n_test: int | None
    if planned.kind == "right_branching":
        dev_score, _ = probes.right_branching_uas(data.examples["dev"])
        test_score, n_test = probes.right_branching_uas(data.examples["test"])
        trained = None
    else:
        spill = _spill_folder(settings)
        trained = probes.train_probe(config, data.examples["train"], data.examples["dev"], release_train=True,
                                     on_epoch=lambda log: _log_epoch(tracker, db, work, planned, result, log, say),
                                     train_maps=data.streams["train"], dev_maps=data.streams["dev"], spill=spill)
        # The restored weights are the best epoch's: its dev score is the probe's.
        dev_score = trained.history[trained.best_epoch - 1].dev_score
        test_score, n_test = (probes.evaluate(trained, data.examples["test"], maps=data.streams["test"], spill=spill)
                              if score_test else (None, None))
    _record(tracker, settings, db, work, planned, result, data, trained=trained, dev_score=dev_score,
            test_score=test_score, n_test=n_test)
    if not score_test:
        result.held_out = (trained, data.examples["test"])
    return result


def score_held_out(settings: Settings, result: ProbeResult) -> ProbeResult:
    """Evaluate a sweep child on test (once, for the selected configuration) and record it."""
    from app.analysis import probes
    from app.tracking import Tracker

    if result.held_out is None:  # finished earlier (its test score, if any, is on the row)
        return result
    trained, test = result.held_out
    if trained is None:
        test_score, n_test = probes.right_branching_uas(test)
    else:
        test_score, n_test = probes.evaluate(trained, test)
    _finish(open_db(settings), result.probe_run_id, test_score=test_score, n_test_words=n_test)
    if result.mlflow_run_id:
        Tracker(settings).log_metrics(result.mlflow_run_id, {f"test_{result.metric}": test_score})
    result.test_score, result.n_test_words, result.held_out = test_score, n_test, None
    return result
