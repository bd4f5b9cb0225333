"""The command line: help everywhere, one-line errors, a fast --help, an end-to-end session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from app.cli import cli


def all_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        path = prefix + (name,)
        found.append(path)
        if isinstance(command, click.Group):
            found += all_commands(command, path)
    return found


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_explains_itself(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    assert command.help and len(command.help.strip()) > 20
    if not isinstance(command, click.Group):
        assert "Example" in command.help, f"{' '.join(path)} has no Example in its help"


def test_help_does_not_import_torch_or_mlflow() -> None:
    code = "import sys; from app.cli import cli; print(any(m in sys.modules for m in ('torch', 'mlflow', 'transformers')))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "False"


def run(settings, *args: str) -> click.testing.Result:  # type: ignore[no-untyped-def]
    base = [
        "--db",
        settings.db_url,
        "--mlruns",
        str(settings.mlruns_dir),
        "--cache-dir",
        str(settings.cache_dir),
    ]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_errors_are_one_line_and_name_the_fix(settings) -> None:  # type: ignore[no-untyped-def]
    result = run(settings, "analyze", "surface", "--model", "nope", "--corpus", "nada")
    assert result.exit_code == 1
    assert result.output.startswith("Error: unknown model 'nope'")
    assert "headlens ingest model" in result.output
    assert result.output.count("\n") == 1
    result = run(settings, "query", "no_such_query")
    assert (
        "unknown query 'no_such_query'; known:" in result.output
        and "surface_by_layer" in result.output
    )


def test_a_session_through_the_cli(settings, tiny_bert: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "two.txt"
    corpus.write_text("One sentence here .\nAnother , with a comma .\tAnd a second part .\n")
    assert "added" in run(settings, "ingest", "model", "tiny", "--path", str(tiny_bert)).output
    assert (
        "added"
        in run(
            settings, "ingest", "corpus", "two", "--format", "text", "--path", str(corpus)
        ).output
    )
    result = run(settings, "analyze", "surface", "--model", "tiny", "--corpus", "two")
    assert result.exit_code == 0 and "surface: run 1 finished (2 segments" in result.output
    table = run(settings, "query", "surface_by_layer", "--format", "csv").output.splitlines()
    assert table[0].startswith("layer,attn_prev,") and len(table) == 3
    adhoc = run(
        settings,
        "query",
        "--sql",
        "select count(*) as n from head_metrics where run_id = :r",
        "-p",
        "r=1",
    )
    assert adhoc.output.split()[-1] == str(2 * 4 * 11)
    listing = run(settings, "runs").output
    assert "surface" in listing and "done" in listing
    # Running it again is a no-op with a message, not an error.
    again = run(settings, "analyze", "surface", "--model", "tiny", "--corpus", "two")
    assert again.exit_code == 0 and "already finished" in again.output


def test_mlflow_ui_serves_this_projects_store_on_localhost(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    launched: list[list[str]] = []
    monkeypatch.setattr("app.cli.serve_until_stopped", lambda command, env: launched.append(command) or 0)
    result = run(settings, "mlflow-ui", "--port", "5123")
    assert result.exit_code == 0 and "http://127.0.0.1:5123" in result.output
    (command,) = launched
    assert command[command.index("--backend-store-uri") + 1] == settings.mlflow_uri
    assert command[command.index("--host") + 1] == "127.0.0.1"


def test_datasets_list_shows_what_is_verified_locally(settings) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import SHARED_DATA

    output = run(settings, "--data-dir", str(SHARED_DATA), "datasets", "list").output
    assert "ud-ewt-dev" in output and "ontogum-dev" in output and "gap-test" in output
    if SHARED_DATA.is_dir():
        assert all(" ok " in line for line in output.splitlines() if line.startswith(("ud-", "ontogum", "litbank", "gap")))


def test_each_layer_trains_every_layer_probe_as_its_own_run(settings, tiny_bert: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import FIXTURES

    run(settings, "ingest", "model", "tiny", "--path", str(tiny_bert))
    run(settings, "ingest", "corpus", "toy", "--format", "conllu", "--path", str(FIXTURES / "toy.conllu"))
    splits = ["--model", "tiny", "--train", "toy", "--dev", "toy", "--test", "toy", "--epochs", "1"]
    result = run(settings, "probe", "attn", *splits, "--each-layer")
    lines = [line for line in result.output.splitlines() if line.startswith("probe attn")]
    assert result.exit_code == 0
    assert [line.split("(tiny, ")[1].split(")")[0] for line in lines] == ["layers all", "layers 0", "layers 1"]
    # The layer-1 probe is the run `--layer 1` names: already done.
    alone = run(settings, "probe", "attn", *splits, "--layer", "1")
    assert "already done" in alone.output and lines[2].split("test uas ")[1].split(",")[0] in alone.output
    refused = run(settings, "probe", "structural", *splits, "--each-layer")
    assert refused.exit_code != 0 and "--each-layer trains attn or attn_glove" in refused.output
