"""The library: `from app import Lab`, its docstring examples (run here as doctests on the
tiny model), the CLI as a thin layer over it, and exports of named queries."""

from __future__ import annotations

import doctest
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import FIXTURES, fresh_mlflow_store

SENTENCES = FIXTURES / "sentences.conllu"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, _migrated_template: Path, _mlflow_template: Path):  # type: ignore[no-untyped-def]
    """A Lab with the tiny model, four sentences, and surface, syntax and examples runs."""
    from app import Lab

    root = tmp_path_factory.mktemp("lab")
    shutil.copy(_migrated_template, root / "prepared.duckdb")
    fresh_mlflow_store(root / "mlruns", _mlflow_template)  # (the module docstring's Lab makes its own)
    lab = Lab(
        db=root / "prepared.duckdb",
        data_dir=root / "data",
        mlruns=root / "mlruns",
        cache_dir=root / "cache",
    )
    lab.ingest_model("tiny", path=tiny_bert)
    lab.ingest_corpus("sentences", path=SENTENCES, format="conllu")
    lab.analyze("surface", "syntax", "examples", model="tiny", corpus="sentences")
    return lab


def cli_args(lab) -> list[str]:  # type: ignore[no-untyped-def]
    settings = lab.settings
    return ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir),
            "--cache-dir", str(settings.cache_dir)]  # fmt: skip


def test_docstring_examples_run_on_the_tiny_model(prepared, tiny_bert: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import app.lab
    import app.options

    globs = {"lab": prepared, "tiny_model": tiny_bert, "sentences": SENTENCES, "tmp": tmp_path}
    for module in (app.lab, app.options):
        result = doctest.testmod(
            module, extraglobs=globs, optionflags=doctest.NORMALIZE_WHITESPACE
        )
        assert result.failed == 0, f"{module.__name__}: {result.failed} failing example(s)"
        assert result.attempted >= (15 if module is app.lab else 2)


def test_import_app_is_light_and_lab_is_lazy() -> None:
    # `headlens --help` imports app.cli: neither it nor `import app` may load the Lab or
    # anything heavy; `app.Lab` loads on first use.
    code = (
        "import sys, app, app.cli; before = 'app.lab' in sys.modules; lab = app.Lab; "
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'pandas') if m in sys.modules]; "
        "print(before, lab.__module__, heavy)"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False app.lab []"


def test_the_cli_and_the_lab_give_the_same_rows(prepared) -> None:  # type: ignore[no-untyped-def]
    from app.cli import cli

    result = CliRunner().invoke(
        cli, [*cli_args(prepared), "query", "surface_by_layer", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    frame = prepared.query("surface_by_layer")
    assert [row["layer"] for row in rows] == frame["layer"].tolist() == [1, 2]
    assert [row["attn_cls"] for row in rows] == pytest.approx(frame["attn_cls"].tolist())


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_query_writes_csv_parquet_or_json_by_suffix(prepared, tmp_path: Path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from app.cli import cli

    out = tmp_path / f"entropy{suffix}"
    args = ["query", "head_grid", "-p", "metric=entropy", "-o", str(out)]
    result = CliRunner().invoke(cli, [*cli_args(prepared), *args])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"8 row(s) written to {out}"  # 2 layers x 4 heads
    reader = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".json": pd.read_json}[suffix]
    written = reader(out)
    expected = prepared.sql(
        "select layer + 1 as layer, head + 1 as head, value from head_metrics "
        "where metric = 'entropy' order by layer, head"
    )
    assert list(written.columns) == ["layer", "head", "label", "value"]
    assert written["label"].tolist() == [f"{layer}-{h}" for layer in (1, 2) for h in (1, 2, 3, 4)]
    assert written["value"].tolist() == pytest.approx(expected["value"].tolist())


def test_an_unknown_export_suffix_names_the_known_ones(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.cli import cli

    out = tmp_path / "rows.xlsx"
    result = CliRunner().invoke(cli, [*cli_args(prepared), "query", "runs", "-o", str(out)])
    assert result.exit_code == 1
    assert "end it in .csv, .parquet, .json" in result.output and not out.exists()
