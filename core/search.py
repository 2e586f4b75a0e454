"""Searches: one base spec, a space of dotted paths, and Optuna choosing which points to train.

`check()` validates a search before anything is stored: every path must exist in the spec (as
in sweeps, through core.sweep.set_path), the extremes of every dimension must give valid
experiments, and the largest point of the space must be under the cost cap. Each problem is a
`SweepError` naming the field (`space.layers.0.units.high`, `base.validation`, `sampler`).
Selection is on the hold-out, so `base.validation` must be a hold-out, never the test set.
"""

import copy
import itertools
from typing import Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.spec import ExperimentSpec, cost_error
from core.sweep import Problem, SweepError, _loc, label, set_path

MAX_TRIALS = 500
MAX_GRID_VALUES = 1000
OBJECTIVE_METRICS = ("val_accuracy", "val_loss")
# Several objectives may also weigh the cost: the last attempt's training seconds, the parameters.
GOAL_METRICS = ("val_accuracy", "val_loss", "train_seconds", "params")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatDim(_Strict):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False


class IntDim(_Strict):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False


class CategoricalDim(_Strict):
    type: Literal["categorical"]
    choices: list[str | int | float | bool | None] = Field(min_length=1, max_length=100)


Dim = FloatDim | IntDim | CategoricalDim


class Objective(_Strict):
    metric: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    direction: Literal["maximize", "minimize"] = "maximize"


class Goal(_Strict):
    """One of several objectives: a trial's value is its last epoch's (val_*), its last attempt's
    training seconds, or its model's parameter count."""

    metric: Literal["val_accuracy", "val_loss", "train_seconds", "params"]
    direction: Literal["maximize", "minimize"]


class Pruner(_Strict):
    type: Literal["asha", "hyperband", "median", "none"] = "asha"
    min_epochs: int = Field(1, ge=1, le=500, description="epochs every trial runs before pruning")
    reduction_factor: int = Field(3, ge=2, le=10, description="asha: keep 1/reduction_factor")


class Confirm(_Strict):
    top: int = Field(3, ge=1, le=10, description="configurations re-run")
    seeds: int = Field(3, ge=2, le=10, description="seeds per configuration")


class SearchSpec(_Strict):
    name: str = Field(min_length=1, max_length=200)
    base: dict[str, Any] = Field(default_factory=dict, description="an ExperimentSpec")
    space: dict[str, FloatDim | IntDim | CategoricalDim] = Field(
        min_length=1, max_length=20, description='{"dotted.path": dimension}'
    )
    objective: Objective = Field(default_factory=Objective)
    objectives: list[Goal] | None = Field(
        None,
        min_length=2,
        max_length=3,
        description="several objectives instead of `objective`: the answer is the Pareto front",
    )
    sampler: Literal["tpe", "random", "grid", "cmaes", "nsga2"] = "tpe"
    pruner: Pruner = Field(default_factory=Pruner)
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    parallel: int = Field(2, ge=1, le=50, description="trials of this search in flight at once")
    timeout_seconds: int | None = Field(
        None, ge=1, le=30 * 86400, description="no new trial is asked after this long"
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="the sampler's seed")
    confirm: Confirm | None = None
    fuse: bool = Field(
        True,
        description="runs that share a model shape may train together as one program on a JAX "
        "worker (fused trials); false: each trains alone",
    )

    @model_validator(mode="after")
    def _no_pruner_for_several(self) -> "SearchSpec":
        # Optuna's pruners take one objective: several objectives default to none (check()
        # refuses one asked for explicitly).
        if self.objectives and "pruner" not in self.model_fields_set:
            self.pruner = Pruner(type="none")
        return self

    def goals(self) -> list[Goal]:
        """The objectives, one or several, in order."""
        return self.objectives or [Goal(**self.objective.model_dump())]


def distribution(dim: Dim) -> optuna.distributions.BaseDistribution:
    if isinstance(dim, FloatDim):
        return optuna.distributions.FloatDistribution(dim.low, dim.high, log=dim.log)
    if isinstance(dim, IntDim):
        step = 1 if dim.log else dim.step
        return optuna.distributions.IntDistribution(dim.low, dim.high, log=dim.log, step=step)
    return optuna.distributions.CategoricalDistribution(dim.choices)


def grid_values(dim: Dim) -> list[Any]:
    if isinstance(dim, CategoricalDim):
        return list(dim.choices)
    if isinstance(dim, IntDim):
        return list(range(dim.low, dim.high + 1, dim.step))
    return [dim.low, dim.high]  # refused by check(): a float has no grid


def _extremes(dim: Dim) -> list[Any]:
    if isinstance(dim, CategoricalDim):
        return list(dim.choices)
    return [dim.low, dim.high]


