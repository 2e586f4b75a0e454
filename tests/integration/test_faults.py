"""Faults injected into a live labq: a worker killed mid-epoch, a job that kills its worker every
time, a database locked during writes, a cancel inside a long epoch, a broker that redelivers a
running job, a Redis that dies and comes back.

Every test but the Redis restart (on the distributed leg a part of test_chaos.py) runs on two
legs: `embedded` (`labq up`: SQLite, the embedded Redis, its worker) and `distributed`
(PostgreSQL, a Redis server, `labq api` and separate `labq worker` processes with their own host
names, as docker-compose runs them: tests.stack.DistributedStack).

Each test names the guarantee of docs/guarantees.md that it proves."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from cli.stack import redis_server_binary
from tests.conftest import make_distributed
from tests.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.integration

CRASHER = "crash-every-time"


def worker_log(stack: Stack) -> str:
    return "".join(p.read_text(errors="replace") for p in (stack.data_dir / "logs").glob("*.log"))


LEGS = ["embedded", "distributed"]


@pytest.fixture(scope="module", params=LEGS)
def faulty(request, tmp_path_factory, pg_admin_url):
    """A short lease (dead workers are noticed in seconds), an attempt cap of 2, a SQLite busy
    timeout of 0.5 s (a held lock makes writes fail, not wait), and the crash hook for CRASHER."""
    env = {
        "LABQ_LEASE_SECONDS": "6",
        "LABQ_MAX_ATTEMPTS": "2",
        "LABQ_SQLITE_BUSY_MS": "500",
        "LABQ_CANCEL_POLL_SECONDS": "0.5",
        "LABQ_CANCEL_CHECK_BATCHES": "20",
        "LABQ_TEST_CRASH_ON_EPOCH": f"{CRASHER}:2",
        "LABQ_TEST_HOLD_IN_EPOCH": "killed:3,long-epochs:2,locked:3,retried:1",
    }
    if request.param == "distributed":
        s = make_distributed(tmp_path_factory, pg_admin_url, extra_env=env)
    else:
        s = Stack(tmp_path_factory.mktemp("faults"), extra_env=env)
    s.leg = request.param
    s.start()
    yield s
    s.stop()


def test_worker_killed_mid_epoch_resumes_from_checkpoint(faulty):
    """Guarantees: at-least-once, exactly-once epoch history, resume granularity. The worker is
    held inside epoch 3 (the test hook), so the kill lands mid-epoch on any machine."""
    spec = {
        "name": "killed",
        "layers": [{"units": 64}],
        "epochs": 6,
        "batch_size": 32,
        "train_samples": 6000,
        "seed": 1,
    }
    exp_id = faulty.submit(spec)
    pid = faulty.held(exp_id)
    running = faulty.get(exp_id)
    assert running["status"] == "running" and running["epochs_done"] == 2, running
    assert running["worker"].endswith(f":{pid}")
    os.kill(pid, signal.SIGKILL)

    done = faulty.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", done
    assert done["attempt"] == 2 and done["test"]["accuracy"] is not None
    rows = faulty.epoch_attempts(exp_id)
    assert [e for e, _ in rows] == [1, 2, 3, 4, 5, 6]  # every epoch exactly once
    first = [e for e, a in rows if a == 1]
    # Resumed after the last checkpoint, not restarted: attempt 2 wrote only the later epochs.
    assert first and first == list(range(1, len(first) + 1)) and len(first) <= 2
    assert {a for e, a in rows if e > len(first)} == {2}
    assert "resumes after epoch" in worker_log(faulty)
    hist = httpx.get(f"{faulty.url}/experiments/{exp_id}/history").json()
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5, 6]


def test_job_that_kills_its_worker_fails_at_the_attempt_cap(faulty):
    """Guarantee: a job that keeps killing its worker ends `failed` with the reason."""
    exp_id = faulty.submit(
        {
            "name": CRASHER,
            "layers": [{"units": 16}],
            "epochs": 3,
            "batch_size": 128,
            "train_samples": 2000,
        }
    )
    done = faulty.wait(exp_id, timeout=540)
    assert done["status"] == "failed", done
    assert "attempt cap 2" in done["error"] and done["attempt"] == 2
    # Epoch 1 was finished once; epoch 2 killed the worker each time and was never recorded.
    assert faulty.epoch_attempts(exp_id) == [(1, 1)]
    # The worker is healthy afterwards.
    after = faulty.wait(
        faulty.submit({"layers": [{"units": 16}], "epochs": 1, "train_samples": 1000})
    )
    assert after["status"] == "succeeded"


def test_database_locked_during_writes_is_retried(faulty):
    """Guarantee: a database locked for a few seconds delays a job, it does not strand it.
    SQLite: an exclusive lock against a 0.5 s busy timeout, so writes fail and are retried.
    PostgreSQL: an exclusive lock on the epochs table, which the epoch's write waits on."""
    if faulty.leg == "distributed":
        return _postgres_locked_during_writes(faulty)
    exp_id = faulty.submit(
        {
            "name": "locked",
            "layers": [{"units": 32}],
            "epochs": 15,
            "batch_size": 64,
            "train_samples": 3000,
        }
    )
    faulty.held(exp_id)  # inside epoch 3, so its end write comes while the lock is held
    conn = sqlite3.connect(faulty.data_dir / "labq.db", timeout=10, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    faulty.release(exp_id)
    # Held until the worker has met the lock (0.5 s busy timeout) and is retrying its write.
    deadline = time.monotonic() + 120
    while "Retrying" not in worker_log(faulty):
        assert time.monotonic() < deadline, f"no retried write seen\n{faulty.logs()}"
        time.sleep(0.1)
    conn.execute("COMMIT")
    conn.close()
    done = faulty.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", done
    assert [e for e, _ in faulty.epoch_attempts(exp_id)] == list(range(1, 16))
    log = worker_log(faulty)
    assert "database is locked" in log and "Retrying" in log


def _postgres_locked_during_writes(faulty):
    import psycopg

    exp_id = faulty.submit(
        {
            "name": "locked",
            "layers": [{"units": 32}],
            "epochs": 15,
            "batch_size": 64,
            "train_samples": 3000,
        }
    )
    faulty.held(exp_id)  # inside epoch 3, so its end write comes while the lock is held
    url = faulty.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE epochs IN ACCESS EXCLUSIVE MODE")
        faulty.release(exp_id)
        # Held until a worker's write is waiting on the lock.
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        deadline = time.monotonic() + 120
        with psycopg.connect(url, autocommit=True) as probe:
            while probe.execute(waiting).fetchone()[0] == 0:
                assert time.monotonic() < deadline, f"no write waited\n{faulty.logs()}"
                time.sleep(0.1)
        conn.commit()
    done = faulty.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", done
    assert [e for e, _ in faulty.epoch_attempts(exp_id)] == list(range(1, 16))


def test_cancel_inside_a_long_epoch(faulty):
    """Guarantee: cancel latency under one epoch; the finished epochs are kept, the unfinished
    one is not recorded. The worker is held inside epoch 2 (the test hook) until it sees the
    cancel; the epoch has 6,000 batch-1 steps and the stop check comes every 20, so stopping
    inside it does not depend on the machine's speed."""
    exp_id = faulty.submit(
        {
            "name": "long-epochs",
            "layers": [{"units": 64}],
            "epochs": 5,
            "batch_size": 1,
            "train_samples": 6000,
        }
    )
    try:
        faulty.held(exp_id)
        assert faulty.get(exp_id)["epochs_done"] == 1
        r = httpx.post(f"{faulty.url}/experiments/{exp_id}/cancel", json={})
        assert r.status_code == 202 and r.json()["cancel_requested"]
        done = faulty.wait(exp_id, timeout=120)
    finally:
        faulty.release(exp_id)
        httpx.post(f"{faulty.url}/experiments/{exp_id}/cancel", json={})
    assert done["status"] == "cancelled"
    assert done["epochs_done"] == 1  # stopped inside epoch 2, which is not recorded
    hist = httpx.get(f"{faulty.url}/experiments/{exp_id}/history").json()
    assert [h["epoch"] for h in hist] == [1]


def test_retry_requeues_a_cancelled_job_from_scratch(faulty):
    """POST /experiments/{id}/retry: failed or cancelled only; restarts with a clean history."""
    exp_id = faulty.submit(
        {
            "name": "retried",
            "layers": [{"units": 16}],
            "epochs": 2,
            "batch_size": 128,
            "train_samples": 1000,
        }
    )
    assert httpx.post(f"{faulty.url}/experiments/{exp_id}/retry", json={}).status_code == 409
    assert httpx.post(f"{faulty.url}/experiments/999999/retry", json={}).status_code == 404
    # Cancel it while it is held inside epoch 1 (a warm worker trains it in well under a second,
    # before a cancel could land), then retry: the retried run passes the hold.
    faulty.held(exp_id)
    httpx.post(f"{faulty.url}/experiments/{exp_id}/cancel", json={})
    cancelled = faulty.wait(exp_id)
    assert cancelled["status"] == "cancelled"
    r = httpx.post(f"{faulty.url}/experiments/{exp_id}/retry", json={})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert r.json()["epochs_done"] == 0 and not r.json()["cancel_requested"]
    done = faulty.wait(exp_id)
    # The attempt number goes on from where it was: never reused.
    attempt = cancelled["attempt"] + 1
    assert attempt == 2
    assert done["status"] == "succeeded" and done["attempt"] == attempt
    assert faulty.epoch_attempts(exp_id) == [(1, attempt), (2, attempt)]
    assert httpx.post(f"{faulty.url}/experiments/{exp_id}/retry", json={}).status_code == 409


@pytest.mark.parametrize("leg", LEGS)
def test_redelivered_job_trains_once(leg, tmp_path_factory, pg_admin_url):
    """Guarantee: no job trains twice at once. Redis redelivers the running job's message after
    a 2 s visibility timeout; the second worker finds the live lease and leaves. Embedded: a
    second Celery worker beside `labq up`'s; distributed: two `labq worker`s on two hosts."""
    env = {"LABQ_VISIBILITY_TIMEOUT": "2", "LABQ_TEST_HOLD_IN_EPOCH": "long:2"}
    if leg == "distributed":
        stack: Stack = make_distributed(tmp_path_factory, pg_admin_url, workers=2, extra_env=env)
    else:
        stack = Stack(tmp_path_factory.mktemp("redeliver"), extra_env=env)
    stack.start()
    second = None
    try:
        if leg == "embedded":
            second = _second_worker(stack)
        deadline = time.monotonic() + 120
        while len(httpx.get(f"{stack.url}/health", timeout=5).json()["workers"]) < 2:
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(1)
        exp_id = stack.submit(
            {
                "name": "long",
                "layers": [{"units": 64}],
                "epochs": 60,
                "batch_size": 32,
                "train_samples": 6000,
            }
        )
        stack.held(exp_id)  # running, inside epoch 2, until the redelivered copy has come
        skipped = f"experiment {exp_id} is not claimable"
        deadline = time.monotonic() + 120
        while skipped not in worker_log(stack):
            assert time.monotonic() < deadline, f"no redelivery seen\n{stack.logs()}"
            assert stack.get(exp_id)["status"] == "running"
            time.sleep(0.2)
        httpx.post(f"{stack.url}/experiments/{exp_id}/cancel", json={})
        done = stack.wait(exp_id, timeout=120)
        assert done["status"] == "cancelled" and done["attempt"] == 1
        rows = stack.epoch_attempts(exp_id)
        assert rows and {a for _, a in rows} == {1}
        assert [e for e, _ in rows] == list(range(1, len(rows) + 1))
    finally:
        if second and second.poll() is None:
            os.killpg(second.pid, signal.SIGTERM)
            try:
                second.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(second.pid, signal.SIGKILL)
        stack.stop()


def _second_worker(stack: Stack) -> subprocess.Popen:
    log = open(stack.data_dir / "logs" / "second-worker.log", "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "labq"]
        + ["--concurrency", "1", "-n", "second@%h", "--loglevel", "INFO"],
        cwd=ROOT,
        env=stack.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _redis(port: int, data_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    for _ in range(100):
        try:
            redis.Redis(port=port, socket_connect_timeout=0.2).ping()
            return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis did not start")


def test_redis_restarted_mid_job(tmp_path_factory):
    """Guarantee: a broker that dies and comes back loses nothing: the running job completes,
    a job submitted while it was down is accepted at once and runs when it is back. (On the
    distributed leg the same fault, with the same checks, is part of test_chaos.py, which keeps
    the suite from starting one more stack for it.)"""
    port = free_port()
    rdir = tmp_path_factory.mktemp("redis-restart")
    redis_proc = _redis(port, rdir)
    stack = Stack(
        tmp_path_factory.mktemp("redis-stack"),
        redis_url=f"redis://127.0.0.1:{port}/0",
        extra_env={"LABQ_LEASE_SECONDS": "6"},
    )
    stack.start()
    try:
        exp_id = stack.submit(
            {
                "name": "through-restart",
                "layers": [{"units": 64}],
                "epochs": 12,
                "batch_size": 32,
                "train_samples": 4000,
            }
        )
        stack.wait(exp_id, until=lambda e: e["epochs_done"] >= 1)
        redis_proc.kill()
        redis_proc.wait()
        t0 = time.monotonic()
        r = httpx.post(
            f"{stack.url}/experiments",
            json={
                "name": "while-down",
                "layers": [{"units": 16}],
                "epochs": 1,
                "train_samples": 1000,
            },
        )
        assert time.monotonic() - t0 < 8  # fails fast instead of hanging
        assert r.status_code == 202 and "broker unavailable" in r.json()["warning"]
        while_down = r.json()["id"]
        time.sleep(2)
        redis_proc = _redis(port, rdir)

        done = stack.wait(exp_id, timeout=300)
        assert done["status"] == "succeeded", done
        assert [e for e, _ in stack.epoch_attempts(exp_id)] == list(range(1, 13))
        later = stack.wait(while_down, timeout=180)
        assert later["status"] == "succeeded" and later["attempt"] == 1
    finally:
        stack.stop()
        redis_proc.kill()
        redis_proc.wait()
