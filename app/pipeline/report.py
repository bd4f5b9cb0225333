"""Report stage: every paper table and figure for one model, as a self-contained HTML file.

Each section runs its queries on the model's latest runs; a section whose analysis has not
run says which command produces it. Figures are also written as PNG files beside the HTML
(and as SVG) and logged as MLflow artifacts of the analysis run they come from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import AppError, RunNotFound
from app.pipeline.common import open_db_read_only
from app.store.db import session_scope


@dataclass
class ReportResult:
    path: Path
    figures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class _Builder:
    """Runs queries for one model and collects report sections."""

    def __init__(self, settings: Settings, model: str):
        from app.report.html import Section

        self.settings, self.model = settings, model
        self.db = open_db_read_only(settings)  # a report only reads: never blocks a writer
        self.sections: list[Section] = []
        self.logged: list[tuple[str, bytes, int]] = []  # (file, png, database run id)
        self.svgs: dict[str, bytes] = {}  # file name -> the same figure as SVG (vector)

    def run_id(self, analysis: str, corpus: str | None = None, weighting: str = "weight") -> int:
        from app.store.runs import latest_run

        with session_scope(self.db) as session:
            return latest_run(session, analysis, encoder=self.model, corpus=corpus, weighting=weighting).id

    def query(self, name: str, **params: Any):
        from app.pipeline.query import run_query

        return run_query(self.settings, name, params=params, model=self.model)

    def section(self, title: str, text: str, build: Callable[[Any], None], missing: str) -> None:
        from app.report.html import Section

        section = Section(title, text)
        try:
            build(section)
        except RunNotFound:
            section.missing = missing
            section.figures, section.tables = [], []
        self.sections.append(section)

    def figure(self, section, name: str, figure, caption: str, run_id: int) -> None:
        import matplotlib.pyplot as plt

        from app.report.html import png_bytes, svg_bytes

        png = png_bytes(figure)
        self.svgs[Path(name).with_suffix(".svg").name] = svg_bytes(figure)
        plt.close(figure)
        section.figures.append((name, png, caption))
        self.logged.append((name, png, run_id))


def build_report(settings: Settings, *, model: str, compare_with: str | None = None,
                 out_dir: Path | None = None, min_arcs: int = 100) -> ReportResult:
    """Write `<out_dir>/<model>.html` (and its figures) from the database.

    `min_arcs`: relations with fewer arcs are left out of the syntax tables (the paper: 100).
    """
    from app.report import plots
    from app.report.html import render

    builder = _Builder(settings, model)
    b = builder

    def surface(section) -> None:
        run = b.run_id("surface")
        by_layer = b.query("surface_by_layer", run_id=run)
        grid = b.query("head_grid", run_id=run, metric="entropy")
        b.figure(section, "special_tokens.png", plots.special_tokens_by_layer(by_layer),
                 "Paper Fig. 2 (left): average attention to special tokens and neighbours, per layer.", run)
        b.figure(section, "entropy.png", plots.entropy_by_head(grid, by_layer),
                 "Paper Fig. 4: entropy of each head's attention, and of [CLS]'s, per layer.", run)
        section.tables += [("surface_by_layer", by_layer), ("surface_heads", b.query("surface_heads", run_id=run))]

    def gradients(section) -> None:
        run = b.run_id("gradients")
        by_layer = b.query("gradients_by_layer", run_id=run)
        objective = str(by_layer["objective"].iloc[0]) if len(by_layer) else "mlm"
        loss = "masked-LM loss" if objective == "mlm" else "contrastive loss (the sentence encoder's own objective)"
        b.figure(section, "gradients.png", plots.gradients_by_layer(by_layer),
                 f"Paper Fig. 2 (right): gradient magnitude of the {loss} w.r.t. attention, per target.", run)
        section.tables.append(("gradients_by_layer", by_layer))

    def syntax(section) -> None:
        run = b.run_id("syntax")
        for annotation in ("gold", "silver"):
            table = b.query("table1_relations", run_id=run, annotation=annotation, min_arcs=min_arcs)
            section.tables.append((f"table1_relations -p annotation={annotation}", table))
        grid = b.query("relation_head_grid", run_id=run, annotation="silver", min_arcs=min_arcs)
        if len(grid) == 0:
            grid = b.query("relation_head_grid", run_id=run, min_arcs=min_arcs)
        b.figure(section, "relation_heads.png", plots.relation_heatmap(grid),
                 "Accuracy of every head on every paper relation (best direction).", run)
        noop = b.query("noop_relation_heads", run_id=run, min_arcs=min_arcs)
        section.tables.append(("noop_relation_heads", noop))
        if len(noop):
            noop = noop.assign(special_applies=noop["sep_applies"] + noop["cls_applies"],
                               special_otherwise=noop["sep_otherwise"] + noop["cls_otherwise"])
            b.figure(section, "noop.png", plots.grouped_bars(noop, "relation", ["special_applies", "special_otherwise"],
                     "Best head per relation: attention to [CLS]+[SEP]", "avg. attention"),
                     "The no-op reading: does a relation's best head park attention on special tokens "
                     "when its relation does not apply?", run)

    def norms(section) -> None:
        table = b.query("norm_vs_weight", model=model)
        if len(table) == 0:
            raise RunNotFound("no weight + norm surface runs")
        section.tables.append(("norm_vs_weight", table))
        run = b.run_id("surface", weighting="norm")
        by_layer = b.query("surface_by_layer", run_id=run)
        b.figure(section, "special_tokens_norm.png", plots.special_tokens_by_layer(by_layer, norm=True),
                 "Paper Fig. 2 (left) on norm-based maps: share of ||alpha f(x)|| on special tokens and "
                 "neighbours, per layer.", run)
        try:
            syntax_run = b.run_id("syntax", weighting="norm")
        except RunNotFound:
            return
        table1 = b.query("table1_relations", run_id=syntax_run, annotation="gold", min_arcs=min_arcs)
        section.tables.append(("table1_relations -p weighting=norm", table1))

    def scorecard(section) -> None:
        from app.pipeline.claims import side_by_side
        from app.pipeline.query import run_query

        encoders = run_query(settings, None, sql="select name from encoders order by id")["name"].tolist()
        section.tables.append(("claims", side_by_side(settings, encoders, min_arcs=min_arcs)))

    def examples(section) -> None:
        run = b.run_id("examples")
        syntax_run = b.run_id("syntax")
        maps = b.query("example_maps", run_id=run)
        table1 = b.query("table1_relations", run_id=syntax_run, annotation="gold", min_arcs=min_arcs)
        picks = [(row.head, f"{row.relation} ({row.direction})") for row in table1.itertuples()
                 if isinstance(row.head, str) and row.relation != "all"][:4]
        words = maps[["query_unit", "query_token"]].drop_duplicates().rename(
            columns={"query_unit": "unit", "query_token": "token"})
        if picks and len(maps):
            b.figure(section, "example_heads.png", plots.example_heads(maps, words, picks),
                     "Paper Fig. 5 style: the best heads of some relations on one sentence "
                     "(line opacity = attention weight).", run)

    def clustering(section) -> None:
        run = b.run_id("clustering")
        clusters = b.query("head_clusters", run_id=run)
        b.figure(section, "head_clusters.png", plots.head_clusters(clusters),
                 "Paper Fig. 6: heads embedded by multidimensional scaling of their Jensen-Shannon "
                 "distances.", run)
        section.tables.append(("head_clusters", clusters.groupby("behaviour").size().reset_index(name="heads")))

    def coref(section) -> None:
        run = b.run_id("coref")
        table = b.query("table2_coref", run_id=run)
        section.tables.append(("table2_coref", table))
        b.figure(section, "coref.png", plots.grouped_bars(table, "method", ["all_types", "pronoun", "proper", "nominal"],
                 "Antecedent selection accuracy", "accuracy (%)"), "Paper Table 2 as bars.", run)

    def probes(section) -> None:
        from app.store.runs import latest_probe_test_corpus

        with session_scope(b.db) as session:
            test_corpus = latest_probe_test_corpus(session, model)
        table = b.query("table3_probes", model=model, random_model=f"{model}-random", test_corpus=test_corpus)
        if len(table) == 0:
            raise RunNotFound("no probes")
        section.tables.append(("table3_probes", table))
        b.figure(section, "probes.png", plots.grouped_bars(table, "probe", ["test", "paper"],
                 "Probing classifiers (UAS; structural: UUAS)", "score (%)"), "Paper Table 3 as bars.",
                 b.run_id("syntax"))

    def compare(section) -> None:
        assert compare_with is not None
        params = {"model_a": model, "model_b": compare_with, "corpus": _surface_corpus(b)}
        layers = b.query("compare_models", **params)
        heads = b.query("compare_heads", **params)
        if len(layers) == 0:
            raise RunNotFound(f"no surface runs of both {model} and {compare_with} on one corpus")
        b.figure(section, "compare.png", plots.compare_layers(layers, ["attn_cls", "attn_sep", "attn_prev", "entropy"],
                 model, compare_with), f"{model} vs {compare_with}, per layer at the same relative depth.",
                 b.run_id("surface"))
        section.tables += [("compare_heads", heads), ("compare_models", layers)]

    b.section("Claims scorecard", "Each finding of the paper as a check on every ingested encoder's latest "
              "runs: held / not held, the number behind it and its 95% interval; '-' where the run is missing "
              "(queries/claims.sql; headlens claims --model M).", scorecard, "")
    b.section("Surface patterns (paper §3)", "Where heads put their attention, on token-level maps of Wikipedia "
              "segments: special tokens, neighbours, punctuation, and how broad the distribution is.", surface,
              "No surface run: headlens analyze surface --model MODEL --corpus wiki-segments")
    b.section("Gradient importance (paper §3)", "How much the masked-LM loss changes with the attention to each "
              "kind of token.", gradients,
              "No gradients run: headlens analyze gradients --objective contrastive --corpus wiki-segments "
              "(or --objective mlm with an encoder that has its masked-LM head).")
    b.section("Norm-based attention (Kobayashi et al. 2020)", "The same statistics on maps of ||alpha_ij f(x_j)||: "
              "how much each token actually moves a head's output, not only its weight.", norms,
              "No norm-based runs: headlens analyze surface --weighting weight,norm --corpus wiki-segments")
    b.section("Heads as parsers (paper §4.2, Table 1)", "Each head predicts, for every word, the word it "
              "attends to most; scored against gold UD and silver Stanford-style dependencies.", syntax,
              "No syntax run: headlens analyze syntax --model MODEL --corpus ud-ewt-dev")
    b.section("Example attention maps (paper Fig. 5)", "The best heads of some relations on one sentence.",
              examples, "No examples run: headlens analyze examples --model MODEL --corpus ud-ewt-dev")
    b.section("Clusters of heads (paper §6)", "Heads that attend alike sit close together.", clustering,
              "No clustering run: headlens analyze clustering --model MODEL --corpus wiki-segments")
    b.section("Heads as coreference resolvers (paper §4.3, Table 2)", "Each head picks, for a mention, the earlier "
              "mention whose head word it attends to most.", coref,
              "No coref run: headlens analyze coref --model MODEL --corpus ontogum-dev")
    b.section("Probing classifiers (paper §5, Table 3)", "Classifiers over all heads' attention predict each "
              "word's syntactic head.", probes, "No probes: headlens probe attn_glove --model MODEL (see README)")
    if compare_with:
        b.section(f"{model} vs {compare_with}", "The same surface statistics for two encoders.", compare,
                  "Run the surface analysis of both models on the same corpus first.")

    out_dir = (out_dir or Path.cwd() / "reports").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{model}.html"
    intro = (f"Model <b>{model}</b>; database <code>{settings.db_url}</code>; MLflow <code>{settings.mlflow_uri}</code>. "
             "Layers and heads are 1-based (the paper's L-H names).")
    path.write_text(render(f"headlens report: {model}", intro, builder.sections))
    result = ReportResult(path, missing=[s.missing for s in builder.sections if s.missing])
    for name, png, _run in builder.logged:
        (out_dir / f"{model}-{name}").write_bytes(png)
        result.figures.append(out_dir / f"{model}-{name}")
    for name, svg in builder.svgs.items():  # vector copies, for papers and slides
        (out_dir / f"{model}-{name}").write_bytes(svg)
        result.figures.append(out_dir / f"{model}-{name}")
    _log_figures(settings, builder)
    return result


def _surface_corpus(builder: _Builder) -> str:
    from app.store.schema import Corpus, Run

    with session_scope(builder.db) as session:
        run = session.get_one(Run, builder.run_id("surface"))
        return session.get_one(Corpus, run.corpus_id).name


def _log_figures(settings: Settings, builder: _Builder) -> None:
    """Each figure becomes an artifact of the MLflow run of the analysis it shows."""
    from app.store.schema import Run
    from app.tracking import tracker_for

    if not builder.logged:
        return
    tracker = tracker_for(settings)
    with session_scope(builder.db) as session:
        mlflow_ids = {run_id: session.get_one(Run, run_id).mlflow_run_id for _, _, run_id in builder.logged}
    with tempfile.TemporaryDirectory() as scratch:
        for name, png, run_id in builder.logged:
            if mlflow_ids.get(run_id):
                file = Path(scratch) / name
                file.write_bytes(png)
                try:
                    tracker.log_artifact(mlflow_ids[run_id], file, "figures")
                except Exception as error:  # noqa: BLE001 - a missing MLflow run must not lose the report
                    raise AppError(f"could not log {name} to MLflow run {mlflow_ids[run_id]}: {error}") from error
