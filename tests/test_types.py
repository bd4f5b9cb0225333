"""The type hints are checked, not decorative: mypy (config in pyproject.toml) finds nothing.

mypy keeps its cache in .mypy_cache (git-ignored): a warm run takes seconds, a cold one
(first run on a checkout: torch and transformers are analysed once) under a minute. The
run starts when the session is collected (tests/early_mypy.py) and this test takes its result.
"""

from __future__ import annotations

from tests import early_mypy


def test_mypy_finds_no_errors() -> None:
    code, output = early_mypy.result()
    assert code == 0, f"mypy failed:\n{output}"
