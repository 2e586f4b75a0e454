"""The one path every DELETE takes: the owner or an admin, rows in one transaction with the audit
entry, then the freed space given back (db/deletion.py says what goes and how a run still
training stops)."""

from typing import Any

from sqlalchemy.orm import Session

from api.deps import may_act
from api.schemas import Deleted
from db import deletion, users
from db.session import get_engine

RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "neither its owner nor an admin (the answer names the owner)"},
}


def delete(
    session: Session, actor: users.Actor, kind: str, unit_id: int, owner_id: int | None
) -> Deleted:
    may_act(session, actor, owner_id, f"{kind} {unit_id}")
    removed = deletion.DELETERS[kind](session, unit_id)
    users.audit(
        session, actor, f"{kind}.delete", f"{kind} {unit_id} ({len(removed.experiments)} runs)"
    )
    session.commit()
    deletion.reclaim(get_engine())
    return Deleted(**vars(removed))
