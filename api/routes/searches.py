"""/searches: Optuna chooses the trials, its pruner stops weak ones, a confirmation picks honestly.

A search's trials are ordinary experiments (in the runs list, with history, cancel, leases and
resume). The first `parallel` trials are asked for here, at create; each later one by the worker
that ends a trial (db/searches.py). Once every trial has ended, the top `confirm.top`
configurations are re-run on `confirm.seeds` new seeds, and the winner is chosen by the rule in
docs/guarantees.md; only its test accuracy is reported.
"""

import warnings
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

import optuna
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
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
from core import figures
from core.constants import FINISHED, QUEUED, RUNNING
from core.search import SearchSpec, check
from core.settings import Settings
from core.sweep import SweepError, label
from db import scheduling, users
from db import searches as db_searches
from db.models import Experiment, Search
from db.scheduling import NORMAL

router = APIRouter(prefix="/searches", tags=["searches"])


class SearchAccepted(BaseModel):
    id: int
    status: str
    trials: list[int]
    url: str
    warning: str | None = None


class TrialRow(BaseModel):
    id: int
    number: int | None  # None for a confirmation run
    confirm_of: int | None
    status: str
    params: dict[str, Any]
    label: str
    epochs_done: int
    epochs_total: int
    value: float | None  # the objective: the last recorded epoch's (several: the first's)
    values: list[float] | None = None  # several objectives: one per objective, once succeeded
    train_seconds: float | None
    model_params: int | None


class SearchSummary(BaseModel):
    id: int
    name: str
    owner: str
    priority: str  # low, normal or high: its runs' place among queued ones
    status: str
    created_at: datetime
    trials_asked: int
    trials_target: int
    counts: dict[str, int]
    best_value: float | None


class SearchPublic(SearchSummary):
    spec: dict[str, Any]
    objective: dict[str, str]  # several objectives: the first
    objectives: list[dict[str, str]]
    pareto_front: list[int] | None  # several objectives: the non-dominated trials' numbers
    best: TrialRow | None
    trials: list[TrialRow]
    confirmation: list[TrialRow]
    result: dict[str, Any] | None


def _status(search: Search, counts: Counter[str]) -> str:
    if search.result is not None:
        return "done"
    if search.cancelled:
        return "cancelled" if not (counts[QUEUED] + counts[RUNNING]) else "cancelling"
    return "running" if counts[RUNNING] else "queued" if counts[QUEUED] else "running"


def _rows(session: Session, search: Search, exps: list[Experiment]) -> list[TrialRow]:
    spec = db_searches.spec_of(search)
    values = db_searches.objective_values(session, [e.id for e in exps], spec.objective.metric)
    multi = db_searches.trial_values(session, spec, exps) if db_searches.several(spec) else {}
    rows = []
    for e in exps:
        t = e.search_trial or {}
        params = t.get("params") or {}
        if db_searches.several(spec):
            values[e.id] = (multi[e.id] or [])[:1]
        rows.append(
            TrialRow(
                id=e.id,
                number=t.get("number"),
                confirm_of=t.get("confirm_of"),
                status=e.status,
                params=params,
                label=label(params) if params else e.name,
                epochs_done=e.epochs_done,
                epochs_total=e.epochs_total,
                value=values[e.id][-1] if values[e.id] else None,
                train_seconds=e.train_seconds,
                model_params=e.params,
                values=multi.get(e.id),
            )
        )
    return rows


def _best(search: Search, rows: list[TrialRow]) -> TrialRow | None:
    done = [
        r for r in rows if r.number is not None and r.status == "succeeded" and r.value is not None
    ]
    if not done or db_searches.several(db_searches.spec_of(search)):
        return None
    maximize = db_searches.spec_of(search).objective.direction == "maximize"
    return (max if maximize else min)(done, key=lambda r: r.value or 0.0)


def _summary(
    search: Search, counts: Counter[str], best: TrialRow | None, asked: int, owner: str
) -> dict[str, Any]:
    spec = db_searches.spec_of(search)
    return {
        "id": search.id,
        "name": search.name,
        "owner": owner,
        "priority": scheduling.PRIORITY_NAMES[search.priority],
        "status": _status(search, counts),
        "created_at": search.created_at,
        "trials_asked": asked,
        "trials_target": spec.trials,
        "counts": dict(counts),
        "best_value": best.value if best else None,
    }


ENDED_SEARCH = ("done", "cancelled")  # nothing of the search changes any more


def search_public(session: Session, search: Search) -> SearchPublic:
    exps = db_searches.members(session, search.id)
    rows = _rows(session, search, exps)
    trials = [r for r in rows if r.number is not None]
    counts = Counter(e.status for e in exps if db_searches.is_trial(e))
    best = _best(search, rows)
    spec = db_searches.spec_of(search)
    several = db_searches.several(spec)
    trial_exps = [e for e in exps if db_searches.is_trial(e)]
    return SearchPublic(
        **_summary(search, counts, best, len(trials), users.owner_name(session, search.owner_id)),
        spec=search.spec,
        objective=spec.goals()[0].model_dump(),
        objectives=[g.model_dump() for g in spec.goals()],
        pareto_front=db_searches.pareto_front(session, search, trial_exps) if several else None,
        best=best,
        trials=trials,
        confirmation=[r for r in rows if r.number is None],
        result=search.result,
    )


