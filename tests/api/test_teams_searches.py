"""Searches in the ownership model, in process, on SQLite and PostgreSQL: a search and every trial
it asks belong to its submitter (also the trials asked later, as trials end), a viewer may neither
create nor cancel one, a member cancels only their own (403 naming the owner), an admin any, and
each write is in the audit log."""

from fastapi.testclient import TestClient

from tests.api.test_teams_routes import team

TINY = {
    "layers": [{"units": 16}],
    "epochs": 2,
    "batch_size": 128,
    "train_samples": 1000,
    "validation": {"holdout": 200},
}
SEARCH = {
    "name": "s",
    "base": TINY,
    "space": {"optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
    "trials": 3,
    "parallel": 2,
}


def owners(client: TestClient, ids: list[int]) -> set[str]:
    return {client.get(f"/experiments/{i}").json()["owner"] for i in ids}


def test_a_search_and_its_trials_belong_to_its_submitter(make_client):
    client = make_client()
    t = team(client)
    r = client.post("/searches", json=SEARCH, headers=t["alice"])
    assert r.status_code == 202, r.text
    search = r.json()
    assert client.get(f"/searches/{search['id']}").json()["owner"] == "alice"
    assert [s["owner"] for s in client.get("/searches").json()] == ["alice"]
    assert owners(client, search["trials"]) == {"alice"}

    # A trial that ends (here: cancelled by its owner) makes the search ask the next one, which
    # is alice's too, whoever's request asked it.
    first = search["trials"][0]
    r = client.post(f"/experiments/{first}/cancel", json={}, headers=t["root"])
    assert r.status_code == 202, r.text
    trials = [x["id"] for x in client.get(f"/searches/{search['id']}").json()["trials"]]
    assert len(trials) == 3 and owners(client, trials) == {"alice"}


def test_viewers_and_other_members_may_not_change_a_search(make_client):
    client = make_client()
    t = team(client)
    before = int(client.get("/searches").headers["x-total-count"])
    r = client.post("/searches", json=SEARCH, headers=t["viola"])
    assert r.status_code == 403 and "viewer" in r.json()["detail"]
    assert int(client.get("/searches").headers["x-total-count"]) == before

    sid = client.post("/searches", json=SEARCH, headers=t["alice"]).json()["id"]
    for who in ("viola", "bob"):
        r = client.post(f"/searches/{sid}/cancel", json={}, headers=t[who])
        assert r.status_code == 403, (who, r.text)
    assert "'alice'" in r.json()["detail"]  # bob's refusal names the owner
    s = client.get(f"/searches/{sid}").json()
    assert s["status"] == "queued" and s["counts"] == {"queued": 2}  # nothing changed

    r = client.post(f"/searches/{sid}/cancel", json={}, headers=t["alice"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    other = client.post("/searches", json=SEARCH, headers=t["bob"]).json()["id"]
    r = client.post(f"/searches/{other}/cancel", json={}, headers=t["root"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"

    log = client.get("/audit", headers=t["root"]).json()
    assert [(e["actor"], e["action"], e["target"]) for e in log][::-1] == [
        ("alice", "search.submit", f"search {sid} (2 trials)"),
        ("alice", "search.cancel", f"search {sid}"),
        ("bob", "search.submit", f"search {other} (2 trials)"),
        ("root", "search.cancel", f"search {other}"),
    ]


def test_a_search_over_the_token_limit_is_429_and_stores_nothing(make_client):
    """The first trials are charged to the submitter's token like any submit."""
    client = make_client(LABQ_MAX_ACTIVE_JOBS_PER_TOKEN="1")
    t = team(client)
    r = client.post("/searches", json=SEARCH, headers=t["alice"])
    assert r.status_code == 429, r.text
    assert client.get("/searches").headers["x-total-count"] == "0"
    assert client.get("/audit", headers=t["root"]).json() == []
