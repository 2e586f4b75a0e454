"""API bearer tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once,
when it is created, and can never be read back."""

import hashlib
import re
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Token, utcnow
from db.session import rowcount

PREFIX = "labq_"
NAME_RULE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create(session: Session, name: str) -> str:
    """Store a new token named `name` and return it (the only time it exists in clear)."""
    if not NAME_RULE.match(name):
        raise ValueError("token name: 1-100 letters, digits or . _ @ -")
    if session.scalar(select(Token.id).where(Token.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists already (names are never reused)")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(name=name, token_hash=digest(token), created_at=utcnow()))
    session.flush()
    return token


def lookup(session: Session, token: str) -> int | None:
    """The id of the live token `token`, or None."""
    if not token or len(token) > 200:
        return None
    return session.scalar(
        select(Token.id).where(Token.token_hash == digest(token), Token.revoked.is_(False))
    )


def any_active(session: Session) -> bool:
    return bool(
        session.scalar(select(func.count()).select_from(Token).where(Token.revoked.is_(False)))
    )


def all_tokens(session: Session) -> list[Token]:
    return list(session.scalars(select(Token).order_by(Token.id)))


def revoke(session: Session, name: str) -> bool:
    result = session.execute(
        update(Token).where(Token.name == name, Token.revoked.is_(False)).values(revoked=True)
    )
    return rowcount(result) == 1
