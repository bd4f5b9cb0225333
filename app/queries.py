"""Named SQL queries: `queries/<name>.sql`, each documented by its header.

Header format (tested, and shown by `headlens query --list`):

    -- <name>: <one-line purpose>
    -- analysis: <analysis whose :run_id the query reads>      (optional)
    -- params:
    --   <param> [= <default>]  <description>
    -- columns:
    --   <column>  <description>

A missing `:run_id` defaults to the latest finished run of the header's analysis (narrowed
by --model / --corpus, and by `-p weighting=norm` / `-p objective=contrastive`, which pick
norm-based or contrastive-gradient runs); other missing parameters take their header default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from app._resources import folder
from app.errors import QueryError, UnknownName

QUERIES_DIR = folder("queries")
_ITEM = re.compile(r"^--\s{2,}(\w+)(?:\s*=\s*(\S+))?\s*(.*)$")


@dataclass(frozen=True)
class Query:
    name: str
    purpose: str
    sql: str
    analysis: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)


def _literal(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value.strip("'\"")


def parse(path: Path) -> Query:
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith(f"-- {path.stem}:"):
        raise QueryError(f"{path}: the first line must be '-- {path.stem}: <purpose>'")
    purpose = lines[0].split(":", 1)[1].strip()
    analysis = None
    params: dict[str, str] = {}
    defaults: dict[str, Any] = {}
    columns: dict[str, str] = {}
    section: dict[str, str] | None = None
    for line in lines[1:]:
        if not line.startswith("--"):
            break
        if line.startswith("-- analysis:"):
            analysis = line.split(":", 1)[1].strip()
        elif line.strip() == "-- params:":
            section = params
        elif line.strip() == "-- columns:":
            section = columns
        elif (match := _ITEM.match(line)) and section is not None:
            name, default, description = match.groups()
            section[name] = description
            if default is not None and section is params:
                defaults[name] = _literal(default)
    return Query(path.stem, purpose, path.read_text(), analysis, params, defaults, columns)


@cache
def catalogue() -> dict[str, Query]:
    return {path.stem: parse(path) for path in sorted(QUERIES_DIR.glob("*.sql"))}


def load(name: str) -> Query:
    queries = catalogue()
    if name not in queries:
        raise UnknownName(
            "query", name, list(queries), hint="`headlens query --list` describes each"
        )
    return queries[name]


def bind_names(sql: str) -> set[str]:
    return set(text(sql).compile().params)


def check_params(query: Query, given: dict[str, Any]) -> None:
    """Refuse a parameter the query does not take (a typo would otherwise be ignored)."""
    # model / corpus narrow the default run (`--model`, `Lab.query(model=...)`).
    known = set(query.params) | bind_names(query.sql) | {"model", "corpus"}
    unknown = sorted(set(given) - known)
    if unknown:
        import difflib

        guesses = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        guess = f" (did you mean -p {guesses[0]}=...?)" if guesses else ""
        raise QueryError(
            f"query {query.name!r} has no parameter {unknown[0]!r}{guess}; it takes: "
            f"{', '.join(sorted(known)) or 'none'}"
        )


def default_params(
    engine: Engine, query: Query, given: dict[str, Any], *, model: str | None, corpus: str | None
) -> dict[str, Any]:
    from app.store.db import session_scope
    from app.store.runs import latest_run

    params = {**query.defaults, **given}
    needed = bind_names(query.sql)
    if "run_id" in needed and "run_id" not in params:
        if query.analysis is None:
            raise QueryError(f"query {query.name!r} needs -p run_id=N")
        with session_scope(engine) as session:
            params["run_id"] = latest_run(
                session,
                query.analysis,
                encoder=model,
                corpus=corpus,
                weighting=str(params.get("weighting", "weight")),
                objective=params.get("objective"),
            ).id
    missing = needed - set(params)
    if missing:
        raise QueryError(
            f"query {query.name!r} needs {', '.join(f'-p {m}=...' for m in sorted(missing))}"
        )
    return {key: value for key, value in params.items() if key in needed}


def execute(engine: Engine, sql: str, params: dict[str, Any], *, commit: bool = False):
    """Run SQL and return a pandas DataFrame (`commit=True`: keep what the SQL changed)."""
    import pandas as pd

    try:
        with engine.begin() if commit else engine.connect() as connection:
            result = connection.execute(text(sql), params)
            if not result.returns_rows:
                return pd.DataFrame({"rows affected": [result.rowcount]})
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            # Nullable integers stay integers (an int column with a NULL would become float).
            return frame.convert_dtypes(convert_string=False, convert_boolean=False)
    except Exception as error:  # noqa: BLE001 - any database error becomes one line
        message = str(getattr(error, "orig", error)).strip().splitlines()[0]
        if any(marker in message for marker in _READ_ONLY_MARKERS):
            raise QueryError(
                f"query refused: queries are read-only and cannot touch files ({message}); "
                "to change the database by hand use `headlens query --sql ... --read-write`"
            ) from error
        raise QueryError(f"query failed: {message}") from error


_READ_ONLY_MARKERS = (
    "cannot insert multiple commands into a prepared statement",
    "read-only",
    "read only",
    "readonly",
    "query_only",
    "file system operations are disabled",
    "Cannot change",
    "configuration has been locked",
)
