"""SQLAlchemy 2.x models. The `experiments` row is the source of truth for a job's state."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC (SQLite has no time zones), always returned time-zone aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)
    grid: Mapped[dict[str, list[Any]]] = mapped_column(JSON)
    repeats: Mapped[int] = mapped_column(Integer, default=1)
    preset: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who submitted it (None: the implicit local admin of an open loopback stack).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)


class Search(Base):
    """An adaptive search: Optuna asks for trials (experiments with `search_id`), its pruner stops
    weak ones at an epoch end, and a confirmation re-runs the best on more seeds."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # the SearchSpec, base normalized
    preset: Mapped[str | None] = mapped_column(String(100))
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    # {winner trial, per-config confirmation stats, test_accuracy}: written once, when the
    # confirmation runs have all finished; the winner's test accuracy is read then and only then.
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The user who submitted it (None: the implicit local admin); its trials are theirs too.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # Every trial and confirmation run it asks for is queued at this priority (db/scheduling.py).
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = (Index("ix_experiments_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("sweeps.id"), index=True)
    config_key: Mapped[str | None] = mapped_column(String(500))  # sweep cell, repeats share it
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"))
    search_id: Mapped[int | None] = mapped_column(ForeignKey("searches.id"), index=True)
    # {"number", "params", "distributions", "system_attrs"} of an Optuna trial, or
    # {"confirm_of": trial number, "seed_index"} of a confirmation run
    search_trial: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Who submitted it (None: the implicit local admin of an open loopback stack).
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    # 0 low, 1 normal, 2 high: db/scheduling.py ranks queued jobs by it first.
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    # May train fused with runs of its sweep or search of the same model shape (worker/fusion.py);
    # `fused`: the members of the program that trained it (None: it trained alone).
    fuse: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    fused: Mapped[int | None] = mapped_column(Integer)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    build_seconds: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)

    epochs_total: Mapped[int] = mapped_column(Integer)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[int | None] = mapped_column(Integer)
    # [{name, kernel_shape, bias_shape, params}]
    layers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    train_loss: Mapped[float | None] = mapped_column(Float)
    train_accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    best_val_accuracy: Mapped[float | None] = mapped_column(Float)
    best_val_loss: Mapped[float | None] = mapped_column(Float)
    test_loss: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    diverged: Mapped[bool] = mapped_column(Boolean, default=False)
    # The trained model (core.model_artifacts.model_info) and where it errs (core.evaluation).
    model_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    evaluation: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)

    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(200))
    device: Mapped[str | None] = mapped_column(String(100))
    # The fencing number: it only ever grows (a retry keeps it), so a paused process of an old
    # attempt can never match the live one. The attempt cap counts from `retry_base`, the value
    # `attempt` had at the last retry.
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    retry_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EpochRow(Base):
    __tablename__ = "epochs"
    __table_args__ = (UniqueConstraint("experiment_id", "epoch"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)  # 1-based
    loss: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    learning_rate: Mapped[float | None] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    # layer name -> kernel gradient L2 norm
    grad_norms: Mapped[dict[str, float] | None] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer, default=1)


class Artifact(Base):
    """Binary results: first-layer kernel (npy), checkpoints, the trained model and its plain
    weights, the most confident mistakes. Deleted with their experiment (ON DELETE CASCADE)."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("experiment_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    content_type: Mapped[str] = mapped_column(String(100))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """The answer to a POST sent with an `Idempotency-Key` header, kept for a window, so a client
    that re-sends the request (it never got the answer) gets the same answer, not a second job.
    Keys are scoped to the token that sent them (`owner`, 0 without a token) and the path."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("owner", "path", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(255))
    body_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class HealthProbe(Base):
    """One row that `/health` rewrites, to find out whether the database takes writes."""

    __tablename__ = "health_probe"

    id: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    """A person (or a robot, e.g. CI) who uses labq. `role`: admin (acts on everything), member
    (submits, acts on their own runs and sweeps) or viewer (reads only). A disabled user's tokens
    stop working at once; the user's runs stay."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Token(Base):
    """API bearer tokens, stored as SHA-256 hashes. Each belongs to a user."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """One write: who (the user's id, and name at the time), what (`action`, `target`), when and
    from where (the client's address, or `cli` for commands run on the database directly)."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50))
    target: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(200))
