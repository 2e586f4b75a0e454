"""The database decides which job starts next: priorities, fair share and per-user limits.

A Celery message is a wake-up ("a slot may be free"), not an order: the worker that takes one
claims the best-ranked job in SQL (`claim_next`), whatever id the message carried. The ranking:

1. a running job whose lease has expired (its worker died): taken over first, oldest first, so an
   interrupted job keeps its place;
2. then queued jobs by priority (high, normal, low);
3. then the owner with the fewest running jobs;
4. then the owner whose last start is the least recent (never started: first);
5. then the oldest job (smallest id).

Each candidate is taken with the same conditional UPDATE as before (db.repo.claim: queued -> running
with a new attempt number and a lease), so two workers that rank the same job first cannot both
take it: the loser's UPDATE matches no row and it tries the next one. Leases, attempt numbers and
fencing are unchanged. Owners at their running-job limit (settings.max_running_per_user) are
skipped. Every queued job has at least one message (the API's, or the reaper's), and a message
claims at most one job, so none is left without a wake-up; a wake-up that finds nothing to claim
leaves its job's message marker cleared, and the reaper sends it again within lease/4 seconds.

`queue_order` is the same ranking, read-only: the queue positions users see.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, literal_column, select, update
from sqlalchemy.orm import Session

from core.constants import QUEUED, RUNNING
from core.settings import get_settings
from db import repo
from db.models import Experiment, User, utcnow

LOW, NORMAL, HIGH = 0, 1, 2
PRIORITIES = {"low": LOW, "normal": NORMAL, "high": HIGH}
PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}
NO_OWNER = 0  # the implicit local admin's jobs (owner_id NULL) share one account
CANDIDATES = 20  # ranked jobs read per claim; a claim that loses all of them reads again


class LimitExceeded(repo.QuotaExceeded):
    """A per-user limit: 429 naming it, with Retry-After when waiting helps."""

    def __init__(self, message: str, retry_after: int | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _owner() -> ColumnElement[int]:
    """A job's owner for fair share: the implicit local admin's jobs count as one owner."""
    # a literal, not a bound parameter: PostgreSQL matches GROUP BY expressions by their text
    return func.coalesce(Experiment.owner_id, literal_column(str(NO_OWNER)))


def _ranked(limit_running: int | None = None) -> Select[int]:
    """Queued experiment ids in start order (the module docstring, items 2-5)."""
    stats = (
        select(
            _owner().label("owner"),
            func.sum(case((Experiment.status == RUNNING, 1), else_=0)).label("running"),
            func.max(Experiment.started_at).label("last_start"),
        )
        .where(Experiment.started_at.is_not(None))
        .group_by(_owner())
        .subquery()
    )
    running = func.coalesce(stats.c.running, 0)
    query = (
        select(Experiment.id)
        .join(stats, stats.c.owner == _owner(), isouter=True)
        .where(Experiment.status == QUEUED)
    )
    if limit_running is not None:
        # Owners at their limit wait; admins and the implicit local admin have none.
        admin = select(User.id).where(User.id == Experiment.owner_id, User.role == "admin").exists()
        query = query.where((running < limit_running) | Experiment.owner_id.is_(None) | admin)
    return query.order_by(
        Experiment.priority.desc(),
        running.asc(),
        stats.c.last_start.asc().nulls_first(),
        Experiment.id.asc(),
    )


def queue_order(session: Session) -> list[int]:
    """Every queued job's id, in the order workers will start them (as of now)."""
    return list(session.scalars(_ranked()))


def queue_positions(session: Session, ids: list[int]) -> dict[int, int]:
    """1-based place in the start order of each queued experiment among `ids`."""
    if not ids:
        return {}
    wanted = set(ids)
    return {i: k for k, i in enumerate(queue_order(session), start=1) if i in wanted}


def claim_next(
    session: Session, woken_by: int, worker: str, lease_seconds: int
) -> tuple[int, repo.Claim] | None:
    """Claim the best-ranked job for `worker` (its message carried `woken_by`): (experiment id,
    claim), or None when no job may start now. Each claim commits on its own."""
    now = utcnow()
    expired = list(
        session.scalars(
            select(Experiment.id)
            .where(Experiment.status == RUNNING, Experiment.lease_expires_at < now)
            .order_by((Experiment.id == woken_by).desc(), Experiment.id)
            .limit(CANDIDATES)
        )
    )
    limit = get_settings().max_running_per_user or None
    while True:
        tried = False
        for exp_id in expired + list(session.scalars(_ranked(limit).limit(CANDIDATES))):
            tried = True
            claimed = repo.claim(session, exp_id, worker, lease_seconds)
            if claimed is not None:
                return exp_id, claimed
        session.commit()
        if not tried:
            return None
        expired = []  # every candidate was taken by another worker: rank again


