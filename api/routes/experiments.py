"""/experiments: submit, list, read, history, figures, cancel."""

import io
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api import deletion, idempotency
from api.deps import (
    JSON_WRITE,
    MAX_ID,
    ActorDep,
    ExperimentDep,
    IdPath,
    NoBody,
    SessionDep,
    SettingsDep,
    get_actor,
    get_experiment,
    get_sight,
    may_act,
)
from api.idempotency import Idempotency, IdempotencyDep
from api.schemas import (
    Accepted,
    Deleted,
    EpochPublic,
    ExperimentPage,
    ExperimentPublic,
    ExperimentSummary,
    Metrics,
)
from core import figures
from core.constants import CANCELLED, QUEUED, STATUSES
from core.model_artifacts import FIRST_KERNEL
from core.queue import enqueue, spec_flops
from core.spec import ExperimentSpec, architecture, cost_error
from db import repo, scheduling, searches, users
from db.models import Experiment, utcnow
from db.session import session_scope

log = logging.getLogger("labq.api")
router = APIRouter(prefix="/experiments", tags=["experiments"])

PriorityQuery = Annotated[
    Literal["low", "normal", "high"],
    Query(description="where the job ranks among queued jobs: low, normal or high"),
]
StatusFilter = Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")]


def check_cost(
    spec: ExperimentSpec, max_flops: float, loc: tuple[int | str, ...] = ("body",)
) -> None:
    """The whole-job cost cap, reported like any other validation error."""
    err = cost_error(spec, max_flops)
    if err:
        raise RequestValidationError([{"loc": loc, "msg": err, "type": "cost_cap"}])


def submit(
    session: Session,
    spec: ExperimentSpec,
    actor: users.Actor,
    idem: Idempotency | None = None,
    priority: int = scheduling.NORMAL,
    **kw: Any,
) -> tuple[Experiment, str | None]:
    """Store, commit, then enqueue. A broker that is down leaves the job queued in SQL; it is
    re-sent when a worker (or `labq up`) starts, so the submission is never lost. With an
    Idempotency-Key, the key and its answer are stored in the same transaction as the job.
    Over a per-user limit: LimitExceeded (429), nothing stored."""
    idempotency.reserve(session, idem)
    scheduling.check_user_limits(session, actor.user_id, actor.role, 1, priority)
    exp = repo.create_experiment(
        session, spec, token_id=actor.token_id, owner_id=actor.user_id, priority=priority, **kw
    )
    users.audit(session, actor, "experiment.submit", f"experiment {exp.id}")
    idempotency.remember(session, idem, 202, accepted(exp), f"/experiments/{exp.id}")
    session.commit()
    return exp, enqueue_stored([exp])


def accepted(exp: Experiment, warning: str | None = None) -> Accepted:
    return Accepted(id=exp.id, status=exp.status, url=f"/experiments/{exp.id}", warning=warning)


def enqueue_stored(exps: list[Experiment]) -> str | None:
    """Send already committed jobs to the broker, each with the time limits of its cost; returns a
    warning instead of failing when the broker is down (the jobs stay queued in SQL and are
    re-sent when a worker starts)."""
    ids = [e.id for e in exps]
    try:
        for exp in exps:
            enqueue(exp.id, spec_flops(exp.spec))
        return None
    except Exception as exc:
        log.warning("broker unavailable for experiment(s) %s: %s", ids, exc)
        return "broker unavailable: the job is stored and will be sent when a worker starts"


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a and b else None


def arch_of(raw: dict[str, Any]) -> str:
    """The one-line architecture; a stored spec that no longer validates still gets a row."""
    try:
        return architecture(ExperimentSpec.model_validate(raw))
    except ValueError:
        return "(invalid spec)"


def traceback_for(exp: Experiment, viewer: int | None) -> str | None:
    """A failed run's traceback (server paths, code) is shown only to whoever submitted the run:
    the same token, or for a run submitted without one (an open loopback stack, one local user),
    a caller without one."""
    return exp.traceback if exp.token_id == viewer else None


