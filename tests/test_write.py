"""insert_rows, the one bulk writer: the same rows read back on every backend (DuckDB Arrow,
PostgreSQL COPY, SQLite executemany), NULLs and awkward text included."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from app.store.db import make_engine, session_scope, upgrade
from app.store.schema import Corpus
from app.store.write import insert_rows

NOTES = np.array([None, "", 'say "hi", then go', "two\nlines\ttab"], dtype=object)


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"{request.param}:///{tmp_path / ('db.' + request.param)}"
    upgrade(url)
    return url


def test_rows_round_trip_with_nulls_quotes_and_newlines(url: str) -> None:
    engine = make_engine(url)
    with session_scope(engine) as session:
        written = insert_rows(
            session,
            "relation_map",
            {"label": np.array(["a", "b", "c", "d"], dtype=object), "note": NOTES},
            constants={"scheme": "test", "relation": "rel"},
        )
    assert written == 4
    with engine.connect() as connection:
        rows = connection.execute(
            text("select label, relation, note from relation_map where scheme = 'test' order by label")
        ).all()
    assert [tuple(row) for row in rows] == [
        ("a", "rel", None),
        ("b", "rel", ""),
        ("c", "rel", 'say "hi", then go'),
        ("d", "rel", "two\nlines\ttab"),
    ]


def test_sequence_ids_are_drawn_for_bulk_rows(url: str) -> None:
    engine = make_engine(url)
    with session_scope(engine) as session:
        corpus = Corpus(name="c", format="text", source="-", sha256="0" * 64, n_documents=3,
                        n_segments=0, n_words=0, config_json="{}", dropped_json="{}",
                        created_at=datetime(2026, 1, 1))
        session.add(corpus)
        session.flush()
        insert_rows(session, "documents", {"doc_index": np.arange(3), "name": ["x", "y", "z"]},
                    constants={"corpus_id": corpus.id})
    with engine.connect() as connection:
        ids = connection.execute(text("select id, doc_index from documents order by doc_index")).all()
    assert len({row[0] for row in ids}) == 3 and [row[1] for row in ids] == [0, 1, 2]


def test_arrow_columns_match_pyarrow_own_conversion_without_importing_pandas(tmp_path: Path) -> None:
    """The buffers-built columns hold what `pa.array` would (NULLs, UTF-8, strided views,
    booleans), and building them leaves pandas unimported (`pa.array` imports it)."""
    script = tmp_path / "columns.py"
    script.write_text(
        "import sys\n"
        "import numpy as np\n"
        "from app.store.write import _as_arrow\n"
        "columns = {\n"
        "    'small': np.array([-3, 0, 7], dtype=np.int16),\n"
        "    'masked': np.ma.masked_array(np.array([1, 2, 3], dtype=np.int32), mask=[False, True, False]),\n"
        "    'weight': np.array([0.25, -1.5, 3e-8], dtype=np.float32),\n"
        "    'strided': np.arange(6, dtype=np.int64)[::2],\n"
        "    'flag': np.array([True, False, True]),\n"
        "    'text': np.array(['zé', None, ''], dtype=object),\n"
        "    'listed': ['a', 'bb', 'c'],\n"
        "}\n"
        "table = _as_arrow(columns)\n"
        "assert 'pandas' not in sys.modules\n"
        "print(table.to_pydict())\n"
    )
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=root,
                            env={"PYTHONPATH": str(root)}, check=True)
    assert eval(result.stdout) == {  # noqa: S307 - our own script's printed dict
        "small": [-3, 0, 7],
        "masked": [1, None, 3],
        "weight": [0.25, -1.5, float(np.float32(3e-8))],
        "strided": [0, 2, 4],
        "flag": [True, False, True],
        "text": ["zé", None, ""],
        "listed": ["a", "bb", "c"],
    }


def test_special_token_weights_are_stored_to_six_decimals(url: str) -> None:
    """head_predictions keeps cls/sep weights to 6 decimals (schema info), rounded to the
    nearest, on every backend."""
    engine = make_engine(url)
    weights = np.array([0.12345678, 0.99999951, 0.0000004, 0.0625], dtype=np.float32)
    with session_scope(engine) as session:
        insert_rows(
            session,
            "head_predictions",
            {
                "segment_id": np.full(4, 7, dtype=np.int32),
                "word_index": np.arange(4, dtype=np.int16),
                "layer": np.zeros(4, dtype=np.int16),
                "head": np.zeros(4, dtype=np.int16),
                "cls_weight": weights,
                "sep_weight": weights[::-1].copy(),
            },
            constants={"run_id": 1},
        )
    with engine.connect() as connection:
        stored = connection.execute(
            text("select cls_weight, sep_weight from head_predictions order by word_index")
        ).all()
    expected = np.array([0.123457, 1.0, 0.0, 0.0625], dtype=np.float32)
    assert [row[0] for row in stored] == pytest.approx(expected.tolist(), abs=1e-9)
    assert [row[1] for row in stored] == pytest.approx(expected[::-1].tolist(), abs=1e-9)
