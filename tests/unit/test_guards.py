"""Pieces of labq's guarantees that need no live stack: token storage, the rate limiter, the bind
check, per-job time limits, and which database errors the worker retries."""

import hashlib
import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from api.auth import is_loopback
from core.queue import time_limits
from core.settings import Settings
from db import tokens
from db.models import Base
from db.session import make_engine


@pytest.fixture
def session(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def test_tokens_are_stored_hashed_and_revocable(session):
    assert not tokens.any_active(session)
    token = tokens.create(session, "alice")
    stored, owner = tokens.all_tokens(session)[0]
    assert owner.name == "admin" and owner.role == "admin"  # no --user: the admin user's
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (stored.name, stored.token_hash)
    actor = tokens.lookup(session, token)
    assert actor is not None and actor.token_id == stored.id and actor.user_id == owner.id
    assert tokens.lookup(session, token + "x") is None and tokens.lookup(session, "") is None
    assert tokens.any_active(session)
    with pytest.raises(ValueError):
        tokens.create(session, "alice")
    with pytest.raises(ValueError):
        tokens.create(session, "has space")
    assert tokens.revoke(session, "alice") and not tokens.revoke(session, "alice")
    assert tokens.lookup(session, token) is None and not tokens.any_active(session)
    assert tokens.create(session, "bob") != token


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "example.org"]))


def test_time_limits_follow_cost_and_stay_under_the_visibility_timeout():
    s = Settings(
        LABQ_JOB_FLOPS_PER_SECOND=1e9,
        LABQ_TIME_LIMIT_FACTOR=10,
        LABQ_MIN_TIME_LIMIT=60,
        LABQ_MAX_TIME_LIMIT=3600,
    )
    assert time_limits(1e9, s)[0] == 60  # floor
    soft, hard = time_limits(2e11, s)
    assert soft == 2000 and hard > soft
    assert time_limits(1e15, s)[0] == 3600 and time_limits(None, s)[0] == 3600
    default = Settings()
    assert time_limits(None, default)[1] < default.visibility_timeout


def test_worker_retries_transient_database_errors_only(monkeypatch, tmp_path):
    monkeypatch.setenv("LABQ_DB_RETRY_SECONDS", "5")
    monkeypatch.setenv("LABQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    from core.settings import get_settings
    from db.session import get_engine, get_sessionmaker
    from worker.lease import db_write, transient

    caches = (get_settings, get_engine, get_sessionmaker)
    for fn in caches:
        fn.cache_clear()
    locked = OperationalError("UPDATE", {}, sqlite3.OperationalError("database is locked"))
    assert transient(locked)
    assert not transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("unique")))
    assert not transient(ValueError())

    calls = []

    def flaky(_session):
        calls.append(1)
        if len(calls) < 3:
            raise locked
        return "written"

    try:
        assert db_write(flaky) == "written" and len(calls) == 3

        def broken(_session):
            raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("unique"))

        with pytest.raises(IntegrityError):
            db_write(broken)
    finally:
        get_engine().dispose()
        for fn in caches:
            fn.cache_clear()
