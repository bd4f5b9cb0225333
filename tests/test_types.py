"""The type hints are checked, not decorative: mypy (config in pyproject.toml) finds nothing.

mypy keeps its cache in .mypy_cache (git-ignored): a warm run takes seconds, a cold one
(first run on a checkout: torch and transformers are analysed once) under a minute.
"""

from __future__ import annotations

import subprocess
import sys

from app.config import REPO_ROOT


def test_mypy_finds_no_errors() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
