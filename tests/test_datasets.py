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
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined,assignment]
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