def to_public(session: Session, exp: Experiment, viewer: int | None) -> ExperimentPublic:
    """`viewer`: the token id the caller acts with (None: no token)."""
    position = (
        scheduling.queue_positions(session, [exp.id]).get(exp.id) if exp.status == QUEUED else None
    )
    started = exp.started_at or (utcnow() if exp.status == QUEUED else None)
    base = f"/experiments/{exp.id}"
    return ExperimentPublic(
        id=exp.id,
        name=exp.name,
        architecture=arch_of(exp.spec),
        status=exp.status,
        spec=exp.spec,
        sweep_id=exp.sweep_id,
        search_id=exp.search_id,
        owner=users.owner_name(session, exp.owner_id),
        priority=scheduling.PRIORITY_NAMES.get(exp.priority, "normal"),
        created_at=exp.created_at,
        started_at=exp.started_at,
        finished_at=exp.finished_at,
        queue_seconds=_seconds(exp.created_at, started),
        build_seconds=exp.build_seconds,
        train_seconds=exp.train_seconds,
        queue_position=position,
        epochs_done=exp.epochs_done,
        epochs_total=exp.epochs_total,
        train=Metrics(loss=exp.train_loss, accuracy=exp.train_accuracy),
        val=Metrics(loss=exp.val_loss, accuracy=exp.val_accuracy),
        test=Metrics(loss=exp.test_loss, accuracy=exp.test_accuracy),
        best_val_accuracy=exp.best_val_accuracy,
        best_val_loss=exp.best_val_loss,
        diverged=exp.diverged,
        params=exp.params,
        layers=exp.layers,
        model=exp.model_info,
        evaluation=exp.evaluation,
        error=exp.error,
        traceback=traceback_for(exp, viewer),
        cancel_requested=exp.cancel_requested,
        attempt=exp.attempt,
        worker=exp.worker,
        device=exp.device,
        fuse=exp.fuse,
        fused=exp.fused,
        links={
            "self": base,
            "history": f"{base}/history",
            "filters": f"{base}/filters.png",
            "history_png": f"{base}/history.png",
            "cancel": f"{base}/cancel",
            "model": f"{base}/model.keras",
            "evaluation": f"{base}/evaluation",
            "confusion_png": f"{base}/confusion.png",
            "mistakes_png": f"{base}/mistakes.png",
            "predict": f"{base}/predict",
        },
    )


def to_summary(
    exp: Experiment, queue_position: int | None = None, owners: dict[int | None, str] | None = None
) -> ExperimentSummary:
    """`owners`: {user id: name} covering exp.owner_id (db.users.names)."""
    return ExperimentSummary(
        owner=(owners or {}).get(exp.owner_id, users.LOCAL_NAME),
        priority=scheduling.PRIORITY_NAMES.get(exp.priority, "normal"),
        id=exp.id,
        name=exp.name,
        architecture=arch_of(exp.spec),
        status=exp.status,
        sweep_id=exp.sweep_id,
        created_at=exp.created_at,
        epochs_done=exp.epochs_done,
        epochs_total=exp.epochs_total,
        val_accuracy=exp.val_accuracy,
        test_accuracy=exp.test_accuracy,
        train_seconds=exp.train_seconds,
        params=exp.params,
        queue_position=queue_position,
        url=f"/experiments/{exp.id}",
    )


