"""Priorities, the start order the API shows, and per-member limits, in process on SQLite and
PostgreSQL (no worker: the order is read, not run; tests/integration/test_fair_share.py runs it)."""

from datetime import timedelta

from tests.api.test_teams_routes import TINY, team

SWEEP = {"name": "s", "base": TINY, "grid": {"optimizer.learning_rate": [0.01, 0.02, 0.03]}}


def post(client, who, path="/experiments", body=TINY, **params):
    return client.post(path, json=body, headers=who, params=params)


def position(client, exp_id: int) -> int:
    return client.get(f"/experiments/{exp_id}").json()["queue_position"]


def test_priority_is_validated_shown_and_ranks_first(make_client):
    client = make_client()
    t = team(client)
    r = post(client, t["alice"], priority="urgent")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "priority"]
    low = post(client, t["alice"], priority="low").json()["id"]
    normal = post(client, t["alice"]).json()["id"]
    high = post(client, t["alice"], priority="high").json()["id"]
    assert client.get(f"/experiments/{high}").json()["priority"] == "high"
    assert [position(client, i) for i in (high, normal, low)] == [1, 2, 3]
    sweep = post(client, t["bob"], "/sweeps", SWEEP, priority="low").json()
    kids = sweep["children"]
    assert {client.get(f"/experiments/{i}").json()["priority"] for i in kids} == {"low"}
    items = client.get("/experiments", params={"status": "queued"}).json()["items"]
    assert {i["id"]: i["queue_position"] for i in items}[high] == 1


def test_fair_share_order_is_the_position_shown(make_client):
    """alice has one run started (set in SQL: no worker here) and three queued; bob queues one
    last: his is first in line."""
    client = make_client()
    t = team(client)
    mine = [post(client, t["alice"]).json()["id"] for _ in range(4)]
    from db.models import Experiment, utcnow
    from db.session import session_scope

    with session_scope() as s:
        s.get(Experiment, mine[0]).status = "running"
        s.get(Experiment, mine[0]).started_at = utcnow()
    bobs = post(client, t["bob"]).json()["id"]
    assert [position(client, i) for i in (bobs, *mine[1:])] == [1, 2, 3, 4]


def test_members_are_limited_admins_are_not(make_client):
    client = make_client(LABQ_MAX_QUEUED_PER_USER="3", LABQ_MAX_HIGH_QUEUED_PER_USER="1")
    t = team(client)
    assert post(client, t["alice"], priority="high").status_code == 202
    r = post(client, t["alice"], priority="high")
    assert r.status_code == 429 and "max_high_queued_per_user" in r.json()["detail"]
    assert r.headers["Retry-After"] == "30"
    assert post(client, t["alice"]).status_code == 202
    r = post(client, t["alice"], "/sweeps", SWEEP)  # 2 queued + 3 children > 3
    assert r.status_code == 429 and "LABQ_MAX_QUEUED_PER_USER" in r.json()["detail"]
    assert client.get("/sweeps").json() == []  # nothing stored
    assert post(client, t["alice"]).status_code == 202
    assert post(client, t["alice"]).status_code == 429
    for _ in range(2):
        assert post(client, t["root"], priority="high").status_code == 202
    assert post(client, t["root"], "/sweeps", SWEEP).status_code == 202
    log = [e["action"] for e in client.get("/audit", headers=t["root"]).json()]
    assert log.count("experiment.submit") == 3 + 2  # refused submits left no entry


def test_the_daily_training_budget_says_when_to_come_back(make_client):
    client = make_client(LABQ_DAILY_TRAIN_SECONDS_PER_USER="100")
    t = team(client)
    run = post(client, t["alice"]).json()["id"]
    from db.models import Experiment, utcnow
    from db.session import session_scope

    with session_scope() as s:
        exp = s.get(Experiment, run)
        exp.status, exp.train_seconds = "succeeded", 150.0
        exp.finished_at = utcnow() - timedelta(hours=23)
    r = post(client, t["alice"])
    assert r.status_code == 429 and "daily_train_seconds_per_user" in r.json()["detail"]
    assert 3000 < int(r.headers["Retry-After"]) <= 3601
    assert post(client, t["bob"]).status_code == 202  # bob's budget is his own
    r = client.post(f"/experiments/{run}/retry", json={}, headers=t["alice"])
    assert r.status_code == 409  # succeeded: not retryable, whatever the budget
