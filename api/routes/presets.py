"""/presets: the lab's twelve sections; running one queues it as a sweep (a search preset: as a
search)."""

import copy
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import JSON_WRITE, ActorDep, SessionDep, SettingsDep
from api.idempotency import IdempotencyDep
from api.routes.searches import SearchAccepted, queue_search
from api.routes.sweeps import queue_sweep
from api.sweep_schemas import SweepAccepted
from core.search import SearchSpec
from core.spec import ExperimentSpec, field_path
from core.sweep import MAX_REPEATS, SweepSpec, set_path
from lab import presets as lab

router = APIRouter(prefix="/presets", tags=["presets"])


class PresetRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repeats: int = Field(
        1,
        ge=1,
        le=MAX_REPEATS,
        description="seeds per configuration (a search preset: 1; its confirmation sets seeds)",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        max_length=20,
        description='dotted paths set on the preset\'s base spec, e.g. {"train_samples": 6000, '
        '"epochs": 2}; the grid still sets its own paths',
    )
    name: str | None = Field(None, min_length=1, max_length=200)


# response_model=None: FastAPI would otherwise turn the return annotation into a response model.
@router.get("", response_model=None)
def list_() -> list[dict[str, Any]]:
    """Every section of the lab: what it asks, its sweep, and the numbers the lab published."""
    return [p.public() for p in lab.presets().values()]


@router.get("/{name}", response_model=None)
def read(name: str) -> dict[str, Any]:
    preset = lab.get(name)
    if preset is None:
        raise HTTPException(404, f"preset {name!r} not found (GET /presets lists them)")
    return preset.public()


def _apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set each override on a copy of the base and validate it; errors name `overrides.<path>`."""
    doc = copy.deepcopy(base)
    problems: list[dict[str, Any]] = []
    for path, value in overrides.items():
        try:
            set_path(doc, path, value)
        except KeyError as exc:
            problems.append(
                {
                    "loc": ("body", "overrides", *path.split(".")),
                    "msg": f"no such path in the spec: {exc.args[0]}",
                    "type": "bad_path",
                }
            )
    if not problems:
        try:
            ExperimentSpec.model_validate(doc)
        except ValidationError as exc:
            for e in exc.errors():
                loc = field_path(e["loc"])
                problems.append(
                    {"loc": ("body", "overrides", *loc), "msg": e["msg"], "type": e["type"]}
                )
    if problems:
        raise RequestValidationError(problems)
    return doc


@router.post(
    "/{name}/run",
    status_code=202,
    response_model=SweepAccepted | SearchAccepted,
    openapi_extra=JSON_WRITE,
)
def run(
    name: str,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
    idem: IdempotencyDep,
    actor: ActorDep,
    body: PresetRun | None = None,
) -> SweepAccepted | SearchAccepted | JSONResponse:
    """Queue a preset: a sweep of its grid, or, for a search preset (`kind` "search"), its
    search (the overrides set on its base; every problem a 422 naming the field)."""
    preset = lab.get(name)
    if preset is None:
        raise HTTPException(404, f"preset {name!r} not found (GET /presets lists them)")
    if not preset.runnable:
        raise HTTPException(409, f"preset {name!r} is not a sweep: {preset.description}")
    assert preset.base is not None  # a runnable preset has a base
    body = body or PresetRun()
    base = _apply_overrides(preset.base, body.overrides)
    if preset.search is not None:
        if body.repeats != 1:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "repeats"),
                        "msg": "a search preset runs each trial once; its confirmation re-runs "
                        "the best on new seeds",
                        "type": "search_preset",
                    }
                ]
            )
        search = SearchSpec.model_validate(
            {**preset.search, "name": body.name or preset.name, "base": base}
        )
        return queue_search(
            session, settings, search, response, actor, preset=preset.name, idem=idem
        )
    spec = SweepSpec(
        name=body.name or preset.name, base=base, grid=preset.grid, repeats=body.repeats
    )
    return queue_sweep(session, settings, spec, response, actor, preset=preset.name, idem=idem)
