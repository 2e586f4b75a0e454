"""Repository functions: every read and write of job state goes through here.

Writes that a redelivered or resumed task may repeat are idempotent: epochs are keyed on
(experiment, epoch), artifacts on (experiment, name), and a job is claimed by a conditional UPDATE.
"""

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core.constants import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING
from core.settings import get_settings
from core.spec import ExperimentSpec
from db.models import Artifact, EpochRow, Experiment, Token, utcnow
from db.session import rowcount


class QuotaExceeded(Exception):
    """The token already has its maximum of queued + running jobs."""


def active_jobs(session: Session, token_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Experiment)
            .where(Experiment.token_id == token_id, Experiment.status.in_((QUEUED, RUNNING)))
        )
        or 0
    )


def lock_token(session: Session, token_id: int) -> None:
    """Make this transaction the only one, until it ends, that may add active jobs for the token,
    so that counting them and adding one are a single step. PostgreSQL locks the token's row
    (SELECT ... FOR NO KEY UPDATE, which still lets inserts check their foreign key). SQLite
    takes its single write lock now, as BEGIN IMMEDIATE would: a write to the row (of the same
    value) starts the transaction and SQLite holds the lock until the commit. Another request
    for the same token waits here until this one commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            select(Token.id).where(Token.id == token_id).with_for_update(key_share=True)
        )
    else:
        session.execute(update(Token).where(Token.id == token_id).values(revoked=Token.revoked))


def check_quota(session: Session, token_id: int, adding: int = 1) -> None:
    """Raise QuotaExceeded unless the token may have `adding` more queued or running jobs. Takes
    the token's lock first (held until the caller commits), so concurrent requests of one token
    see each other's jobs."""
    limit = get_settings().max_active_jobs_per_token
    lock_token(session, token_id)
    session.flush()  # count this request's earlier experiments too (a sweep's children)
    if active_jobs(session, token_id) + adding > limit:
        raise QuotaExceeded(
            f"this token already has {limit} queued or running jobs "
            "(the limit); wait for some to finish"
        )


def create_experiment(
    session: Session,
    spec: ExperimentSpec,
    *,
    sweep_id: int | None = None,
    config_key: str | None = None,
    token_id: int | None = None,
    owner_id: int | None = None,
    priority: int = 1,
    fuse: bool = False,
) -> Experiment:
    """Queue a new experiment owned by the user `owner_id` (None: the implicit local admin),
    charged to the API token `token_id` (None: no token, or asked by a worker), which must have
    room under its active-job limit (QuotaExceeded)."""
    if token_id is not None:
        check_quota(session, token_id)
    exp = Experiment(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=QUEUED,
        sweep_id=sweep_id,
        config_key=config_key,
        token_id=token_id,
        owner_id=owner_id,
        priority=priority,
        fuse=fuse,
        epochs_total=spec.epochs,
        created_at=utcnow(),
    )
    session.add(exp)
    session.flush()
    return exp


def list_experiments(
    session: Session,
    *,
    status: str | None = None,
    name: str | None = None,
    sweep_id: int | None = None,
    by_owner: bool = False,
    owner_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    readable: Any = None,
) -> tuple[list[Experiment], int]:
    """A page of experiments, newest first; with `by_owner`, only those of the user `owner_id`
    (None: the implicit local admin's); `readable`: a condition on the owner the caller may read
    (db/users.Sight.where), None: every row."""
    query = select(Experiment)
    if readable is not None:
        query = query.where(readable)
    if by_owner:
        query = query.where(
            Experiment.owner_id.is_(None) if owner_id is None else Experiment.owner_id == owner_id
        )
    if status:
        query = query.where(Experiment.status == status)
    if name:
        query = query.where(Experiment.name.contains(name, autoescape=True))
    if sweep_id is not None:
        query = query.where(Experiment.sweep_id == sweep_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Experiment.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def history(session: Session, experiment_id: int) -> list[EpochRow]:
    return list(
        session.scalars(
            select(EpochRow).where(EpochRow.experiment_id == experiment_id).order_by(EpochRow.epoch)
        )
    )


def queued_ids(session: Session, older_than: float | None = None) -> list[int]:
    """Queued jobs, oldest first; `older_than` seconds skips ones submitted just now."""
    query = select(Experiment.id).where(Experiment.status == QUEUED)
    if older_than:
        query = query.where(Experiment.created_at < utcnow() - timedelta(seconds=older_than))
    return list(session.scalars(query.order_by(Experiment.id)))


def request_cancel(session: Session, experiment_id: int) -> str | None:
    """Queued jobs are cancelled at once (they will never train); running ones are flagged and
    stop at their next epoch end. Returns the status after the request (None: no such job)."""
    now = utcnow()
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == QUEUED)
        .values(status=CANCELLED, finished_at=now, cancel_requested=True)
    )
    if not rowcount(result):
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id, Experiment.status == RUNNING)
            .values(cancel_requested=True)
        )
    session.flush()
    return session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))


