"""Is the database taking writes? `/health` rewrites one row and commits it: a database that still
answers reads but refuses writes (a lock held too long, a read-only server, a full disk under
SQLite's growing write-ahead log) is down for labq, whose every request and job writes.

A one-row rewrite can still land in space the database already has, so on a full disk it may
pass while larger writes fail. For SQLite the free space of the file's filesystem is checked
too; PostgreSQL's disk is not visible from here, and its refusals show as the API's 503s.
"""

import shutil
from pathlib import Path

from sqlalchemy import update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import HealthProbe, utcnow
from db.session import rowcount

MIN_FREE_BYTES = 1 << 20  # below this, a SQLite database's disk counts as full


def sqlite_free_bytes(url: str) -> int | None:
    """Free bytes on the filesystem of a SQLite database file (None for other databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return shutil.disk_usage(Path(parsed.database).parent).free


def probe_write(session: Session) -> None:
    """Write and commit the probe row; raises what the database raised."""
    now = utcnow()
    touched = session.execute(update(HealthProbe).where(HealthProbe.id == 1).values(checked_at=now))
    if rowcount(touched):
        session.commit()
        return
    session.add(HealthProbe(id=1, checked_at=now))
    try:
        session.commit()
    except IntegrityError:  # another check inserted it first: that was a write, too
        session.rollback()
