"""`--workers N`: Ray actors write Parquet shards that the driver loads exactly once.

One local Ray (2 CPUs) serves the whole module. The tiny model is ingested twice
under two names, so one database holds a single-process run and a 2-worker run of every
analysis and the answers can be compared row by row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from app import pipeline
from app.config import REPO_ROOT, ExtractConfig, Settings
from app.errors import AppError
from app.pipeline.cluster import Distribute
from tests.conftest import FIXTURES, local_settings

FORWARD = ["surface", "syntax", "clustering", "examples"]
# Sums of float32 maps accumulated in float64 in another order (per shard, then merged):
# the difference is rounding, orders of magnitude below this.
ATOL = 1e-6


@pytest.fixture(scope="module")
def ray_cluster():  # type: ignore[no-untyped-def]
    """Only this file uses Ray: its processes (GCS, raylet, agents, idle workers) stop with
    the module instead of sharing the 2 CPUs with the rest of the session."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _ingest(settings: Settings, model_dir: Path, names: list[str]) -> None:
    for name in names:
        pipeline.ingest_model(settings, name, str(model_dir))
    pipeline.ingest_corpus(
        settings, "sentences", fmt="conllu", path=str(FIXTURES / "sentences.conllu")
    )
    story = FIXTURES / "coref" / "story.conllu"
    pipeline.ingest_corpus(settings, "story", fmt="corefud", path=str(story))


def _sql(settings: Settings, sql: str) -> pd.DataFrame:
    return pipeline.run_query(settings, None, sql=sql)


def _run_id(settings: Settings, model: str, analysis: str) -> int:
    frame = _sql(
        settings,
        "select runs.id from runs join encoders on encoders.id = runs.encoder_id "
        f"where encoders.name = '{model}' and analysis = '{analysis}' and status = 'done'",
    )
    assert len(frame) == 1
    return int(frame.iloc[0, 0])


@pytest.fixture(scope="module")
def twin(tmp_path_factory, tiny_bert_mlm, _migrated_template, _mlflow_template, ray_cluster) -> Settings:  # type: ignore[no-untyped-def]
    """Every analysis of the tiny model, once in one process ('single'), once on 2 workers
    ('workers') with one segment per shard, so that every shard boundary is exercised."""
    settings = local_settings(tmp_path_factory.mktemp("twin"), _migrated_template, _mlflow_template)
    _ingest(settings, tiny_bert_mlm, ["single", "workers"])
    for model, distribute, chunk in (
        ("single", None, 256),
        ("workers", Distribute(workers=2, threads=1), 1),
    ):
        config = ExtractConfig(chunk_size=chunk)
        pipeline.analyze(
            settings, [*FORWARD, "gradients"], model=model, corpus="sentences", config=config,
            distribute=distribute,
        )
        pipeline.analyze(
            settings, ["coref"], model=model, corpus="story",
            config=ExtractConfig(overflow="truncate", chunk_size=chunk), distribute=distribute,
        )
    return settings


def test_head_metrics_within_tolerance(twin: Settings) -> None:
    for analysis in ("surface", "gradients"):
        frames = [
            _sql(
                twin,
                f"select layer, head, metric, value, n from head_metrics "
                f"where run_id = {_run_id(twin, model, analysis)} order by layer, head, metric",
            )
            for model in ("single", "workers")
        ]
        single, workers = frames
        assert len(single) == len(workers) > 0
        assert (single[["layer", "head", "metric", "n"]] == workers[["layer", "head", "metric", "n"]]).all().all()
        np.testing.assert_allclose(workers["value"], single["value"], rtol=0, atol=ATOL)


def test_clustering_distances_within_tolerance(twin: Settings) -> None:
    single, workers = (
        _sql(
            twin,
            "select layer_a, head_a, layer_b, head_b, jsd from head_distances where run_id = "
            f"{_run_id(twin, model, 'clustering')} order by layer_a, head_a, layer_b, head_b",
        )
        for model in ("single", "workers")
    )
    assert len(single) == len(workers) > 0
    np.testing.assert_allclose(workers["jsd"], single["jsd"], rtol=0, atol=ATOL)


def _rows(settings: Settings, table: str, columns: str, model: str, analysis: str) -> pd.DataFrame:
    run_id = _run_id(settings, model, analysis)
    return _sql(
        settings, f"select {columns} from {table} where run_id = {run_id} order by {columns}"
    )


