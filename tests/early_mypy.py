"""mypy for tests/test_types.py, started as soon as the session knows it will run that test.

A cold mypy run (a fresh clone has no .mypy_cache) is ~40 s of one core, while the first
test files, in-process and mostly single-threaded, leave the other core idle: started at
collection, it is usually done by the time its test asks. The check is the same command
over the same files; only its start moves earlier.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import IO

from app.config import REPO_ROOT

COMMAND = [sys.executable, "-m", "mypy"]


@dataclass
class MypyRun:
    process: subprocess.Popen[bytes]
    output: IO[bytes]

    @classmethod
    def start(cls) -> MypyRun:
        # A file, not a pipe: nobody reads until the test does, and a full pipe would stall it.
        output = tempfile.TemporaryFile()
        process = subprocess.Popen(COMMAND, cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT)
        return cls(process, output)

    def result(self) -> tuple[int, str]:
        """mypy's exit status and output, waiting for it if it is still running."""
        code = self.process.wait()
        self.output.seek(0)
        text = self.output.read().decode(errors="replace")
        self.output.close()
        return code, text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()


_started: MypyRun | None = None


def start() -> None:
    global _started
    if _started is None:
        _started = MypyRun.start()


def result() -> tuple[int, str]:
    """The early run's result, or a run now when none was started (e.g. `pytest -k mypy`
    with collection hooks bypassed)."""
    global _started
    run, _started = (_started or MypyRun.start()), None
    return run.result()


def stop() -> None:
    """A session that ends before the test (-x, Ctrl-C) leaves no mypy behind."""
    global _started
    if _started is not None:
        _started.stop()
        _started = None
