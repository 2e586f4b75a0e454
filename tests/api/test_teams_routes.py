"""Users, roles and ownership in process, on SQLite and PostgreSQL: two members, a viewer and an
admin share one labq. Cross-user cancel/retry are 403 naming the owner, a viewer's writes are 403,
an admin acts on all, a disabled user's tokens stop at once, `?owner=` filters, and the audit log
records each write in the write's own transaction."""

from fastapi.testclient import TestClient

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}
SWEEP = {"name": "s", "base": TINY, "grid": {"optimizer.learning_rate": [0.01, 0.1]}}


def add_user(name: str, role: str) -> dict[str, str]:
    from db import tokens, users
    from db.session import session_scope

    with session_scope() as session:
        users.create(session, name, role)
        return {"Authorization": f"Bearer {tokens.create(session, f'{name}-1', name)}"}


def submit(client: TestClient, who: dict[str, str]) -> int:
    r = client.post("/experiments", json=TINY, headers=who)
    assert r.status_code == 202, r.text
    return int(r.json()["id"])


def team(client: TestClient) -> dict[str, dict[str, str]]:
    return {
        name: add_user(name, role)
        for name, role in [
            ("alice", "member"),
            ("bob", "member"),
            ("viola", "viewer"),
            ("root", "admin"),
        ]
    }


