"""API bearer tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once,
when it is created, and can never be read back."""

import hashlib
import re
import secrets

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db import users
from db.models import Token, User, utcnow
from db.session import rowcount

PREFIX = "labq_"
NAME_RULE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


DEFAULT_USER = "admin"


def create(session: Session, name: str, user: str | None = None) -> str:
    """Store a new token named `name` for the user named `user` and return it (the only time it
    exists in clear). Without `user`, the token is the `admin` user's (created, as an admin, when
    missing: `labq token create NAME` keeps working as before users existed)."""
    if user is None:
        owner = users.by_name(session, DEFAULT_USER) or users.create(
            session, DEFAULT_USER, users.ADMIN
        )
    else:
        found = users.by_name(session, user)
        if found is None:
            raise ValueError(f"no user named {user!r} (add one with `labq user add`)")
        owner = found
    if owner.disabled:
        raise ValueError(f"user {owner.name!r} is disabled")
    if not NAME_RULE.match(name):
        raise ValueError("token name: 1-100 letters, digits or . _ @ -")
    if session.scalar(select(Token.id).where(Token.name == name)) is not None:
        raise ValueError(f"a token named {name!r} exists already (names are never reused)")
    token = PREFIX + secrets.token_urlsafe(32)
    session.add(Token(name=name, token_hash=digest(token), created_at=utcnow(), user_id=owner.id))
    session.flush()
    return token


def lookup(session: Session, token: str) -> users.Actor | None:
    """The user acting with the live token `token` (None: unknown, revoked, or user disabled)."""
    if not token or len(token) > 200:
        return None
    return users.actor_for_token(session, digest(token))


def any_active(session: Session) -> bool:
    return bool(
        session.scalar(select(func.count()).select_from(Token).where(Token.revoked.is_(False)))
    )


def all_tokens(session: Session) -> list[tuple[Token, User]]:
    rows = session.execute(
        select(Token, User).join(User, User.id == Token.user_id).order_by(Token.id)
    )
    return [(t, u) for t, u in rows]


def revoke(session: Session, name: str) -> bool:
    result = session.execute(
        update(Token).where(Token.name == name, Token.revoked.is_(False)).values(revoked=True)
    )
    return rowcount(result) == 1