def test_head_predictions_and_coref_choices_identical(twin: Settings) -> None:
    keys = "segment_id, word_index, layer, head, predicted_index, attended_by_index"
    single = _rows(twin, "head_predictions", keys, "single", "syntax")
    assert len(single) > 0
    pd.testing.assert_frame_equal(_rows(twin, "head_predictions", keys, "workers", "syntax"), single)
    keys = "mention_id, layer, head, predicted_mention_id, correct"
    single = _rows(twin, "coref_predictions", keys, "single", "coref")
    assert len(single) > 0
    pd.testing.assert_frame_equal(_rows(twin, "coref_predictions", keys, "workers", "coref"), single)
    keys = "segment_id, layer, head, query_unit, key_unit"
    single = _rows(twin, "example_maps", keys, "single", "examples")
    pd.testing.assert_frame_equal(_rows(twin, "example_maps", keys, "workers", "examples"), single)


def test_paper_tables_identical(twin: Settings) -> None:
    for query, analysis, extra in (
        ("table1_relations", "syntax", {"min_arcs": 1}),
        ("table2_coref", "coref", {}),
    ):
        single, workers = (
            pipeline.run_query(twin, query, params={"run_id": _run_id(twin, model, analysis), **extra})
            for model in ("single", "workers")
        )
        assert len(single) > 0
        pd.testing.assert_frame_equal(workers, single)


def test_each_shard_loaded_once_with_its_row_counts(twin: Settings) -> None:
    import json

    run_id = _run_id(twin, "workers", "syntax")
    shards = _sql(
        twin, f"select shard, n_segments, rows_json from loaded_shards where run_id = {run_id}"
    )
    n_segments = _sql(twin, f"select n_segments from runs where id = {run_id}").iloc[0, 0]
    # One segment per shard: as many shards as segments, each once.
    assert sorted(shards["shard"]) == list(range(n_segments))
    assert shards["n_segments"].sum() == n_segments
    loaded = sum(json.loads(text)["head_predictions"] for text in shards["rows_json"])
    total = _sql(twin, f"select count(*) from head_predictions where run_id = {run_id}").iloc[0, 0]
    assert loaded == total
    # The Parquet files are gone once the run is finished.
    assert not (twin.cache_dir / "runs" / str(run_id)).exists()


def _assert_no_duplicates(settings: Settings, run_id: int) -> None:
    duplicates = _sql(
        settings,
        "select segment_id, word_index, layer, head, count(*) as n from head_predictions "
        f"where run_id = {run_id} group by all having count(*) > 1",
    )
    assert duplicates.empty


def test_a_killed_worker_is_restarted_and_its_shard_retried(
    twin: Settings, settings: Settings, tiny_bert_mlm: Path
) -> None:
    _ingest(settings, tiny_bert_mlm, ["workers"])
    marker = settings.cache_dir.parent / "killed"

    def kill_once(shard: int) -> None:  # runs in the worker: SIGKILL mid-run, first time only
        if shard == 1:
            try:
                descriptor = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(descriptor, str(os.getpid()).encode())
            os.close(descriptor)
            os.kill(os.getpid(), signal.SIGKILL)

    pipeline.analyze(
        settings, ["syntax"], model="workers", corpus="sentences",
        config=ExtractConfig(chunk_size=1),
        distribute=Distribute(workers=2, threads=1, before_shard=kill_once),
    )
    assert marker.is_file()
    run_id = _run_id(settings, "workers", "syntax")
    _assert_no_duplicates(settings, run_id)
    count = "select count(*) from head_predictions where run_id = "
    expected = _sql(twin, count + str(_run_id(twin, "single", "syntax"))).iloc[0, 0]
    assert _sql(settings, count + str(run_id)).iloc[0, 0] == expected
    killed = marker.read_text()
    workers = _sql(settings, f"select worker from loaded_shards where run_id = {run_id} and shard = 1")
    assert not workers.iloc[0, 0].endswith(f":{killed}")  # shard 1 came from the restarted worker


