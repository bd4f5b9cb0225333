"""What every stage shares: the checked database engine and progress bars."""

from __future__ import annotations

from sqlalchemy import Engine

from app.config import ExtractConfig, Settings
from app.errors import InvalidOption
from app.store.db import check_schema, make_engine


def open_db(settings: Settings) -> Engine:
    """The configured database, refusing one whose schema is behind the code."""
    engine = make_engine(settings.db_url)
    check_schema(engine)
    return engine


def open_db_read_only(settings: Settings) -> Engine:
    """The configured database for readers: read-only, no file access, schema checked."""
    engine = make_engine(settings.db_url, read_only=True)
    check_schema(engine)
    return engine


def progress_bar(total: int, initial: int, description: str, unit: str = "seg"):
    """A progress bar on a terminal, nothing in logs (tqdm's disable=None)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=description, unit=unit, disable=None, leave=False
    )


def check_extract_config(config: ExtractConfig, encoder) -> None:
    """The option ranges that depend on the encoder, checked before any run is recorded.

    (Ranges that do not depend on it are declared on the CLI options, app/cli.py.)
    """
    if (config.batch_size is not None and config.batch_size < 1) or config.chunk_size < 1:
        raise InvalidOption(f"batch size {config.batch_size} must be at least 1")
    if config.batch_tokens < 1:
        raise InvalidOption(f"--batch-tokens {config.batch_tokens} must be at least 1")
    if config.limit is not None and config.limit < 1:
        raise InvalidOption(f"--limit {config.limit} must be at least 1")
    if encoder.max_positions and config.max_tokens > encoder.max_positions:
        raise InvalidOption(
            f"--max-tokens {config.max_tokens} is above model {encoder.name!r}'s "
            f"{encoder.max_positions} positions: use --max-tokens {encoder.max_positions} or less"
        )
    if config.max_tokens < 3:
        raise InvalidOption(f"--max-tokens {config.max_tokens} leaves no room for a word")


def check_layers(encoder, layers, hidden_layer) -> None:
    """Probe layers exist in the encoder (0-based attention layers; hidden layer 0..n)."""
    bad = [layer for layer in layers or () if not 0 <= layer < encoder.n_layers]
    if bad:
        raise InvalidOption(
            f"--layer {bad[0]} is out of range: model {encoder.name!r} has attention layers "
            f"0..{encoder.n_layers - 1}"
        )
    if hidden_layer is not None and not 0 <= hidden_layer <= encoder.n_layers:
        raise InvalidOption(
            f"--hidden-layer {hidden_layer} is out of range: model {encoder.name!r} has hidden "
            f"states 0..{encoder.n_layers} (0 = embeddings)"
        )
