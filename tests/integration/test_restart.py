"""Queued and running jobs survive a stop and start of `labq up`: nothing submitted is lost, and the
running one resumes from the checkpoint of its last finished epoch, before the jobs queued after
it (it keeps its place in the queue)."""

import signal
from datetime import datetime

import httpx
import pytest

from tests.conftest import make_stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_jobs_survive_restart(backend, tmp_path_factory, pg_admin_url, external_redis, tiny):
    # The test hook holds "first" inside epoch 2, so the stop lands mid-job on any machine.
    stack = make_stack(
        backend,
        tmp_path_factory,
        pg_admin_url,
        external_redis,
        extra_env={"LABQ_TEST_HOLD_IN_EPOCH": "first:2"},
    ).start()
    try:
        first = stack.submit({**tiny, "name": "first", "epochs": 30, "train_samples": 6000})
        rest = [stack.submit({**tiny, "name": f"queued-{i}"}) for i in range(3)]
        stack.held(first)
    finally:
        stack.stop(signal.SIGINT)
    assert stack.proc.returncode == 0, stack.logs()
    done_before = stack.epoch_attempts(first)
    assert done_before and all(attempt == 1 for _, attempt in done_before)
    stack.start()
    try:
        for exp_id in [first, *rest]:
            exp = stack.wait(exp_id, timeout=300)
            assert exp["status"] == "succeeded", exp
            hist = httpx.get(f"{stack.url}/experiments/{exp_id}/history").json()
            assert [h["epoch"] for h in hist] == list(range(1, exp["epochs_total"] + 1))
        assert stack.get(first)["attempt"] == 2
        # Resumed, not restarted: the epochs up to the last checkpoint before the stop keep their
        # first-attempt rows, and the second attempt wrote only the epochs after them.
        after = stack.epoch_attempts(first)
        kept = [row for row in after if row[1] == 1]
        assert kept and kept == done_before[: len(kept)]
        assert {attempt for _, attempt in after[len(kept) :]} == {2}
        # It kept its place: one worker process, and it finished before the others started.
        finished = datetime.fromisoformat(stack.get(first)["finished_at"])
        assert all(datetime.fromisoformat(stack.get(i)["started_at"]) >= finished for i in rest)
    finally:
        stack.stop()