@router.post("", status_code=202, response_model=Accepted, responses=idempotency.RESPONSES)
def create(
    spec: ExperimentSpec,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idem: IdempotencyDep,
    actor: ActorDep,
    priority: PriorityQuery = "normal",
) -> Accepted | JSONResponse:
    """Store the experiment and queue it: 202 with `Location`. `?priority=low|normal|high` ranks
    it among the queued jobs (docs/guarantees.md, fair share); members may have at most
    LABQ_MAX_HIGH_QUEUED_PER_USER queued high-priority jobs, and per-user limits on queued jobs
    and daily training seconds apply (429 naming the limit, with Retry-After).

    Rules beyond the schema (each a 422 naming the field): the whole job's estimated cost (6 FLOP
    per weight per training image plus 2 per validation image, every epoch) must stay under
    LABQ_MAX_JOB_FLOPS; a `validation.holdout` must be smaller than the training images in use
    (`train_samples`, or 60,000). With an `Idempotency-Key`, a re-send of the same body gets the
    first answer and stores nothing; the same key with another body is a 422 naming the header."""
    check_cost(spec, settings.max_job_flops)
    if (first := idempotency.replay(session, idem)) is not None:
        return first
    exp, warning = submit(session, spec, actor, idem, scheduling.PRIORITIES[priority])
    response.headers["Location"] = f"/experiments/{exp.id}"
    return accepted(exp, warning)


# The two most polled routes are async and do all their database work in one worker thread:
# a sync route with sync dependencies costs four or five thread hops per request (session open
# and close, lookup, body, response validation), each a wait for the GIL under load.


