"""Writing and reading a run's trained model, its plain weights and its evaluation.

The worker calls `store` in the transaction that finishes the run, so the model, the evaluation
and the final status appear together or not at all.
"""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.model_artifacts import (
    KERAS_TYPE,
    MISTAKES,
    MODEL,
    NPZ_TYPE,
    WEIGHTS,
    ModelExport,
    model_info,
)
from db import repo
from db.models import Artifact


def store(
    session: Session,
    experiment_id: int,
    export: ModelExport | None,
    max_bytes: int,
    why_none: str = "",
) -> None:
    """The model's artifacts (those under `max_bytes`) and the run's `model` and `evaluation`."""
    info = model_info(export, max_bytes, why_none)
    if export is not None:
        if info["stored"]:
            repo.put_artifact(session, experiment_id, MODEL, KERAS_TYPE, export.keras)
        if info["predict"]:
            repo.put_artifact(session, experiment_id, WEIGHTS, NPZ_TYPE, export.weights)
        repo.put_artifact(session, experiment_id, MISTAKES, NPZ_TYPE, export.mistakes)
    repo.update_experiment(
        session,
        experiment_id,
        model_info=info,
        evaluation=export.evaluation if export is not None else None,
    )


def version(session: Session, experiment_id: int, name: str) -> tuple[int, datetime] | None:
    """The (id, created_at) of an artifact without reading its data: a cache key that changes
    whenever the artifact is written again."""
    row = session.execute(
        select(Artifact.id, Artifact.created_at).where(
            Artifact.experiment_id == experiment_id, Artifact.name == name
        )
    ).first()
    return (row[0], row[1]) if row is not None else None
