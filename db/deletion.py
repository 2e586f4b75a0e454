"""Deleting runs, sweeps and searches, and giving their space back.

What is deleted is a whole unit: a run on its own, or a sweep or a search with all its runs (a
sweep's mean ± std or a search's selection would silently change if one of their runs went).
Rows go in one transaction, in the caller's: the runs' epochs and artifacts (checkpoints, the
trained model, figures' data), the runs, then the sweep or search row.

A run still training is stopped by the deletion itself: its worker's lease keeper finds the row
gone at its next renewal (as when another attempt took the job over, worker/lease.py) and the run
stops within an epoch, writing nothing more (every write is fenced on the row). A queued run is
never claimed, since the worker claims what the database ranks first (db/scheduling.py).

Space: SQLite files run with `auto_vacuum=INCREMENTAL` (db/migrate.py converts older files), so
`reclaim` returns the freed pages to the file system at once; PostgreSQL's autovacuum makes the
space reusable (`labq gc` runs VACUUM on the tables it touched).
"""

import logging
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from core.constants import FINISHED, QUEUED, RUNNING
from db.models import Artifact, EpochRow, Experiment, Search, Sweep

TABLES = ("artifacts", "epochs", "experiments", "sweeps", "searches")
log = logging.getLogger("labq.deletion")


@dataclass
class Removed:
    """What a deletion took away (the API's answer and `labq gc`'s totals)."""

    experiments: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)  # were queued or running
    epochs: int = 0
    artifacts: int = 0
    artifact_bytes: int = 0

    def add(self, other: "Removed") -> None:
        self.experiments += other.experiments
        self.stopped += other.stopped
        self.epochs += other.epochs
        self.artifacts += other.artifacts
        self.artifact_bytes += other.artifact_bytes


def _remove(session: Session, where: object) -> Removed:
    """Delete the experiments matching `where` (a SQL condition) with their epochs and artifacts.
    The runs' rows are locked first (PostgreSQL: FOR UPDATE; SQLite: the write lock), in id order,
    so a worker writing an epoch of one of them finishes that write first or finds the row gone."""
    rows = session.execute(
        select(Experiment.id, Experiment.status)
        .where(where)  # type: ignore[arg-type]  # a SQL boolean expression
        .order_by(Experiment.id)
        .with_for_update()
    ).all()
    ids = [r.id for r in rows]
    if not ids:
        return Removed()
    epochs, artifacts, nbytes = session.execute(
        select(
            select(func.count()).where(EpochRow.experiment_id.in_(ids)).scalar_subquery(),
            select(func.count()).where(Artifact.experiment_id.in_(ids)).scalar_subquery(),
            select(func.coalesce(func.sum(func.length(Artifact.data)), 0))
            .where(Artifact.experiment_id.in_(ids))
            .scalar_subquery(),
        )
    ).one()
    session.execute(delete(Artifact).where(Artifact.experiment_id.in_(ids)))
    session.execute(delete(EpochRow).where(EpochRow.experiment_id.in_(ids)))
    session.execute(delete(Experiment).where(Experiment.id.in_(ids)))
    return Removed(
        experiments=ids,
        stopped=[r.id for r in rows if r.status in (QUEUED, RUNNING)],
        epochs=int(epochs),
        artifacts=int(artifacts),
        artifact_bytes=int(nbytes),
    )


def delete_experiment(session: Session, experiment_id: int) -> Removed:
    """One run that belongs to no sweep or search (the caller checks)."""
    return _remove(session, Experiment.id == experiment_id)


def delete_sweep(session: Session, sweep_id: int) -> Removed:
    removed = _remove(session, Experiment.sweep_id == sweep_id)
    session.execute(delete(Sweep).where(Sweep.id == sweep_id))
    return removed


def delete_search(session: Session, search_id: int) -> Removed:
    """A search and every trial and confirmation run. The search's row is locked before its runs
    are deleted by condition: a worker that ends a trial asks for the next ones under that same
    lock (db/searches.py), so no trial can be added behind the deletion."""
    session.execute(update(Search).where(Search.id == search_id).values(name=Search.name))
    removed = _remove(session, Experiment.search_id == search_id)
    session.execute(delete(Search).where(Search.id == search_id))
    return removed


@dataclass
class Unit:
    """Something `labq gc` may delete: ("experiment" | "sweep" | "search", id, its name, owner id,
    runs, when its last run finished)."""

    kind: str
    id: int
    name: str
    owner_id: int | None
    runs: int
    finished_at: datetime


def finished_before(session: Session, cutoff: datetime, owner_id: int | None = None) -> list[Unit]:
    """Runs, sweeps and searches whose every run finished before `cutoff` (none still queued or
    running). `owner_id`: only that user's (None: everyone's)."""
    units: list[Unit] = []
    last = func.max(Experiment.finished_at)
    unfinished = func.sum(case((Experiment.status.in_(FINISHED), 0), else_=1))
    for kind, column, table in (
        ("sweep", Experiment.sweep_id, Sweep),
        ("search", Experiment.search_id, Search),
    ):
        query = (
            select(table.id, table.name, table.owner_id, func.count(), last)
            .join(Experiment, column == table.id)
            .group_by(table.id, table.name, table.owner_id)
            .having(unfinished == 0, last < cutoff)
        )
        if owner_id is not None:
            query = query.where(table.owner_id == owner_id)
        for r in session.execute(query):
            assert r[4] is not None  # HAVING max(finished_at) < cutoff
            units.append(Unit(kind, r[0], r[1], r[2], r[3], r[4]))
    runs = select(Experiment).where(
        Experiment.sweep_id.is_(None),
        Experiment.search_id.is_(None),
        Experiment.status.in_(FINISHED),
        Experiment.finished_at < cutoff,
    )
    if owner_id is not None:
        runs = runs.where(Experiment.owner_id == owner_id)
    for e in session.scalars(runs.order_by(Experiment.id)):
        assert e.finished_at is not None
        units.append(Unit("experiment", e.id, e.name, e.owner_id, 1, e.finished_at))
    return sorted(units, key=lambda u: u.finished_at)


DELETERS = {"experiment": delete_experiment, "sweep": delete_sweep, "search": delete_search}


def reclaim(engine: Engine, vacuum_postgres: bool = False) -> None:
    """Give freed space back: SQLite returns its free pages to the file system (incremental
    vacuum, in its own transaction after the deletion's commit); PostgreSQL marks it reusable
    with VACUUM when asked (`labq gc`), else leaves it to autovacuum."""
    if engine.dialect.name == "sqlite":
        try:
            _sqlite_free_pages(engine)
        except sqlite3.OperationalError as exc:  # busy past the timeout: the rows are gone anyway
            log.warning("free pages not returned yet (the next deletion returns them): %s", exc)
    elif vacuum_postgres:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) " + ", ".join(TABLES)))


def _sqlite_free_pages(engine: Engine) -> None:
    with engine.raw_connection() as conn:
        # The pragma frees one page per step; sqlite3's execute() takes one step, while
        # executescript() steps each statement to its end.
        conn.driver_connection.executescript("PRAGMA incremental_vacuum;")  # type: ignore[union-attr]
