"""Reference data shipped as CSV (app/data/): relation mapping, the paper's Tables 1-3.

`headlens db upgrade` re-seeds these tables from the files every time, so editing a CSV
and upgrading is all it takes; user data is never touched.
"""

from __future__ import annotations

import csv
from importlib import resources

from sqlalchemy import Engine, delete, insert

from app.store.schema import Base, PaperCoref, PaperProbe, PaperRelation, RelationMap

DATA_DIR = resources.files("app") / "data"  # package data, checkout or wheel


def _rows(model: type[Base], name: str) -> list[dict[str, object]]:
    """CSV rows with values cast to the model's column types (empty cell -> NULL)."""
    columns = model.__table__.c

    def cast(key: str, value: str) -> object:
        if value == "":
            return None
        python_type = columns[key].type.python_type
        return python_type(value) if python_type in (int, float) else value

    with (DATA_DIR / name).open(newline="", encoding="utf-8") as handle:  # type: ignore[call-overload]
        return [
            {key: cast(key, value) for key, value in row.items()} for row in csv.DictReader(handle)
        ]


def seed_reference_data(engine: Engine) -> None:
    with engine.begin() as connection:
        for model, file in (
            (RelationMap, "relation_map.csv"),
            (PaperRelation, "paper_table1.csv"),
            (PaperCoref, "paper_table2.csv"),
            (PaperProbe, "paper_table3.csv"),
        ):
            connection.execute(delete(model))
            connection.execute(insert(model), _rows(model, file))
