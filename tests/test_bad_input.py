"""Hostile or careless input: one line naming the problem and the fix, a non-zero exit
status, and the database exactly as it was (issue 10)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from app.cli import cli
from app.config import Settings
from app.ingest.coref import GAP_COLUMNS
from app.store.db import make_engine
from tests.conftest import FIXTURES


def run(settings: Settings, *args: str) -> Result:
    base = ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir)]
    base += ["--cache-dir", str(settings.cache_dir)]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def snapshot(settings: Settings) -> dict[str, object]:
    """Every table's row count and the schema revision (read-only)."""
    from sqlalchemy import inspect

    engine = make_engine(settings.db_url, read_only=True)
    with engine.connect() as connection:
        tables = sorted(inspect(connection).get_table_names())
        counts: dict[str, object] = {
            name: connection.execute(text(f'SELECT count(*) FROM "{name}"')).scalar()
            for name in tables
        }
        counts["revision"] = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        counts["runs"] = connection.execute(text("SELECT id, status FROM runs ORDER BY id")).all()
    return counts


def refused(result: Result, *needles: str) -> str:
    """The output is one 'Error: ...' line containing every needle; the exit status is not 0."""
    assert result.exit_code not in (0, None), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    for needle in needles:
        assert needle in lines[0], result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def ready(settings: Settings, tiny_bert: Path) -> Settings:
    assert run(settings, "ingest", "model", "tiny", "--path", str(tiny_bert)).exit_code == 0
    path = FIXTURES / "two_sentences.conllu"
    result = run(settings, "ingest", "corpus", "two", "--format", "conllu", "--path", str(path))
    assert result.exit_code == 0, result.output
    return settings


# ------------------------------------------------------------------ option ranges


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "-1"], "--batch-size"),
        (["--limit", "0"], "--limit"),
        (["--max-tokens", "2"], "--max-tokens"),
        (["--max-tokens", "1000"], "256 positions"),  # the tiny BERT has 256
        (["--device", "toaster"], "not a torch device"),
        (["--device", "cuda:99"], "--device cuda:99"),
    ],
)
def test_analyze_options_out_of_range_change_nothing(ready: Settings, args: list[str], needle: str) -> None:
    before = snapshot(ready)
    result = run(ready, "analyze", "surface", "--model", "tiny", "--corpus", "two", *args)
    refused(result, needle)
    assert snapshot(ready) == before


def test_a_refused_batch_size_does_not_leave_a_run_to_resume(ready: Settings) -> None:
    """Issue 10, defect 1: -1 used to finish with zeros, and 0 left a failed run behind."""
    for size in ("0", "-1"):
        run(ready, "analyze", "surface", "--model", "tiny", "--corpus", "two", "--batch-size", size)
    result = run(ready, "analyze", "surface", "--model", "tiny", "--corpus", "two")
    assert result.exit_code == 0 and "finished (2 segments" in result.output
    engine = make_engine(ready.db_url, read_only=True)
    with engine.connect() as connection:
        n, cls = connection.execute(
            text("SELECT count(*), sum(value) FROM head_metrics WHERE metric = 'attn_cls'")
        ).one()
    assert n == 2 * 4 and cls > 0  # 2 layers x 4 heads, and attention did go somewhere


def test_probe_layer_out_of_range(ready: Settings) -> None:
    before = snapshot(ready)
    splits = ["--train", "two", "--dev", "two", "--test", "two"]
    refused(run(ready, "probe", "attn", "--model", "tiny", "--layer", "2", *splits), "0..1")
    refused(run(ready, "probe", "attn", "--model", "tiny", "--layer", "-1", *splits), "--layer")
    refused(run(ready, "probe", "structural", "--model", "tiny", "--hidden-layer", "3", *splits), "0..2")
    refused(run(ready, "probe", "attn", "--model", "tiny", "--epochs", "0", *splits), "--epochs")
    refused(run(ready, "probe", "attn", "--model", "tiny", "--lr", "0", *splits), "--lr")
    assert snapshot(ready) == before


