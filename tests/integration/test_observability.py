"""labq observed as a service, on a live stack: GET /metrics in Prometheus's format, two workers
on one host told apart (/health, Flower), and Flower on labq's broker listing each worker and
the tasks it ran (Celery task events)."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_stack
from tests.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.integration


def wait_for(fetch, timeout: float, what: str, stack: Stack):
    """Poll `fetch()` until it returns something true; return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = fetch()
        except (httpx.HTTPError, ValueError):
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{stack.logs()}"
        time.sleep(0.5)


def samples(stack: Stack) -> dict:
    """{(name, frozenset(labels)): value} from GET /metrics."""
    r = httpx.get(f"{stack.url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def spawn(stack: Stack, log_name: str, *args, **env) -> subprocess.Popen:
    with open(stack.data_dir / "logs" / log_name, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env={**stack.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_metrics_flower_and_workers_told_apart(
    backend, tmp_path_factory, pg_admin_url, external_redis, tiny
):
    stack = make_stack(backend, tmp_path_factory, pg_admin_url, external_redis).start()
    second = flower = None
    try:
        second = spawn(stack, "second-worker.log", "worker")

        def two_workers():
            workers = httpx.get(f"{stack.url}/health", timeout=5).json()["workers"]
            return workers if len(set(workers)) == 2 else None

        workers = wait_for(two_workers, 180, "two workers on /health", stack)
        assert all(w.startswith("labq-") for w in workers), workers

        done = stack.wait(stack.submit({**tiny, "name": "measured"}))
        assert done["status"] == "succeeded"
        m = samples(stack)
        assert m[("labq_jobs", frozenset({("status", "succeeded")}))] >= 1
        assert m[("labq_queue_depth", frozenset())] == 0
        assert m[("labq_epoch_seconds_count", frozenset())] >= 2
        assert m[("labq_job_train_seconds_count", frozenset())] >= 1
        assert m[("labq_pickup_seconds_count", frozenset())] >= 1
        assert 0 <= m[("labq_pickup_seconds_sum", frozenset())] < 3600
        for node in workers:
            assert m[("labq_worker_up", frozenset({("node", node)}))] == 1
        post = frozenset({("route", "/experiments"), ("method", "POST"), ("status", "202")})
        assert m[("labq_http_request_seconds_count", post)] >= 1
        by_id = frozenset(
            {("route", "/experiments/{experiment_id}"), ("method", "GET"), ("status", "200")}
        )
        assert m[("labq_http_request_seconds_count", by_id)] >= 1

        port = free_port()
        flower = spawn(
            stack, "flower.log", "flower", "--port", str(port), FLOWER_UNAUTHENTICATED_API="true"
        )
        flower_url = f"http://127.0.0.1:{port}"

        def flower_workers():
            listed = httpx.get(f"{flower_url}/api/workers?refresh=1", timeout=10).json()
            return listed if set(workers) <= set(listed) else None

        wait_for(flower_workers, 120, "Flower to list both workers", stack)
        watched = stack.submit({**tiny, "name": "seen-by-flower"})
        assert stack.wait(watched)["status"] == "succeeded"

        def flower_task():
            tasks = httpx.get(f"{flower_url}/api/tasks", timeout=10).json().values()
            return [
                t
                for t in tasks
                if (t["args"] or "").strip("[]()").rstrip(",") == str(watched)
                and t["state"] == "SUCCESS"
            ]

        (task,) = wait_for(flower_task, 60, "Flower to see the task succeed", stack)
        assert task["name"] == "labq.train" and task["worker"] in workers
    finally:
        stop(flower)
        stop(second)
        stack.stop()
