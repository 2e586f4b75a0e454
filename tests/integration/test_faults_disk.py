"""A full disk is an outage, not a verdict (issue 16, item 3): the API answers 503 with
Retry-After and stores nothing, /health says so, a running job whose writes the database refuses
is requeued (its lease lapses), not failed, and it finishes once space is back; Redis that cannot
write its append-only file shows in /health, submissions are kept in SQL, and the worker survives
its MISCONF refusals; a partial MNIST cache is removed.

The filesystems are size-limited tmpfs mounts (root only; the tests skip elsewhere)."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import _redis_db
from tests.integration.test_faults import _redis, worker_log
from tests.smallfs import fill, pg_database_on, small_fs
from tests.stack import ROOT, Stack, free_port

pytestmark = pytest.mark.integration

JOB = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 500}


def post_until_refused(stack: Stack, limit: int = 200) -> tuple[httpx.Response, list[int]]:
    """POST small jobs until the database refuses one; (the refusal, the ids it took before).
    PostgreSQL still fills the free room of its last pages, so it may take a few."""
    taken = []
    for _ in range(limit):
        r = httpx.post(f"{stack.url}/experiments", json={**JOB, "name": "while-full"}, timeout=60)
        if r.status_code != 202:
            return r, taken
        taken.append(r.json()["id"])
    raise AssertionError(f"{limit} submissions accepted on a full disk")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_full_database_disk_requeues_the_job_and_answers_503(
    backend, tmp_path_factory, pg_admin_url, external_redis
):
    if backend == "postgres" and not pg_admin_url:
        pytest.skip("PostgreSQL leg: LABQ_TEST_PG_URL not set (run via `make test`)")
    # Outside pytest's private temp dir: the PostgreSQL server's own user must reach it.
    mount = Path(tempfile.mkdtemp(prefix="labq-small-db-"))
    mount.chmod(0o755)
    env = {
        "LABQ_LEASE_SECONDS": "6",
        "LABQ_DB_RETRY_SECONDS": "3",
        "LABQ_CHECKPOINT_BUDGET": "1",
        "LABQ_TEST_HOLD_IN_EPOCH": "disk-full:2",
    }
    with small_fs(mount, "40m"):
        if backend == "sqlite":
            stack = Stack(
                tmp_path_factory.mktemp("disk-sqlite"),
                database_url=f"sqlite:///{mount}/labq.db",
                extra_env=env,
            )
            _full_database_disk(stack, mount, backend)
        else:
            with pg_database_on(pg_admin_url, mount) as url:
                stack = Stack(
                    tmp_path_factory.mktemp("disk-pg"),
                    database_url=url,
                    redis_url=external_redis.replace("/0", f"/{next(_redis_db)}"),
                    extra_env=env,
                )
                _full_database_disk(stack, mount, backend)
    mount.rmdir()


def _full_database_disk(stack: Stack, mount, backend: str) -> None:
    stack.start()
    filler = None
    try:
        exp_id = stack.submit(
            {
                "name": "disk-full",
                "layers": [{"units": 32}],
                "epochs": 4,
                "batch_size": 64,
                "train_samples": 2000,
            }
        )
        stack.held(exp_id)  # inside epoch 2; epoch 1 and its checkpoint are stored
        filler = fill(mount)

        refused, taken = post_until_refused(stack)
        assert refused.status_code == 503, refused.text
        assert int(refused.headers["Retry-After"]) > 0
        assert "nothing was stored" in refused.json()["message"]
        total = httpx.get(f"{stack.url}/experiments", params={"limit": 1}).json()["total"]
        assert total == 1 + len(taken)  # the refused submission left no row
        assert stack.get(exp_id)["status"] == "running"  # reads still work
        health = httpx.get(f"{stack.url}/health", timeout=30)
        if backend == "sqlite":  # PostgreSQL's disk is not visible to the API (docs/guarantees)
            assert health.status_code == 503 and health.json()["database"].startswith("error")

        # The job's epoch-2 write is refused for LABQ_DB_RETRY_SECONDS; then it is left to be
        # requeued, never written `failed`. Space comes back as soon as the worker gives up.
        stack.release(exp_id)
        gave_up = "refused writes"
        deadline = time.monotonic() + 120
        while gave_up not in worker_log(stack) and f"experiment {exp_id} failed" not in (
            worker_log(stack)
        ):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.1)
        filler.unlink()
        filler = None
        assert gave_up in worker_log(stack), stack.logs()

        done = stack.wait(exp_id, timeout=300)
        assert done["status"] == "succeeded" and done["error"] is None, done
        assert done["attempt"] == 2  # requeued once its lease lapsed, resumed after epoch 1
        assert stack.epoch_attempts(exp_id) == [(1, 1), (2, 2), (3, 2), (4, 2)]
        assert httpx.get(f"{stack.url}/health", timeout=30).status_code == 200
        for i in taken:  # accepted before the disk filled up: kept, and they run
            assert stack.wait(i)["status"] == "succeeded"
        assert stack.submit({**JOB, "name": "after"})
    finally:
        if filler is not None:
            filler.unlink()
        stack.stop()


def test_redis_that_cannot_persist_is_reported_and_survived(tmp_path_factory):
    """Redis on a full disk refuses writes (MISCONF). /health says why (503); a submission is
    stored in SQL and answered 202 with a warning; the worker keeps running (it used to die on
    the refusal) and, once space is back, trains the job submitted meanwhile."""
    mount = tmp_path_factory.mktemp("small-redis")
    with small_fs(mount, "4m"):
        port = free_port()
        redis_proc = _redis(port, mount)
        stack = Stack(
            tmp_path_factory.mktemp("redis-full"),
            redis_url=f"redis://127.0.0.1:{port}/0",
            extra_env={"LABQ_LEASE_SECONDS": "8"},
        ).start()
        filler = None
        try:
            assert stack.wait(stack.submit({**JOB, "name": "before"}))["status"] == "succeeded"
            filler = fill(mount)
            deadline = time.monotonic() + 60
            while True:  # Redis finds out at its next append-only write
                r = httpx.post(f"{stack.url}/experiments", json={**JOB, "name": "while-full"})
                assert r.status_code == 202, r.text
                health = httpx.get(f"{stack.url}/health", timeout=30)
                if health.status_code == 503:
                    break
                assert time.monotonic() < deadline, stack.logs()
                time.sleep(0.5)
            assert "aof_last_write_status=err" in health.json()["broker"]
            r = httpx.post(f"{stack.url}/experiments", json={**JOB, "name": "stored-meanwhile"})
            assert r.status_code == 202 and "will be sent" in r.json()["warning"]
            meanwhile = r.json()["id"]
            assert stack.proc.poll() is None, stack.logs()

            filler.unlink()
            filler = None
            done = stack.wait(meanwhile, timeout=300)
            assert done["status"] == "succeeded", done
            assert httpx.get(f"{stack.url}/health", timeout=30).status_code == 200
            assert (
                stack.proc.poll() is None
                and "exited" not in (stack.data_dir / "up.log").read_text()
            )
        finally:
            if filler is not None:
                filler.unlink()
            stack.stop()
            redis_proc.kill()
            redis_proc.wait()


def test_partial_mnist_cache_is_removed_when_the_disk_fills(tmp_path):
    """The cache does not fit: the data still loads (from the package), and no partial file is
    left to fill the disk."""
    mount = tmp_path / "small"
    with small_fs(mount, "8m"):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path; from worker.engine.data import load_mnist; "
                f"print(load_mnist(Path('{mount}') / 'datasets').x_train.shape[0])",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.stdout.strip() == "60000", out.stderr
        assert "could not write the MNIST cache" in out.stderr
        assert list((mount / "datasets").iterdir()) == []
