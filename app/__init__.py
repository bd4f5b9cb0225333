"""headlens: what does each attention head do? Results kept in a database, runs in MLflow.

Only the version lives here: heavy imports (torch, transformers, mlflow) stay lazy so that
`headlens --help` answers at once.
"""

__version__ = "0.1.0"
