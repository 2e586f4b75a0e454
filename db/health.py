"""Is the database taking writes? `/health` rewrites one row and commits it: a database that still
answers reads but refuses writes (a full disk, a lock held too long, a read-only replica) is down
for labq, whose every request and job writes."""

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import HealthProbe, utcnow


def probe_write(session: Session) -> None:
    """Write and commit the probe row; raises what the database raised."""
    now = utcnow()
    if session.execute(
        update(HealthProbe).where(HealthProbe.id == 1).values(checked_at=now)
    ).rowcount:
        session.commit()
        return
    session.add(HealthProbe(id=1, checked_at=now))
    try:
        session.commit()
    except IntegrityError:  # another check inserted it first: that was a write, too
        session.rollback()
