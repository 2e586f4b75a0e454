"""The start order (db/scheduling.py) on a real SQLite database: priority, then the owner with the
fewest running jobs, then the owner whose last start is least recent, then the oldest job; a
taken-over lease first; owners at their running limit wait. The queue positions users see are the
same order, and claim_next starts jobs in exactly that order."""

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from core.settings import get_settings
from db import scheduling
from db.models import Experiment, User, utcnow

HIGH, NORMAL, LOW = scheduling.HIGH, scheduling.NORMAL, scheduling.LOW


@pytest.fixture
def session(memory_db):
    s = memory_db
    for name in ("ann", "ben", "cat"):
        s.add(User(name=name, role="member", disabled=False, created_at=utcnow()))
    s.add(User(name="root", role="admin", disabled=False, created_at=utcnow()))
    s.flush()
    return s


def job(s: Session, owner: int | None, status: str = "queued", priority: int = NORMAL, **kw) -> int:
    exp = Experiment(
        name="j", spec={}, status=status, epochs_total=1, owner_id=owner, priority=priority, **kw
    )
    s.add(exp)
    s.flush()
    return exp.id


def test_priority_comes_first_then_age(session):
    low = job(session, 1, priority=LOW)
    normal = job(session, 1)
    high = job(session, 1, priority=HIGH)
    normal2 = job(session, 1)
    assert scheduling.queue_order(session) == [high, normal, normal2, low]


def test_one_persons_sweep_does_not_hold_back_anothers_single_run(session):
    now = utcnow()
    job(session, 1, "running", started_at=now)  # ann trains one
    sweep = [job(session, 1) for _ in range(20)]  # and queued twenty more
    single = job(session, 2)  # ben queued one, last
    order = scheduling.queue_order(session)
    assert order[0] == single and order[1:] == sweep
    assert scheduling.queue_positions(session, [single, sweep[0]]) == {single: 1, sweep[0]: 2}


def test_equal_running_counts_go_to_the_least_recent_start(session):
    now = utcnow()
    job(session, 1, "succeeded", started_at=now - timedelta(minutes=1))
    job(session, 2, "succeeded", started_at=now - timedelta(hours=1))
    a = job(session, 1)
    b = job(session, 2)
    c = job(session, 3)  # cat never started anything: first
    local = job(session, None, "succeeded", started_at=now - timedelta(seconds=1))
    d = job(session, None)  # the implicit local admin is an owner like any other
    assert local
    assert scheduling.queue_order(session) == [c, b, a, d]


def test_claim_next_starts_jobs_in_the_shown_order_taken_over_leases_first(session):
    now = utcnow()
    queued = [job(session, 1) for _ in range(3)] + [job(session, 2)]
    lapsed = job(session, 3, "running", started_at=now, lease_expires_at=now - timedelta(seconds=1))
    session.commit()
    shown = scheduling.queue_order(session)
    started = []
    while (got := scheduling.claim_next(session, queued[0], "w:1", 60)) is not None:
        started.append(got[0])
        # each claim is a real start: the owner's running count grows before the next pick
        assert got[1].attempt >= 1
        if len(started) == 5:
            break
    assert started[0] == lapsed
    # ann's first, then ben (fewer running), then ann's others
    assert started[1:] == [queued[0], queued[3], queued[1], queued[2]]
    # before any start, neither had started a job: the shown order was by age alone
    assert shown == queued


def test_owners_at_their_running_limit_wait_admins_do_not(session, monkeypatch):
    monkeypatch.setenv("LABQ_MAX_RUNNING_PER_USER", "1")
    get_settings.cache_clear()
    now = utcnow()
    lease = now + timedelta(minutes=5)
    job(session, 1, "running", started_at=now, lease_expires_at=lease)
    job(session, 4, "running", started_at=now, lease_expires_at=lease)
    job(session, 1)  # ann is at her limit
    admins = job(session, 4)
    session.commit()
    got = scheduling.claim_next(session, admins, "w:1", 60)
    assert got is not None and got[0] == admins
    assert scheduling.claim_next(session, admins, "w:1", 60) is None