# --- worker side -------------------------------------------------------------------------------


class Claim(NamedTuple):
    attempt: int  # the fencing number every later write of this run is checked against
    retry_base: int  # `attempt` at the last retry: attempt - retry_base runs since then

    @property
    def first(self) -> bool:
        """The first run since the job was submitted or retried (nothing to resume)."""
        return self.attempt == self.retry_base + 1


def claim(session: Session, experiment_id: int, worker: str, lease_seconds: int) -> Claim | None:
    """Atomically take a queued job, or a running one whose lease expired. Returns the new
    attempt number (read back in the same statement, so a concurrent claim can never hand two
    runs the same number), or None when the job is not ours to run (finished, cancelled, or
    leased elsewhere)."""
    now = utcnow()
    row = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id)
        .where(
            (Experiment.status == QUEUED)
            | ((Experiment.status == RUNNING) & (Experiment.lease_expires_at < now))
        )
        .values(
            status=RUNNING,
            worker=worker,
            attempt=Experiment.attempt + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            started_at=func.coalesce(Experiment.started_at, now),
        )
        .returning(Experiment.attempt, Experiment.retry_base)
    ).one_or_none()
    session.commit()
    return Claim(*row) if row is not None else None


def release(session: Session, experiment_id: int, attempt: int, reason: str) -> str | None:
    """Give a job back to the queue without counting it as the job's failure: our worker's
    environment (data, device, disk) failed, not the job. The attempt still counts towards the
    cap, so a job that every worker gives back ends `failed` with `reason`. Returns the status
    after the call (None when the lease was no longer ours: nothing is changed then)."""
    exp = session.scalar(
        select(Experiment).where(
            Experiment.id == experiment_id,
            Experiment.attempt == attempt,
            Experiment.status == RUNNING,
        )
    )
    if exp is None:
        return None
    if exp.cancel_requested:  # the user wants it stopped: it must not run again
        finish(session, experiment_id, CANCELLED)
        return CANCELLED
    if exp.attempt - exp.retry_base >= get_settings().max_attempts:
        finish(
            session,
            experiment_id,
            FAILED,
            error=f"given back by {exp.attempt - exp.retry_base} workers whose environment "
            f"failed (attempt cap {get_settings().max_attempts}); last: {reason}"[:2000],
        )
        return FAILED
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.attempt == attempt)
        .values(status=QUEUED, worker=None, lease_expires_at=None)
    )
    return QUEUED


def renew_lease(session: Session, experiment_id: int, attempt: int, lease_seconds: int) -> bool:
    """Extend our lease; False means we lost the job (another attempt took it over)."""
    result = session.execute(
        update(Experiment)
        .where(
            Experiment.id == experiment_id,
            Experiment.attempt == attempt,
            Experiment.status == RUNNING,
        )
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return rowcount(result) == 1


def cancel_requested(session: Session, experiment_id: int) -> bool:
    return bool(
        session.scalar(select(Experiment.cancel_requested).where(Experiment.id == experiment_id))
    )


def record_epoch(session: Session, experiment_id: int, attempt: int, row: dict[str, Any]) -> None:
    """Write one epoch's row, replacing any earlier write of the same epoch."""
    session.execute(
        delete(EpochRow).where(
            EpochRow.experiment_id == experiment_id, EpochRow.epoch == row["epoch"]
        )
    )
    session.add(EpochRow(experiment_id=experiment_id, attempt=attempt, **row))
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id)
        .values(
            epochs_done=row["epoch"],
            train_loss=row["loss"],
            train_accuracy=row["accuracy"],
            val_loss=row["val_loss"],
            val_accuracy=row["val_accuracy"],
        )
    )


