"""What every stage shares: the checked database engine and progress bars."""

from __future__ import annotations

from sqlalchemy import Engine

from app.config import Settings
from app.store.db import check_schema, make_engine


def open_db(settings: Settings) -> Engine:
    """The configured database, refusing one whose schema is behind the code."""
    engine = make_engine(settings.db_url)
    check_schema(engine)
    return engine


def progress_bar(total: int, initial: int, description: str, unit: str = "seg"):  # type: ignore[no-untyped-def]
    """A progress bar on a terminal, nothing in logs (tqdm's disable=None)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=description, unit=unit, disable=None, leave=False
    )
