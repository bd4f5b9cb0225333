"""Which database runs MLflow has not (fully) seen.

A run enters the backlog when its MLflow run is opened and leaves it when the tracker
finished it without an error, so a run whose tracking server went down (or whose process
died) stays listed until `headlens runs --relog` logs it again.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.store.corpora import utcnow
from app.store.schema import MlflowBacklog

Kind = Literal["analysis", "probe"]


def pending(session: Session, kind: Kind, ref_id: int, error: str | None = None) -> None:
    row = session.get(MlflowBacklog, (kind, ref_id))
    if row is None:
        session.add(MlflowBacklog(kind=kind, ref_id=ref_id, error=error, since=utcnow()))
    elif error is not None:
        row.error = error


def settle(session: Session, kind: Kind, ref_id: int, error: str | None) -> None:
    """After the MLflow run was finished: out of the backlog, or kept with the error."""
    row = session.get(MlflowBacklog, (kind, ref_id))
    if error is None:
        if row is not None:
            session.delete(row)
    else:
        pending(session, kind, ref_id, error)


def backlog(session: Session) -> list[MlflowBacklog]:
    return list(session.scalars(select(MlflowBacklog).order_by(MlflowBacklog.since)))
