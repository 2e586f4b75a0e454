"""Which queued runs a worker claims to train fused with the one it was woken for
(db/scheduling.claim_partners), on a real SQLite database: only runs of the same sweep or search,
submitted with `fuse`, at the same priority, never started since submit or retry, of the same
model shape (the caller's `fits`), oldest first, within the owner's running limit; each claim is
the usual conditional UPDATE with a new attempt and a lease."""

import pytest
from sqlalchemy.orm import Session

from core.settings import get_settings
from db import scheduling
from db.models import Experiment, Search, Sweep, User, utcnow


@pytest.fixture
def session(memory_db):
    s = memory_db
    s.add(User(name="ann", role="member", disabled=False, created_at=utcnow()))
    for i in (1, 2):
        s.add(Sweep(id=i, name=f"s{i}", base={}, grid={}, repeats=1, owner_id=1))
    s.add(Search(id=1, name="q", spec={}, owner_id=1))
    s.flush()
    return s


def run(s: Session, units: int = 64, status: str = "queued", **kw) -> int:
    kw = {"sweep_id": 1, "fuse": True, "owner_id": 1, **kw}
    exp = Experiment(name="r", spec={"units": units}, status=status, epochs_total=1, **kw)
    s.add(exp)
    s.flush()
    return exp.id


def partners(s: Session, leader: int, n: int = 8) -> list[int]:
    fits = lambda spec: spec["units"] == 64  # noqa: E731  # the shape of every leader here
    got = scheduling.claim_partners(s, leader, fits, n, "w:1", 60)
    return [exp_id for exp_id, _ in got]


def test_only_queued_fresh_fusable_runs_of_the_same_sweep_and_shape(session):
    leader = run(session, status="running")
    same = [run(session), run(session)]
    run(session, units=128)  # another shape
    run(session, sweep_id=2)  # another sweep
    run(session, fuse=False)  # submitted with fuse: false
    run(session, priority=2)  # another priority
    run(session, attempt=1, retry_base=0)  # has run before: resumes alone
    run(session, status="succeeded")
    run(session, sweep_id=None)  # a single run
    assert partners(session, leader) == same
    rows = {e.id: e for e in session.query(Experiment).filter(Experiment.id.in_(same))}
    assert all(
        r.status == "running" and r.attempt == 1 and r.worker == "w:1" for r in rows.values()
    )
    assert all(r.lease_expires_at is not None for r in rows.values())
    assert partners(session, leader) == []  # claimed already


def test_at_most_n_oldest_first_and_a_search_is_a_family_too(session):
    leader = run(session, status="running")
    queued = [run(session) for _ in range(5)]
    assert partners(session, leader, n=3) == queued[:3]
    trial = run(session, status="running", sweep_id=None, search_id=1)
    other = run(session, sweep_id=None, search_id=1)
    assert partners(session, trial) == [other]


def test_a_leader_not_submitted_with_fuse_trains_alone(session):
    leader = run(session, status="running", fuse=False)
    run(session)
    assert partners(session, leader) == []


def test_the_owners_running_limit_bounds_the_group(session, monkeypatch):
    monkeypatch.setenv("LABQ_MAX_RUNNING_PER_USER", "3")
    get_settings.cache_clear()
    leader = run(session, status="running")
    queued = [run(session) for _ in range(4)]
    assert partners(session, leader) == queued[:2]  # 1 running + 2 = the limit of 3