@router.get("", response_model=ExperimentPage)
async def list_(
    status: StatusFilter = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    sweep_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    owner: Annotated[
        str | None,
        Query(
            max_length=100,
            description="`me` (the caller's own runs) or a user's name (`local`: runs "
            "submitted without a token)",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    *,
    actor: ActorDep,
) -> ExperimentPage:
    return await run_in_threadpool(_page, status, name, sweep_id, owner, actor, limit, offset)


def _owner_filter(session: Session, owner: str | None, actor: users.Actor) -> dict[str, Any]:
    """`?owner=` as list_experiments arguments; an unknown user is a 422 naming the parameter."""
    if owner is None:
        return {}
    if owner == "me":
        return {"by_owner": True, "owner_id": actor.user_id}
    if owner == users.LOCAL_NAME:
        return {"by_owner": True, "owner_id": None}
    user = users.by_name(session, owner)
    if user is None:
        raise RequestValidationError(
            [{"loc": ("query", "owner"), "msg": f"no user named {owner!r}", "type": "value_error"}]
        )
    return {"by_owner": True, "owner_id": user.id}


def _page(
    status: str | None,
    name: str | None,
    sweep_id: int | None,
    owner: str | None,
    actor: users.Actor,
    limit: int,
    offset: int,
) -> ExperimentPage:
    with session_scope() as session:
        rows, total = repo.list_experiments(
            session,
            status=status,
            name=name,
            sweep_id=sweep_id,
            limit=limit,
            offset=offset,
            readable=get_sight(session, actor).where(Experiment.owner_id),
            **_owner_filter(session, owner, actor),
        )
        positions = scheduling.queue_positions(session, [r.id for r in rows if r.status == QUEUED])
        owners = users.names(session, {r.owner_id for r in rows})
        return ExperimentPage(
            items=[to_summary(r, positions.get(r.id), owners) for r in rows],
            total=total,
            limit=limit,
            offset=offset,
        )


@router.get("/{experiment_id}", response_model=ExperimentPublic)
async def read(experiment_id: IdPath, request: Request) -> ExperimentPublic:
    return await run_in_threadpool(_read, experiment_id, get_actor(request))


def _read(experiment_id: int, actor: users.Actor) -> ExperimentPublic:
    with session_scope() as session:
        exp = get_experiment(experiment_id, session, get_sight(session, actor))
        return to_public(session, exp, actor.token_id)


@router.get("/{experiment_id}/history", response_model=list[EpochPublic])
def history(exp: ExperimentDep, session: SessionDep) -> list[EpochPublic]:
    return [
        EpochPublic.model_validate(row, from_attributes=True)
        for row in repo.history(session, exp.id)
    ]


@router.get(
    "/{experiment_id}/filters.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def filters(
    exp: ExperimentDep, session: SessionDep, n: Annotated[int, Query(ge=1, le=100)] = 10
) -> Response:
    art = repo.get_artifact(session, exp.id, FIRST_KERNEL)
    if art is None:
        raise HTTPException(
            409, f"experiment {exp.id} has no trained weights yet (status {exp.status})"
        )
    kernel = np.load(io.BytesIO(art.data))
    return Response(figures.filters_png(kernel, n), media_type="image/png")


@router.get(
    "/{experiment_id}/history.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def history_png(exp: ExperimentDep, session: SessionDep) -> Response:
    rows = history(exp, session)
    if not rows:
        raise HTTPException(
            409, f"experiment {exp.id} has no finished epoch yet (status {exp.status})"
        )
    return Response(
        figures.history_png([r.model_dump() for r in rows], exp.name), media_type="image/png"
    )


@router.post(
    "/{experiment_id}/cancel",
    status_code=202,
    response_model=ExperimentPublic,
    openapi_extra=JSON_WRITE,
)
def cancel(
    exp: ExperimentDep, session: SessionDep, actor: ActorDep, body: NoBody = None
) -> ExperimentPublic:
    """Cancel a run: its owner or an admin (anyone else: 403 naming the owner)."""
    may_act(session, actor, exp.owner_id, f"experiment {exp.id}")
    status = repo.request_cancel(session, exp.id)
    users.audit(session, actor, "experiment.cancel", f"experiment {exp.id}")
    asked: list[int] = []
    if exp.search_id is not None and status == CANCELLED:  # a queued trial: its search goes on
        asked = searches.top_up(session, exp.search_id)
    new = [e for i in asked if (e := session.get(Experiment, i)) is not None]
    session.commit()
    enqueue_stored(new)
    session.refresh(exp)
    return to_public(session, exp, actor.token_id)


@router.delete(
    "/{experiment_id}",
    response_model=Deleted,
    responses={**deletion.RESPONSES, 409: {"description": "the run belongs to a sweep or search"}},
)
def delete(exp: ExperimentDep, session: SessionDep, actor: ActorDep) -> Deleted:
    """Delete a run with its epochs, artifacts and checkpoints; one still queued or training is
    stopped by it (within an epoch). Its owner or an admin (anyone else: 403). A run of a sweep or
    search is deleted with it (DELETE /sweeps/{id}, /searches/{id}): 409."""
    for kind, path, parent in (
        ("sweep", "sweeps", exp.sweep_id),
        ("search", "searches", exp.search_id),
    ):
        if parent is not None:
            raise HTTPException(
                409,
                f"experiment {exp.id} is a run of {kind} {parent}: delete the {kind} "
                f"(DELETE /{path}/{parent})",
            )
    return deletion.delete(session, actor, "experiment", exp.id, exp.owner_id)


@router.post(
    "/{experiment_id}/retry",
    status_code=202,
    response_model=ExperimentPublic,
    responses={409: {"description": "the experiment is not failed or cancelled"}},
    openapi_extra=JSON_WRITE,
)
def retry(
    exp: ExperimentDep, session: SessionDep, actor: ActorDep, body: NoBody = None
) -> ExperimentPublic:
    """Queue a failed or cancelled experiment again, from scratch (its epochs and results are
    cleared; id, name, spec and owner are kept). Its owner or an admin (anyone else: 403)."""
    may_act(session, actor, exp.owner_id, f"experiment {exp.id}")
    if exp.status in repo.RETRYABLE:
        # the caller is the owner (a member, under their limits) or an admin (none)
        scheduling.check_user_limits(session, actor.user_id, actor.role, 1, exp.priority)
    if not repo.retry(session, exp.id, token_id=actor.token_id):
        raise HTTPException(
            409,
            f"experiment {exp.id} is {exp.status}; only failed or cancelled "
            "experiments can be retried",
        )
    users.audit(session, actor, "experiment.retry", f"experiment {exp.id}")
    session.commit()
    session.refresh(exp)
    enqueue_stored([exp])
    return to_public(session, exp, actor.token_id)