def test_members_act_on_their_own_runs_only_and_admins_on_all(make_client):
    client = make_client()
    t = team(client)
    mine = submit(client, t["alice"])
    assert client.get(f"/experiments/{mine}").json()["owner"] == "alice"

    r = client.post(f"/experiments/{mine}/cancel", json={}, headers=t["bob"])
    assert r.status_code == 403 and "'alice'" in r.json()["detail"]
    assert client.get(f"/experiments/{mine}").json()["status"] == "queued"  # nothing changed

    r = client.post(f"/experiments/{mine}/cancel", json={}, headers=t["alice"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = client.post(f"/experiments/{mine}/retry", json={}, headers=t["bob"])
    assert r.status_code == 403 and "'alice'" in r.json()["detail"]
    r = client.post(f"/experiments/{mine}/retry", json={}, headers=t["root"])
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert r.json()["owner"] == "alice"  # an admin's retry keeps the owner
    r = client.post(f"/experiments/{mine}/cancel", json={}, headers=t["root"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"

    sweep = client.post("/sweeps", json=SWEEP, headers=t["bob"]).json()
    assert client.get(f"/sweeps/{sweep['id']}").json()["owner"] == "bob"
    assert [s["owner"] for s in client.get("/sweeps").json()] == ["bob"]
    assert all(client.get(f"/experiments/{c}").json()["owner"] == "bob" for c in sweep["children"])
    r = client.post(f"/sweeps/{sweep['id']}/cancel", json={}, headers=t["alice"])
    assert r.status_code == 403 and "'bob'" in r.json()["detail"]
    assert (
        client.post(f"/sweeps/{sweep['id']}/cancel", json={}, headers=t["bob"]).status_code == 202
    )


def test_a_viewer_reads_but_every_write_is_403(make_client):
    client = make_client()
    t = team(client)
    run = submit(client, t["alice"])
    before = client.get("/experiments").json()["total"]
    for path, body in [
        ("/experiments", TINY),
        ("/sweeps", SWEEP),
        (f"/experiments/{run}/cancel", {}),
        (f"/experiments/{run}/retry", {}),
    ]:
        r = client.post(path, json=body, headers=t["viola"])
        assert r.status_code == 403 and "viewer" in r.json()["detail"], path
    assert client.get("/experiments", headers=t["viola"]).json()["total"] == before
    # a prediction changes nothing: a viewer may ask (here: the run has no model yet, 409)
    r = client.post(
        f"/experiments/{run}/predict", json={"images": [[[0] * 28] * 28]}, headers=t["viola"]
    )
    assert r.status_code == 409, r.text
    assert client.get(f"/experiments/{run}", headers=t["viola"]).json()["status"] == "queued"


def test_a_disabled_users_tokens_stop_at_once(make_client):
    client = make_client()
    alice = add_user("alice", "member")
    submit(client, alice)
    from db import users
    from db.session import session_scope

    with session_scope() as session:
        assert users.disable(session, "alice")
    r = client.post("/experiments", json=TINY, headers=alice)
    assert r.status_code == 401 and "disabled" in r.json()["detail"]


def test_owner_filter_me_name_and_unknown(make_client):
    client = make_client()
    t = team(client)
    a = [submit(client, t["alice"]) for _ in range(2)]
    b = submit(client, t["bob"])

    def ids(who: dict[str, str], owner: str) -> list[int]:
        r = client.get("/experiments", params={"owner": owner}, headers=who)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert ids(t["alice"], "me") == a[::-1]
    assert ids(t["alice"], "bob") == [b]
    assert ids(t["bob"], "me") == [b]
    assert ids(t["viola"], "me") == []
    page = client.get("/experiments", headers=t["viola"]).json()["items"]
    assert {i["owner"] for i in page} == {"alice", "bob"}
    r = client.get("/experiments", params={"owner": "nobody"})
    assert r.status_code == 422 and "owner" in r.text


def test_open_loopback_is_one_local_admin(client):
    """No token at all: the quick start. Runs belong to `local`, who may act on them."""
    run = submit(client, {})
    assert client.get(f"/experiments/{run}").json()["owner"] == "local"
    assert client.get("/experiments", params={"owner": "me"}).json()["total"] == 1
    assert client.post(f"/experiments/{run}/cancel", json={}).status_code == 202
    log = client.get("/audit").json()
    assert [(e["actor"], e["action"]) for e in log] == [
        ("local", "experiment.cancel"),
        ("local", "experiment.submit"),
    ]


def test_the_audit_log_records_each_write_and_only_admins_read_it(make_client):
    client = make_client()
    t = team(client)
    run = submit(client, t["alice"])
    client.post(f"/experiments/{run}/cancel", json={}, headers=t["alice"])
    client.post(f"/experiments/{run}/retry", json={}, headers=t["root"])
    sweep = client.post("/sweeps", json=SWEEP, headers=t["bob"]).json()
    client.post(f"/sweeps/{sweep['id']}/cancel", json={}, headers=t["bob"])
    # refused writes are not in the log: nothing was written
    client.post(f"/experiments/{run}/cancel", json={}, headers=t["bob"])
    client.post("/experiments", json=TINY, headers=t["viola"])

    for who in ("alice", "viola"):
        r = client.get("/audit", headers=t[who])
        assert r.status_code == 403 and "admins" in r.json()["detail"]
    # reads stay open on loopback without a token, but the audit log is not one of them
    assert client.get("/audit").status_code == 403
    r = client.get("/audit", headers=t["root"])
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "5"
    entries = [(e["actor"], e["action"], e["target"]) for e in r.json()][::-1]
    assert entries == [
        ("alice", "experiment.submit", f"experiment {run}"),
        ("alice", "experiment.cancel", f"experiment {run}"),
        ("root", "experiment.retry", f"experiment {run}"),
        ("bob", "sweep.submit", f"sweep {sweep['id']} (2 experiments)"),
        ("bob", "sweep.cancel", f"sweep {sweep['id']}"),
    ]
    assert all(e["source"] == "testclient" for e in r.json())
    only_bob = client.get("/audit", params={"user": "bob"}, headers=t["root"]).json()
    assert {e["actor"] for e in only_bob} == {"bob"}


def test_a_refused_submit_leaves_no_audit_entry(make_client):
    """The entry is written in the write's transaction: a submit over the job limit (429) stores
    neither the run nor its entry."""
    client = make_client(LABQ_MAX_ACTIVE_JOBS_PER_TOKEN="1")
    root = add_user("root", "admin")
    submit(client, root)
    assert client.post("/experiments", json=TINY, headers=root).status_code == 429
    log = client.get("/audit", headers=root).json()
    assert [e["action"] for e in log] == ["experiment.submit"]


def test_visibility_own_hides_others_results_from_members_and_viewers(make_client):
    """LABQ_VISIBILITY=own: members and viewers read only their own runs, sweeps and searches
    (others' are a 404, as if absent, on every read path: JSON, figures, streams, pages, lists);
    admins read all; a caller without a token reads nothing once tokens exist."""
    from tests.api.test_delete_routes import SEARCH

    client = make_client(LABQ_VISIBILITY="own")
    t = team(client)
    run = submit(client, t["alice"])
    sweep = client.post("/sweeps", json=SWEEP, headers=t["alice"]).json()["id"]
    search = client.post("/searches", json=SEARCH, headers=t["alice"]).json()["id"]
    bobs = submit(client, t["bob"])
    hidden = [
        f"/experiments/{run}",
        f"/experiments/{run}/history",
        f"/experiments/{run}/events",
        f"/runs/{run}",
        f"/sweeps/{sweep}",
        f"/sweeps/{sweep}/results.csv",
        f"/searches/{search}",
        f"/search/{search}",
    ]
    for who in ("bob", "viola", None):
        headers = t[who] if who else {}
        for path in hidden:
            r = client.get(path, headers=headers)
            assert r.status_code == 404, (who, path, r.status_code)
        listed = {e["id"] for e in client.get("/experiments", headers=headers).json()["items"]}
        assert listed == ({bobs} if who == "bob" else set()), who
        assert client.get("/sweeps", headers=headers).json() == []
        assert client.get("/searches", headers=headers).json() == []
    r = client.post(f"/experiments/{run}/cancel", json={}, headers=t["bob"])
    assert r.status_code == 404  # not 403: that would tell bob the run exists

    for who in ("alice", "root"):
        for path in hidden:
            if path.endswith("/events"):
                continue  # a stream of a queued run never ends: the 404 above is what matters
            assert client.get(path, headers=t[who]).status_code == 200, (who, path)
    everything = {e["id"] for e in client.get("/experiments", headers=t["root"]).json()["items"]}
    assert {run, bobs} <= everything
    alices = client.get("/experiments?owner=me", headers=t["alice"]).json()["items"]
    assert run in {e["id"] for e in alices} and bobs not in {e["id"] for e in alices}
