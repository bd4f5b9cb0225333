"""The built wheel works outside the checkout: queries/ and migrations/ travel inside it.

The wheel is built from a copy of the sources, installed (without dependencies) into a
fresh virtual environment in a temporary folder whose only link to this environment is a
.pth line naming its site-packages (so torch and friends need no install), and driven from
a working directory outside the repository: upgrade, ingest, analyze, named query.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from app.config import REPO_ROOT
from tests.conftest import FIXTURES

SOURCES = ("pyproject.toml", "setup.py", "README.md", "app", "queries", "migrations")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_runs_a_session_outside_the_repository(tmp_path: Path, tiny_bert: Path) -> None:
    source = tmp_path / "src"
    for name in SOURCES:
        origin = REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(origin, source / name)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HEADLENS_", "PYTHON", "VIRTUAL_ENV"))}  # fmt: skip
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)], tmp_path, env)  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("headlens-*.whl")

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    site = Path(
        subprocess.run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       capture_output=True, text=True, check=True).stdout.strip()
    )  # fmt: skip
    # The dependencies come from this environment's site-packages (appended after the venv's
    # own, so the wheel's `app` wins); pip too, used only to install the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python, headlens = str(venv / "bin" / "python"), str(venv / "bin" / "headlens")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
         str(wheel)], tmp_path, env)  # fmt: skip

    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(FIXTURES / "sentences.conllu", work / "sentences.conllu")
    env["HEADLENS_DATA"] = str(work / "data")
    where = run([python, "-c", "import app, app.queries as q, app.store.db as d; "
                 "print(app.__file__, q.QUERIES_DIR, d.MIGRATIONS_DIR, sep='\\n')"], work, env)  # fmt: skip
    for path in where.split():
        assert Path(path).is_relative_to(venv) and Path(path).exists(), path
    assert (Path(where.split()[1]) / "surface_by_layer.sql").is_file()

    base = [headlens, "--db", "results.duckdb", "--mlruns", "mlruns", "--cache-dir", "cache"]
    assert "schema at revision" in run([*base, "db", "upgrade"], work, env)
    assert "added" in run([*base, "ingest", "model", "tiny", "--path", str(tiny_bert)], work, env)
    ingest = [*base, "ingest", "corpus", "sentences", "--format", "conllu", "--path", "sentences.conllu"]
    assert "added (documents=" in run(ingest, work, env)
    analyzed = run([*base, "analyze", "surface", "examples", "--model", "tiny", "--corpus", "sentences"], work, env)
    assert "surface: run 1 finished (4 segments" in analyzed
    table = run([*base, "query", "surface_by_layer", "--format", "csv"], work, env).splitlines()
    assert table[0].startswith("layer,attn_prev,") and [row.split(",")[0] for row in table[1:]] == ["1", "2"]
    assert (work / "results.duckdb").is_file() and not (REPO_ROOT / "results.duckdb").exists()
    # The explorer's page template is package data too.
    explored = run([*base, "explore", "--model", "tiny", "--corpus", "sentences", "--out", "page.html"], work, env)
    assert explored.strip() == f"explorer: {work / 'page.html'}"
    assert '"tiny":{"n_layers":2,"n_heads":4' in (work / "page.html").read_text()