def test_rerun_after_kill_9_of_the_driver_loads_and_computes_only_what_is_missing(
    twin: Settings, settings: Settings, tiny_bert_mlm: Path, ray_cluster
) -> None:  # type: ignore[no-untyped-def]
    import ray

    from app.store.shards import read_manifest, run_folder, shard_folder

    _ingest(settings, tiny_bert_mlm, ["workers"])
    # A driver in its own process, on this session's Ray, that SIGKILLs itself right after
    # loading its first shard: no exception handler, no cleanup, runs left "running".
    script = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from app import pipeline\n"
        "from app.config import ExtractConfig, Settings\n"
        "from app.pipeline.cluster import Distribute\n"
        f"settings = Settings(db_url={settings.db_url!r}, mlruns_dir=Path({str(settings.mlruns_dir)!r}),"
        f" data_dir=None, cache_dir=Path({str(settings.cache_dir)!r}))\n"
        "die = lambda shard, worker: os.kill(os.getpid(), signal.SIGKILL)\n"
        "pipeline.analyze(settings, ['syntax', 'surface'], model='workers', corpus='sentences',"
        " config=ExtractConfig(chunk_size=1), distribute=Distribute(workers=2, threads=1,"
        f" address={ray.get_runtime_context().gcs_address!r}, after_load=die))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    runs = _sql(settings, "select id, analysis, status from runs order by id")
    assert set(runs["status"]) == {"running"}
    run_ids = dict(zip(runs["analysis"], runs["id"]))
    loaded = set(_sql(settings, f"select shard from loaded_shards where run_id = {run_ids['syntax']}")["shard"])
    assert len(loaded) >= 1
    folder = run_folder(settings.cache_dir, run_ids["syntax"])
    written = {shard for shard in range(4) if read_manifest(shard_folder(folder, shard)) is not None}

    computed = settings.cache_dir.parent / "computed"

    def record(shard: int) -> None:
        with open(computed, "a") as log:
            log.write(f"{shard}\n")

    # Another chunk size on the rerun (it is not part of a run's identity): the pass keeps
    # the cut of its loaded shards.
    pipeline.analyze(
        settings, ["syntax", "surface"], model="workers", corpus="sentences",
        config=ExtractConfig(chunk_size=3),
        distribute=Distribute(workers=2, threads=1, before_shard=record),
    )
    recomputed = {int(line) for line in computed.read_text().split()} if computed.exists() else set()
    assert not recomputed & loaded  # loaded shards are not computed again ...
    assert not recomputed & (written - loaded)  # ... nor written-but-unloaded ones
    n_segments = _sql(settings, f"select n_segments from runs where id = {run_ids['syntax']}").iloc[0, 0]
    assert recomputed | loaded | written == set(range(n_segments))
    for analysis in ("syntax", "surface"):
        assert _run_id(settings, "workers", analysis) == run_ids[analysis]
    _assert_no_duplicates(settings, run_ids["syntax"])
    for table, analysis in (("head_predictions", "syntax"), ("head_metrics", "surface")):
        count = f"select count(*) from {table} where run_id = "
        assert (
            _sql(settings, count + str(run_ids[analysis])).iloc[0, 0]
            == _sql(twin, count + str(_run_id(twin, "single", analysis))).iloc[0, 0]
        )
    single = _sql(twin, f"select metric, layer, head, value from head_metrics where run_id = {_run_id(twin, 'single', 'surface')} order by all")
    resumed = _sql(settings, f"select metric, layer, head, value from head_metrics where run_id = {run_ids['surface']} order by all")
    np.testing.assert_allclose(resumed["value"], single["value"], rtol=0, atol=ATOL)


