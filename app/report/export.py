"""Query results to files: CSV, Parquet or JSON, the format named by the file's suffix."""

from __future__ import annotations

from pathlib import Path

from app.errors import AppError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".json": "json"}


def write_frame(frame, path: str | Path) -> Path:
    """Write a DataFrame to `path`; JSON is a list of records (one object per row).

    Nullable columns keep their nulls: Parquet stores them as nulls, CSV as empty cells,
    JSON as null.
    """
    path = Path(path).expanduser()
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise AppError(f"cannot tell the format of {path.name}: end it in {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "csv":
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_json(path, orient="records", indent=1)
    return path