def claim_partners(
    session: Session,
    leader_id: int,
    fits: Callable[[dict[str, Any]], bool],
    n: int,
    worker: str,
    lease_seconds: int,
) -> list[tuple[int, repo.Claim]]:
    """Claim up to `n` queued runs to train fused with the run `leader_id` (worker/fusion.py):
    runs of its sweep or search, submitted with `fuse`, at its priority, never started since
    they were submitted or retried (nothing to resume), whose stored spec `fits` (the same model
    shape), oldest first, within the owner's running-job limit. The group trains in one worker
    process, one slot, as one job would. Each claim is the usual conditional UPDATE."""
    leader = repo.get(session, leader_id)
    if leader is None or not leader.fuse or n < 1:
        return []
    if leader.sweep_id is not None:
        family = Experiment.sweep_id == leader.sweep_id
    elif leader.search_id is not None:
        family = Experiment.search_id == leader.search_id
    else:
        return []
    limit = get_settings().max_running_per_user
    owner = leader.owner_id
    admin = owner is None or session.scalar(select(User.role).where(User.id == owner)) == "admin"
    if limit and not admin:
        running = session.scalar(
            select(func.count())
            .select_from(Experiment)
            .where(Experiment.owner_id == owner, Experiment.status == RUNNING)
        )
        n = min(n, limit - int(running or 0))
    candidates = session.execute(
        select(Experiment.id, Experiment.spec)
        .where(
            family,
            Experiment.status == QUEUED,
            Experiment.fuse.is_(True),
            Experiment.attempt == Experiment.retry_base,
            Experiment.priority == leader.priority,
            Experiment.id != leader_id,
        )
        .order_by(Experiment.id)
        .limit(CANDIDATES * 4)
    ).all()
    session.commit()
    claimed: list[tuple[int, repo.Claim]] = []
    for exp_id, spec in candidates:
        if len(claimed) >= n:
            break
        if not fits(spec):
            continue
        got = repo.claim(session, exp_id, worker, lease_seconds)
        if got is not None and got.first:
            claimed.append((exp_id, got))
        elif got is not None:  # retried in between: it has a past to resume, so it runs alone
            repo.release(session, exp_id, got.attempt, "not fused: it has a checkpoint to resume")
            session.commit()  # queued again; the reaper sends it a wake-up (module docstring)
    return claimed


# --- per-user limits at submit -----------------------------------------------------------------


def lock_user(session: Session, user_id: int) -> None:
    """Serialize one user's submissions (as db.repo.lock_token does for a token's)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    else:
        session.execute(update(User).where(User.id == user_id).values(name=User.name))


def check_user_limits(
    session: Session, user_id: int | None, role: str, adding: int, priority: int
) -> None:
    """Raise LimitExceeded unless a member may queue `adding` more jobs at `priority`: queued
    jobs (settings.max_queued_per_user), queued high-priority jobs (max_high_queued_per_user),
    training seconds in the last 24 h (daily_train_seconds_per_user). Admins and the implicit local
    admin have no limits. Takes the user's lock first (held until the caller commits)."""
    if user_id is None or role == "admin":
        return
    s = get_settings()
    lock_user(session, user_id)
    session.flush()
    mine = select(func.count()).select_from(Experiment).where(Experiment.owner_id == user_id)
    queued = int(session.scalar(mine.where(Experiment.status == QUEUED)) or 0)
    if s.max_queued_per_user and queued + adding > s.max_queued_per_user:
        raise LimitExceeded(
            f"max_queued_per_user: you have {queued} queued jobs and the limit is "
            f"{s.max_queued_per_user} (LABQ_MAX_QUEUED_PER_USER); wait for some to start",
            repo_retry(),
        )
    if priority == HIGH:
        high = int(
            session.scalar(mine.where(Experiment.status == QUEUED, Experiment.priority == HIGH))
            or 0
        )
        if high + adding > s.max_high_queued_per_user:
            raise LimitExceeded(
                f"max_high_queued_per_user: you have {high} queued high-priority jobs and the "
                f"limit is {s.max_high_queued_per_user} (LABQ_MAX_HIGH_QUEUED_PER_USER); "
                "submit at normal priority or wait",
                repo_retry(),
            )
    if s.daily_train_seconds_per_user:
        since = utcnow() - timedelta(days=1)
        rows: list[tuple[datetime, float]] = session.execute(  # type: ignore[assignment]  # both filtered non-null
            select(Experiment.finished_at, Experiment.train_seconds).where(
                Experiment.owner_id == user_id,
                Experiment.finished_at >= since,
                Experiment.finished_at.is_not(None),
                Experiment.train_seconds.is_not(None),
            )
        ).all()
        used = sum(float(t or 0) for _, t in rows)
        if used >= s.daily_train_seconds_per_user:
            # Waiting helps once the oldest of those runs is more than a day old.
            oldest = min(f for f, _ in rows)
            wait = int((oldest + timedelta(days=1) - utcnow()).total_seconds()) + 1
            raise LimitExceeded(
                f"daily_train_seconds_per_user: your runs trained {used:.0f} s in the last 24 h "
                f"and the limit is {s.daily_train_seconds_per_user} s "
                "(LABQ_DAILY_TRAIN_SECONDS_PER_USER)",
                max(wait, 1),
            )


def repo_retry() -> int:
    """Retry-After for a queue-length limit: about one job's wait."""
    return 30
