"""Users, roles, ownership and the audit log.

Every request acts for one `Actor`: the user whose token it sent, or, on a loopback stack with no
token, the implicit local admin (LOCAL, user id None: runs it submits have no owner row). The
acting user is passed explicitly to every repository function that needs it."""

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import AuditEntry, Token, User, utcnow
from db.session import rowcount

ADMIN, MEMBER, VIEWER = "admin", "member", "viewer"
ROLES = (ADMIN, MEMBER, VIEWER)
NAME_RULE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
LOCAL_NAME = "local"


@dataclass(frozen=True)
class Actor:
    user_id: int | None  # None: the implicit local admin
    name: str
    role: str
    token_id: int | None = None
    source: str = ""  # where the request came from (client address, or "cli")

    @property
    def admin(self) -> bool:
        return self.role == ADMIN

    def owns(self, owner_id: int | None) -> bool:
        return owner_id == self.user_id

    def may_act_on(self, owner_id: int | None) -> bool:
        return self.admin or (self.role == MEMBER and self.owns(owner_id))


LOCAL = Actor(user_id=None, name=LOCAL_NAME, role=ADMIN)
NOBODY = 0  # no user has this id: a Sight of it sees nothing


@dataclass(frozen=True)
class Sight:
    """Whose runs, sweeps and searches a caller may read: everyone's, or only those of the user
    `owner_id` (LABQ_VISIBILITY=own for members and viewers; NOBODY for a caller without a token
    once tokens exist). Rows outside it are answered as if they did not exist."""

    everything: bool = True
    owner_id: int | None = None

    def sees(self, owner_id: int | None) -> bool:
        return self.everything or owner_id == self.owner_id

    def where(self, column: Any) -> Any:
        """A SQL condition on an owner column, or None when every row is visible."""
        return None if self.everything else column == self.owner_id


EVERYONE = Sight()


def sight(actor: Actor, visibility: str, tokens_exist: bool) -> Sight:
    """`actor`'s Sight under LABQ_VISIBILITY; `tokens_exist`: db.tokens.any_active."""
    if visibility == "all" or (actor.admin and actor.user_id is not None):
        return EVERYONE
    if actor.user_id is None:  # no token was sent: the open loopback's admin, or nobody
        return Sight(False, NOBODY) if tokens_exist else EVERYONE
    return Sight(False, actor.user_id)


def create(session: Session, name: str, role: str) -> User:
    if not NAME_RULE.match(name) or name == LOCAL_NAME:
        raise ValueError(f"user name: 1-100 letters, digits or . _ @ - (not {LOCAL_NAME!r})")
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise ValueError(f"a user named {name!r} exists already")
    user = User(name=name, role=role, disabled=False, created_at=utcnow())
    session.add(user)
    session.flush()
    return user


def by_name(session: Session, name: str) -> User | None:
    return session.scalar(select(User).where(User.name == name))


def all_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def disable(session: Session, name: str) -> bool:
    result = session.execute(
        update(User).where(User.name == name, User.disabled.is_(False)).values(disabled=True)
    )
    return rowcount(result) == 1


def token_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        select(Token.user_id, func.count()).where(Token.revoked.is_(False)).group_by(Token.user_id)
    )
    return {int(u): int(n) for u, n in rows}


def actor_for_token(session: Session, token_hash: str) -> Actor | None:
    """The live token's user (None: no such token, revoked, or its user is disabled)."""
    row = session.execute(
        select(Token.id, User.id, User.name, User.role)
        .join(User, User.id == Token.user_id)
        .where(
            Token.token_hash == token_hash,
            Token.revoked.is_(False),
            User.disabled.is_(False),
        )
    ).one_or_none()
    if row is None:
        return None
    token_id, user_id, name, role = row
    return Actor(user_id=user_id, name=name, role=role, token_id=token_id)


def names(session: Session, user_ids: set[int | None]) -> dict[int | None, str]:
    """{user id: name} for display; None (no owner row) is the implicit local admin."""
    found: dict[int | None, str] = {None: LOCAL_NAME}
    ids = {i for i in user_ids if i is not None}
    if ids:
        for user_id, name in session.execute(select(User.id, User.name).where(User.id.in_(ids))):
            found[user_id] = name
    return found


def owner_name(session: Session, owner_id: int | None) -> str:
    return names(session, {owner_id})[owner_id]


# --- audit log ---------------------------------------------------------------------------------


def audit(session: Session, actor: Actor, action: str, target: str) -> None:
    """Record a write in the caller's transaction: it commits or rolls back with the write."""
    session.add(
        AuditEntry(
            at=utcnow(),
            user_id=actor.user_id,
            actor=actor.name,
            action=action,
            target=target[:200],
            source=(actor.source or "")[:200],
        )
    )


def audit_log(
    session: Session, *, user: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[AuditEntry], int]:
    query = select(AuditEntry)
    if user:
        query = query.where(AuditEntry.actor == user)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total or 0)