def test_every_numeric_option_declares_its_range() -> None:
    """Generalized: a new int/float option without a range fails here, not in a user's run."""
    import click

    from tests.test_cli import all_commands

    unranged = []
    for path in all_commands():
        command = cli
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        for param in [*cli.params, *command.params]:
            if param.type in (click.INT, click.FLOAT):
                unranged.append(f"{' '.join(path)} {param.name}")
    assert unranged == []


# ------------------------------------------------------------------ model directories


def _broken_copy(tiny_bert: Path, tmp_path: Path, damage) -> Path:  # type: ignore[no-untyped-def]
    directory = tmp_path / "broken"
    shutil.copytree(tiny_bert, directory)
    damage(directory)
    return directory


def _edit_config(**changes: object):  # type: ignore[no-untyped-def]
    def damage(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **changes}))

    return damage


def _no_tokenizer(directory: Path) -> None:
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (directory / name).unlink(missing_ok=True)


def _truncate_weights(directory: Path) -> None:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (_no_tokenizer, ["no tokenizer files", "[UNK]"]),
        (lambda d: (d / "config.json").write_text('{"model_type": "bert",\n oops}'), ["config.json:2", "not valid JSON"]),
        (_edit_config(model_type="no-such-architecture"), ["config.json", "model_type"]),
        (_edit_config(num_attention_heads=5), ["hidden_size 32 is not divisible by num_attention_heads 5"]),
        (_truncate_weights, ["model.safetensors", "truncated or corrupt"]),
    ],
    ids=["no-tokenizer", "invalid-json", "unknown-model-type", "heads-vs-hidden", "truncated-weights"],
)
def test_a_broken_model_directory_is_refused_before_anything_is_stored(
    settings: Settings, tiny_bert: Path, tmp_path: Path, damage, needles: list[str]  # type: ignore[no-untyped-def]
) -> None:
    directory = _broken_copy(tiny_bert, tmp_path, damage)
    before = snapshot(settings)
    refused(run(settings, "ingest", "model", "broken", "--path", str(directory)), *needles)
    assert snapshot(settings) == before


# ------------------------------------------------------------------ corpora


def _conllu(tmp_path: Path, body: str, name: str = "bad.conllu") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


ROWS = "{i}\tw{i}\tw\tX\tX\t_\t{head}\tdep\t_\t_\n"


def _sentence(heads: list[int]) -> str:
    return "".join(ROWS.format(i=i + 1, head=head) for i, head in enumerate(heads)) + "\n"


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        (_sentence([0, 1]) + _sentence([2, 0, 3, 2]), ["bad.conllu:6", "word 3 is its own head"]),
        (_sentence([0, 1, 0]), ["bad.conllu:3", "several roots"]),
        (_sentence([0, 3, 2]), ["bad.conllu:", "cycle"]),
        (_sentence([2, 1]), ["bad.conllu:", "cycle"]),
        ("", ["bad.conllu", "no sentences"]),
        ("# only a comment\n\n", ["bad.conllu:1", "no words"]),
    ],
    ids=["self-loop", "several-roots", "cycle", "no-root", "empty", "comment-only"],
)
def test_invalid_trees_and_empty_files_are_refused_with_file_and_line(
    settings: Settings, tmp_path: Path, body: str, needles: list[str]
) -> None:
    path = _conllu(tmp_path, body)
    before = snapshot(settings)
    refused(run(settings, "ingest", "corpus", "bad", "--format", "conllu", "--path", str(path)), *needles)
    assert snapshot(settings) == before


