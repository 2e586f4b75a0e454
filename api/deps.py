"""Request dependencies."""

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Body, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from core.settings import Settings, get_settings
from db import repo, tokens, users
from db.models import Experiment
from db.session import session_scope


def get_session() -> Iterator[Session]:
    """One session per request: committed when the handler returns, rolled back on error."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_actor(request: Request) -> users.Actor:
    """The user the request acts for (set by api.auth; the local admin when it did not run)."""
    actor = request.scope.get("labq.actor")
    return actor if isinstance(actor, users.Actor) else users.LOCAL


ActorDep = Annotated[users.Actor, Depends(get_actor)]


def get_sight(session: SessionDep, actor: ActorDep) -> users.Sight:
    """Whose runs, sweeps and searches this caller may read (LABQ_VISIBILITY, db/users.Sight)."""
    visibility = get_settings().visibility
    if visibility == "all":
        return users.EVERYONE
    return users.sight(actor, visibility, tokens.any_active(session))


SightDep = Annotated[users.Sight, Depends(get_sight)]


def may_act(session: Session, actor: users.Actor, owner_id: int | None, what: str) -> None:
    """403 naming the owner unless `actor` may change `what` (e.g. "experiment 5")."""
    if not actor.may_act_on(owner_id):
        owner = users.owner_name(session, owner_id)
        raise HTTPException(
            403,
            f"{what} belongs to {owner!r}: only {owner!r} or an admin may change it "
            f"(you are {actor.name!r}, {actor.role})",
        )


# Ids are 64-bit in every database labq supports: a larger number is a 422, not a driver error.
MAX_ID = 2**63 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


def get_experiment(experiment_id: IdPath, session: SessionDep, sight: SightDep) -> Experiment:
    """The run, or 404: also when it is not the caller's to read (LABQ_VISIBILITY=own)."""
    exp = repo.get(session, experiment_id)
    if exp is None or not sight.sees(exp.owner_id):
        raise HTTPException(404, f"experiment {experiment_id} not found")
    return exp


ExperimentDep = Annotated[Experiment, Depends(get_experiment)]


# Every write is JSON, also one that takes no input (api/web_guards.py refuses other writes).
# Such a route documents a JSON body anyway, `{}`, and marks it required, so that schema-generated
# clients send `Content-Type: application/json`; the server also takes no body at all.
JSON_WRITE: dict[str, Any] = {"requestBody": {"required": True}}


class NoInput(BaseModel):
    """`{}`: this write takes no input."""

    model_config = ConfigDict(extra="forbid")


NoBody = Annotated[
    NoInput | None,
    Body(description="`{}` or no body at all; either way with Content-Type: application/json"),
]
