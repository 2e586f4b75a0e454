"""Public shapes of sweeps: per-child summary columns and, per configuration, mean ± std over
its repeats (sample standard deviation; none with a single finished repeat)."""

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.constants import FINISHED, QUEUED, RUNNING, SUCCEEDED
from core.stats import mean_std
from core.sweep import get_path, label
from db.models import Experiment, Sweep

# Summary columns: name -> Experiment attribute.
METRICS = {
    "final_val_accuracy": "val_accuracy",
    "best_val_accuracy": "best_val_accuracy",
    "final_val_loss": "val_loss",
    "best_val_loss": "best_val_loss",
    "train_accuracy": "train_accuracy",
    "train_loss": "train_loss",
    "test_accuracy": "test_accuracy",
    "test_loss": "test_loss",
    "train_seconds": "train_seconds",
    "params": "params",
    "epochs_run": "epochs_done",
}


class ChildRow(BaseModel):
    id: int
    name: str
    status: str
    config_key: str | None
    config: dict[str, Any]
    label: str
    seed: int | None
    epochs_done: int
    epochs_total: int
    final_val_accuracy: float | None
    best_val_accuracy: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    train_accuracy: float | None
    train_loss: float | None
    test_accuracy: float | None
    test_loss: float | None
    train_seconds: float | None
    params: int | None
    epochs_run: int
    diverged: bool
    error: str | None
    url: str


class Stat(BaseModel):
    mean: float | None
    std: float | None
    n: int


class ConfigRow(BaseModel):
    config_key: str | None
    label: str
    config: dict[str, Any]
    children: list[int]
    succeeded: int
    diverged: int
    stats: dict[str, Stat]


class SweepSummary(BaseModel):
    id: int
    name: str
    preset: str | None
    owner: str  # the user who submitted it; `local`: the implicit local admin (no token)
    repeats: int
    created_at: datetime
    status: str
    counts: dict[str, int]
    children_total: int
    url: str


class SweepPublic(SweepSummary):
    base: dict[str, Any]
    grid: dict[str, Any]
    epochs_done: int
    epochs_total: int
    children: list[ChildRow]
    configs: list[ConfigRow]
    links: dict[str, str]


class SweepAccepted(BaseModel):
    id: int
    status: str
    children: list[int]
    url: str
    warning: str | None = None


def sweep_status(counts: Counter[str]) -> str:
    total = sum(counts.values())
    done = sum(counts[s] for s in FINISHED)
    if total and done == total:
        return "finished"
    if counts[RUNNING] or done:
        return "running"
    return QUEUED


def summary(sweep: Sweep, counts: Counter[str], owner: str) -> SweepSummary:
    """`owner`: the name of the sweep's owner (db.users.names)."""
    return SweepSummary(
        id=sweep.id,
        name=sweep.name,
        preset=sweep.preset,
        owner=owner,
        repeats=sweep.repeats,
        created_at=sweep.created_at,
        status=sweep_status(counts),
        counts=dict(counts),
        children_total=sum(counts.values()),
        url=f"/sweeps/{sweep.id}",
    )


def child_row(sweep: Sweep, exp: Experiment) -> ChildRow:
    config = {p: get_path(exp.spec, p) for p in sweep.grid}
    values = {name: getattr(exp, attr) for name, attr in METRICS.items()}
    return ChildRow(
        id=exp.id,
        name=exp.name,
        status=exp.status,
        config_key=exp.config_key,
        config=config,
        label=label(config),
        seed=exp.spec.get("seed"),
        epochs_done=exp.epochs_done,
        epochs_total=exp.epochs_total,
        diverged=exp.diverged,
        error=exp.error,
        url=f"/experiments/{exp.id}",
        **values,
    )


def stat(values: Sequence[float | None]) -> Stat:
    mean, std, n = mean_std(values)
    return Stat(mean=mean, std=std, n=n)


def config_rows(rows: list[ChildRow]) -> list[ConfigRow]:
    """One row per configuration (config_key), in the order the sweep created them. Statistics
    use the succeeded children only, so a cancelled run's partial numbers do not mix in."""
    groups: dict[str | None, list[ChildRow]] = {}
    for row in rows:
        groups.setdefault(row.config_key, []).append(row)
    out = []
    for key, group in groups.items():
        done = [r for r in group if r.status == SUCCEEDED]
        out.append(
            ConfigRow(
                config_key=key,
                label=group[0].label,
                config=group[0].config,
                children=[r.id for r in group],
                succeeded=len(done),
                diverged=sum(r.diverged for r in group),
                stats={m: stat([getattr(r, m) for r in done]) for m in METRICS},
            )
        )
    return out


def public(sweep: Sweep, exps: list[Experiment], counts: Counter[str], owner: str) -> SweepPublic:
    rows = [child_row(sweep, e) for e in exps]
    base = f"/sweeps/{sweep.id}"
    return SweepPublic(
        **summary(sweep, counts, owner).model_dump(),
        base=sweep.base,
        grid=sweep.grid,
        epochs_done=sum(e.epochs_done for e in exps),
        epochs_total=sum(e.epochs_total for e in exps),
        children=rows,
        configs=config_rows(rows),
        links={
            "self": base,
            "compare_png": f"{base}/compare.png",
            "results_csv": f"{base}/results.csv",
            "cancel": f"{base}/cancel",
        },
    )
