"""headlens: what does each attention head do? Results kept in a database, runs in MLflow.

`from app import Lab` is the library (see app/lab.py). Everything is imported lazily (Lab
through the module's __getattr__, torch/transformers/mlflow inside the functions that use
them) so that `import app` and `headlens --help` answer at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Lab", "__version__"]

if TYPE_CHECKING:
    from app.lab import Lab


def __getattr__(name: str) -> Any:
    if name == "Lab":
        from app.lab import Lab

        return Lab
    raise AttributeError(f"module 'app' has no attribute {name!r}")