def truncate_history(session: Session, experiment_id: int, after_epoch: int) -> None:
    """Drop the epoch rows after `after_epoch`: a resumed attempt trains them again from the
    checkpoint of `after_epoch`, so the history never shows epochs the model no longer has."""
    session.execute(
        delete(EpochRow).where(
            EpochRow.experiment_id == experiment_id, EpochRow.epoch > after_epoch
        )
    )
    session.execute(
        update(Experiment).where(Experiment.id == experiment_id).values(epochs_done=after_epoch)
    )


def update_experiment(session: Session, experiment_id: int, **values: Any) -> None:
    session.execute(update(Experiment).where(Experiment.id == experiment_id).values(**values))


def finish(session: Session, experiment_id: int, status: str, **values: Any) -> None:
    assert status in FINISHED
    hist = history(session, experiment_id)
    vals = [h.val_accuracy for h in hist if h.val_accuracy is not None]
    losses = [h.val_loss for h in hist if h.val_loss is not None]
    session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id)
        .values(
            status=status,
            finished_at=utcnow(),
            lease_expires_at=None,
            best_val_accuracy=max(vals) if vals else None,
            best_val_loss=min(losses) if losses else None,
            **values,
        )
    )
    # A finished job is never resumed (a retry starts from scratch): drop its checkpoint.
    session.execute(
        delete(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == CHECKPOINT)
    )


RETRYABLE = (FAILED, CANCELLED)


def retry(session: Session, experiment_id: int, token_id: int | None = None) -> bool:
    """Queue a failed or cancelled job again, from scratch: its epochs, artifacts, results and
    error are cleared. Its attempt number is kept (the next run is attempt + 1: a process of an
    old attempt that wakes up later can never pass for the new run), and the attempt cap counts
    afresh from here (`retry_base`). The token `token_id` that retries a job is charged for it
    like for a submit (QuotaExceeded over its limit) and owns it from then on. False when the job
    is in another status (nothing is changed then)."""
    owner: dict[str, int] = {}
    if token_id is not None:
        status = session.scalar(select(Experiment.status).where(Experiment.id == experiment_id))
        if status in RETRYABLE:
            check_quota(session, token_id)
            owner = {"token_id": token_id}
    result = session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status.in_(RETRYABLE))
        .values(
            status=QUEUED,
            started_at=None,
            finished_at=None,
            build_seconds=None,
            train_seconds=None,
            epochs_done=0,
            train_loss=None,
            train_accuracy=None,
            val_loss=None,
            val_accuracy=None,
            best_val_accuracy=None,
            best_val_loss=None,
            test_loss=None,
            test_accuracy=None,
            diverged=False,
            model_info=None,
            evaluation=None,
            error=None,
            traceback=None,
            cancel_requested=False,
            worker=None,
            device=None,
            retry_base=Experiment.attempt,
            lease_expires_at=None,
            **owner,
        )
    )
    done = rowcount(result)
    if done:
        session.execute(delete(EpochRow).where(EpochRow.experiment_id == experiment_id))
        session.execute(delete(Artifact).where(Artifact.experiment_id == experiment_id))
    session.flush()
    return bool(done)


CHECKPOINT = "checkpoint"


def put_artifact(
    session: Session, experiment_id: int, name: str, content_type: str, data: bytes
) -> None:
    session.execute(
        delete(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == name)
    )
    session.add(
        Artifact(experiment_id=experiment_id, name=name, content_type=content_type, data=data)
    )


def get_artifact(session: Session, experiment_id: int, name: str) -> Artifact | None:
    return session.scalar(
        select(Artifact).where(Artifact.experiment_id == experiment_id, Artifact.name == name)
    )


def expired_leases(session: Session, now: datetime | None = None) -> list[int]:
    now = now or utcnow()
    return list(
        session.scalars(
            select(Experiment.id).where(
                Experiment.status == RUNNING, Experiment.lease_expires_at < now
            )
        )
    )


def get(session: Session, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id)


def running(session: Session) -> list[Experiment]:
    return list(session.scalars(select(Experiment).where(Experiment.status == RUNNING)))
