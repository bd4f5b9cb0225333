"""The only writer of bulk rows: column arrays -> a model-defined table.

One entry point, one path per backend, all inside the caller's SQLAlchemy transaction:
- DuckDB: the native Arrow path (register an Arrow table, then `INSERT ... SELECT`),
  ~100x faster than ORM inserts (shared/STACK.md §2);
- PostgreSQL: `COPY ... FROM STDIN (FORMAT csv)` through psycopg's copy API, fed by
  Arrow's C++ CSV writer (no Python loop per row); sequence ids are drawn in one query;
- anything else (SQLite): a Core executemany with the same result.
Either way the column list comes from the models, so the schema is defined once.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import Connection, Sequence, Table, column, func, select
from sqlalchemy import table as table_clause
from sqlalchemy.orm import Session

from app.store.schema import Base

if TYPE_CHECKING:
    import duckdb
    from sqlalchemy import ColumnElement

_names = itertools.count()


def _as_arrow(columns: Mapping[str, np.ndarray]):
    import pyarrow as pa

    return pa.table({name: _arrow_array(values) for name, values in columns.items()})


def _arrow_array(values: np.ndarray | list[Any]):
    """One column as an Arrow array, built from its buffers where the layout allows.

    `pa.array` imports pandas on first use (to check for pandas inputs), about 0.4 s that
    every `headlens analyze` paid at its first write; numbers, booleans (masked = NULL) and text are
    handed to Arrow as buffers instead (`pa.Array.from_buffers`), without a copy for numbers.
    Anything else (dates, mixed objects) goes through `pa.array`.
    """
    import pyarrow as pa

    mask = np.ma.getmaskarray(values) if isinstance(values, np.ma.MaskedArray) else None
    array = np.ascontiguousarray(values.data if isinstance(values, np.ma.MaskedArray) else values)
    if array.dtype.kind == "U":  # a list of str given as is
        array = array.astype(object)
    if array.dtype.kind in "iuf":
        arrow_type = pa.from_numpy_dtype(array.dtype)
        return pa.Array.from_buffers(arrow_type, len(array), [_validity(mask), pa.py_buffer(array)])
    if array.dtype == bool:
        bits = pa.py_buffer(np.packbits(array, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), len(array), [_validity(mask), bits])
    if array.dtype == object and mask is None and all(v is None or type(v) is str for v in array):
        missing = np.fromiter((v is None for v in array), dtype=bool, count=len(array))
        encoded = [b"" if v is None else v.encode() for v in array]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(text) for text in encoded], out=offsets[1:])
        buffers = [_validity(missing), pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
        return pa.Array.from_buffers(pa.large_string(), len(encoded), buffers)
    if mask is not None:
        return pa.array(array, mask=mask)
    return pa.array(list(array) if array.dtype == object else array, from_pandas=True)


def _validity(missing: np.ndarray | None):
    """Arrow's validity bitmap (1 = present, least significant bit first), or None."""
    import pyarrow as pa

    if missing is None or not missing.any():
        return None
    return pa.py_buffer(np.packbits(~missing, bitorder="little"))


def _sequence_of(table_name: str) -> Sequence | None:
    id_column = Base.metadata.tables[table_name].c.get("id")
    if id_column is None or id_column.default is None:
        return None
    return id_column.default if isinstance(id_column.default, Sequence) else None


def _in_append_order(keys: tuple[str, ...], columns: dict[str, Any]) -> dict[str, Any]:
    """Rows sorted by the table's `append_order` (schema.py), so that each batch lands
    clustered: DuckDB's zone maps then prune and its columns compress (runs of equal
    segment ids and word indices)."""
    if not keys or not all(key in columns for key in keys):
        return columns
    order = _composite_order([np.asarray(columns[key]) for key in keys])
    if order is None:
        order = np.lexsort([np.asarray(columns[key]) for key in reversed(keys)])
    if np.all(order[1:] > order[:-1]):
        return columns
    return {
        name: values[order] if isinstance(values, np.ndarray) else [values[i] for i in order]
        for name, values in columns.items()
    }


def _at_stored_precision(table: Table, columns: dict[str, Any]) -> dict[str, Any]:
    """Float columns that the schema stores to a number of decimals (`info["decimals"]`),
    rounded to them (in float64, then back to the column's own dtype), on every backend."""
    rounded = dict(columns)
    for name, values in columns.items():
        decimals = table.c[name].info.get("decimals")
        if decimals is not None and isinstance(values, np.ndarray) and values.dtype.kind == "f":
            rounded[name] = np.round(values.astype(np.float64), decimals).astype(values.dtype)
    return rounded


