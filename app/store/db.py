"""Engine and session factories, the schema-version check, and waiting for DuckDB's lock.

Nothing connects at import time. Engines use NullPool: a pooled DuckDB connection keeps the
file's write lock while idle, which would lock out a second `headlens` process
(shared/STACK.md §2). DuckDB allows one writing process per file (readers in other
processes are refused while it is open), so every connect waits for the lock, with
backoff, for at most HEADLENS_LOCK_WAIT seconds, saying once which process holds it.
Readers (`query`, `runs`) connect read-only with external file access disabled.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from app._resources import folder
from app.errors import (
    AppError,
    DatabaseLocked,
    DatabaseUnavailable,
    NotADatabase,
    SchemaAhead,
    SchemaBehind,
)

MIGRATIONS_DIR = folder("migrations")
# What alembic.ini says, for `headlens db ...` from an installed wheel (no alembic.ini there);
# the top-level alembic.ini keeps plain `alembic` usable in a checkout.
ALEMBIC_OPTIONS = {"file_template": "%%(rev)s_%%(slug)s"}
# How long a connect waits for another process's DuckDB lock (seconds; --lock-wait).
DEFAULT_LOCK_WAIT = 300.0
_LOCK_PID = re.compile(r"Could not set lock on file.*?\(PID (\d+)\)", re.S)
_NOT_A_DATABASE = (
    "not a valid DuckDB database",
    "file is not a database",
    "file is encrypted or is not a database",
)


def lock_wait_seconds() -> float:
    value = os.environ.get("HEADLENS_LOCK_WAIT", "")
    try:
        return max(0.0, float(value)) if value else DEFAULT_LOCK_WAIT
    except ValueError:
        raise AppError(f"HEADLENS_LOCK_WAIT must be a number of seconds, found {value!r}") from None


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lock_holder(error: BaseException) -> int | None:
    """The PID DuckDB names when another process holds the file's lock, else None."""
    match = _LOCK_PID.search(str(error))
    return int(match.group(1)) if match else None


def connect_waiting(
    connect: Callable[[], Any], where: str, *, wait: float, say: Callable[[str], None] = _say
) -> Any:
    """Call `connect` until the file lock is free: exponential backoff, bounded by `wait`."""
    deadline = time.monotonic() + wait
    delay, told = 0.05, False
    while True:
        try:
            return connect()
        except Exception as error:  # noqa: BLE001 - classified below, else re-raised
            if any(marker in str(error) for marker in _NOT_A_DATABASE):
                raise NotADatabase(
                    f"{where} is not a database of that kind ({str(error).splitlines()[0]}); "
                    "pass --db with a database file or URL (e.g. duckdb:///results.duckdb)"
                ) from None
            pid = lock_holder(error)
            if pid is None:
                raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DatabaseLocked(
                    f"{where} is locked by process {pid} (waited {wait:.0f} s); wait for it "
                    "to finish, or raise --lock-wait / HEADLENS_LOCK_WAIT"
                ) from None
            if not told:
                say(f"waiting for the database lock held by process {pid} (up to {wait:.0f} s)")
                told = True
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)


