"""A worker's pool child is replaced above LABQ_MAX_CHILD_MEMORY_MB of resident memory (Celery's
worker_max_memory_per_child, checked after each job) and otherwise kept across jobs, so a warm
child keeps its models; the job that crossed the line still finishes, and so does the next."""

import pytest

from tests.conftest import started
from tests.stack import Stack

pytestmark = pytest.mark.integration


def pid(exp: dict) -> int:
    return int(exp["worker"].rsplit(":", 1)[1])


def test_a_child_over_its_memory_limit_is_replaced_after_its_job(tmp_path_factory, tiny):
    # Any child that has imported Keras is far above 1 MB: replaced after every job.
    with started(
        Stack(tmp_path_factory.mktemp("recycle"), extra_env={"LABQ_MAX_CHILD_MEMORY_MB": "1"})
    ) as stack:
        first = stack.wait(stack.submit({**tiny, "name": "first"}))
        second = stack.wait(stack.submit({**tiny, "name": "second"}))
        assert first["status"] == second["status"] == "succeeded", (first, second)
        assert pid(first) != pid(second), stack.logs()
