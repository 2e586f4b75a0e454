"""Chaos on the distributed leg: three `labq worker` processes on three host names (as if on three
hosts), PostgreSQL, a Redis server and `labq api`, all separate processes. While a batch of small
jobs runs, whole workers and single pool processes are SIGKILLed and Redis is SIGKILLed and
started again, each at a known point: a job named in LABQ_TEST_HOLD_IN_EPOCH is held inside an
epoch and the fault lands while it is held, so the run does not depend on the machine's speed.
Which jobs are hit, in which epoch and how is drawn from a seeded random generator.

The promise: every job ends `succeeded` exactly once, and its history holds each epoch once;
nothing is lost and nothing is doubled. The figures (jobs, kills, restarts, takeovers, lost,
doubled) are printed and, with LABQ_CHAOS_REPORT=<file>, written as JSON: docs/guarantees.md
quotes them with the command that produced them. LABQ_CHAOS_JOBS (30 in `make test`, to keep
the suite's time down; 60 for the published figures) and LABQ_CHAOS_SEED change the batch and the
draw; the same faults land in either batch."""

import json
import os
import random
import re
import signal
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import make_distributed
from tests.integration.test_faults import worker_log
from worker.testhooks import hold_paths

pytestmark = pytest.mark.integration

JOBS = int(os.environ.get("LABQ_CHAOS_JOBS", "30"))
SEED = int(os.environ.get("LABQ_CHAOS_SEED", "1"))
WORKERS = 3
EPOCHS = 3
SPEC = {"layers": [{"units": 8}], "epochs": EPOCHS, "batch_size": 100, "train_samples": 1000}
# The faults, in the order their jobs are reached: whole workers (Celery parent and pool child:
# a host dying; it comes back at once, as compose's restart policy would bring it), single pool
# processes (the OOM killer; Celery forks a new one) and one Redis restart.
FAULTS = ["worker", "child", "redis", "worker", "child", "worker"]


def plan(jobs: int, seed: int) -> dict[int, tuple[str, int]]:
    """{job index: (fault, epoch)}: distinct jobs spread over the batch, each hit in epoch 1..3."""
    rng = random.Random(seed)
    picks = sorted(rng.sample(range(2, jobs - 2), len(FAULTS)))
    return {i: (fault, rng.randint(1, EPOCHS)) for i, fault in zip(picks, FAULTS, strict=True)}


def held_pid(stack, exp_id: int) -> int | None:
    held, _ = hold_paths(stack.data_dir, exp_id)
    text = held.read_text().strip() if held.exists() else ""
    return int(text) if text else None


def test_chaos_every_job_succeeds_exactly_once(tmp_path_factory, pg_admin_url):
    faults = plan(JOBS, SEED)
    hold = ",".join(f"chaos-{i}:{epoch}" for i, (_, epoch) in faults.items())
    stack = make_distributed(
        tmp_path_factory,
        pg_admin_url,
        workers=WORKERS,
        extra_env={
            "LABQ_LEASE_SECONDS": "6",  # another host's dead worker is noticed in seconds
            "LABQ_TEST_HOLD_IN_EPOCH": hold,
        },
    )
    stack.start()
    counts = Counter()
    try:
        t0 = time.monotonic()
        ids = [stack.submit({**SPEC, "name": f"chaos-{i}", "seed": i}) for i in range(JOBS)]
        pending = {ids[i]: fault for i, (fault, _) in faults.items()}
        deadline = time.monotonic() + 900
        while pending:
            for exp_id, fault in list(pending.items()):
                pid = held_pid(stack, exp_id)
                if pid is None:
                    continue
                del pending[exp_id]
                if fault == "worker":
                    i = stack.worker_of(pid)
                    stack.kill_worker(i)
                    stack.start_worker(i)
                elif fault == "child":
                    os.kill(pid, signal.SIGKILL)
                else:  # Redis dies mid-job; submissions meanwhile are stored and sent later
                    stack.kill_redis()
                    for k in range(3):
                        sent = time.monotonic()
                        r = httpx.post(
                            f"{stack.url}/experiments",
                            json={**SPEC, "name": f"chaos-while-down-{k}"},
                            timeout=30,
                        )
                        assert time.monotonic() - sent < 8  # fails fast instead of hanging
                        assert r.status_code == 202, r.text
                        assert "broker unavailable" in r.json()["warning"], r.text
                        ids.append(r.json()["id"])
                    stack.start_redis()
                    stack.release(exp_id)
                counts[fault] += 1
            assert time.monotonic() < deadline, f"faults not reached: {pending}\n{stack.logs()}"
            time.sleep(0.1)

        while True:
            open_ = stack.sql(
                "SELECT count(*) FROM experiments WHERE status IN ('queued', 'running')"
            )[0][0]
            if not open_:
                break
            assert time.monotonic() < deadline, f"{open_} jobs unfinished\n{stack.logs()}"
            time.sleep(0.5)
        wall = time.monotonic() - t0

        status = dict(stack.sql("SELECT id, status FROM experiments"))
        attempts = dict(stack.sql("SELECT id, attempt FROM experiments"))
        rows = stack.sql(
            "SELECT experiment_id, epoch, count(*) FROM epochs GROUP BY experiment_id, epoch"
        )
        epochs: dict[int, list[int]] = {i: [] for i in ids}
        for exp_id, epoch, n in rows:
            epochs[exp_id] += [epoch] * n
        # Each success is logged once by the run that recorded it (worker.job), in any worker.
        log = worker_log(stack)
        successes = Counter(int(m) for m in re.findall(r"experiment (\d+) succeeded \(", log))
        lost = [i for i in ids if status[i] != "succeeded"]
        doubled = [
            i for i in ids if sorted(epochs[i]) != list(range(1, EPOCHS + 1)) or successes[i] != 1
        ]
        figures = {
            "jobs": len(ids),
            "epochs_each": EPOCHS,
            "workers": WORKERS,
            "workers_killed": counts["worker"],
            "pool_processes_killed": counts["child"],
            "redis_restarts": counts["redis"],
            "taken_over": sum(1 for i in ids if attempts[i] > 1),
            "succeeded": sum(1 for i in ids if status[i] == "succeeded"),
            "lost": len(lost),
            "doubled": len(doubled),
            "wall_seconds": round(wall, 1),
            "seed": SEED,
        }
        print("chaos figures:", json.dumps(figures))
        if os.environ.get("LABQ_CHAOS_REPORT"):
            with open(os.environ["LABQ_CHAOS_REPORT"], "w") as out:
                json.dump(figures, out, indent=2)
        assert not lost, {i: status[i] for i in lost}
        assert not doubled, {i: (sorted(epochs[i]), successes[i]) for i in doubled}
        for i, (fault, _) in faults.items():  # every killed run was taken over once
            expected = 1 if fault == "redis" else 2
            assert attempts[ids[i]] == expected, (fault, ids[i], attempts[ids[i]])
        for exp_id in ids[JOBS:]:  # sent while Redis was down: run once it was back
            assert attempts[exp_id] == 1, (exp_id, attempts[exp_id])
        hist = httpx.get(f"{stack.url}/experiments/{ids[0]}/history", timeout=30).json()
        assert [h["epoch"] for h in hist] == list(range(1, EPOCHS + 1))
    finally:
        stack.stop()
