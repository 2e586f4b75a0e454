"""/audit: the log of every write (who, what, when, from where), for admins; /me: who is asking."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from api.deps import MAX_ID, ActorDep, SessionDep
from db import tokens, users

router = APIRouter(prefix="/audit", tags=["audit"])


class AuditPublic(BaseModel):
    id: int
    at: datetime
    actor: str  # the user's name at the time (`local`: the implicit local admin)
    action: str  # e.g. experiment.submit, experiment.cancel, sweep.cancel, user.add
    target: str  # e.g. "experiment 12"
    source: str  # the client's address, or `cli` (a command run on the database directly)


@router.get("", response_model=list[AuditPublic])
def list_(
    session: SessionDep,
    actor: ActorDep,
    response: Response,
    user: Annotated[str | None, Query(max_length=100, description="only this user's")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
) -> list[AuditPublic]:
    """Newest first; `X-Total-Count` gives the number of matching entries. Admins only (403);
    without a token only while no token exists (the open loopback stack's local admin)."""
    if not actor.admin or (actor.user_id is None and tokens.any_active(session)):
        raise HTTPException(403, f"the audit log is for admins (you are {actor.name!r})")
    rows, total = users.audit_log(session, user=user, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(total)
    return [AuditPublic.model_validate(r, from_attributes=True) for r in rows]


class Me(BaseModel):
    name: str  # `local`: the implicit local admin of an open loopback stack
    role: str  # admin, member or viewer: what this caller may change (api/deps.may_act)
    signed_in: bool  # sent a token


me_router = APIRouter(tags=["audit"])


@me_router.get("/me", response_model=Me)
def me(session: SessionDep, actor: ActorDep) -> Me:
    """Who the caller is and what their role lets them change, for pages that show only the
    actions a person may take. Without a token once tokens exist, reads stay open (on loopback)
    but writes need one: such a caller is a viewer."""
    if actor.user_id is None and tokens.any_active(session):
        return Me(name=actor.name, role=users.VIEWER, signed_in=False)
    return Me(name=actor.name, role=actor.role, signed_in=actor.token_id is not None)
