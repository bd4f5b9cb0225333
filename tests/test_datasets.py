"""The dataset registry: local lookup with checksums, and download + verify over HTTP.

Downloads are tested against a real HTTP server on 127.0.0.1 serving a temporary folder.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import DatasetError, UnknownName
from app.ingest import datasets
from app.ingest.datasets import DataFile, Dataset
from tests.conftest import SHARED_DATA, needs_shared_data

CONTENT = b"1\tHello\t_\tX\tX\t_\t0\troot\t_\t_\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "upstream"
    root.mkdir()
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
            """No request log on stderr (it would mix with the CLI's output)."""

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()


def toy_registry(base_url: str, sha256: str) -> dict[str, Dataset]:
    return {
        "toy": Dataset(
            "toy",
            "conllu",
            "dependencies",
            "a toy",
            (DataFile("toy/toy.conllu", sha256, f"{base_url}/toy.conllu"),),
        )
    }


def test_fetch_downloads_verifies_and_then_finds_locally(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, upstream = server
    (upstream / "toy.conllu").write_bytes(CONTENT)
    registry = toy_registry(base_url, hashlib.sha256(CONTENT).hexdigest())
    data_dir = tmp_path / "data"
    (path,) = datasets.fetch("toy", data_dir, datasets=registry)
    assert path == data_dir / "toy" / "toy.conllu" and path.read_bytes() == CONTENT
    (upstream / "toy.conllu").unlink()  # a second fetch must not need the network
    assert datasets.fetch("toy", data_dir, datasets=registry) == [path]


def test_checksum_mismatch_keeps_nothing(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, upstream = server
    (upstream / "toy.conllu").write_bytes(CONTENT + b"tampered\n")
    registry = toy_registry(base_url, hashlib.sha256(CONTENT).hexdigest())
    with pytest.raises(DatasetError, match="nothing was kept"):
        datasets.fetch("toy", tmp_path / "data", datasets=registry)
    assert list((tmp_path / "data").rglob("*")) == [tmp_path / "data" / "toy"]


def test_missing_file_on_the_server_is_a_clear_error(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    with pytest.raises(DatasetError, match="cannot download"):
        datasets.fetch("toy", tmp_path, datasets=toy_registry(base_url, "0" * 64))


def test_gzipped_local_copy_verifies_on_its_content(tmp_path: Path) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.conllu.gz").write_bytes(gzip.compress(CONTENT))
    registry = toy_registry("http://unused", hashlib.sha256(CONTENT).hexdigest())
    assert datasets.locate("toy", tmp_path, datasets=registry) == [
        tmp_path / "toy" / "toy.conllu.gz"
    ]
    corrupt = toy_registry("http://unused", "f" * 64)
    with pytest.raises(DatasetError, match="corrupt"):
        datasets.locate("toy", tmp_path, datasets=corrupt)


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(UnknownName, match="ud-ewt-dev"):
        datasets.get("ud-ewt-dvv")


@needs_shared_data()
def test_every_registered_file_is_present_and_verified_in_shared_data() -> None:
    for name in datasets.registry():
        assert datasets.locate(name, SHARED_DATA), name


# ------------------------------------------------------------- data that finds itself


def test_the_data_directory_defaults_to_the_users_data_directory(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from app.config import Settings

    monkeypatch.delenv("HEADLENS_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # platformdirs on Linux
    assert Settings.resolve().data_dir == tmp_path / "xdg" / "headlens"
    monkeypatch.setenv("HEADLENS_DATA", str(tmp_path / "env"))
    assert Settings.resolve().data_dir == tmp_path / "env"
    assert Settings.resolve(data_dir=tmp_path / "flag").data_dir == tmp_path / "flag"


def cli_ingest(settings, data_dir: Path, name: str):  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from app.cli import cli

    args = ["--db", settings.db_url, "--mlruns", str(settings.mlruns_dir),
            "--data-dir", str(data_dir), "ingest", "corpus", name]  # fmt: skip
    return CliRunner().invoke(cli, args)


def test_ingest_fetches_a_missing_dataset_and_verifies_it(server, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base_url, upstream = server
    (upstream / "toy.conllu").write_bytes(CONTENT)
    registry = toy_registry(base_url, hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setattr(datasets, "registry", lambda: registry)
    result = cli_ingest(settings, tmp_path / "data", "toy")
    assert result.exit_code == 0, result.output
    assert "corpus toy: added" in result.output and "words=1" in result.output
    assert (tmp_path / "data" / "toy" / "toy.conllu").read_bytes() == CONTENT


def test_a_tampered_download_is_not_ingested(server, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base_url, upstream = server
    (upstream / "toy.conllu").write_bytes(CONTENT.replace(b"Hello", b"Hullo"))
    registry = toy_registry(base_url, hashlib.sha256(CONTENT).hexdigest())
    monkeypatch.setattr(datasets, "registry", lambda: registry)
    result = cli_ingest(settings, tmp_path / "data", "toy")
    assert result.exit_code == 1 and "nothing was kept" in result.output
    assert not list((tmp_path / "data").rglob("*.conllu*"))


def test_without_a_network_it_says_which_files_to_put_where(server, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base_url, _ = server
    files = (DataFile("toy/a.conllu", "0" * 64, f"{base_url}/a.conllu"),
             DataFile("toy/b.conllu", "1" * 64, f"{base_url}/b.conllu"))  # fmt: skip
    registry = {"toy": Dataset("toy", "conllu", "dependencies", "a toy", files)}
    monkeypatch.setattr(datasets, "registry", lambda: registry)
    data_dir = tmp_path / "data"
    (data_dir / "toy").mkdir(parents=True)
    (data_dir / "toy" / "a.conllu").write_bytes(CONTENT)  # present (checked after the fetch)
    # The server answers 404 for b.conllu: the same path as no network at all.
    result = cli_ingest(settings, data_dir, "toy")
    assert result.exit_code == 1
    # One line at the CLI (the error rule): what is missing, where it goes, where it is from.
    [line] = result.output.splitlines()
    assert line.startswith(f"Error: dataset 'toy' is not in {data_dir} and cannot be downloaded")
    assert line.endswith(
        f"put these 1 file(s) there (plain or .gz), then rerun: "
        f"{data_dir / 'toy' / 'b.conllu'} <- {base_url}/b.conllu"
    )


def test_an_unreachable_host_gives_the_same_instructions(tmp_path: Path) -> None:
    # Port 9 on 127.0.0.1 (discard) refuses connections on these machines: no network.
    registry = {"toy": Dataset("toy", "conllu", "dependencies", "a toy",
                               (DataFile("toy/toy.conllu", "0" * 64, "http://127.0.0.1:9/toy.conllu"),))}  # fmt: skip
    with pytest.raises(DatasetError) as error:
        datasets.ensure("toy", tmp_path, datasets=registry, timeout=5)
    message = str(error.value)
    assert "cannot be downloaded here" in message
    assert f"{tmp_path / 'toy' / 'toy.conllu'}  <- http://127.0.0.1:9/toy.conllu" in message
