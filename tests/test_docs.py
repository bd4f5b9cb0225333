"""The docs are tested too: README commands, CI command, query headers vs real columns."""

from __future__ import annotations

import pytest

from app import queries
from app.config import REPO_ROOT
from tests.test_cli import all_commands

README = (REPO_ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_is_in_the_readme(path: tuple[str, ...]) -> None:
    assert f"headlens {' '.join(path)}" in README


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    commands = [
        line.strip()
        for line in ci
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert commands == ["./dev.sh test"]
    assert "./dev.sh test" in README and "./dev.sh reproduce" in README


@pytest.mark.parametrize("name", sorted(queries.catalogue()))
def test_every_query_has_a_complete_header(name: str) -> None:
    query = queries.catalogue()[name]
    assert query.purpose
    assert query.columns, f"{name}: no '-- columns:' section"
    needed = queries.bind_names(query.sql)
    assert needed <= set(query.params), f"{name}: undocumented params {needed - set(query.params)}"
    if "run_id" in needed:
        assert query.analysis, f"{name}: :run_id without '-- analysis:'"
    assert "final" in query.sql, f"{name}: end the CTE chain in 'final'"


@pytest.mark.parametrize("name", sorted(queries.catalogue()))
def test_documented_columns_are_the_real_columns(populated, name: str) -> None:  # type: ignore[no-untyped-def]
    from app.pipeline import run_query

    # Queries whose defaults name the real defaults (minilm, ud-ewt-test) get the tiny ones.
    tiny = {"model": "tiny", "model_a": "tiny", "model_b": "tiny-random", "random_model": "tiny-random",
            "corpus": "sentences", "test_corpus": "sentences", "min_arcs": 1, "min_words": 1}
    params = {key: value for key, value in tiny.items() if key in queries.catalogue()[name].params}
    frame = run_query(populated, name, params=params)
    assert list(frame.columns) == list(queries.catalogue()[name].columns)
    assert len(frame) > 0, f"{name} returned no rows on the populated database"


def test_analyze_help_lists_every_analysis() -> None:
    from click.testing import CliRunner

    from app.analysis.registry import ANALYSES
    from app.cli import cli

    help_text = CliRunner().invoke(cli, ["analyze", "--help"]).output
    for name in ANALYSES:
        assert f"  {name} " in help_text, name
