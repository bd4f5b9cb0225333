"""The attention explorer: one self-contained HTML page over the database's results.

The page carries its data as inline JSON (example sentences' word-level maps of every head,
each head's surface statistics, each head's accuracy on each paper relation) and its code
as inline JavaScript (explorer.html beside this file): no server, no CDN, so it opens from
a file anywhere. Everything comes from named queries (example_maps, head_surface,
relation_head_grid), the same numbers the report and `headlens query` show.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import AppError, RunNotFound

# Attention weights are kept to 3 decimals: enough to draw, and the page stays small (1.0 MB
# for MiniLM, 6 x 12, and its random-init twin on three UD EWT sentences; see README).
DIGITS = 3
# Lines for weights below this are not drawn (as bertviz: they would only add grey).
LINE_MIN = 0.02
# A relation's best heads are highlighted on the layer x head grid: this many per model.
TOP_HEADS = 3
MAX_EXAMPLES = 10


def _latest(
    settings: Settings, analysis: str, model: str, corpus: str, *, any_corpus: bool = True
) -> int | None:
    """The latest finished run of `analysis` for `model` on `corpus`; with `any_corpus`,
    else on any corpus (surface statistics of Wikipedia serve sentences of a treebank)."""
    from app.pipeline.common import open_db
    from app.store.db import session_scope
    from app.store.runs import latest_run

    with session_scope(open_db(settings)) as session:
        for scope in (corpus, None) if any_corpus else (corpus,):
            try:
                return latest_run(session, analysis, encoder=model, corpus=scope).id
            except RunNotFound:
                continue
    return None


def _examples(settings: Settings, model: str, corpus: str) -> list[dict[str, Any]]:
    from app.pipeline import run_query

    run_id = _latest(settings, "examples", model, corpus, any_corpus=False)
    if run_id is None:
        raise AppError(
            f"no examples run of {model} on {corpus}: run "
            f"`headlens analyze examples --model {model} --corpus {corpus}` first"
        )
    examples = []
    for number in range(1, MAX_EXAMPLES + 1):
        rows = run_query(settings, "example_maps", params={"run_id": run_id, "example": number})
        if len(rows) == 0:
            break
        tokens = (
            rows[["query_unit", "query_token"]]
            .drop_duplicates()
            .sort_values("query_unit")["query_token"]
            .tolist()
        )
        n = len(tokens)
        n_layers, n_heads = int(rows["layer"].max()), int(rows["head"].max())
        maps = [[[0.0] * (n * n) for _ in range(n_heads)] for _ in range(n_layers)]
        for layer, head, query, key, weight in zip(
            rows["layer"], rows["head"], rows["query_unit"], rows["key_unit"], rows["weight"]
        ):
            maps[layer - 1][head - 1][query * n + key] = round(float(weight), DIGITS)
        examples.append(
            {"segment_id": int(rows["segment_id"].iloc[0]), "tokens": tokens, "maps": maps}
        )
    return examples


def _metrics(settings: Settings, model: str, corpus: str) -> dict[str, dict[str, float]]:
    from app.pipeline import run_query

    run_id = _latest(settings, "surface", model, corpus)
    if run_id is None:
        return {}
    rows = run_query(settings, "head_surface", params={"run_id": run_id})
    metrics: dict[str, dict[str, float]] = {}
    for label, metric, value in zip(rows["label"], rows["metric"], rows["value"]):
        metrics.setdefault(label, {})[metric] = round(float(value), 4)
    return metrics


def _relations(
    settings: Settings, model: str, corpus: str, min_arcs: int
) -> dict[str, dict[str, list[Any]]]:
    from app.pipeline import run_query

    run_id = _latest(settings, "syntax", model, corpus)
    if run_id is None:
        return {}
    rows = run_query(
        settings, "relation_head_grid", params={"run_id": run_id, "min_arcs": min_arcs}
    )
    relations: dict[str, dict[str, list[Any]]] = {}
    for relation, label, accuracy, direction in zip(
        rows["relation"], rows["label"], rows["accuracy"], rows["direction"]
    ):
        relations.setdefault(relation, {})[label] = [round(float(accuracy), 1), direction]
    return relations


def explorer_data(
    settings: Settings, models: list[str], corpus: str, *, min_arcs: int = 100
) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict (one entry per model)."""
    from app.pipeline import run_query

    payload: dict[str, Any] = {
        "corpus": corpus,
        "line_min": LINE_MIN,
        "top_heads": TOP_HEADS,
        "models": {},
    }
    for model in models:
        shape = run_query(
            settings,
            None,
            sql="select n_layers, n_heads from encoders where name = :name",
            params={"name": model},
        )
        if len(shape) == 0:
            raise AppError(f"unknown model {model!r}: run `headlens ingest model {model}` first")
        payload["models"][model] = {
            "n_layers": int(shape["n_layers"].iloc[0]),
            "n_heads": int(shape["n_heads"].iloc[0]),
            "examples": _examples(settings, model, corpus),
            "metrics": _metrics(settings, model, corpus),
            "relations": _relations(settings, model, corpus, min_arcs),
        }
    return payload


def render_page(payload: dict[str, Any]) -> str:
    """The template with the data inlined (`</` escaped so no string ends the script)."""
    template = (resources.files("app.report") / "explorer.html").read_text(encoding="utf-8")
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return template.replace("/*DATA*/null", data)


def build_explorer(
    settings: Settings,
    *,
    model: str,
    corpus: str,
    compare_with: str | None = None,
    out: Path | None = None,
    min_arcs: int = 100,
) -> Path:
    """Write the explorer page for `model` (and `compare_with`) on `corpus`'s examples.

    `min_arcs`: relations with fewer arcs are left out (the paper's 100, as the report).
    """
    models = [model] + ([compare_with] if compare_with and compare_with != model else [])
    payload = explorer_data(settings, models, corpus, min_arcs=min_arcs)
    path = (out or Path.cwd() / "reports" / f"{model}-{corpus}-explorer.html").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(payload), encoding="utf-8")
    return path
