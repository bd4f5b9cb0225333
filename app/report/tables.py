"""Render query results (pandas DataFrames) as terminal tables, Markdown, CSV or JSON."""

from __future__ import annotations

from typing import Literal

import pandas as pd

_NA = pd.NA

TableFormat = Literal["table", "markdown", "csv", "json"]


def _cell(value: object, digits: int) -> str:
    if value is None or value is _NA:
        return ""
    if isinstance(value, float):
        if value != value:  # NaN
            return ""
        return f"{value:.{digits}f}"
    return str(value)


def render(frame, fmt: TableFormat = "table", digits: int = 3) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return frame.to_json(orient="records", indent=1)
    headers = [str(column) for column in frame.columns]
    rows = [
        [_cell(value, digits) for value in row] for row in frame.itertuples(index=False, name=None)
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows if row[i]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows]
    if not rows:
        out.append("(no rows)")
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
