"""Typed errors: domain code raises these; the CLI turns each into a one-line message.

Each class's docstring is the stem of its message, so the class list doubles as a
catalogue of what can go wrong for a user.
"""

from __future__ import annotations

from collections.abc import Sequence


class AppError(Exception):
    """headlens could not finish."""


class UnknownName(AppError):
    """No such name."""

    def __init__(self, kind: str, name: str, known: Sequence[str], hint: str = ""):
        listing = ", ".join(sorted(known)) if known else "(none yet)"
        message = f"unknown {kind} {name!r}; known: {listing}"
        super().__init__(f"{message}. {hint}" if hint else message)
        self.kind, self.name, self.known = kind, name, list(known)


class ModelNotFound(AppError):
    """The encoder's files are not on this machine (headlens never downloads weights)."""


class CorpusFormatError(AppError):
    """A corpus file is malformed; the message names the file and line."""

    def __init__(self, path: str, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


class AlignmentError(AppError):
    """The tokenizer gives a word no word pieces, so attention cannot be mapped back to it."""


class DatasetError(AppError):
    """A dataset is missing, or its checksum does not match the registry."""


class SchemaBehind(AppError):
    """The database schema is older than this code: run `headlens db upgrade`."""


class RunNotFound(AppError):
    """No run matches."""


class AnalysisUnavailable(AppError):
    """The analysis cannot run on this encoder or corpus (for example, no MLM head)."""


class QueryError(AppError):
    """A query failed or was called with the wrong parameters."""


class DatabaseUnavailable(AppError):
    """The database server cannot be reached; the message names host, port and database."""


class SchemaAhead(AppError):
    """The database was migrated by a newer headlens: upgrade headlens, or downgrade the database."""


class NotADatabase(AppError):
    """The --db target exists but is not a database of the kind its URL names."""


class DatabaseLocked(AppError):
    """Another process holds the database's write lock for longer than we wait."""


class RunInProgress(AppError):
    """The same run is being computed by a live process: wait for it, never resume it."""


class InvalidOption(AppError):
    """An option value is outside the range that the model or data allow."""


class DiskFull(AppError):
    """The disk filled up while writing; what was committed is intact and the run resumes."""


class ModelInvalid(AppError):
    """A model directory is incomplete or inconsistent; the message names the file and the fix."""
