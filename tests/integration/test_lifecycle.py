"""`labq up` as a process supervisor, against real processes: its children never outlive it (SIGHUP,
SIGKILL), one stack per data dir, leftovers of a dead stack are stopped, a port in use is one line,
a dead child comes back and jobs still complete, and detach / ps / down.

Each test names the promise of docs/guarantees.md ("The stack itself") that it proves."""

import json
import os
import signal
import time

import httpx
import psutil
import pytest

from tests.conftest import make_stack
from tests.stack import Stack

pytestmark = pytest.mark.integration

# The worker's test hook holds this job inside epoch 2 (tests/conftest.py HELD), so a fault lands
# while it trains, on any machine; a later attempt passes the hold.
HELD = {"name": "held-in-epoch-2", "layers": [{"units": 32}], "epochs": 3, "train_samples": 2000}


def wait_for(predicate, timeout: float, what: str, stack: Stack | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n" + (
            stack.logs() if stack else ""
        )
        time.sleep(0.3)


def healthy(stack: Stack) -> bool:
    try:
        h = httpx.get(f"{stack.url}/health", timeout=3).json()
    except (httpx.HTTPError, ValueError):
        return False
    return h.get("status") == "ok" and bool(h.get("workers"))


def up_log(stack: Stack) -> str:
    return (stack.data_dir / "logs" / "up.log").read_text(errors="replace")


def assert_each_epoch_once(stack: Stack, exp_id: int) -> dict:
    done = stack.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", done
    epochs = [e for e, _ in stack.epoch_attempts(exp_id)]
    assert epochs == list(range(1, done["epochs_total"] + 1))
    return done


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["sighup", "sigkill"])
def test_children_never_outlive_labq_up(sig, tmp_path_factory, tiny):
    """Promise: closing the terminal (SIGHUP) or killing `labq up` (SIGKILL, the OOM killer) takes
    every child down, Redis by SIGTERM so its append-only file is flushed; the next `labq up` on
    the same data dir and ports starts, and the jobs of the first one complete."""
    stack = make_stack("sqlite", tmp_path_factory, None, None).start()
    try:
        running = stack.submit(HELD)
        queued = stack.submit({**tiny, "name": f"queued-at-{sig.name}"})
        stack.held(running)
        children = psutil.Process(stack.proc.pid).children(recursive=True)
        # Redis, the Celery worker and its pool process, the API.
        assert len(children) >= 4, [c.cmdline() for c in children]

        os.kill(stack.proc.pid, sig)
        _, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [c.cmdline() for c in alive]
        stack.proc.wait(60)
        redis_log = (stack.data_dir / "logs" / "redis.log").read_text()
        assert "Received SIGTERM" in redis_log and "fsync() on the AOF" in redis_log
        if sig == signal.SIGHUP:
            assert stack.proc.returncode == 0, stack.logs()
            assert "SIGHUP: stopping" in up_log(stack)

        stack.start()  # the same data dir, API port and Redis port
        assert assert_each_epoch_once(stack, running)["attempt"] == 2
        assert_each_epoch_once(stack, queued)
    finally:
        stack.stop()


