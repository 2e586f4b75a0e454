"""A lab group sharing one live labq (real API, worker, Redis; SQLite and PostgreSQL): users made
with `labq user add`, two members and a viewer. Cross-user cancel, retry and delete are 403 naming the
owner, the viewer's writes are 403, a run deleted mid-epoch stops and leaves no row behind, the
admin acts on all, `labq user disable` stops a user's tokens at once, and `labq audit` shows each
write."""

import httpx
import pytest

from tests.conftest import HELD, make_stack, started

pytestmark = pytest.mark.integration

# Held in its epoch 2 by the stack's hold hook (tests/conftest.py HELD) until it is cancelled, so
# it is still running when other users try to change it, however fast the worker.
LONG = {"name": "held-in-epoch-2", "layers": [{"units": 32}], "epochs": 3, "train_samples": 1000}


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, pg_admin_url, external_redis):
    legs = (request.param, tmp_path_factory, pg_admin_url, external_redis)
    hold = {"LABQ_TEST_HOLD_IN_EPOCH": HELD["LABQ_TEST_HOLD_IN_EPOCH"] + ",bob-held:1"}
    with started(make_stack(*legs, extra_env=hold)) as s:
        yield s


def test_a_lab_group_shares_one_labq(stack):
    def user(name: str, role: str) -> dict[str, str]:
        out = stack.cli("user", "add", name, "--role", role)
        return {"Authorization": f"Bearer {out.stdout.strip()}"}

    root, alice, bob, viola = (
        user("root", "admin"),
        user("alice", "member"),
        user("bob", "member"),
        user("viola", "viewer"),
    )
    listed = stack.cli("user", "ls").stdout
    assert all(n in listed for n in ("root", "alice", "bob", "viola", "viewer"))
    more = stack.cli("token", "create", "alice-ci", "--user", "alice").stdout.strip()
    assert "alice" in stack.cli("token", "ls").stdout

    with httpx.Client(base_url=stack.url, timeout=30) as c:
        r = c.post("/experiments", json=LONG, headers={"Authorization": f"Bearer {more}"})
        assert r.status_code == 202, r.text
        run = r.json()["id"]
        stack.held(run)
        assert c.get(f"/experiments/{run}").json()["owner"] == "alice"

        r = c.post(f"/experiments/{run}/cancel", json={}, headers=bob)
        assert r.status_code == 403 and "'alice'" in r.json()["detail"]
        assert c.get(f"/experiments/{run}").json()["status"] == "running"
        r = c.post("/experiments", json=LONG, headers=viola)
        assert r.status_code == 403 and "viewer" in r.json()["detail"]
        assert c.post("/experiments", json=LONG).status_code == 401  # tokens exist now
        r = c.post(f"/experiments/{run}/cancel", json={}, headers=root)
        assert r.status_code == 202
        stack.wait(run, statuses=("cancelled",))
        r = c.post(f"/experiments/{run}/retry", json={}, headers=bob)
        assert r.status_code == 403 and "'alice'" in r.json()["detail"], r.text
        assert c.get(f"/experiments/{run}").json()["status"] == "cancelled"

        # Deleting a run mid-epoch: only its owner (or an admin); it stops, leaves no row behind,
        # and the worker goes on to the next job.
        held = {**LONG, "name": "bob-held", "epochs": 3, "train_samples": 1000}
        r = c.post("/experiments", json=held, headers=bob)
        assert r.status_code == 202, r.text
        doomed = r.json()["id"]
        stack.held(doomed)
        r = c.delete(f"/experiments/{doomed}", headers=alice)
        assert r.status_code == 403 and "'bob'" in r.json()["detail"], r.text
        r = c.delete(f"/experiments/{doomed}", headers=viola)
        assert r.status_code == 403 and "viewer" in r.json()["detail"], r.text
        after = c.post("/experiments", json={**held, "name": "bob-after"}, headers=bob).json()["id"]
        r = c.delete(f"/experiments/{doomed}", headers=bob)
        assert r.status_code == 200 and r.json()["stopped"] == [doomed], r.text
        stack.release(doomed)
        assert stack.wait(after)["status"] == "succeeded"
        for table, column in (
            ("experiments", "id"),
            ("epochs", "experiment_id"),
            ("artifacts", "experiment_id"),
        ):
            assert stack.sql(f"SELECT count(*) FROM {table} WHERE {column} = {doomed}") == [(0,)]
        assert c.get(f"/experiments/{doomed}").status_code == 404

        stack.cli("user", "disable", "alice")
        for token in (alice, {"Authorization": f"Bearer {more}"}):
            assert c.get("/experiments", headers=token).status_code == 401

    log = stack.cli("audit", env_token=root["Authorization"].split()[1]).stdout
    for entry in (
        "experiment.submit",
        "experiment.cancel",
        "experiment.delete",
        "user.add",
        "user.disable",
    ):
        assert entry in log, log
    assert stack.cli("audit", env_token=bob["Authorization"].split()[1], check=False).returncode