def get_search(search_id: IdPath, session: SessionDep, sight: SightDep) -> Search:
    search = db_searches.get_search(session, search_id)
    if search is None or not sight.sees(search.owner_id):
        raise HTTPException(404, f"search {search_id} not found")
    return search


SearchDep = Annotated[Search, Depends(get_search)]


@router.post("", status_code=202, response_model=SearchAccepted, responses=idempotency.RESPONSES)
def create(
    spec: SearchSpec,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idem: IdempotencyDep,
    actor: ActorDep,
    priority: PriorityQuery = "normal",
) -> SearchAccepted | JSONResponse:
    """Store a search and queue its first `parallel` trials: 202 with `Location`. The search and
    every trial it asks are owned by the caller (a viewer: 403). `?priority=` sets the priority
    of every trial and confirmation run it asks for.

    Rules beyond the schema (each a 422 naming the field, nothing stored): every space path must
    exist in the spec; every corner of the space must be a valid experiment under the cost cap
    (LABQ_MAX_JOB_FLOPS); `base.validation` must be a hold-out (selection never reads the test
    set); a `grid` sampler takes int and categorical dimensions only; several `objectives`
    take no pruner and no `confirm`, and `cmaes` takes one objective. With an `Idempotency-Key`,
    a re-send of the same body gets the first answer and stores nothing; the same key with
    another body is a 422 naming the header."""
    return queue_search(
        session, settings, spec, response, actor, scheduling.PRIORITIES[priority], idem=idem
    )


def queue_search(
    session: Session,
    settings: Settings,
    spec: SearchSpec,
    response: Response,
    actor: users.Actor,
    priority: int = NORMAL,
    preset: str | None = None,
    loc: tuple[str, ...] = ("body",),
    idem: Idempotency | None = None,
) -> SearchAccepted | JSONResponse:
    """Check, store and queue a search (POST /searches, a search preset's run); every problem is
    a 422 at `loc` + the field. With an Idempotency-Key seen before: the first answer, nothing
    stored."""
    try:
        base = check(spec, settings.max_job_flops)
    except SweepError as exc:
        raise RequestValidationError(
            [
                {"loc": (*loc, *p.field.split(".")), "msg": p.msg, "type": p.type}
                for p in exc.problems
            ]
        ) from None
    if (first := idempotency.replay(session, idem)) is not None:
        return first
    idempotency.reserve(session, idem)
    scheduling.check_user_limits(session, actor.user_id, actor.role, spec.parallel, priority)
    search, ids = db_searches.create_search(
        session, spec, base, owner_id=actor.user_id, token_id=actor.token_id, priority=priority
    )
    trials = [e for i in ids if (e := session.get(Experiment, i)) is not None]
    users.audit(session, actor, "search.submit", f"search {search.id} ({len(ids)} trials)")
    answer = SearchAccepted(id=search.id, status="queued", trials=ids, url=f"/searches/{search.id}")
    idempotency.remember(session, idem, 202, answer, answer.url)
    session.commit()
    answer.warning = enqueue_stored(trials)
    response.headers["Location"] = answer.url
    return answer


@router.get("", response_model=list[SearchSummary])
def list_(
    session: SessionDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    *,
    sight: SightDep,
) -> list[SearchSummary]:
    rows, total = db_searches.list_searches(
        session, limit=limit, offset=offset, readable=sight.where(Search.owner_id)
    )
    response.headers["X-Total-Count"] = str(total)
    owners = users.names(session, {s.owner_id for s in rows})
    out = []
    for s in rows:
        exps = db_searches.members(session, s.id)
        trials = [e for e in exps if db_searches.is_trial(e)]
        counts = Counter(e.status for e in trials)
        best = _best(s, _rows(session, s, trials))
        out.append(SearchSummary(**_summary(s, counts, best, len(trials), owners[s.owner_id])))
    return out


@router.get("/{search_id}", response_model=SearchPublic)
def read(search: SearchDep, session: SessionDep) -> SearchPublic:
    """Trials (params, epochs, objective, status: `pruned` ones stopped early), the best trial,
    the confirmation runs and, once they have ended, `result`: the winner, each confirmed
    configuration's mean ± std, and the winner's test accuracy (the only test number shown)."""
    return search_public(session, search)


@router.delete("/{search_id}", response_model=Deleted, responses=deletion.RESPONSES)
def delete(search: SearchDep, session: SessionDep, actor: ActorDep) -> Deleted:
    """Delete a search with all its trials and confirmation runs, their epochs, artifacts and
    checkpoints; runs still queued or training are stopped by it. Its owner or an admin."""
    return deletion.delete(session, actor, "search", search.id, search.owner_id)