def _duckdb_path(url: str) -> Path | None:
    if url.startswith("duckdb:///") and not url.startswith("duckdb:///:memory:"):
        return Path(url.removeprefix("duckdb:///").split("?", 1)[0])
    return None


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """An engine for `url`; `read_only=True` gives the readers' engine (see read_only_setup)."""
    path = _duckdb_path(url)
    if path is not None and not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    connect_args: dict[str, Any] = {}
    if read_only:
        connect_args = read_only_connect_args(url)
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except Exception as error:  # noqa: BLE001 - a malformed URL or unknown dialect
        raise NotADatabase(
            f"cannot use --db {url!r}: {str(error).splitlines()[0]}; give a DuckDB file path "
            "or a SQLAlchemy URL (duckdb:///FILE, sqlite:///FILE, postgresql+psycopg://...)"
        ) from None
    where = engine.url.render_as_string(hide_password=True)
    wait = lock_wait_seconds()

    @event.listens_for(engine, "do_connect")
    def _wait_for_lock(dialect, _record, cargs, cparams):
        return connect_waiting(lambda: dialect.connect(*cargs, **cparams), where, wait=wait)

    if read_only and engine.dialect.name == "postgresql":
        # One statement per execute: with several, `SET TRANSACTION READ WRITE; ...; COMMIT`
        # would escape the read-only default. A prepared statement holds exactly one.
        @event.listens_for(engine, "do_execute")
        def _one_statement(cursor, statement, parameters, _context):
            cursor.execute(statement, parameters, prepare=True)
            return True

        @event.listens_for(engine, "do_execute_no_params")
        def _one_statement_no_params(cursor, statement, _context):
            cursor.execute(statement, prepare=True)
            return True

    if engine.dialect.name == "sqlite":
        # SQLite enforces foreign keys only when asked, per connection.
        @event.listens_for(engine, "connect")
        def _sqlite_setup(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            cursor.close()

    return engine


def ensure_reachable(engine: Engine) -> None:
    """A database server (PostgreSQL) that does not answer: one line naming host, port,
    database and the fix, instead of the driver's traceback. File databases are skipped:
    opening them is their own check."""
    from sqlalchemy.exc import OperationalError

    if engine.dialect.name in ("duckdb", "sqlite"):
        return
    try:
        engine.connect().close()
    except OperationalError as error:
        url = engine.url
        host = url.host or url.query.get("host") or "localhost"
        port = url.port or (5432 if engine.dialect.name == "postgresql" else "default port")
        reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        raise DatabaseUnavailable(
            f"cannot connect to {engine.dialect.name} at {host}:{port}, database "
            f"{url.database!r} ({reason}): start the server or fix the URL in --db / HEADLENS_DB "
            "(postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE)"
        ) from error


def refresh_statistics(engine: Engine) -> None:
    """PostgreSQL plans joins from table statistics, which a bulk COPY does not update:
    right after `analyze syntax`, Table 1 took 20 s instead of 0.8 s on 144k prediction
    rows (a nested loop over a table the planner thought empty). So after a stage's bulk
    writes, ANALYZE, in its own transaction: inside a writer's transaction its lock would
    queue concurrent writers and could deadlock them. DuckDB and SQLite need nothing."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")


def read_only_connect_args(url: str) -> dict[str, Any]:
    """Connection options that make a session read-only, per dialect.

    DuckDB: the file opened read-only (other readers may share it), no file system access
    from SQL (`read_csv`, `COPY ... TO`, `ATTACH`), and the configuration locked so SQL
    cannot turn that back on. SQLite: `PRAGMA query_only` (set on connect). PostgreSQL:
    every transaction read-only by default.
    """
    if url.startswith("duckdb"):
        return {
            "read_only": True,
            "config": {"enable_external_access": False, "lock_configuration": True},
        }
    if url.startswith("postgresql"):
        return {"options": "-c default_transaction_read_only=on"}
    return {}


def alembic_config(url: str):
    """An Alembic Config for `url` that works from any working directory."""
    from alembic.config import Config

    config = Config()
    for key, value in ALEMBIC_OPTIONS.items():
        config.set_main_option(key, value)
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    return config


_REVISION = re.compile(r"""^(down_)?revision(?:\s*:[^=\n]*)?\s*=\s*(?:None|["']([^"']+)["'])\s*$""", re.M)


@functools.cache
def _revision_chain() -> tuple[list[str], str] | None:
    """(known revisions, head) read from the revision files' `revision` / `down_revision`
    lines: what every command checks before it runs, without importing Alembic (0.4 s) and
    walking its script directory (0.2 s). None when a file is not that simple (a merge,
    another layout): the callers ask Alembic then."""
    revisions, parents = [], set()
    for path in sorted((MIGRATIONS_DIR / "versions").glob("*.py")):
        found = {bool(match[1]): match[2] for match in _REVISION.finditer(path.read_text())}
        if set(found) != {False, True} or found[False] is None:
            return None
        revisions.append(found[False])
        if found[True] is not None:
            parents.add(found[True])
    heads = [revision for revision in revisions if revision not in parents]
    if len(heads) != 1 or len(set(revisions)) != len(revisions) or not parents <= set(revisions):
        return None
    return sorted(revisions), heads[0]


def known_revisions() -> list[str]:
    chain = _revision_chain()
    if chain is not None:
        return chain[0]
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return sorted(revision.revision for revision in script.walk_revisions())


def _check_target(revision: str) -> None:
    known = known_revisions()
    if revision not in (*known, "head", "base") and not re.fullmatch(r"[+-]\d+", revision):
        raise AppError(
            f"unknown revision {revision!r}; known: {', '.join(known)}, head, base "
            "(`headlens db current` shows where the database is)"
        )


def upgrade(url: str, revision: str = "head") -> str:
    """Run Alembic migrations up to `revision`; returns the revision now current."""
    from alembic import command

    from app.store.reference import seed_reference_data

    _check_target(revision)
    engine = make_engine(url)
    ensure_reachable(engine)
    refuse_newer(engine)
    command.upgrade(alembic_config(url), revision)
    current = current_revision(engine)
    if current == head_revision():
        seed_reference_data(engine)
    return current or "base"


def downgrade(url: str, revision: str) -> str:
    """Run Alembic downgrades to `revision` ("base" empties the schema); returns the revision now current."""
    from alembic import command

    _check_target(revision)
    engine = make_engine(url)
    refuse_newer(engine)
    current = current_revision(engine)
    if current is None:
        raise SchemaBehind(f"{_where(engine)} is empty: there is nothing to downgrade")
    known = known_revisions()
    if revision in known and known.index(revision) > known.index(current):
        raise AppError(
            f"{_where(engine)} is at revision {current}, below {revision}: "
            f"use `headlens db upgrade {revision}`"
        )
    command.downgrade(alembic_config(url), revision)
    return current_revision(engine) or "base"


def head_revision() -> str:
    chain = _revision_chain()
    if chain is not None:
        return chain[1]
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    return heads[0]


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


_NO_VERSION_TABLE = ("alembic_version", "no such table", "does not exist")


def current_revision(engine: Engine) -> str | None:
    """The database's Alembic revision, None for an empty database."""
    path = _duckdb_path(str(engine.url))
    if path is not None and not path.exists():
        return None  # read-only DuckDB cannot create the file; it is simply empty
    ensure_reachable(engine)
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception as error:  # noqa: BLE001 - only "no such table" means empty
            message = str(getattr(error, "orig", error))
            if any(marker in message for marker in _NOT_A_DATABASE):
                raise NotADatabase(
                    f"{_where(engine)} is not a database of that kind ({message.splitlines()[0]})"
                ) from None
            if "alembic_version" in message and any(m in message for m in _NO_VERSION_TABLE[1:]):
                return None
            if "Table with name alembic_version does not exist" in message:
                return None
            raise


def refuse_newer(engine: Engine, current: str | None = None) -> None:
    """A revision this code does not know was written by a newer headlens: touch nothing.

    `current`: the database's revision when the caller has just read it."""
    current = current or current_revision(engine)
    if current is not None and current not in known_revisions():
        raise SchemaAhead(
            f"the database {_where(engine)} is at revision {current}, which this headlens "
            f"(schema {head_revision()}) does not know: a newer headlens migrated it. Use that "
            f"version, or run its `headlens db downgrade {head_revision()}` first; nothing was written"
        )


def check_schema(engine: Engine) -> None:
    """Fail with the command to type when the database is not at the code's revision."""
    current, head = current_revision(engine), head_revision()
    refuse_newer(engine, current)
    if current != head:
        state = "empty" if current is None else f"at revision {current}"
        raise SchemaBehind(
            f"the database {_where(engine)} is {state}, code expects {head}: run `headlens db upgrade`"
        )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory.begin() as session:
        yield session
