"""`headlens reproduce`: the paper's analyses on the embedded defaults, end to end.

Each step is an idempotent pipeline call, so rerunning skips what is done and resumes what
was interrupted. `quick` shrinks every sample for a smoke test of the whole path.
"""

from __future__ import annotations

from collections.abc import Callable

from app import pipeline
from app.config import DEFAULT_MODEL, ExtractConfig, Settings
from app.report.tables import render
from app.store.db import upgrade

Echo = Callable[[str], None]


def _table(settings: Settings, echo: Echo, title: str, query: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
    echo(f"\n== {title}  (headlens query {query})")
    echo(render(pipeline.run_query(settings, query, **kwargs)))


def reproduce(
    settings: Settings, *, quick: bool = False, dtype: str = "float32", echo: Echo = print
) -> None:
    echo(f"database: {settings.db_url}")
    upgrade(settings.db_url)
    model = DEFAULT_MODEL
    result = pipeline.ingest_model(settings, model)
    echo(f"model {model}: {'added' if result.created else 'already stored'}")

    wiki = "wiki-segments-quick" if quick else "wiki-segments"
    n_segments = 40 if quick else 1000
    pipeline.ingest_corpus(
        settings, wiki, options={"source": "wiki-segments", "n_segments": n_segments}
    )
    echo(f"corpus {wiki}: {n_segments} Wikipedia paragraph pairs")

    config = ExtractConfig(dtype=dtype)  # type: ignore[arg-type]
    for summary in pipeline.analyze(
        settings, ["surface"], model=model, corpus=wiki, config=config, on_event=echo
    ):
        echo(
            f"{summary.analysis}: run {summary.run_id} ({summary.state}); skipped {summary.skipped or 'none'}"
        )
    _table(
        settings,
        echo,
        "Surface statistics per layer (paper Fig. 2, 4)",
        "surface_by_layer",
        model=model,
        corpus=wiki,
    )
    _table(
        settings,
        echo,
        "Heads with a clear surface pattern (paper §3)",
        "surface_heads",
        model=model,
        corpus=wiki,
    )

    # Paper §4.2 / Table 1: heads as parsers on UD English EWT dev, gold UD and silver SD-style.
    treebank = "ud-ewt-dev"
    pipeline.ingest_corpus(settings, treebank)
    pipeline.annotate(settings, treebank)
    syntax_config = ExtractConfig(
        dtype="float32", limit=200 if quick else None
    )  # argmax ties: keep fp32
    pipeline.analyze(
        settings, ["syntax"], model=model, corpus=treebank, config=syntax_config, on_event=echo
    )
    for annotation, label in (
        ("gold", "gold UD, mapped to the paper's relations"),
        ("silver", "silver spaCy, Stanford-style labels"),
    ):
        _table(
            settings,
            echo,
            f"Table 1: best head per relation on {treebank} ({label})",
            "table1_relations",
            model=model,
            corpus=treebank,
            params={"annotation": annotation},
        )

    # Paper §4.3 / Table 2: heads as coreference resolvers, documents cut to 128 pieces.
    coref_config = ExtractConfig(dtype="float32", overflow="truncate")
    for corpus_name, description in (
        ("ontogum-dev", "OntoGUM dev, OntoNotes scheme"),
        ("litbank", "LitBank"),
    ):
        pipeline.ingest_corpus(settings, corpus_name)
        pipeline.analyze(
            settings, ["coref"], model=model, corpus=corpus_name, config=coref_config, on_event=echo
        )
        _table(
            settings,
            echo,
            f"Table 2: antecedent selection on {description}",
            "table2_coref",
            model=model,
            corpus=corpus_name,
        )

    echo(f"\ndatabase: {settings.db_url}")
    echo(f"MLflow store: {settings.mlflow_uri} (headlens mlflow-ui)")
