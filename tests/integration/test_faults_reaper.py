"""The reaper against a real Redis and a real database (SQLite, and PostgreSQL as the distributed
leg runs it), in-process: a queued job whose message the broker lost is sent again, once per
loss, not on every pass; a worker start sends every queued job once; an expired lease is requeued
once, and failed at the attempt cap; a dead pid on this host never expires another host's job."""

import subprocess
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from cli.stack import redis_server_binary
from core.constants import FAILED, QUEUED, RUNNING
from core.queue import queued_messages
from core.spec import ExperimentSpec
from tests.stack import create_pg_database, free_port

pytestmark = pytest.mark.integration

SPEC = ExperimentSpec(layers=[{"units": 8}], epochs=1, train_samples=1000)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request, tmp_path, monkeypatch, pg_admin_url):
    """Settings, engine and broker clients pointed at a fresh database (SQLite file or PostgreSQL
    database) and Redis server."""
    database_url = ""
    if request.param == "postgres":
        if not pg_admin_url:
            pytest.skip("PostgreSQL leg: LABQ_TEST_PG_URL not set (run via `make test`)")
        database_url = create_pg_database(pg_admin_url)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    monkeypatch.setenv("LABQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LABQ_REDIS_PORT", str(port))
    monkeypatch.setenv("LABQ_MAX_ATTEMPTS", "2")
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    from core import queue, settings
    from db import session

    caches = [
        settings.get_settings,
        session.get_engine,
        session.get_sessionmaker,
        queue.producer,
        queue._redis,
    ]

    def clear():
        for fn in caches:
            fn.cache_clear()

    clear()
    from db.migrate import upgrade

    upgrade()
    yield client
    session.get_engine().dispose()
    clear()
    proc.terminate()
    proc.wait(10)


def make_job(status=QUEUED, age: float = 60, **values) -> int:
    from db import repo
    from db.models import Experiment, utcnow
    from db.session import session_scope

    with session_scope() as s:
        exp = repo.create_experiment(s, SPEC)
        s.execute(
            update(Experiment)
            .where(Experiment.id == exp.id)
            .values(status=status, created_at=utcnow() - timedelta(seconds=age), **values)
        )
        return exp.id


def test_lost_queued_job_is_resent_once_per_loss(env):
    from worker.reaper import reap

    lost = make_job()
    fresh = make_job(age=0)  # just submitted: the API is sending it
    assert reap() == [lost]
    assert queued_messages(env) == 1
    for _ in range(3):  # later passes see the message is in the broker: no copies
        assert reap() == []
    assert queued_messages(env) == 1
    env.flushall()  # the broker loses everything (a Redis without persistence restarts)
    assert reap() == [lost]
    assert queued_messages(env) == 1
    # A worker start re-sends every queued job once, fresh or not.
    assert sorted(reap(requeue_queued=True)) == sorted([lost, fresh])


def test_expired_lease_is_requeued_once_then_fails_at_the_cap(env):
    from db import repo
    from db.models import utcnow
    from db.session import session_scope
    from worker.reaper import reap

    expired = {"lease_expires_at": utcnow() - timedelta(seconds=5), "worker": "elsewhere:1"}
    job = make_job(status=RUNNING, attempt=1, **expired)
    capped = make_job(status=RUNNING, attempt=2, **expired)
    assert reap() == [job]
    assert reap() == []  # its message is waiting in the broker
    with session_scope() as s:
        assert repo.get(s, job).status == RUNNING  # the claim, not the reaper, takes it over
        failed = repo.get(s, capped)
        assert failed.status == FAILED and "attempt cap 2" in failed.error


def test_a_job_given_back_is_queued_again_and_fails_at_the_cap(env):
    """A worker whose environment failed gives the job back (db.repo.release): queued again with
    its attempt number kept, never for a run that lost the lease, cancelled if a cancel is
    pending, and failed with the reason once the attempt cap is reached."""
    from db import repo
    from db.session import session_scope

    job = make_job()
    with session_scope() as s:
        first = repo.claim(s, job, "here:1", 60)
        assert first is not None and first.attempt == 1 and first.first
        assert repo.release(s, job, attempt=7, reason="stale") is None  # not our attempt
        assert repo.release(s, job, first.attempt, "no GPU") == QUEUED
    with session_scope() as s:
        exp = repo.get(s, job)
        assert (exp.status, exp.attempt, exp.worker, exp.error) == (QUEUED, 1, None, None)
        second = repo.claim(s, job, "here:2", 60)
        assert second is not None and second.attempt == 2 and not second.first
        assert repo.release(s, job, second.attempt, "no GPU") == FAILED  # cap 2
    with session_scope() as s:
        failed = repo.get(s, job)
        assert failed.status == FAILED and "attempt cap 2" in failed.error
        assert "no GPU" in failed.error

    cancelled = make_job()
    with session_scope() as s:
        run = repo.claim(s, cancelled, "here:3", 60)
        repo.request_cancel(s, cancelled)
        assert repo.release(s, cancelled, run.attempt, "disk full") == "cancelled"