def test_bad_utf8_names_the_right_line_even_deep_in_a_big_file(settings: Settings, tmp_path: Path) -> None:
    good = _sentence([0, 1, 1]) * 4000  # ~140 kB: past any decoder block boundary
    lines_before = good.count("\n")
    path = tmp_path / "bad.conllu"
    path.write_bytes(good.encode() + b"1\tcaf" + b"\xe9\tx\tX\tX\t_\t0\troot\t_\t_\n")
    line = refused(
        run(settings, "ingest", "corpus", "bad", "--format", "conllu", "--path", str(path)),
        f"bad.conllu:{lines_before + 1}:",
        "not UTF-8",
    )
    assert "0xe9" in line


def test_a_byte_order_mark_is_not_a_column_error(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "bom.conllu"
    path.write_bytes(b"\xef\xbb\xbf" + (FIXTURES / "two_sentences.conllu").read_bytes())
    result = run(settings, "ingest", "corpus", "bom", "--format", "conllu", "--path", str(path))
    assert result.exit_code == 0, result.output
    assert "segments=2" in result.output


def test_a_truncated_gz_is_one_line_and_datasets_list_survives(settings: Settings, tmp_path: Path) -> None:
    data = tmp_path / "data"
    from app.ingest.datasets import registry

    dataset = registry()["ud-ewt-dev"]
    target = data / (dataset.files[0].path + ".gz")
    target.parent.mkdir(parents=True)
    packed = gzip.compress((FIXTURES / "two_sentences.conllu").read_bytes() * 50)
    target.write_bytes(packed[: len(packed) // 2])
    listing = run(settings, "--data-dir", str(data), "datasets", "list")
    assert listing.exit_code == 0, listing.output
    assert any(line.startswith("ud-ewt-dev") and "invalid" in line for line in listing.output.splitlines())
    assert "truncated or corrupt" in listing.output
    before = snapshot(settings)
    refused(run(settings, "--data-dir", str(data), "ingest", "corpus", "ud-ewt-dev"), "truncated or corrupt")
    plain = tmp_path / "mine.conllu.gz"
    plain.write_bytes(packed[: len(packed) // 2])
    refused(run(settings, "ingest", "corpus", "mine", "--format", "conllu", "--path", str(plain)), "mine.conllu.gz")
    assert snapshot(settings) == before


def test_reingesting_with_other_options_is_refused_and_names_real_options(settings: Settings) -> None:
    story = FIXTURES / "coref" / "story.conllu"
    args = ["ingest", "corpus", "story", "--format", "corefud", "--path", str(story), "--heads", "rule"]
    assert run(settings, *args).exit_code == 0
    assert "already stored" in run(settings, *args).output
    before = snapshot(settings)
    line = refused(run(settings, *args, "--segmentation", "windows"), "mode truncate (now windows)")
    assert "--name" not in line and "headlens ingest corpus story-2" in line
    assert snapshot(settings) == before


# ------------------------------------------------------------------ queries


def test_a_misspelled_query_parameter_is_refused(ready: Settings) -> None:
    refused(run(ready, "query", "surface_heads", "-p", "treshold=0.4"), "'treshold'", "-p threshold")


@pytest.mark.parametrize(
    "sql",
    [
        "drop table relation_map",
        "delete from encoders",
        "copy encoders to '/tmp/headlens-leak.csv'",
        "select * from read_csv('/etc/passwd')",
        "attach '/tmp/headlens-other.duckdb' as other",
        "set enable_external_access = true",
    ],
)
def test_ad_hoc_sql_is_read_only_without_file_access(ready: Settings, sql: str) -> None:
    before = snapshot(ready)
    refused(run(ready, "query", "--sql", sql), "--read-write")
    assert snapshot(ready) == before
    assert not Path("/tmp/headlens-leak.csv").exists()


def test_the_read_write_escape_hatch_is_explicit(ready: Settings) -> None:
    result = run(ready, "query", "--sql", "delete from relation_map", "--read-write")
    assert result.exit_code == 0, result.output
    assert snapshot(ready)["relation_map"] == 0


# ------------------------------------------------------------------ databases


def test_a_file_that_is_not_a_database(settings: Settings, tmp_path: Path) -> None:
    for suffix, url in [("duckdb", "{}"), ("sqlite", "sqlite:///{}")]:
        path = tmp_path / f"notes.{suffix}"
        path.write_text("these are my notes, not a database\n" * 20)
        for args in (["runs"], ["db", "upgrade"], ["db", "current"], ["query", "runs"]):
            result = CliRunner().invoke(cli, ["--db", url.format(path), *args])
            refused(result, "not a database of that kind")
        assert path.read_text().startswith("these are my notes")


def test_upgrade_to_an_unknown_revision(settings: Settings) -> None:
    before = snapshot(settings)
    refused(run(settings, "db", "upgrade", "9999"), "unknown revision '9999'", "0001")
    refused(run(settings, "db", "downgrade", "abc"), "unknown revision 'abc'")
    assert snapshot(settings) == before


def test_a_database_from_a_newer_headlens_is_refused_by_every_command(ready: Settings, tiny_bert: Path) -> None:
    engine = make_engine(ready.db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0042'"))
    before = snapshot(ready)
    commands = [
        ["runs"],
        ["query", "runs"],
        ["query", "--sql", "select 1"],
        ["analyze", "surface", "--model", "tiny", "--corpus", "two"],
        ["ingest", "model", "tiny2", "--path", str(tiny_bert)],
        ["ingest", "corpus", "t", "--format", "conllu", "--path", str(FIXTURES / "toy.conllu")],
        ["db", "upgrade"],
        ["db", "downgrade", "0005"],
        ["probe", "right_branching", "--train", "two", "--dev", "two", "--test", "two"],
        ["report", "--model", "tiny", "--out", str(Path(ready.cache_dir) / "r")],
    ]
    for command in commands:
        refused(run(ready, *command), "revision 0042", "newer headlens")
    assert snapshot(ready) == before
    assert "0042" in run(ready, "db", "current").output


def test_downgrade_and_upgrade_through_the_cli(settings: Settings) -> None:
    result = run(settings, "db", "downgrade", "0005")
    assert result.exit_code == 0 and "revision 0005" in result.output
    refused(run(settings, "runs"), "at revision 0005", "headlens db upgrade")
    assert "revision 0005" in run(settings, "db", "upgrade", "0005").output
    result = run(settings, "db", "upgrade")
    assert result.exit_code == 0 and "0005" not in result.output
    assert run(settings, "runs").exit_code == 0


# ------------------------------------------------------------------ the boundary


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(ready: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def explode(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("something nobody foresaw\nwith a second line")

    monkeypatch.setattr("app.pipeline.run_query", explode)
    line = refused(run(ready, "runs"), "RuntimeError: something nobody foresaw with a second line", "--debug")
    assert line
    with pytest.raises(RuntimeError, match="nobody foresaw"):
        run(ready, "--debug", "runs")


def test_disk_full_is_one_line_that_says_the_run_resumes(ready: Settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import errno

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", "/data/headlens.duckdb.wal")

    monkeypatch.setattr("app.store.write.insert_rows", full)
    refused(
        run(ready, "analyze", "surface", "--model", "tiny", "--corpus", "two"),
        "no space left on device",
        "rerun the same command to resume",
    )


@pytest.mark.parametrize(
    ("fmt", "body"),
    [("corefud", ""), ("conll2012", "\n\n"), ("gap", "\t".join(GAP_COLUMNS) + "\n")],
)
def test_an_empty_coreference_file_is_refused(settings: Settings, tmp_path: Path, fmt: str, body: str) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_text(body)
    before = snapshot(settings)
    args = ["ingest", "corpus", "e", "--format", fmt, "--path", str(path), "--heads", "rule"]
    refused(run(settings, *args), f"empty.{fmt}", "no documents")
    assert snapshot(settings) == before
