"""`Lab`: the whole of headlens as one object for notebooks and scripts.

A Lab holds where things live (database, gold data, MLflow store, cache) and exposes each
stage as a method that forwards to `app.pipeline`: ingest models and corpora, analyze,
probe, report, explore; and reads results back as pandas DataFrames (`query`, `sql`,
`runs`). The `headlens` command is a thin layer over it: each command parses its flags,
calls one Lab method and prints the result.

A session on a tiny random BERT (the test suite runs this example; `tiny_model`,
`sentences` and `tmp` are a model directory, a CoNLL-U file and a scratch folder):

>>> from app import Lab
>>> lab = Lab(db=tmp / "lab.duckdb", data_dir=tmp / "data", mlruns=tmp / "mlruns",
...           cache_dir=tmp / "cache")
>>> _ = lab.upgrade()                       # create the schema (Alembic), once per database
>>> current, head = lab.revision()
>>> current == head
True
>>> lab.ingest_model("tiny", path=tiny_model).details["heads"]
4
>>> lab.ingest_corpus("sentences", path=sentences, format="conllu").details["segments"]
4
>>> [run.state for run in lab.analyze("surface", "syntax", model="tiny", corpus="sentences")]
['new', 'new']
>>> lab.query("surface_by_layer")["layer"].tolist()      # one row per layer, 1-based
[1, 2]
>>> int(lab.sql("select count(*) as n from head_metrics where metric = 'entropy'")["n"][0])
8
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.config import DEFAULT_MODEL, ExtractConfig, Settings
from app.options import CorpusFormat, CorpusOptions, ProbeOptions

if TYPE_CHECKING:  # heavy or stage-specific types, for annotations only
    import pandas as pd

    from app.pipeline.analyze import RunSummary
    from app.pipeline.cluster import Distribute
    from app.pipeline.ingest import IngestResult
    from app.pipeline.probe import ProbeResult
    from app.pipeline.report import ReportResult
    from app.pipeline.sweep import SweepResult

Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """Progress messages go nowhere unless a `say` callback is given."""


class Lab:
    """One headlens workspace: a results database, gold data, an MLflow store, a cache.

    Every argument may be omitted: then the environment (HEADLENS_DB, HEADLENS_DATA,
    HEADLENS_MLRUNS, HEADLENS_CACHE) or the defaults decide, exactly as for the CLI
    (`./headlens.duckdb`, the user's data directory, `./mlruns`, `./cache`). `db` is a
    SQLAlchemy URL or a DuckDB file path.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        data_dir: str | Path | None = None,
        mlruns: str | Path | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            db=str(db) if db is not None else None,
            data_dir=data_dir,
            mlruns=mlruns,
            cache_dir=cache_dir,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Lab:
        """A Lab over settings already resolved (what the CLI does)."""
        lab = cls.__new__(cls)
        lab.settings = settings
        return lab

    def __repr__(self) -> str:
        return f"Lab(db={self.settings.db_url!r}, data_dir={str(self.settings.data_dir)!r})"

    # ------------------------------------------------------------------ schema

    def upgrade(self, revision: str = "head") -> str:
        """Apply the Alembic migrations up to `revision`; returns the revision now current."""
        from app.store.db import upgrade

        return upgrade(self.settings.db_url, revision)

    def revision(self) -> tuple[str | None, str]:
        """(the database's schema revision or None when empty, the code's head revision)."""
        from app.store.db import current_revision, head_revision, make_engine

        engine = make_engine(self.settings.db_url, read_only=True)
        return current_revision(engine), head_revision()

    # ------------------------------------------------------------------ ingest

    def ingest_model(
        self, name: str, path: str | Path | None = None, *, random_init: int | None = None
    ) -> IngestResult:
        """Register encoder `name`: built in (minilm, mpnet) or a local Hugging Face folder.

        `random_init=SEED` stores a randomly initialised copy of the architecture (the
        paper's control). Nothing is downloaded. Registering the same weights again is a
        no-op:

        >>> lab.ingest_model("tiny", path=tiny_model).created
        False
        """
        from app.pipeline import ingest_model

        return ingest_model(
            self.settings, name, None if path is None else str(path), random_init_seed=random_init
        )

    def ingest_corpus(
        self,
        name: str,
        *,
        path: str | Path | None = None,
        format: CorpusFormat | None = None,
        options: CorpusOptions = CorpusOptions(),  # noqa: B008 - frozen, so a safe default
    ) -> IngestResult:
        """Ingest corpus `name`: a named dataset (fetched when missing), wiki-segments, or a
        file (`path` + `format`). The same content again is a no-op.

        >>> lab.ingest_corpus("sentences", path=sentences, format="conllu").details["words"]
        46
        """
        from app.pipeline import ingest_corpus

        return ingest_corpus(
            self.settings,
            name,
            fmt=format,
            path=None if path is None else str(path),
            options=options,
        )

    def annotate(self, corpus: str, *, name: str = "silver") -> IngestResult:
        """Parse `corpus` with spaCy into a silver, Stanford-style dependency layer `name`."""
        from app.pipeline import annotate

        return annotate(self.settings, corpus, name=name)

    def datasets(self) -> pd.DataFrame:
        """The named datasets: whether each is in the data directory ("ok"), not there
        ("missing") or there but damaged ("invalid", with the `problem`).

        >>> lab.datasets().set_index("name").loc["ud-ewt-dev", "state"]
        'missing'
        """
        import pandas as pd

        from app.errors import AppError
        from app.ingest import datasets as registry

        rows = []
        for name, dataset in registry.registry().items():
            state, problem = "ok", None
            try:
                registry.locate(name, self.settings.data_dir)
            except AppError as error:
                missing = "is not under" in str(error) or not self.settings.data_dir
                state, problem = ("missing", None) if missing else ("invalid", str(error))
            rows.append((name, state, len(dataset.files), dataset.description, problem))
        return pd.DataFrame(rows, columns=["name", "state", "files", "description", "problem"])

    def fetch(self, dataset: str) -> list[Path]:
        """Download the missing files of a named dataset into the data directory, verified."""
        from app.errors import DatasetError
        from app.ingest.datasets import fetch

        if self.settings.data_dir is None:  # Settings built by hand; resolve() always sets one
            raise DatasetError("no data directory: pass --data-dir DIR or set HEADLENS_DATA")
        return fetch(dataset, self.settings.data_dir)

    # ----------------------------------------------------------------- analyze

    def analyze(
        self,
        *analyses: str,
        model: str = DEFAULT_MODEL,
        corpus: str,
        config: ExtractConfig = ExtractConfig(),  # noqa: B008 - frozen, so a safe default
        force: bool = False,
        say: Say = _quiet,
        distribute: Distribute | None = None,
        weightings: tuple[str, ...] = ("weight",),
        objective: str = "mlm",
    ) -> list[RunSummary]:
        """Run `analyses` (surface, syntax, coref, clustering, examples, gradients) of `model`
        over `corpus` in one forward pass; one database run and one MLflow run each.

        `weightings=("weight", "norm")` also analyses norm-based maps (Kobayashi et al. 2020)
        in the same pass; `objective="contrastive"` differentiates the sentence encoder's own
        loss in the gradients analysis. A finished config is not run again (state "done");
        `force=True` redoes it.
        `distribute=app.pipeline.cluster.Distribute(workers=N)` runs the encoder in N Ray actors (the CLI's
        `--workers N`); without it, one process and no Ray:

        >>> [run.state for run in lab.analyze("surface", model="tiny", corpus="sentences")]
        ['done']
        """
        from app.pipeline import analyze

        return analyze(
            self.settings,
            list(analyses),
            model=model,
            corpus=corpus,
            config=config,
            force=force,
            on_event=say,
            distribute=distribute,
            weightings=weightings,
            objective=objective,
        )

    def probe(
        self,
        kind: str,
        *,
        model: str | None = None,
        options: ProbeOptions = ProbeOptions(),  # noqa: B008 - frozen, so a safe default
        force: bool = False,
        say: Say = _quiet,
        distribute: Distribute | None = None,
    ) -> ProbeResult:
        """Train a probing classifier (paper §5): attn, attn_glove, structural, or score a
        baseline (right_branching, distance_glove); the result is a probe_runs row.

        >>> splits = ProbeOptions(train="sentences", dev="sentences", test="sentences")
        >>> lab.probe("right_branching", options=splits).metric
        'uas'
        """
        from app.pipeline.probe import probe

        return probe(
            self.settings,
            kind,
            model=model,
            train=options.train,
            dev=options.dev,
            test=options.test,
            annotation=options.annotation,
            layers=options.layers,
            hidden_layer=options.hidden_layer,
            options=options.training(),
            vectors_path=options.vectors,
            force=force,
            say=say,
            distribute=distribute,
        )

    def probe_layers(
        self,
        kind: str = "attn_glove",
        *,
        model: str,
        layers: Sequence[int] | None = None,
        options: ProbeOptions = ProbeOptions(),  # noqa: B008 - frozen, so a safe default
        force: bool = False,
        say: Say = _quiet,
    ) -> list[ProbeResult]:
        """One attention probe per layer (default: every layer) plus the all-layer probe,
        trained side by side: the maps are read once for all of them. Each result is the
        probe run `probe(kind, options=replace(options, layers=(layer,)))` would make, and
        runs already done are reused; the all-layer probe comes first.

        >>> splits = ProbeOptions(train="sentences", dev="sentences", test="sentences", max_epochs=1)
        >>> [r.kind for r in lab.probe_layers(model="tiny", layers=[1], options=splits)]
        ['attn_glove', 'attn_glove']
        """
        from app.pipeline.common import open_db
        from app.pipeline.probe import probe_group
        from app.store.db import session_scope
        from app.store.encoders import find_encoder

        if layers is None:
            with session_scope(open_db(self.settings)) as session:
                layers = range(find_encoder(session, model).n_layers)
        specs = [(kind, None), *((kind, (int(layer),)) for layer in layers)]
        return probe_group(
            self.settings, specs, model=model, train=options.train, dev=options.dev, test=options.test,
            annotation=options.annotation, options=options.training(), vectors_path=options.vectors,
            force=force, say=say,
        )

    def sweep(
        self,
        kind: str,
        grid: dict[str, list[Any]],
        *,
        model: str | None = None,
        options: ProbeOptions = ProbeOptions(),  # noqa: B008 - frozen, so a safe default
        force: bool = False,
        say: Say = _quiet,
    ) -> SweepResult:
        """Train `kind` once per combination of `grid` (e.g. {"lr": [1e-3, 2e-3]}) as nested
        MLflow runs under one parent, select on dev, and score the best once on test."""
        from app.pipeline.sweep import sweep

        return sweep(
            self.settings,
            kind,
            grid,
            model=model,
            train=options.train,
            dev=options.dev,
            test=options.test,
            options=options.training(),
            annotation=options.annotation,
            hidden_layer=options.hidden_layer,
            vectors_path=options.vectors,
            force=force,
            say=say,
        )

    # ---------------------------------------------------------------- results

    def claims(self, model: str = DEFAULT_MODEL, *, annotation: str = "gold", min_arcs: int = 100) -> pd.DataFrame:
        """The paper's findings checked on `model`'s latest runs (queries/claims.sql): one
        row per claim with held / not held, the number behind it and its 95% interval."""
        from app.pipeline.claims import scorecard

        return scorecard(self.settings, model, annotation=annotation, min_arcs=min_arcs)

    def query(self, name: str, /, **params: Any) -> pd.DataFrame:
        """Named query `name` from queries/ as a DataFrame (`headlens query --list`).

        Parameters are keyword arguments. A missing `run_id` is the latest finished run of
        the query's analysis, narrowed by `model=` / `corpus=` when given; other missing
        parameters take the defaults in the query's header.

        >>> lab.query("surface_heads", model="tiny", threshold=0.0)["head"].nunique() > 0
        True
        """
        from app.pipeline import run_query

        model, corpus = params.get("model"), params.get("corpus")
        return run_query(self.settings, name, params=params, model=model, corpus=corpus)

    def sql(self, text: str, /, *, read_write: bool = False, **params: Any) -> pd.DataFrame:
        """Ad-hoc SQL over the database (`:name` parameters as keyword arguments), on a
        read-only connection without file access; `read_write=True` is the explicit escape
        hatch for SQL that changes the database.

        >>> lab.sql("select name, n_layers from encoders where name = :name", name="tiny")
           name  n_layers
        0  tiny         2
        """
        from app.pipeline import run_query

        return run_query(self.settings, None, sql=text, params=params, read_write=read_write)

    def runs(self, limit: int = 30) -> pd.DataFrame:
        """Analysis runs, newest first: status, timings, segments, MLflow run ids.

        >>> sorted(lab.runs()["analysis"])
        ['examples', 'surface', 'syntax']
        """
        return self.query("runs", limit=limit)

    def export(self, name: str, path: str | Path, /, **params: Any) -> Path:
        """Write named query `name` to `path`: CSV, Parquet or JSON by the file's suffix.

        >>> lab.export("surface_by_layer", tmp / "by_layer.parquet").name
        'by_layer.parquet'
        """
        from app.report.export import write_frame

        return write_frame(self.query(name, **params), path)

    # ----------------------------------------------------------------- reports

    def report(
        self,
        model: str = DEFAULT_MODEL,
        *,
        compare_with: str | None = None,
        out_dir: str | Path | None = None,
    ) -> ReportResult:
        """Write the HTML report of every table and figure for `model` (figures also as PNG
        and SVG files); sections whose analysis has not run say which command makes them.

        >>> result = lab.report("tiny", out_dir=tmp / "reports")
        >>> result.path.name, any(path.suffix == ".svg" for path in result.figures)
        ('tiny.html', True)
        """
        from app.pipeline.report import build_report

        return build_report(
            self.settings,
            model=model,
            compare_with=compare_with,
            out_dir=None if out_dir is None else Path(out_dir),
        )

    def explore(
        self,
        model: str = DEFAULT_MODEL,
        *,
        corpus: str,
        compare_with: str | None = None,
        out: str | Path | None = None,
        min_arcs: int = 100,
    ) -> Path:
        """Write the attention explorer: one self-contained HTML page (no server, no CDN)
        with the example sentences' maps, every head's metrics and relation scores.
        Relations with fewer than `min_arcs` arcs are left out (the paper's 100).

        >>> lab.explore("tiny", corpus="sentences", out=tmp / "explore.html", min_arcs=1).name
        'explore.html'
        """
        from app.report.explorer import build_explorer

        return build_explorer(
            self.settings,
            model=model,
            corpus=corpus,
            compare_with=compare_with,
            out=None if out is None else Path(out),
            min_arcs=min_arcs,
        )