def test_one_stack_per_data_dir_leftovers_and_ports_in_use(tmp_path_factory):
    """Promises: a `labq up` on a live data dir names the pids that hold it; what a dead stack
    left running is stopped before the next one starts; a port in use is one line naming it,
    its holder and the setting that changes it."""
    stack = make_stack("sqlite", tmp_path_factory, None, None).start(wait_workers=False)
    try:
        # A child frozen when `labq up` dies keeps its parent-death signal pending: a leftover.
        frozen = stack.child_pid("api")
        os.kill(frozen, signal.SIGSTOP)
        os.kill(stack.proc.pid, signal.SIGKILL)
        stack.proc.wait(60)
        others = [c["pid"] for c in stack.state()["children"] if c["name"] != "api"]
        wait_for(lambda: not any(psutil.pid_exists(p) for p in others), 60, "children to die")
        assert psutil.Process(frozen).status() == psutil.STATUS_STOPPED

        stack.start()
        assert not psutil.pid_exists(frozen)
        assert f"left running: api {frozen}" in up_log(stack)
        assert stack.wait(stack.submit({"layers": [{"units": 8}], "epochs": 1}))["status"] == (
            "succeeded"
        )

        second = stack.cli("up", check=False, timeout=120)
        assert second.returncode == 1
        message = second.stderr.strip()
        assert "\n" not in message and "Traceback" not in second.stdout + second.stderr
        state = stack.state()
        assert f"in use by labq up pid {state['pid']}" in message
        for child in state["children"]:
            assert f"{child['name']} {child['pid']}" in message

        other = Stack(tmp_path_factory.mktemp("other"), port=stack.port)
        out = other.cli("up", check=False, timeout=120)
        assert out.returncode == 1
        line = out.stderr.strip()
        assert "\n" not in line and "Traceback" not in out.stdout + out.stderr
        api_pid = stack.child_pid("api")
        assert line.startswith(f"port {stack.port} (the API) is already in use by pid {api_pid} (")
        assert "cli.main api" in line and "LABQ_PORT" in line

        other = Stack(tmp_path_factory.mktemp("other"), redis_port=stack.redis_port)
        line = other.cli("up", check=False, timeout=120).stderr.strip()
        redis_pid = stack.child_pid("redis")
        assert line.startswith(
            f"port {stack.redis_port} (embedded Redis) is already in use by pid {redis_pid} ("
        )
        assert "redis-server" in line and "LABQ_REDIS_PORT" in line
    finally:
        stack.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_dead_child_comes_back_and_jobs_complete(
    backend, tmp_path_factory, pg_admin_url, external_redis, tiny
):
    """Promise: a child that dies (worker, API, embedded Redis) is started again, with the reason
    logged; the stack stops only when asked to; a job whose worker died resumes and completes."""
    stack = make_stack(backend, tmp_path_factory, pg_admin_url, external_redis).start()
    try:
        running = stack.submit(HELD)
        stack.held(running)
        killed = {}
        for name in ["worker", "api"] + (["redis"] if backend == "sqlite" else []):
            killed[name] = old = stack.child_pid(name)
            os.kill(old, signal.SIGKILL)
            wait_for(
                lambda name=name, old=old: stack.child_pid(name) not in (None, old),
                120,
                f"{name} to be started again",
                stack,
            )
            wait_for(lambda: healthy(stack), 180, f"health after {name} came back", stack)
            if name == "worker":
                done = assert_each_epoch_once(stack, running)
                assert done["attempt"] == 2
            after = stack.wait(stack.submit({**tiny, "name": f"after-{name}"}), timeout=300)
            assert after["status"] == "succeeded", after

        assert stack.proc.poll() is None
        log = up_log(stack)
        for name, pid in killed.items():
            assert f"{name} (pid {pid}) exited (killed by SIGKILL)" in log
            assert f"{name} started again (pid {stack.child_pid(name)})" in log
        ps = json.loads(stack.cli("ps", "--json").stdout)
        assert ps["running"] and ps["pid"] == stack.proc.pid
        seen = {c["name"]: (c["restarts"], c["status"]) for c in ps["children"]}
        assert seen == dict.fromkeys(killed, (1, "running"))
    finally:
        stack.stop()
    assert stack.proc.returncode == 0


def test_detach_ps_down(tmp_path_factory, tiny):
    """Promise: `labq up --detach` returns once the stack serves, `labq ps` shows it, `labq down`
    stops every child of it."""
    stack = make_stack("sqlite", tmp_path_factory, None, None)
    try:
        out = stack.cli("up", "--detach", timeout=180).stdout
        assert "runs in the background" in out and "labq down" in out
        state = stack.state()
        assert state["status"] == "running"
        ps = stack.cli("ps").stdout
        assert f"labq up pid {state['pid']} (running" in ps
        for child in state["children"]:
            assert child["name"] in ps and str(child["pid"]) in ps
        pids = [state["pid"], *(c["pid"] for c in state["children"])]
        procs = [psutil.Process(p) for p in pids]
        procs += [c for p in procs for c in p.children(recursive=True)]
        wait_for(lambda: healthy(stack), 180, "a worker", stack)
        assert stack.wait(stack.submit(tiny))["status"] == "succeeded"

        assert "stopped." in stack.cli("down", timeout=120).stdout
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert not alive, [p.pid for p in alive]
        gone = stack.cli("ps", check=False)
        assert gone.returncode == 1 and "no labq stack is running" in gone.stdout
        assert "no labq stack is running" in stack.cli("down").stdout
    finally:
        stack.cli("down", check=False)
