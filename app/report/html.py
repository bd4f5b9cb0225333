"""A self-contained HTML report: sections of text, tables (from queries) and figures (PNG
embedded as data URIs), so the file can be mailed or opened anywhere."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
p.query { font-family: monospace; font-size: 0.8em; color: #777; }
.missing { color: #a33; }
"""


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def svg_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return buffer.getvalue()


@dataclass
class Section:
    title: str
    text: str
    figures: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, png, caption)
    tables: list[tuple[str, object]] = field(default_factory=list)  # (query name, DataFrame)
    missing: str | None = None  # why the section has no results, with the command to run


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    try:
        import pandas as pd

        if value is pd.NA:
            return ""
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    return html.escape(str(value))


def table_html(frame) -> str:
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in frame.columns)
    rows = []
    for row in frame.itertuples(index=False, name=None):
        cells = "".join(
            f'<td class="text">{_cell(v)}</td>' if isinstance(v, str) else f"<td>{_cell(v)}</td>" for v in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render(title: str, intro: str, sections: list[Section]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{intro}</p>"]
    for number, section in enumerate(sections, start=1):
        parts.append(f"<h2 id='s{number}'>{number}. {html.escape(section.title)}</h2><p>{section.text}</p>")
        if section.missing:
            parts.append(f"<p class='missing'>{html.escape(section.missing)}</p>")
        for name, png, caption in section.figures:
            data = base64.b64encode(png).decode()
            parts.append(f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        for query, frame in section.tables:
            parts.append(f"<p class='query'>headlens query {html.escape(query)}</p>{table_html(frame)}")
    parts.append("</body></html>")
    return "\n".join(parts)
