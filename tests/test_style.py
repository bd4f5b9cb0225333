"""Lint is part of the suite, so CI keeps the code in the house style."""

from __future__ import annotations

import subprocess
import sys

from app.config import REPO_ROOT


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "app", "tests", "migrations", "scripts", "bench"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
