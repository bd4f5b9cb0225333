"""Files the code reads at run time that live outside `app/`: `queries/` and `migrations/`.

The repository keeps them at the top level (the design card's layout); the wheel maps them
into this package (`pyproject.toml` package-dir: `app._resources.queries` <- `queries/`),
so an installed headlens finds them with importlib.resources wherever it runs. Only a
source checkout without an install of this kind falls back to the folders beside `app/`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

Folder = Literal["queries", "migrations"]


def folder(name: Folder) -> Path:
    """The directory of `name`: packaged in the wheel, else the checkout's top-level one."""
    packaged = resources.files(__name__) / name
    if packaged.is_dir() and isinstance(packaged, Path):
        return packaged
    # A source checkout (PYTHONPATH or an editable install): app/../<name>.
    return Path(__file__).resolve().parents[2] / name
