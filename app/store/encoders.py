"""Encoder rows: what was ingested, from where, with which shape."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import AppError, UnknownName
from app.ingest.models import BUILTIN, EncoderInfo
from app.store.corpora import utcnow
from app.store.schema import Encoder


def find_encoder(session: Session, name: str) -> Encoder:
    encoder = session.scalar(select(Encoder).where(Encoder.name == name))
    if encoder is None:
        known = session.scalars(select(Encoder.name)).all()
        hint = "ingest it with `headlens ingest model NAME [--path DIR]`"
        if name in BUILTIN:
            hint = f"it is built in: run `headlens ingest model {name}`"
        raise UnknownName("model", name, known, hint=hint)
    return encoder


def store_encoder(
    session: Session, name: str, directory: Path, info: EncoderInfo, weights_sha256: str, init: str
) -> tuple[Encoder, bool]:
    """Insert an encoder row; the same name + weights + init again is a no-op."""
    existing = session.scalar(select(Encoder).where(Encoder.name == name))
    if existing is not None:
        if existing.weights_sha256 == weights_sha256 and existing.init == init:
            existing.source = str(directory)  # the same weights may have moved
            return existing, False
        raise AppError(
            f"a different model named {name!r} is already stored (weights {existing.weights_sha256[:12]}..., "
            f"init {existing.init}); ingest this one under another name"
        )
    fields = asdict(info)
    encoder = Encoder(
        name=name,
        source=str(directory),
        weights_sha256=weights_sha256,
        init=init,
        special_tokens_json=json.dumps(fields.pop("special_tokens"), sort_keys=True),
        created_at=utcnow(),
        **fields,
    )
    session.add(encoder)
    session.flush()
    return encoder, True