def test_retry_keeps_the_attempt_number_and_restarts_the_cap(env):
    from db import repo
    from db.session import session_scope

    job = make_job()
    with session_scope() as s:
        run = repo.claim(s, job, "here:1", 60)
        repo.finish(s, job, FAILED, error="boom")
        assert repo.retry(s, job)
    with session_scope() as s:
        again = repo.claim(s, job, "here:2", 60)
        # Never the number the old run held; the first run since the retry, with a fresh cap.
        assert again.attempt == run.attempt + 1 and again.first
        assert repo.get(s, job).retry_base == run.attempt
        assert not repo.renew_lease(s, job, run.attempt, 60)  # the old run is fenced off


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_dead_pid_rule_never_touches_another_hosts_job(env, monkeypatch):
    """Guarantee: a dead worker is noticed at once only on its own host. The rule compares the
    lease's whole host identity (host name, boot, pid namespace), so a live job of a worker on
    another host, or in another container of the same host name, whose pid is free here keeps
    its lease; so does a lease written by an older labq (`host:pid`, no namespace)."""
    import socket

    from db import repo
    from db.models import utcnow
    from db.session import session_scope
    from worker import lease
    from worker.reaper import reap

    pid = _dead_pid()
    here = lease.host_identity()
    assert "~" in here  # Linux: the namespace digest is known
    name = socket.gethostname()
    live = {"lease_expires_at": utcnow() + timedelta(minutes=10), "attempt": 1}
    others = [
        make_job(status=RUNNING, worker=f"{name}~0badc0de:{pid}", **live),  # same name, other ns
        make_job(status=RUNNING, worker=f"{name}:{pid}", **live),  # an older labq's lease
        make_job(status=RUNNING, worker=f"elsewhere~{here.split('~')[1]}:{pid}", **live),
    ]
    ours = make_job(status=RUNNING, worker=f"{here}:{pid}", **live)
    alive = make_job(status=RUNNING, worker=f"{here}:{lease.os.getpid()}", **live)
    assert reap() == [ours]  # only our own dead process's job is expired and re-sent
    with session_scope() as s:
        assert repo.expired_leases(s) == [ours]
        assert {repo.get(s, j).status for j in [*others, alive]} == {RUNNING}
    # A worker told it is another host (LABQ_WORKER_HOST) does not see this host's pids either.
    monkeypatch.setenv("LABQ_WORKER_HOST", "host-b")
    from core import settings

    settings.get_settings.cache_clear()
    assert lease.host_identity().startswith("host-b~")
    again = make_job(status=RUNNING, worker=f"{here}:{pid}", **live)
    assert reap() == []
    with session_scope() as s:
        assert again not in repo.expired_leases(s)


def test_a_dead_pid_never_expires_the_run_that_took_the_job_over(env, monkeypatch):
    """The reaper read the job while its dead worker held it; before it expires the lease, a
    new worker claims the job (new attempt, fresh lease). That run's lease stays: expiring it
    would have the same pass fail the live run at the attempt cap (2 here), or have another
    worker take it over again."""
    from db import repo
    from db.models import utcnow
    from db.session import session_scope
    from worker import lease, reaper

    dead = f"{lease.host_identity()}:{_dead_pid()}"
    lapsed = utcnow() - timedelta(seconds=5)
    job = make_job(status=RUNNING, worker=dead, attempt=1, lease_expires_at=lapsed)
    with session_scope() as s:
        stale = repo.running(s)  # what the reaper read
    with session_scope() as s:  # then a new worker claimed the job
        assert repo.claim(s, job, f"{lease.host_identity()}:{lease.os.getpid()}", 600)
    monkeypatch.setattr(reaper.repo, "running", lambda session: stale)
    assert reaper.reap() == []
    with session_scope() as s:
        exp = repo.get(s, job)
        assert (exp.status, exp.attempt, exp.error) == (RUNNING, 2, None)
        assert job not in repo.expired_leases(s)


def test_a_failed_claim_puts_its_wake_up_back(env, monkeypatch):
    """The database refuses the claim itself (a full disk, a database away past
    LABQ_DB_RETRY_SECONDS): the message that woke the worker is used up while its job is still
    queued in SQL. The wake-up goes back to the queue (one message per queued job, so the last
    job submitted is not stranded); when the broker refuses too, the job's marker is forgotten
    and the reaper's next pass sends it. Each failed claim is a strike for the breaker."""
    import sqlalchemy.exc

    from core.queue import QUEUE, enqueue
    from db import scheduling
    from worker import job as job_module

    monkeypatch.setenv("LABQ_DB_RETRY_SECONDS", "0")
    from core import settings

    settings.get_settings.cache_clear()

    def refused(*_args, **_kwargs):
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("No space left on device"))

    def take_messages(client):
        client.delete(QUEUE, *[f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)])

    monkeypatch.setattr(scheduling, "claim_next", refused)
    monkeypatch.setattr(job_module, "_breaker", None)
    job = make_job()
    enqueue(job)
    take_messages(env)  # a worker took it
    assert queued_messages(env) == 0

    assert job_module.run_job(job) == "unclaimed"
    assert queued_messages(env) == 1  # its wake-up is back
    assert job_module._breaker is not None and job_module._breaker.strikes == 1
    from worker.reaper import reap

    assert reap() == []  # one message for one queued job: nothing to re-send

    env.flushall()  # taken again, and now the broker refuses the wake-up as well
    monkeypatch.setattr(job_module, "enqueue", lambda *_a, **_k: 1 / 0)
    enqueue(job)
    take_messages(env)
    assert job_module.run_job(job) == "unclaimed"
    assert queued_messages(env) == 0
    assert reap() == [job]  # its marker was forgotten: the reaper's pass sends it
    assert queued_messages(env) == 1
