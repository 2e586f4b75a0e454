"""Fencing: a worker process that was paused past its lease, while its job was taken over,
cancelled and retried, never writes again when it wakes up (issue 16, item 1).

Each run's writes are checked, in their own transaction, against its attempt number; a retry keeps
that number growing, so no later run can ever hold the number a paused process still holds."""

import os
import signal
import time

import pytest

from tests.conftest import make_stack
from tests.integration.test_faults import worker_log

pytestmark = pytest.mark.integration

NAME = "fenced"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_paused_worker_never_writes_after_takeover_and_retry(
    backend, tmp_path_factory, pg_admin_url, external_redis
):
    """Guarantee: only the holder of the live lease writes, across retries. The sequence of the
    issue: a 12-epoch job, its worker SIGSTOPped in epoch 3, attempt 2 takes over when the 6 s
    lease lapses, cancel, retry, and once the new run is running the old process is SIGCONTed
    (and let go of its hold, so it would train on if it believed it still held the job)."""
    stack = make_stack(
        backend,
        tmp_path_factory,
        pg_admin_url,
        external_redis,
        concurrency=2,
        extra_env={
            "LABQ_LEASE_SECONDS": "6",
            "LABQ_CHECKPOINT_BUDGET": "1",
            "LABQ_CANCEL_POLL_SECONDS": "0.5",
            # Three holds, one run each: the old run, the takeover, the run after the retry.
            "LABQ_TEST_HOLD_IN_EPOCH": f"{NAME}:3,{NAME}:3,{NAME}:3",
        },
    ).start()
    old_pid = None
    try:
        exp_id = stack.submit(
            {
                "name": NAME,
                "layers": [{"units": 128}],
                "epochs": 12,
                "batch_size": 32,
                "train_samples": 2000,
                "seed": 1,
            }
        )
        old_pid = stack.held(exp_id)  # attempt 1, inside epoch 3
        os.kill(old_pid, signal.SIGSTOP)
        takeover_pid = stack.held(exp_id, n=2)  # its lease lapsed: the other child resumed it
        assert takeover_pid != old_pid and stack.get(exp_id)["attempt"] == 2

        assert stack.client().post(f"/experiments/{exp_id}/cancel", json={}).status_code == 202
        assert stack.wait(exp_id)["status"] == "cancelled"
        assert stack.client().post(f"/experiments/{exp_id}/retry", json={}).status_code == 202
        new_pid = stack.held(exp_id, n=3)  # the new run, inside its epoch 3
        new = stack.get(exp_id)
        assert new["status"] == "running" and new["attempt"] > 2

        stack.release(exp_id)  # the old process may train on, if it thinks it still may
        os.kill(old_pid, signal.SIGCONT)
        old_pid = None
        lost = f"experiment {exp_id} attempt 1 lost its lease"
        deadline = time.monotonic() + 120
        while lost not in worker_log(stack) and stack.get(exp_id)["status"] == "running":
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
        # The old process gave up without a write: the new run is untouched, still held.
        assert lost in worker_log(stack), stack.logs()
        during = stack.get(exp_id)
        assert during["status"] == "running" and during["attempt"] == new["attempt"]
        assert during["epochs_done"] == 2
        assert {a for _, a in stack.epoch_attempts(exp_id)} == {new["attempt"]}

        stack.release(exp_id, n=3)
        done = stack.wait(exp_id, timeout=300)
        assert done["status"] == "succeeded", done
        assert done["attempt"] == new["attempt"]
        assert done["worker"].endswith(f":{new_pid}")
        # Every epoch row, and the result, came from the new run.
        assert stack.epoch_attempts(exp_id) == [(e, new["attempt"]) for e in range(1, 13)]
        assert done["test"]["accuracy"] is not None
    finally:
        if old_pid is not None:
            os.kill(old_pid, signal.SIGCONT)
        stack.stop()
