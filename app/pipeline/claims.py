"""Claims scorecard: the paper's findings checked against one encoder's runs.

The checks live in queries/claims.sql (one row per claim: held, the number, its interval,
the threshold); this module only picks the control model and puts several encoders side
by side for the report.
"""

from __future__ import annotations

from typing import Any

from app.config import Settings


def random_twin(model: str) -> str:
    """The random-init control of `model` (`minilm` -> `minilm-random`; a control is its own)."""
    return model if model.endswith("-random") else f"{model}-random"


def scorecard(settings: Settings, model: str, *, annotation: str = "gold", min_arcs: int = 100):
    """One row per claim for `model` (queries/claims.sql)."""
    from app.pipeline.query import run_query

    params: dict[str, Any] = {
        "model": model,
        "random_model": random_twin(model),
        "annotation": annotation,
        "min_arcs": min_arcs,
    }
    return run_query(settings, "claims", params=params)


def side_by_side(settings: Settings, models: list[str], **options: Any):
    """One row per claim, one column per model: 'held 21.7 [19.9, 23.5]', or '-' without runs."""
    import pandas as pd

    table: pd.DataFrame | None = None
    for model in models:
        card = scorecard(settings, model, **options)
        cells = [format_cell(row) for row in card.itertuples()]
        column = pd.DataFrame({"claim": card["claim"], "kind": card["kind"], model: cells})
        table = column if table is None else table.merge(column, on=["claim", "kind"], how="left")
    return table if table is not None else pd.DataFrame(columns=["claim", "kind"])


def _number(value: Any) -> str:
    return f"{float(value):.1f}" if value is not None and not pd_isna(value) else ""


def pd_isna(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def format_cell(row: Any) -> str:
    """'held 21.7 [19.9, 23.5]' / 'not held 8.5' / '-' (no run to check)."""
    if pd_isna(row.held):
        return "-"
    interval = f" [{_number(row.ci_low)}, {_number(row.ci_high)}]" if not pd_isna(row.ci_low) else ""
    value = f"{float(row.value):.2f}" if abs(float(row.value)) < 10 else _number(row.value)
    return f"{'held' if row.held else 'not held'} {value}{interval}"
