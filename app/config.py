"""Typed configuration: where things live (Settings) and how an analysis pass runs.

Configs are frozen dataclasses. `as_params()` gives the flat dict that is logged whole to
MLflow, and `config_hash()` the short key that makes a rerun of the same config find its
earlier run instead of repeating it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DB_FILE = "headlens.duckdb"
DEFAULT_MODEL = "minilm"
# The paper caps every input at 128 word pieces, special tokens included (section 3).
PAPER_MAX_TOKENS = 128
# Word pieces per checkpoint of `headlens analyze` (ExtractConfig.chunk_tokens): the pieces
# of 256 segments of 128.
CHUNK_TOKENS = 256 * PAPER_MAX_TOKENS

# Paragraph pairs per batch of the contrastive gradients pass when --batch-size is not given:
# its in-batch negatives make the batch part of the loss, so it stays a fixed count.
CONTRASTIVE_PAIRS = 16

Dtype = Literal["float32", "bfloat16"]
Overflow = Literal["skip", "truncate"]
OnUnaligned = Literal["error", "skip"]


def normalize_db_url(value: str) -> str:
    """Accept a SQLAlchemy URL, or a bare file path meaning a DuckDB file.

    A plain `postgresql://` (or libpq's `postgres://`) URL gets the psycopg 3 driver, the
    one installed; SQLAlchemy's default for it would be psycopg2.
    """
    for plain in ("postgresql://", "postgres://"):
        if value.startswith(plain):
            return "postgresql+psycopg://" + value.removeprefix(plain)
    if "://" in value:
        return value
    return f"duckdb:///{Path(value).expanduser().resolve()}"


def default_data_dir() -> Path:
    """The user's data directory for headlens (platformdirs), where datasets are kept."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("headlens", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Where the database, the MLflow store, the data and the feature cache live.

    Resolution order for each: explicit argument, then environment variable
    (HEADLENS_DB, HEADLENS_MLRUNS, HEADLENS_DATA, HEADLENS_CACHE, MLFLOW_TRACKING_URI), then a
    default. The database, MLflow store and cache default to the working directory (they are
    this project's results); a tracking URI (a team's `mlflow server`) replaces the local
    MLflow store under `mlruns/`. The gold data defaults to the user's data directory
    (platformdirs: e.g. ~/.local/share/headlens), so an installed headlens finds and keeps
    downloaded datasets in one place wherever it runs. `./dev.sh` points HEADLENS_DATA at
    `../shared/data`, where CI keeps the gold data.
    """

    db_url: str
    mlruns_dir: Path
    data_dir: Path | None
    cache_dir: Path
    # An MLflow tracking server (http://host:5000) or any MLflow store URI; None: the local
    # SQLite store under mlruns_dir.
    tracking_uri: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        db: str | None = None,
        mlruns: str | Path | None = None,
        data_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        mlflow_uri: str | None = None,
    ) -> Settings:
        cwd = Path.cwd()
        db_value = db or os.environ.get("HEADLENS_DB") or str(cwd / DEFAULT_DB_FILE)
        mlruns_value = mlruns or os.environ.get("HEADLENS_MLRUNS") or cwd / "mlruns"
        cache_value = cache_dir or os.environ.get("HEADLENS_CACHE") or cwd / "cache"
        data_value = data_dir or os.environ.get("HEADLENS_DATA")
        data_path = Path(data_value or default_data_dir()).expanduser().resolve()
        return cls(
            db_url=normalize_db_url(db_value),
            mlruns_dir=Path(mlruns_value).expanduser().resolve(),
            data_dir=data_path,
            cache_dir=Path(cache_value).expanduser().resolve(),
            tracking_uri=mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI") or None,
        )

    @property
    def mlflow_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        # MLflow cannot use DuckDB as a backend; its recommended default is SQLite.
        return f"sqlite:///{self.mlruns_dir / 'mlflow.db'}"

    @property
    def mlflow_is_local(self) -> bool:
        """The local store under mlruns/, whose artifacts headlens places itself."""
        return not self.tracking_uri

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlruns_dir / "artifacts"


class _Hashable:
    """Mixin: flat params for MLflow and a stable short hash for run identity."""

    def as_params(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    def config_hash(self) -> str:
        payload = json.dumps(self.as_params(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ExtractConfig(_Hashable):
    """How the encoder is run over a corpus; identical configs share their runs."""

    max_tokens: int = PAPER_MAX_TOKENS
    # Padded tokens (rows x longest segment) per forward pass. 2048 is 16 segments of 128
    # tokens, the CPU sweet spot measured in shared/STACK.md §5; it gives 4 segments of 512
    # tokens (not 16: a fraction of the maps' memory) and fills batches with short sentences.
    batch_tokens: int = 2048
    # A fixed cap on segments per forward pass as well; None: only the token budget counts.
    batch_size: int | None = None
    # bfloat16 is ~3.5x faster on AMX CPUs but can flip near-tied argmaxes: keep float32
    # for accuracy tables (shared/STACK.md §5).
    dtype: Dtype = "float32"
    # Segments longer than max_tokens are skipped (and counted); coreference documents are
    # truncated instead, as in the paper.
    overflow: Overflow = "skip"
    on_unaligned: OnUnaligned = "error"
    # Segments per checkpoint: a resumed run restarts at the last finished chunk.
    chunk_size: int = 256
    # Word pieces per checkpoint of a local `analyze` pass instead (None: chunk_size
    # segments). The CLI sets CHUNK_TOKENS: about 256 segments of 128 pieces, while short
    # sentences (UD EWT dev: 17 pieces) go 1,900 at a time: each checkpoint is a DuckDB
    # transaction and a checkpoint of its file, which cost more than the rows they write.
    chunk_tokens: int | None = None
    limit: int | None = None
    device: str = "cpu"
    seed: int = 0
    # Analysis-specific options (e.g. the MLM masking rate); part of the run identity.
    options: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def option(self, key: str, default: Any) -> Any:
        return dict(self.options).get(key, default)

    def identity(self) -> dict[str, Any]:
        """What defines a run's results: chunking and device do not change them."""
        params = self.as_params()
        for key in ("chunk_size", "chunk_tokens", "device", "batch_size", "batch_tokens"):
            params.pop(key)
        return params

    def config_hash(self) -> str:
        payload = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
