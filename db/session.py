"""Engine and session factory. SQLite gets WAL, a busy timeout and foreign keys on every connection."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import CursorResult, Result, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from core.settings import get_settings


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # How long a write waits for a lock before failing (the worker then retries).
        busy_ms = get_settings().sqlite_busy_ms
        # No cap on pooled connections (a SQLite connection is a file handle): the API's sync
        # routes hold a connection between thread hops, and with a capped pool, concurrent
        # requests beyond pool + threadpool size deadlocked until the pool's 30 s timeout.
        engine = create_engine(
            url,
            connect_args={"timeout": busy_ms / 1000, "check_same_thread": False},
            max_overflow=-1,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    # Room for the API's in-flight requests (LABQ_MAX_INFLIGHT_REQUESTS reads, half as many writes
    # and 4 health checks, see api/middleware.py) plus its event streams; PostgreSQL's default
    # max_connections is 100.
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=50)


@lru_cache
def get_engine() -> Engine:
    settings = get_settings()
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # see core.privacy
    return make_engine(settings.db_url)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE without RETURNING matched. Session.execute() returns a
    CursorResult for those, but is typed as returning a plain Result (SQLAlchemy's advice: cast)."""
    return cast(CursorResult[Any], result).rowcount


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
