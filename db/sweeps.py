"""Repository functions for sweeps: store a sweep with all its children, read them back, cancel."""

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.spec import ExperimentSpec
from db import repo
from db.models import Experiment, Sweep, utcnow


def create_sweep(
    session: Session,
    *,
    name: str,
    base: dict[str, Any],
    grid: dict[str, list[Any]],
    repeats: int,
    children: list[tuple[ExperimentSpec, str]],
    preset: str | None = None,
    token_id: int | None = None,
    owner_id: int | None = None,
    priority: int = 1,
    fuse: bool = False,
) -> tuple[Sweep, list[Experiment]]:
    """Add the sweep row and one experiment per (spec, config_key), flushed but not committed:
    the caller commits once, so a sweep is stored whole or not at all."""
    sweep = Sweep(
        name=name,
        base=base,
        grid=grid,
        repeats=repeats,
        preset=preset,
        created_at=utcnow(),
        owner_id=owner_id,
    )
    session.add(sweep)
    session.flush()
    exps = []
    for spec, key in children:
        exps.append(
            repo.create_experiment(
                session,
                spec,
                sweep_id=sweep.id,
                config_key=key,
                token_id=token_id,
                owner_id=owner_id,
                priority=priority,
                fuse=fuse,
            )
        )
    return sweep, exps


def get_sweep(session: Session, sweep_id: int) -> Sweep | None:
    return session.get(Sweep, sweep_id)


def children(session: Session, sweep_id: int) -> list[Experiment]:
    return list(
        session.scalars(
            select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(Experiment.id)
        )
    )


def status_counts(session: Session, sweep_ids: list[int]) -> dict[int, Counter[str]]:
    """{sweep id: Counter(status -> number of children)} for the given sweeps."""
    counts: dict[int, Counter[str]] = {i: Counter() for i in sweep_ids}
    if not sweep_ids:
        return counts
    rows = session.execute(
        select(Experiment.sweep_id, Experiment.status, func.count())
        .where(Experiment.sweep_id.in_(sweep_ids))
        .group_by(Experiment.sweep_id, Experiment.status)
    )
    for sweep_id, status, n in rows:
        assert sweep_id is not None  # the query selects children of the given sweeps only
        counts[sweep_id][status] = n
    return counts


def list_sweeps(
    session: Session,
    *,
    preset: str | None = None,
    limit: int = 50,
    offset: int = 0,
    readable: Any = None,
) -> tuple[list[Sweep], int]:
    """`readable`: a condition on the owner the caller may read (db/users.Sight.where)."""
    query = select(Sweep)
    if readable is not None:
        query = query.where(readable)
    if preset:
        query = query.where(Sweep.preset == preset)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Sweep.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def cancel_sweep(session: Session, sweep_id: int) -> dict[int, str | None]:
    """Request cancellation of every child; returns {experiment id: status after the request}."""
    ids = list(session.scalars(select(Experiment.id).where(Experiment.sweep_id == sweep_id)))
    return {i: repo.request_cancel(session, i) for i in ids}
