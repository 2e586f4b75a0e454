"""/sweeps: queue a grid of experiments, follow it, compare its configurations, cancel it."""

import csv
import io
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api import deletion, idempotency
from api.deps import (
    JSON_WRITE,
    MAX_ID,
    ActorDep,
    IdPath,
    NoBody,
    SessionDep,
    SettingsDep,
    SightDep,
    may_act,
)
from api.idempotency import Idempotency, IdempotencyDep
from api.routes.experiments import PriorityQuery, enqueue_stored
from api.schemas import Deleted
from api.sweep_schemas import (
    METRICS,
    SweepAccepted,
    SweepPublic,
    SweepSummary,
    child_row,
    public,
    summary,
)
from core import figures
from core.settings import Settings
from core.sweep import SweepError, SweepSpec, expand
from db import repo, scheduling, users
from db import sweeps as db_sweeps
from db.models import Sweep

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


def queue_sweep(
    session: Session,
    settings: Settings,
    spec: SweepSpec,
    response: Response,
    actor: users.Actor,
    preset: str | None = None,
    loc_prefix: tuple[int | str, ...] = ("body",),
    idem: Idempotency | None = None,
    priority: int = scheduling.NORMAL,
) -> SweepAccepted | JSONResponse:
    """Expand and check every child (paths, values, child cap, cost cap), store the sweep and all
    children in one transaction, commit, then enqueue. Any problem: 422, nothing stored. With an
    Idempotency-Key seen before: the first answer, nothing stored."""
    try:
        children = expand(spec, settings.max_sweep_children, settings.max_job_flops)
    except SweepError as exc:
        raise RequestValidationError(
            [
                {"loc": (*loc_prefix, *p.field.split(".")), "msg": p.msg, "type": p.type}
                for p in exc.problems
            ]
        ) from None
    if (first := idempotency.replay(session, idem)) is not None:
        return first
    idempotency.reserve(session, idem)
    scheduling.check_user_limits(session, actor.user_id, actor.role, len(children), priority)
    base = {**spec.base, "seed": children[0].spec.seed}  # the seed repeats count from
    sweep, exps = db_sweeps.create_sweep(
        session,
        name=spec.name,
        base=base,
        grid=spec.grid,
        repeats=spec.repeats,
        preset=preset,
        children=[(c.spec, c.config_key) for c in children],
        token_id=actor.token_id,
        owner_id=actor.user_id,
        priority=priority,
        fuse=spec.fuse,
    )
    users.audit(session, actor, "sweep.submit", f"sweep {sweep.id} ({len(exps)} experiments)")
    answer = SweepAccepted(
        id=sweep.id, status="queued", children=[e.id for e in exps], url=f"/sweeps/{sweep.id}"
    )
    idempotency.remember(session, idem, 202, answer, answer.url)
    session.commit()
    answer.warning = enqueue_stored(exps)
    response.headers["Location"] = answer.url
    return answer


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A string that a spreadsheet would read as a formula, prefixed with ' so it stays text
    (OWASP's advice for CSV injection); numbers are written as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def get_sweep(sweep_id: IdPath, session: SessionDep, sight: SightDep) -> Sweep:
    sweep = db_sweeps.get_sweep(session, sweep_id)
    if sweep is None or not sight.sees(sweep.owner_id):
        raise HTTPException(404, f"sweep {sweep_id} not found")
    return sweep


SweepDep = Annotated[Sweep, Depends(get_sweep)]


def _public(session: Session, sweep: Sweep) -> SweepPublic:
    exps = db_sweeps.children(session, sweep.id)
    counts = db_sweeps.status_counts(session, [sweep.id])[sweep.id]
    return public(sweep, exps, counts, users.owner_name(session, sweep.owner_id))


@router.post("", status_code=202, response_model=SweepAccepted, responses=idempotency.RESPONSES)
def create(
    spec: SweepSpec,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idem: IdempotencyDep,
    actor: ActorDep,
    priority: PriorityQuery = "normal",
) -> SweepAccepted | JSONResponse:
    """Store a sweep and every child, queued: 202 with `Location`. `?priority=` sets every
    child's (see POST /experiments; per-user limits count every child).

    Rules beyond the schema (each a 422 naming the field, and nothing stored): every grid path
    must exist in the spec and every cell must be a valid experiment under the cost cap
    (LABQ_MAX_JOB_FLOPS); configurations x repeats must stay under LABQ_MAX_SWEEP_CHILDREN. With
    an `Idempotency-Key`, a re-send of the same body gets the first answer and stores nothing;
    the same key with another body is a 422 naming the header."""
    return queue_sweep(
        session,
        settings,
        spec,
        response,
        actor,
        idem=idem,
        priority=scheduling.PRIORITIES[priority],
    )


@router.get("", response_model=list[SweepSummary])
def list_(
    session: SessionDep,
    response: Response,
    preset: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    *,
    sight: SightDep,
) -> list[SweepSummary]:
    rows, total = db_sweeps.list_sweeps(
        session, preset=preset, limit=limit, offset=offset, readable=sight.where(Sweep.owner_id)
    )
    counts = db_sweeps.status_counts(session, [s.id for s in rows])
    response.headers["X-Total-Count"] = str(total)
    owners = users.names(session, {s.owner_id for s in rows})
    return [summary(s, counts[s.id], owners[s.owner_id]) for s in rows]


@router.get("/{sweep_id}", response_model=SweepPublic)
def read(sweep: SweepDep, session: SessionDep) -> SweepPublic:
    return _public(session, sweep)


def mean_history(histories: list[list[dict[str, Any]]]) -> list[dict[str, float]]:
    """Per epoch, the mean validation accuracy and loss over the repeats that reached it."""
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for hist in histories:
        for row in hist:
            by_epoch.setdefault(row["epoch"], []).append(row)
    out = []
    for epoch in sorted(by_epoch):
        row = {"epoch": epoch}
        for metric in ("val_accuracy", "val_loss"):
            vals = [r[metric] for r in by_epoch[epoch] if r[metric] is not None]
            row[metric] = sum(vals) / len(vals) if vals else float("nan")
        out.append(row)
    return out


@router.get(
    "/{sweep_id}/compare.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def compare(sweep: SweepDep, session: SessionDep) -> Response:
    """Validation accuracy and loss per epoch of every configuration overlaid (mean of repeats)."""
    groups: dict[str, tuple[str, list[list[dict[str, Any]]]]] = {}
    for exp in db_sweeps.children(session, sweep.id):
        hist = [
            {"epoch": h.epoch, "val_accuracy": h.val_accuracy, "val_loss": h.val_loss}
            for h in repo.history(session, exp.id)
        ]
        if hist:
            row = child_row(sweep, exp)
            groups.setdefault(exp.config_key or str(exp.id), (row.label, []))[1].append(hist)
    if not groups:
        raise HTTPException(409, f"sweep {sweep.id} has no finished epoch yet")
    series = [
        (lbl + (f" (mean of {len(h)})" if len(h) > 1 else ""), mean_history(h))
        for lbl, h in groups.values()
    ]
    return Response(figures.compare_png(series, sweep.name), media_type="image/png")


@router.get(
    "/{sweep_id}/results.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {}}}},
)
def results_csv(sweep: SweepDep, session: SessionDep) -> Response:
    """One row per child: its configuration (one column per grid path), seed, status, metrics."""
    rows = _public(session, sweep).children
    paths = list(sweep.grid)
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["sweep_id", "experiment_id", "config_key", "label", *paths, "seed", "status"]
    writer.writerow([csv_cell(c) for c in [*header, "diverged", *METRICS]])
    for r in rows:
        config = [
            json.dumps(r.config[p]) if isinstance(r.config[p], (list, dict)) else r.config[p]
            for p in paths
        ]
        cells = [
            sweep.id,
            r.id,
            r.config_key,
            r.label,
            *config,
            r.seed,
            r.status,
            r.diverged,
            *("" if getattr(r, m) is None else getattr(r, m) for m in METRICS),
        ]
        writer.writerow([csv_cell(c) for c in cells])
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="sweep-{sweep.id}.csv"'},
    )


@router.delete("/{sweep_id}", response_model=Deleted, responses=deletion.RESPONSES)
def delete(sweep: SweepDep, session: SessionDep, actor: ActorDep) -> Deleted:
    """Delete a sweep with all its runs, their epochs, artifacts and checkpoints; runs still queued
    or training are stopped by it (within an epoch). Its owner or an admin (anyone else: 403)."""
    return deletion.delete(session, actor, "sweep", sweep.id, sweep.owner_id)


@router.post(
    "/{sweep_id}/cancel", status_code=202, response_model=SweepPublic, openapi_extra=JSON_WRITE
)
def cancel(
    sweep: SweepDep, session: SessionDep, actor: ActorDep, body: NoBody = None
) -> SweepPublic:
    """Queued children are cancelled at once; running ones stop at their next epoch end. Its
    owner or an admin (anyone else: 403 naming the owner)."""
    may_act(session, actor, sweep.owner_id, f"sweep {sweep.id}")
    db_sweeps.cancel_sweep(session, sweep.id)
    users.audit(session, actor, "sweep.cancel", f"sweep {sweep.id}")
    session.commit()
    return _public(session, sweep)
