"""Fair share on a live labq with one real worker (SQLite and PostgreSQL): ann's sweep of 20 runs
is queued behind her held run, then ben queues one run, then ann one at high priority; when ann's
run ends, her high-priority run starts next and then ben's, as the queue positions the API showed
beforehand said; a sweep over ann's queued-jobs limit is a 429 that stores nothing. The worker's
hold hook keeps ann's first run inside its epoch until the queue is in place, so nothing races
the clock."""

import httpx
import pytest

from tests.conftest import make_stack, started

pytestmark = pytest.mark.integration

RUN = {"layers": [{"units": 8}], "epochs": 1, "batch_size": 256, "train_samples": 1000}
FIRST = {**RUN, "name": "ann-first", "epochs": 2}


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, pg_admin_url, external_redis):
    env = {"LABQ_TEST_HOLD_IN_EPOCH": "ann-first:1", "LABQ_MAX_QUEUED_PER_USER": "22"}
    legs = (request.param, tmp_path_factory, pg_admin_url, external_redis)
    with started(make_stack(*legs, extra_env=env)) as s:
        yield s


def test_one_persons_sweep_does_not_hold_back_anothers_run(stack):
    def user(name: str) -> dict[str, str]:
        out = stack.cli("user", "add", name, "--role", "member")
        return {"Authorization": f"Bearer {out.stdout.strip()}"}

    ann, ben = user("ann"), user("ben")
    with httpx.Client(base_url=stack.url, timeout=30) as c:
        r = c.post("/experiments", json=FIRST, headers=ann)
        assert r.status_code == 202, r.text
        first = r.json()["id"]
        stack.held(first)  # the only worker is busy with ann's run

        grid = {"optimizer.learning_rate": [round(0.001 * (i + 1), 4) for i in range(10)]}
        sweep = {"name": "ann-sweep", "base": RUN, "grid": grid, "repeats": 2}
        r = c.post("/sweeps", json=sweep, headers=ann)
        assert r.status_code == 202, r.text
        sweep_id, children = r.json()["id"], r.json()["children"]
        assert len(children) == 20
        r = c.post("/experiments", json={**RUN, "name": "ben-one"}, headers=ben)
        assert r.status_code == 202, r.text
        single = r.json()["id"]
        # A high-priority run goes before every normal one, whoever owns it.
        r = c.post("/experiments?priority=high", json={**RUN, "name": "ann-urgent"}, headers=ann)
        assert r.status_code == 202, r.text
        urgent = r.json()["id"]
        # ann has 21 queued jobs; her limit (LABQ_MAX_QUEUED_PER_USER=22) refuses 2 more, whole.
        r = c.post("/sweeps", json={**sweep, "repeats": 1, "grid": {"epochs": [1, 2]}}, headers=ann)
        assert r.status_code == 429 and "LABQ_MAX_QUEUED_PER_USER" in r.json()["detail"], r.text
        assert "Retry-After" in r.headers

        # What ben is shown is the order the worker will follow.
        assert c.get(f"/experiments/{urgent}").json()["queue_position"] == 1
        assert c.get(f"/experiments/{single}").json()["queue_position"] == 2
        positions = [c.get(f"/experiments/{i}").json()["queue_position"] for i in children[:3]]
        assert positions == [3, 4, 5]

        stack.release(first)
        stack.wait(first)
        done = stack.wait(single)
        assert done["status"] == "succeeded", done
        r = c.post(f"/sweeps/{sweep_id}/cancel", json={}, headers=ann)
        assert r.status_code == 202, r.text

    starts = stack.sql(
        "SELECT id FROM experiments WHERE started_at IS NOT NULL ORDER BY started_at, id"
    )
    assert [row[0] for row in starts][:3] == [first, urgent, single], (starts, stack.logs())
    assert len(stack.sql("SELECT id FROM sweeps")) == 1  # the refused sweep stored nothing