def test_more_workers_than_shards_and_an_empty_selection(
    settings: Settings, tiny_bert_mlm: Path, ray_cluster, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Also: a worker on "another machine" ships its shard's files back to the driver."""
    import socket

    _ingest(settings, tiny_bert_mlm, ["workers"])
    monkeypatch.setattr(socket, "gethostname", lambda: "the-driver-elsewhere")
    said: list[str] = []
    pipeline.analyze(
        settings, ["surface"], model="workers", corpus="sentences", config=ExtractConfig(),
        distribute=Distribute(workers=2, threads=1), on_event=said.append,
    )
    assert "2 workers asked for, 1 shard(s) to compute: starting 1" in said
    run_id = _run_id(settings, "workers", "surface")
    shards = _sql(settings, f"select worker from loaded_shards where run_id = {run_id}")
    assert len(shards) == 1 and not shards.iloc[0, 0].startswith("the-driver-elsewhere")
    metrics = _sql(settings, f"select count(*) from head_metrics where run_id = {run_id}")
    assert metrics.iloc[0, 0] == 2 * 4 * 11  # layers x heads x surface metrics
    # Nothing to compute (an empty corpus or --limit 0 is refused at the door; here every
    # segment is over the budget): one clear line, before any worker starts.
    with pytest.raises(AppError, match="no segment of corpus 'story' can be analysed"):
        pipeline.analyze(
            settings, ["surface"], model="workers", corpus="story", config=ExtractConfig(max_tokens=3),
            distribute=Distribute(workers=2, threads=1),
        )


def test_an_unreachable_cluster_fails_in_one_line_before_any_work(settings: Settings, tiny_bert_mlm: Path) -> None:
    from app.cli import cli

    _ingest(settings, tiny_bert_mlm, ["workers"])
    with pytest.raises(AppError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        pipeline.analyze(
            settings, ["surface"], model="workers", corpus="sentences", config=ExtractConfig(),
            distribute=Distribute(workers=2, address="127.0.0.1:9"),
        )
    assert _sql(settings, "select count(*) from runs").iloc[0, 0] == 0
    result = CliRunner().invoke(
        cli,
        ["--db", settings.db_url, "analyze", "surface", "--model", "workers", "--corpus",
         "sentences", "--workers", "2", "--ray-address", "127.0.0.1:9"],
    )
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the Ray cluster")
    assert len(result.output.strip().splitlines()) == 1


def test_an_address_where_something_else_listens_fails_in_one_line(
    settings: Settings, tiny_bert_mlm: Path
) -> None:
    """Not Ray behind the port (here: a socket that hangs up, on which ray.init would retry
    for minutes): one line, before any work."""
    import socket
    import threading

    _ingest(settings, tiny_bert_mlm, ["workers"])
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "--db", settings.db_url, "analyze", "surface",
             "--model", "workers", "--corpus", "sentences", "--workers", "1",
             "--ray-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60,
        )
    finally:
        listener.close()
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: no Ray cluster answered at 127.0.0.1:{port} (something listens there, but not "
        "Ray's GCS); use the address `ray start --head` printed"
    ]
    assert _sql(settings, "select count(*) from runs").iloc[0, 0] == 0


def test_probe_features_on_workers_match_one_process(
    twin: Settings, settings: Settings, tiny_bert_mlm: Path
) -> None:
    from app.extract.cache import read_shards
    from app.pipeline.probe import extract_features

    _ingest(settings, tiny_bert_mlm, ["single", "workers"])
    single = extract_features(settings, "single", "sentences", hidden_layer=1, config=ExtractConfig())
    workers = extract_features(
        settings, "workers", "sentences", hidden_layer=1, config=ExtractConfig(chunk_size=2),
        distribute=Distribute(workers=2, threads=1),
    )
    expected = {segment: (maps, hidden) for segment, maps, hidden in read_shards(single)}
    found = {segment: (maps, hidden) for segment, maps, hidden in read_shards(workers)}
    assert found.keys() == expected.keys() and len(found) > 0
    for segment, (maps, hidden) in expected.items():
        # float16 features of the same float32 maps, batched differently: equal to fp16 rounding.
        np.testing.assert_allclose(found[segment][0], maps, rtol=0, atol=1e-3)
        np.testing.assert_allclose(found[segment][1], hidden, rtol=0, atol=1e-2)
    shards = _sql(settings, "select feature_cache_id, shard, n_segments from loaded_shards")
    assert sorted(shards["shard"]) == [0, 1] and shards["n_segments"].sum() == len(found)
    assert shards["feature_cache_id"].notna().all()


def test_without_workers_ray_is_not_imported(settings: Settings, tiny_bert_mlm: Path) -> None:
    """A whole single-process analysis, in a fresh interpreter: Ray stays out of it."""
    _ingest(settings, tiny_bert_mlm, ["single"])
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from app import pipeline\n"
        "from app.config import ExtractConfig, Settings\n"
        f"settings = Settings(db_url={settings.db_url!r}, mlruns_dir=Path({str(settings.mlruns_dir)!r}),"
        f" data_dir=None, cache_dir=Path({str(settings.cache_dir)!r}))\n"
        "pipeline.analyze(settings, ['surface'], model='single', corpus='sentences',"
        " config=ExtractConfig())\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    assert _run_id(settings, "single", "surface") > 0


def test_merge_adds_shard_states() -> None:
    """Two shards' sums and counts merge into the sums and counts of both (value x count)."""
    from app.analysis.surface import SurfaceAnalysis
    from app.analysis.syntax import HeadPredictions

    first, second = SurfaceAnalysis(1, 2), SurfaceAnalysis(1, 2)
    first.sums[:], first.counts[:] = 0.2 * 2, 2  # mean 0.2 over 2 segments
    second.sums[:], second.counts[:] = 0.5 * 3, 3  # mean 0.5 over 3 segments
    merged = SurfaceAnalysis(1, 2)
    for shard in (first, second):
        merged.merge(shard.state_dict())
    # (0.4 + 1.5) / 5 = 0.38
    np.testing.assert_allclose(merged.grids()["attn_cls"], [[0.38, 0.38]])
    assert (merged.counts == 5).all()
    rows = HeadPredictions(1, 2)
    rows.merge({"n_rows": np.array(7)})
    rows.merge({"n_rows": np.array(5)})
    assert rows.summary() == {"n_prediction_rows": 12}


def test_ray_address_needs_workers() -> None:
    from app.cli import cli

    result = CliRunner().invoke(
        cli, ["analyze", "surface", "--corpus", "c", "--ray-address", "127.0.0.1:9"]
    )
    assert result.exit_code == 2 and "--ray-address needs --workers N" in result.output
