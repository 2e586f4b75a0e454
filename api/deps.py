"""Request dependencies."""

from typing import Annotated, Iterator

from fastapi import Depends, HTTPException
from sqlalchemy.orm import Session

from core.settings import Settings, get_settings
from db import repo
from db.models import Experiment
from db.session import get_sessionmaker


def get_session() -> Iterator[Session]:
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_experiment(experiment_id: int, session: SessionDep) -> Experiment:
    exp = repo.get(session, experiment_id)
    if exp is None:
        raise HTTPException(404, f"experiment {experiment_id} not found")
    return exp


ExperimentDep = Annotated[Experiment, Depends(get_experiment)]
