"""Sweeps: one base spec, a grid of dotted paths with values, repeats with different seeds.

`expand()` turns a sweep into its children: the cartesian product of the grid, each cell repeated
`repeats` times. Repeat r of every cell gets seed `base seed + r`, so cells are compared on the same
seeds, and all repeats of a cell share one `config_key`. Every problem is reported as a
`SweepError` naming the field (`grid.layers.7.units`, `base.epochs`, `repeats`) before anything
is stored; the caller turns it into a 422.
"""

import copy
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.spec import ExperimentSpec, architecture, cost_error, field_path

MAX_REPEATS = 50
CONFIG_KEY_MAX = 500


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    base: dict[str, Any] = Field(default_factory=dict, description="an ExperimentSpec")
    grid: dict[str, list[Any]] = Field(
        default_factory=dict, description='{"dotted.path": [values]}; the cartesian product runs'
    )
    repeats: int = Field(1, ge=1, le=MAX_REPEATS, description="seeds per configuration")
    fuse: bool = Field(
        True,
        description="children that share a model shape may train together as one program on a "
        "JAX worker (fused trials); false: each trains alone",
    )


@dataclass
class Problem:
    field: str  # e.g. "grid.layers.7.units"
    msg: str
    type: str = "value_error"


class SweepError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.msg}" for p in problems))


@dataclass
class Child:
    spec: ExperimentSpec
    config_key: str
    config: dict[str, Any]  # grid path -> normalized value of this cell
    repeat: int


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(field_path(loc))


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.0.b` in nested dicts/lists. Lists must already hold the index; a missing or null
    dict entry is created. Raises KeyError with a reason when the path cannot exist."""
    parts = path.split(".")
    if not path or any(p == "" for p in parts):
        raise KeyError("empty path segment")
    node: Any = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit():
                raise KeyError(f"'{part}' is not a list index")
            idx = int(part)
            if idx >= len(node):
                raise KeyError(f"index {idx} is out of range: the list has {len(node)} item(s)")
            if last:
                node[idx] = copy.deepcopy(value)
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = copy.deepcopy(value)
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            prefix = ".".join(parts[:i])
            raise KeyError(f"'{prefix}' is a {type(node).__name__}, not an object or a list")


def get_path(doc: Any, path: str) -> Any:
    node = doc
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def config_key(config: dict[str, Any]) -> str:
    """Canonical JSON of a cell; long ones are cut and suffixed with a hash, so still unique."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    if len(text) <= CONFIG_KEY_MAX:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return text[: CONFIG_KEY_MAX - 18] + "#" + digest


def label(config: dict[str, Any]) -> str:
    """Short human name of a cell: `units=300 activation=relu` or `784-200-100-10 relu`."""
    parts = []
    for path, value in config.items():
        if path == "layers" and isinstance(value, list):
            try:
                spec = ExperimentSpec(layers=value, seed=0)
                l2 = [f"{lyr.l2:g}" for lyr in spec.layers if lyr.type == "dense" and lyr.l2]
                parts.append(
                    architecture(spec) + (f" l2 {'/'.join(dict.fromkeys(l2))}" if l2 else "")
                )
                continue
            except (ValidationError, ValueError):
                pass
        name = path.split(".")[-1]
        parts.append(f"{name}={json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return " ".join(parts) or "base"


def _normalized_base(sweep: SweepSpec) -> dict[str, Any]:
    try:
        spec = ExperimentSpec.model_validate(sweep.base)
    except ValidationError as exc:
        raise SweepError(
            [
                Problem(
                    "base." + _loc(e["loc"]) if e["loc"] else "base",
                    e["msg"].removeprefix("Value error, "),
                    e["type"],
                )
                for e in exc.errors()
            ]
        ) from None
    return spec.model_dump(mode="json")


def _blame(paths: list[str], loc: str) -> str:
    """The grid path a child's validation error comes from (the longest one that covers it)."""
    for path in sorted(paths, key=len, reverse=True):
        if loc and (loc == path or loc.startswith(path + ".") or path.startswith(loc + ".")):
            return path
    return ""


def expand(sweep: SweepSpec, max_children: int, max_flops: float | None = None) -> list[Child]:
    """All children of `sweep`, validated and costed; raises SweepError naming what is wrong."""
    problems = [
        Problem(f"grid.{p}", "needs at least one value", "too_short")
        for p, values in sweep.grid.items()
        if not values
    ]
    if problems:
        raise SweepError(problems)
    cells = math.prod(len(v) for v in sweep.grid.values())
    if cells * sweep.repeats > max_children:
        raise SweepError(
            [
                Problem(
                    "grid",
                    f"{cells} configuration(s) x {sweep.repeats} repeat(s) = "
                    f"{cells * sweep.repeats} children exceeds the cap of {max_children} per sweep",
                    "sweep_cap",
                )
            ]
        )
    base = _normalized_base(sweep)
    base_seed = base["seed"]  # the base's own, or drawn once for the whole sweep
    # Shorter paths first, so `layers` (a whole list) is set before `layers.0.units` edits it.
    paths = sorted(sweep.grid, key=lambda p: p.count("."))
    children: list[Child] = []
    seen_bad: set[tuple[str, str]] = set()
    for combo in itertools.product(*(enumerate(sweep.grid[p]) for p in paths)):
        doc = copy.deepcopy(base)
        for path, (_idx, value) in zip(paths, combo, strict=False):
            try:
                set_path(doc, path, value)
            except KeyError as exc:
                raise SweepError(
                    [
                        Problem(
                            f"grid.{path}", f"no such path in the spec: {exc.args[0]}", "bad_path"
                        )
                    ]
                ) from None
        try:
            spec = ExperimentSpec.model_validate(doc)
        except ValidationError as exc:
            for e in exc.errors():
                loc = _loc(e["loc"])
                path = _blame(paths, loc)
                if path:
                    field = f"grid.{path}"
                else:
                    field = ("base." + loc) if loc else ("grid" if sweep.grid else "base")
                where = ""
                if path:  # one of `paths`, so `combo` holds its (index, value)
                    value_idx = dict(zip(paths, combo, strict=False))[path][0]
                    where = f"value #{value_idx} {json.dumps(sweep.grid[path][value_idx])}: "
                inner = f"{loc}: " if loc and loc != path else ""
                msg = where + inner + e["msg"].removeprefix("Value error, ")
                if (field, msg) not in seen_bad:
                    seen_bad.add((field, msg))
                    problems.append(Problem(field, msg, e["type"]))
            continue
        normalized = spec.model_dump(mode="json")
        config = {p: get_path(normalized, p) for p in sweep.grid}
        key = config_key(config)
        if max_flops is not None:
            err = cost_error(spec, max_flops)
            if err:
                field = "grid" if sweep.grid else "base"
                problems.append(Problem(field, f"configuration {label(config)}: {err}", "cost_cap"))
                continue
        for r in range(sweep.repeats):
            child_doc = copy.deepcopy(normalized)
            child_doc["seed"] = (base_seed + r) % (2**31)
            child_doc["name"] = f"{sweep.name}: {label(config)}"[:200]
            if sweep.repeats > 1:
                child_doc["name"] = child_doc["name"][:190] + f" #{r + 1}"
            children.append(Child(ExperimentSpec.model_validate(child_doc), key, config, r))
    if problems:
        raise SweepError(problems)
    return children
