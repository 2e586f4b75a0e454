"""Public response shapes. The input schema is `core.spec.ExperimentSpec` itself."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from api.model_schemas import Evaluation, ModelInfo


class Metrics(BaseModel):
    loss: float | None = None
    accuracy: float | None = None


class LayerInfo(BaseModel):
    name: str
    type: str
    kernel_shape: list[int] | None
    bias_shape: list[int] | None
    params: int


class ExperimentPublic(BaseModel):
    id: int
    name: str
    architecture: str
    status: str
    spec: dict[str, Any]  # the stored, normalized spec (see ExperimentSpec)
    sweep_id: int | None
    search_id: int | None  # a trial or confirmation run of this search
    owner: str  # the user who submitted it; `local`: the implicit local admin (no token)
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_seconds: float | None
    build_seconds: float | None
    train_seconds: float | None
    queue_position: int | None  # 1-based place in the start order (db/scheduling.py)
    priority: str  # low, normal or high
    epochs_done: int
    epochs_total: int
    train: Metrics
    val: Metrics
    test: Metrics
    best_val_accuracy: float | None
    best_val_loss: float | None
    diverged: bool
    params: int | None
    layers: list[LayerInfo] | None
    model: ModelInfo | None  # the trained model, once the run has finished
    evaluation: Evaluation | None
    error: str | None
    traceback: str | None
    cancel_requested: bool
    attempt: int
    worker: str | None
    device: str | None
    fuse: bool  # may train as a member of a fused program (a sweep's or search's runs)
    fused: int | None  # members of the fused program that trained it; None: trained alone
    links: dict[str, str]


class ExperimentSummary(BaseModel):
    id: int
    name: str
    architecture: str
    status: str
    sweep_id: int | None
    owner: str  # the user who submitted it; `local`: the implicit local admin (no token)
    created_at: datetime
    epochs_done: int
    epochs_total: int
    val_accuracy: float | None
    test_accuracy: float | None
    train_seconds: float | None
    params: int | None
    queue_position: int | None = None
    priority: str = "normal"
    url: str


class ExperimentPage(BaseModel):
    items: list[ExperimentSummary]
    total: int
    limit: int
    offset: int


class EpochPublic(BaseModel):
    epoch: int
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float | None
    seconds: float | None
    grad_norms: dict[str, float] | None


class Accepted(BaseModel):
    id: int
    status: str
    url: str
    warning: str | None = None


class Deleted(BaseModel):
    """What a DELETE removed: the runs (those still queued or running were stopped by it), their
    epoch rows and artifacts (checkpoints, models, figures' data) and the artifacts' bytes."""

    experiments: list[int]
    stopped: list[int]
    epochs: int
    artifacts: int
    artifact_bytes: int


class Health(BaseModel):
    """The details are left out for a caller who may not read the API (see api.auth)."""

    status: str
    database: str | None = None
    broker: str | None = None
    workers: list[str] | None = None
