"""Named datasets: where each comes from, its SHA-256, and where it is found locally.

The registry (app/data/datasets.json) lists every file of every dataset with its upstream
URL and the SHA-256 of its content. Locally a file may sit plain or gzipped (`.gz`,
checked on its decompressed content) under the data directory (--data-dir /
HEADLENS_DATA, by default the user's data directory). `fetch` downloads what is missing
where a network exists, verifying before it keeps anything; `ensure` (what ingestion
calls) fetches missing files, or says exactly which files to put where when it cannot.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO

from app.errors import CorpusFormatError, DatasetError, UnknownName

# Package data (app/data/), found the same way in a checkout and in an installed wheel.
REGISTRY_FILE = resources.files("app") / "data" / "datasets.json"


@dataclass(frozen=True)
class DataFile:
    path: str  # relative to the data directory
    sha256: str  # of the (decompressed) content
    url: str


@dataclass(frozen=True)
class Dataset:
    name: str
    format: str
    # "dependencies" (a treebank: one segment per sentence) or "coreference" (documents).
    kind: str
    description: str
    files: tuple[DataFile, ...]


@cache
def registry() -> dict[str, Dataset]:
    raw = json.loads(REGISTRY_FILE.read_text(encoding="utf-8"))
    return {
        name: Dataset(
            name=name,
            format=spec["format"],
            kind=spec["kind"],
            description=spec["description"],
            files=tuple(DataFile(**file) for file in spec["files"]),
        )
        for name, spec in raw.items()
    }


def get(name: str, datasets: dict[str, Dataset] | None = None) -> Dataset:
    datasets = registry() if datasets is None else datasets
    if name not in datasets:
        raise UnknownName("dataset", name, list(datasets), hint="see `headlens datasets list`")
    return datasets[name]


def open_text(path: Path) -> IO[str]:
    """Open a plain or gzipped UTF-8 text file."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) of a text file; unreadable or non-UTF-8 input is
    a CorpusFormatError naming the file (and the line).

    Lines are decoded one by one (a text-mode reader decodes in blocks and would blame the
    wrong line), and a UTF-8 byte-order mark at the start of the file is dropped.
    """
    line_number = 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for line_number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as error:
                    raise CorpusFormatError(
                        str(path),
                        line_number,
                        f"not UTF-8 text (byte 0x{raw[error.start]:02x} at column "
                        f"{error.start + 1}: {error.reason}); convert the file with iconv",
                    ) from None
                if line_number == 1:
                    line = line.removeprefix("\ufeff")
                yield line_number, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as error:
        raise CorpusFormatError(
            str(path), None, f"cannot read after line {line_number}: {error} (truncated or corrupt?)"
        ) from None


def content_sha256(path: Path) -> str:
    """SHA-256 of the (decompressed) content; a truncated or corrupt .gz is a DatasetError."""
    digest = hashlib.sha256()
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path}: cannot read ({error}); the file is truncated or corrupt: fetch it again"
        ) from None
    return digest.hexdigest()


def _local_copy(data_dir: Path, file: DataFile) -> Path | None:
    for candidate in (data_dir / file.path, data_dir / (file.path + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def locate(
    name: str, data_dir: Path | None, *, datasets: dict[str, Dataset] | None = None
) -> list[Path]:
    """Local, verified paths of every file of a dataset."""
    dataset = get(name, datasets)
    if data_dir is None:
        raise DatasetError(
            f"no data directory for dataset {name!r}: pass --data-dir DIR or set HEADLENS_DATA"
        )
    paths = []
    for file in dataset.files:
        local = _local_copy(data_dir, file)
        if local is None:
            raise DatasetError(
                f"dataset {name!r}: {file.path} is not under {data_dir}; "
                f"run `headlens datasets fetch {name}` where a network exists, or pass --data-dir"
            )
        actual = content_sha256(local)
        if actual != file.sha256:
            raise DatasetError(
                f"dataset {name!r}: {local} has SHA-256 {actual[:12]}..., the registry expects "
                f"{file.sha256[:12]}...; the file is corrupt or a different release"
            )
        paths.append(local)
    return paths


class DownloadFailed(DatasetError):
    """The upstream file could not be downloaded (no network, server error)."""


def _download(url: str, partial: Path, timeout: float) -> None:
    """Stream `url` into `partial` with a byte progress bar (on a terminal only)."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
        size = response.headers.get("Content-Length")
        with tqdm(
            total=int(size) if size else None,
            desc=partial.name.removesuffix(".part"),
            unit="B",
            unit_scale=True,
            disable=None,
            leave=False,
        ) as progress:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                progress.update(len(block))


def fetch(
    name: str, data_dir: Path, *, datasets: dict[str, Dataset] | None = None, timeout: float = 60.0
) -> list[Path]:
    """Download the files of a dataset that are missing locally; verify each before keeping it."""
    dataset = get(name, datasets)
    for file in dataset.files:
        if _local_copy(data_dir, file) is not None:
            continue
        target = data_dir / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        try:
            _download(file.url, partial, timeout)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DownloadFailed(
                f"dataset {name!r}: cannot download {file.url}: {error}"
            ) from error
        actual = content_sha256(partial)
        if actual != file.sha256:
            partial.unlink()
            raise DatasetError(
                f"dataset {name!r}: {file.url} has SHA-256 {actual[:12]}..., expected "
                f"{file.sha256[:12]}...; nothing was kept"
            )
        partial.rename(target)
    return locate(name, data_dir, datasets=datasets)


def ensure(
    name: str,
    data_dir: Path | None,
    *,
    datasets: dict[str, Dataset] | None = None,
    timeout: float = 60.0,
) -> list[Path]:
    """Verified local paths of a dataset, downloading missing files where a network exists.

    Without a network, the error lists every missing file with the place to put it and the
    URL it comes from, so the files can be copied in by hand.
    """
    dataset = get(name, datasets)
    if data_dir is None:
        raise DatasetError(
            f"no data directory for dataset {name!r}: pass --data-dir DIR or set HEADLENS_DATA"
        )
    missing = [file for file in dataset.files if _local_copy(data_dir, file) is None]
    if missing:
        try:
            fetch(name, data_dir, datasets=datasets, timeout=timeout)
        except DownloadFailed as error:
            cause = error.__cause__ or error
            lines = [
                f"dataset {name!r} is not in {data_dir} and cannot be downloaded here "
                f"({cause}); put these {len(missing)} file(s) there (plain or .gz), then rerun:"
            ]
            lines += [f"  {data_dir / file.path}  <- {file.url}" for file in missing]
            raise DatasetError("\n".join(lines)) from error
    return locate(name, data_dir, datasets=datasets)