@router.post(
    "/{search_id}/cancel", status_code=202, response_model=SearchPublic, openapi_extra=JSON_WRITE
)
def cancel(
    search: SearchDep, session: SessionDep, actor: ActorDep, body: NoBody = None
) -> SearchPublic:
    """No new trial is asked; queued trials are cancelled at once, running ones stop at their
    next epoch end (or sooner: the worker polls the cancel flag inside an epoch). Its owner or an
    admin (anyone else: 403 naming the owner)."""
    may_act(session, actor, search.owner_id, f"search {search.id}")
    db_searches.cancel_search(session, search.id)
    users.audit(session, actor, "search.cancel", f"search {search.id}")
    session.commit()
    session.refresh(search)
    return search_public(session, search)


@router.get(
    "/{search_id}/progress.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def progress(search: SearchDep, session: SessionDep) -> Response:
    """The objective of every ended trial by trial number, pruned ones marked, and the best so
    far."""
    p = search_public(session, search)
    points = [
        (r.number, r.value, r.status)
        for r in p.trials
        if r.number is not None and r.value is not None and r.status in FINISHED
    ]
    if not points:
        raise HTTPException(409, f"search {search.id} has no ended trial yet")
    maximize = p.objective["direction"] == "maximize"
    png = figures.search_progress_png(points, p.objective["metric"], maximize, search.name)
    return Response(png, media_type="image/png")


def _completed(session: Session, search: Search) -> tuple[optuna.Study, list[Experiment]]:
    exps = db_searches.members(session, search.id)
    trials = [e for e in exps if db_searches.is_trial(e)]
    study = db_searches.study(session, search, trials)
    return study, trials


@router.get("/{search_id}/importance")
def importance(search: SearchDep, session: SessionDep) -> dict[str, float]:
    """Each parameter's importance to the objective over the completed trials (Optuna's default
    evaluator); 409 before two trials have completed."""
    return _importances(session, search)


def _importances(session: Session, search: Search) -> dict[str, float]:
    study, _ = _completed(session, search)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < 2:
        raise HTTPException(409, f"search {search.id} has fewer than two completed trials")
    # Several objectives: importance to the first (the evaluator reads low values as good).
    goal = db_searches.spec_of(search).goals()[0]
    sign = -1.0 if goal.direction == "maximize" else 1.0
    several = db_searches.several(db_searches.spec_of(search))
    target = (lambda t: sign * t.values[0]) if several else None
    try:
        with warnings.catch_warnings():  # with a target, the evaluator warns it minimizes it
            warnings.simplefilter("ignore", UserWarning)
            found = optuna.importance.get_param_importances(study, target=target)
        return {k: float(v) for k, v in found.items()}
    except (RuntimeError, ValueError) as exc:
        raise HTTPException(409, f"search {search.id}: no importance yet ({exc})") from None


@router.get(
    "/{search_id}/importance.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def importance_png(search: SearchDep, session: SessionDep) -> Response:
    """The importances as bars."""
    png = figures.importance_png(_importances(session, search), search.name)
    return Response(png, media_type="image/png")


@router.get(
    "/{search_id}/parallel.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def parallel(search: SearchDep, session: SessionDep) -> Response:
    """Parallel coordinates: every ended trial with a value (pruned ones at their last epoch)."""
    p = search_public(session, search)
    rows = [r for r in p.trials if r.value is not None and r.status in FINISHED]
    if not rows:
        raise HTTPException(409, f"search {search.id} has no ended trial yet")
    spec = db_searches.spec_of(search)
    axes = [
        (path.split(".")[-1], bool(getattr(dim, "log", False)), [r.params[path] for r in rows])
        for path, dim in spec.space.items()
    ]
    png = figures.parallel_png(
        axes, [r.value or 0.0 for r in rows], p.objective["metric"], search.name
    )
    return Response(png, media_type="image/png")


@router.get(
    "/{search_id}/pareto.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}},
)
def pareto(search: SearchDep, session: SessionDep) -> Response:
    """Several objectives: every completed trial on the first two objectives, the Pareto front
    marked and joined; 409 for a search of one objective or before a trial has completed."""
    spec = db_searches.spec_of(search)
    if not db_searches.several(spec):
        raise HTTPException(409, f"search {search.id} has one objective: no Pareto front")
    p = search_public(session, search)
    points = [(r.number or 0, r.values) for r in p.trials if r.values]
    if not points:
        raise HTTPException(409, f"search {search.id} has no completed trial yet")
    goals = spec.goals()
    png = figures.pareto_png(
        [(n, v[0], v[1]) for n, v in points],
        set(p.pareto_front or []),
        [(g.metric, g.direction) for g in goals[:2]],
        search.name,
    )
    return Response(png, media_type="image/png")