def _dim_problems(path: str, dim: Dim, sampler: str) -> list[Problem]:
    field = f"space.{path}"
    out = []
    if isinstance(dim, FloatDim | IntDim):
        if dim.low > dim.high:
            out.append(Problem(f"{field}.low", f"low ({dim.low}) is above high ({dim.high})"))
        elif dim.log and dim.low <= 0:
            out.append(Problem(f"{field}.low", "a log scale needs low > 0"))
        if isinstance(dim, IntDim) and dim.log and dim.step != 1:
            out.append(Problem(f"{field}.step", "a log scale needs step 1"))
    if sampler == "grid" and isinstance(dim, FloatDim):
        out.append(Problem(f"{field}.type", "the grid sampler needs int or categorical dimensions"))
    if sampler == "grid" and isinstance(dim, IntDim) and not out:
        if (dim.high - dim.low) // dim.step + 1 > MAX_GRID_VALUES:
            out.append(Problem(field, f"a grid dimension takes at most {MAX_GRID_VALUES} values"))
    return out


def build(base: dict[str, Any], params: dict[str, Any], name: str, seed: int) -> ExperimentSpec:
    """The experiment of one point: `params` set on the normalized base at their paths."""
    doc = copy.deepcopy(base)
    for path in sorted(params, key=lambda p: p.count(".")):
        set_path(doc, path, params[path])
    doc["seed"] = seed
    doc["name"] = name[:200]  # `<search> #<trial>`: the trial's params are in the search's table
    return ExperimentSpec.model_validate(doc)


def _objective_problems(spec: SearchSpec) -> list[Problem]:
    out = []
    if spec.objectives is not None:
        if "objective" in spec.model_fields_set:
            out.append(Problem("objectives", "give either objective or objectives, not both"))
        seen: set[str] = set()
        for i, goal in enumerate(spec.objectives):
            if goal.metric in seen:
                out.append(Problem(f"objectives.{i}.metric", f"{goal.metric} is given twice"))
            seen.add(goal.metric)
        if spec.pruner.type != "none":
            out.append(Problem("pruner.type", 'Optuna\'s pruners take one objective: set "none"'))
        if spec.sampler == "cmaes":
            out.append(Problem("sampler", "cmaes takes one objective: use nsga2, tpe or random"))
    if spec.sampler == "cmaes" and all(isinstance(d, CategoricalDim) for d in spec.space.values()):
        out.append(Problem("sampler", "cmaes needs at least one float or int dimension"))
    return out


def check(spec: SearchSpec, max_flops: float | None) -> dict[str, Any]:
    """The normalized base (seed fixed); raises SweepError naming every problem."""
    problems: list[Problem] = _objective_problems(spec)
    for path, dim in spec.space.items():
        problems += _dim_problems(path, dim, spec.sampler)
    try:
        base = ExperimentSpec.model_validate(spec.base).model_dump(mode="json")
    except ValidationError as exc:
        problems += [
            Problem(
                "base." + _loc(e["loc"]) if e["loc"] else "base",
                e["msg"].removeprefix("Value error, "),
                e["type"],
            )
            for e in exc.errors()
        ]
        raise SweepError(problems) from None
    if base["validation"] == "test":
        problems.append(
            Problem(
                "base.validation",
                'a search selects on a hold-out: set {"holdout": N}; the test set is read once, '
                "for the winner only",
            )
        )
    if problems:
        raise SweepError(problems)
    paths = list(spec.space)
    for path in paths:
        try:
            set_path(copy.deepcopy(base), path, _extremes(spec.space[path])[0])
        except KeyError as exc:
            problems.append(
                Problem(f"space.{path}", f"no such path in the spec: {exc.args[0]}", "bad_path")
            )
    if problems:
        raise SweepError(problems)
    # Every corner of the space (each extreme of each dimension) must be a valid experiment under
    # the cost cap: the largest point is one of them. Capped at 4096 corners.
    corners = itertools.islice(itertools.product(*(_extremes(spec.space[p]) for p in paths)), 4096)
    seen: set[tuple[str, str]] = set()
    for combo in corners:
        params = dict(zip(paths, combo, strict=True))
        try:
            exp = build(base, params, f"{spec.name} #0", base["seed"])
        except ValidationError as exc:
            for e in exc.errors():
                loc = _loc(e["loc"])
                path = next((p for p in paths if loc == p or loc.startswith(p + ".")), "")
                field = f"space.{path}" if path else "space"
                msg = f"at {label(params)}: {loc + ': ' if loc and loc != path else ''}"
                msg += str(e["msg"]).removeprefix("Value error, ")
                if (field, msg) not in seen:
                    seen.add((field, msg))
                    problems.append(Problem(field, msg, str(e["type"])))
            continue
        if max_flops is not None and (err := cost_error(exp, max_flops)):
            problems.append(Problem("space", f"the point {label(params)}: {err}", "cost_cap"))
            break
    if problems:
        raise SweepError(problems[:20])
    return base
