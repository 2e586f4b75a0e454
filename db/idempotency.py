"""Stored answers of POSTs sent with an `Idempotency-Key` (see api/idempotency.py).

A key is reserved by inserting its row in the same transaction as the rows the request creates,
before them: a concurrent request with the same key waits on the row's unique index, then fails
on it and reads the first request's answer instead of creating anything."""

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from db.models import IdempotencyKey, utcnow


def find(
    session: Session, owner: int, path: str, key: str, window_seconds: int
) -> IdempotencyKey | None:
    """The stored answer for this key, unless it is older than the window."""
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.owner == owner, IdempotencyKey.path == path, IdempotencyKey.key == key
        )
    )
    if row is not None and row.created_at < utcnow() - timedelta(seconds=window_seconds):
        return None
    return row


def reserve(
    session: Session, owner: int, path: str, key: str, body_hash: str, window_seconds: int
) -> IdempotencyKey:
    """Insert the key's row (flushed, not committed), dropping keys past the window first.
    Raises IntegrityError when another request holds the key."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.created_at < utcnow() - timedelta(seconds=window_seconds)
        )
    )
    row = IdempotencyKey(owner=owner, path=path, key=key, body_hash=body_hash, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def store_answer(session: Session, row_id: int, status_code: int, answer: dict[str, Any]) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == row_id)
        .values(status_code=status_code, response=answer)
    )