def _composite_order(keys: list[np.ndarray]) -> np.ndarray | None:
    """The lexsort order of integer keys, from one int64 key per row (mixed radix) and a
    stable argsort: the same permutation as np.lexsort, about 6x faster on a chunk of
    head predictions (rows come in runs, which the stable sort exploits). None when a key is
    not an integer array or the ranges do not fit 62 bits."""
    if not all(key.dtype.kind in "iu" and key.ndim == 1 and len(key) for key in keys):
        return None
    spans = [(int(key.min()), int(key.max()) - int(key.min()) + 1) for key in keys]
    if np.prod([float(span) for _, span in spans]) >= 2.0**62:
        return None
    composite = np.zeros(len(keys[0]), dtype=np.int64)
    for key, (low, span) in zip(keys, spans):
        composite *= span
        composite += key.astype(np.int64) - low
    return np.argsort(composite, kind="stable")


def insert_rows(
    connection: Connection | Session,
    table_name: str,
    columns: Mapping[str, np.ndarray | list[Any]],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """Insert equal-length columns (plus constant columns) into `table_name`.

    Nullable numeric columns come as numpy masked arrays (masked = NULL), nullable text as
    object arrays holding None. A table with a sequence-backed `id` gets fresh ids when
    `columns` has none.
    """
    if isinstance(connection, Session):
        connection = connection.connection()
    columns = dict(columns)
    n_rows = len(next(iter(columns.values()))) if columns else 0
    if n_rows == 0:
        return 0
    for name, value in (constants or {}).items():
        columns[name] = np.full(n_rows, value, dtype=object if isinstance(value, str) else None)
    table = Base.metadata.tables[table_name]
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise KeyError(f"{table_name} has no column(s) {sorted(unknown)}")
    sequence = _sequence_of(table_name) if "id" not in columns else None
    columns = _in_append_order(table.info.get("append_order", ()), columns)
    columns = _at_stored_precision(table, columns)

    if connection.dialect.name == "duckdb":
        source_name = f"headlens_rows_{next(_names)}"
        # duckdb-engine's wrapper forwards to a DuckDBPyConnection (SQLAlchemy types it generically).
        raw = cast("duckdb.DuckDBPyConnection", connection.connection.dbapi_connection)
        raw.register(source_name, _as_arrow(columns))
        try:
            source = table_clause(source_name, *(column(name) for name in columns))
            selected: list[ColumnElement[Any]] = [source.c[name] for name in columns]
            target = list(columns)
            if sequence is not None:
                selected.insert(0, func.nextval(sequence.name))
                target.insert(0, "id")
            connection.execute(table.insert().from_select(target, select(*selected)))
        except BaseException:
            # An aborted transaction refuses even UNREGISTER; the error that matters is ours.
            with contextlib.suppress(Exception):
                raw.unregister(source_name)
            raise
        raw.unregister(source_name)
    elif connection.dialect.name == "postgresql":
        _copy_rows(connection, table_name, columns, sequence, n_rows)
    else:
        names = list(columns)
        # MaskedArray.tolist() turns masked entries into None.
        values = [
            columns[name].tolist() if isinstance(columns[name], np.ndarray) else list(columns[name])
            for name in names
        ]
        connection.execute(table.insert(), [dict(zip(names, row)) for row in zip(*values)])
    return n_rows


def _copy_rows(
    connection: Connection,
    table_name: str,
    columns: dict[str, Any],
    sequence: Sequence | None,
    n_rows: int,
) -> None:
    """PostgreSQL COPY in CSV: unquoted empty fields are NULL, quoted ones empty strings,
    which is exactly how Arrow's CSV writer renders nulls and empty strings."""
    import pyarrow.csv as arrow_csv

    if sequence is not None:
        ids = connection.exec_driver_sql(
            f"SELECT nextval('{sequence.name}') FROM generate_series(1, {int(n_rows)})"
        ).scalars()
        columns = {"id": np.fromiter(ids, dtype=np.int64, count=n_rows), **columns}
    sink = io.BytesIO()
    arrow_csv.write_csv(
        _as_arrow(columns), sink, arrow_csv.WriteOptions(include_header=False, batch_size=65536)
    )
    names = ", ".join(f'"{name}"' for name in columns)
    raw = connection.connection.dbapi_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        with cursor.copy(f'COPY "{table_name}" ({names}) FROM STDIN (FORMAT csv)') as copy:
            copy.write(sink.getbuffer())
