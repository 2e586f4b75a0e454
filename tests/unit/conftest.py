"""Fixtures shared by unit tests."""

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.settings import get_settings
from db.models import Base


@pytest.fixture
def memory_db(monkeypatch):
    """A session on a fresh in-memory SQLite database with labq's tables, under default settings
    (no running-job limit per user)."""
    monkeypatch.delenv("LABQ_MAX_RUNNING_PER_USER", raising=False)
    get_settings.cache_clear()
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    get_settings.cache_clear()
