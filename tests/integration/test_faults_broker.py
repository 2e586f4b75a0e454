"""A frozen Redis does not freeze the API (issue 16, item 5): with the broker stopped (SIGSTOP: it
accepts connections and never answers), a submission is stored and answered 202 with a warning
within its publish timeout instead of hanging, and while submissions wait on the broker, reads and
/health still answer at once (they have in-flight slots of their own). Both legs: SQLite and
PostgreSQL, each with a separately started Redis."""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.test_faults import _redis
from tests.stack import Stack, create_pg_database, free_port

pytestmark = pytest.mark.integration

JOB = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 500}
INFLIGHT = 4  # LABQ_MAX_INFLIGHT_REQUESTS: 4 reads, 2 writes at once
POSTS = 6  # more than all 4 slots the API used to share between reads and writes


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_frozen_redis_does_not_freeze_the_api(backend, tmp_path_factory, pg_admin_url):
    if backend == "postgres" and not pg_admin_url:
        pytest.skip("PostgreSQL leg: LABQ_TEST_PG_URL not set (run via `make test`)")
    port = free_port()
    redis_proc = _redis(port, tmp_path_factory.mktemp("frozen-redis"))
    stack = Stack(
        tmp_path_factory.mktemp(f"frozen-{backend}"),
        database_url=create_pg_database(pg_admin_url) if backend == "postgres" else "",
        redis_url=f"redis://127.0.0.1:{port}/0",
        extra_env={"LABQ_LEASE_SECONDS": "8", "LABQ_MAX_INFLIGHT_REQUESTS": str(INFLIGHT)},
    )
    stack.start()
    try:
        first = stack.submit({**JOB, "name": "before"})
        assert stack.wait(first)["status"] == "succeeded"
        stored = stack.sql("SELECT count(*) FROM experiments")[0][0]

        os.kill(redis_proc.pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(POSTS) as pool:
                posts = [
                    pool.submit(
                        httpx.post,
                        f"{stack.url}/experiments",
                        json={**JOB, "name": f"frozen-{i}"},
                        timeout=60,
                    )
                    for i in range(POSTS)
                ]
                # Submissions are stored, then wait on the broker: the write slots are taken.
                deadline = time.monotonic() + 60
                while stack.sql("SELECT count(*) FROM experiments")[0][0] < stored + INFLIGHT // 2:
                    assert time.monotonic() < deadline, stack.logs()
                    time.sleep(0.05)
                read = httpx.get(f"{stack.url}/experiments/{first}", timeout=10)
                assert read.status_code == 200 and read.json()["status"] == "succeeded"
                health = httpx.get(f"{stack.url}/health", timeout=10)
                assert health.status_code == 503
                assert health.json()["broker"].startswith("error"), health.json()
                answers = [p.result() for p in posts]
        finally:
            os.kill(redis_proc.pid, signal.SIGCONT)
        for r in answers:
            assert r.status_code == 202, r.text
            assert "will be sent" in r.json()["warning"]
        # Stored, and sent once the broker answers again (the reaper's next pass).
        for r in answers:
            assert stack.wait(r.json()["id"], timeout=300)["status"] == "succeeded"
        again = httpx.post(f"{stack.url}/experiments", json={**JOB, "name": "after"}, timeout=30)
        assert again.status_code == 202 and again.json()["warning"] is None
    finally:
        stack.stop()
        os.kill(redis_proc.pid, signal.SIGCONT)
        redis_proc.kill()
        redis_proc.wait()
