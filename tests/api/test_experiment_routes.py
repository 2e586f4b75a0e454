"""Route rules of /experiments in process: validation (422 naming the field and rule, nothing
stored), bad JSON, oversized bodies (413), unknown ids (404), state conflicts (409), pagination and
filters, on SQLite and PostgreSQL. Nothing trains: jobs stay queued."""

import pytest
from fastapi.testclient import TestClient

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}


def count_rows(client: TestClient) -> int:
    return client.get("/experiments", params={"limit": 1}).json()["total"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"layers": [{"units": 0}]}, "layers.0.units"),
        ({"layers": [{"units": 9000}]}, "layers.0.units"),
        ({"layers": [{"units": 10, "activation": "swish"}]}, "layers.0.activation"),
        ({"layers": [{"type": "dropout", "rate": 1.0}]}, "layers.0.rate"),
        ({"layers": [{"type": "conv9"}]}, "layers.0"),
        ({"layers": [{"units": 10}] * 13}, "layers"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 501}, "epochs"),
        ({"batch_size": 60001}, "batch_size"),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "optimizer"),
        ({"optimizer": {"name": "lbfgs"}}, "optimizer.name"),
        ({"optimizer": {"learning_rate": -1}}, "optimizer.learning_rate"),
        ({"validation": {"holdout": 5000}, "train_samples": 5000}, "body"),
        ({"dataset": "cifar10"}, "dataset"),
        ({"surprise": 1}, "surprise"),
        ({"layers": [{"units": 8192}] * 12, "epochs": 500}, "body"),  # cost cap
    ],
)
def test_bad_specs_are_422_and_store_nothing(client, body, field):
    before = count_rows(client)
    r = client.post("/experiments", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()
    assert any(d["field"] == field for d in detail["detail"]), detail
    assert field in detail["message"] or field == "body"
    assert count_rows(client) == before


def test_bad_json_unknown_ids_and_oversized_bodies(client):
    before = count_rows(client)
    r = client.post(
        "/experiments",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "JSON" in r.json()["message"]
    assert (
        client.post(
            "/experiments",
            content=b"[1, 2]",
            headers={"content-type": "application/json"},
        ).status_code
        == 422
    )
    for path in ["/experiments", "/experiments/1/predict"]:  # declared length: JSON error body
        declared = client.post(
            path, content=b"x" * 2_000_000, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413, path
        assert declared.headers["content-type"] == "application/json"
        assert "LABQ_MAX_BODY_BYTES" in declared.json()["message"]

    def chunks():  # no Content-Length: the cap applies to what is streamed
        for _ in range(40):
            yield b" " * 100_000

    streamed = client.post(
        "/experiments", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413 and "larger than" in streamed.json()["message"]
    assert count_rows(client) == before
    for path in [
        "/experiments/999999",
        "/experiments/999999/history",
        "/experiments/999999/filters.png",
        "/experiments/999999/history.png",
    ]:
        assert client.get(path).status_code == 404
    assert client.post("/experiments/999999/cancel", json={}).status_code == 404
    assert client.get("/experiments/abc").status_code == 422
    # An id past what the database's integers hold is the client's error, named, on every page
    # that takes one (the dashboard's and the event stream's too), never a 500.
    huge = 2**63
    for path in [f"/experiments/{huge}", f"/experiments/{huge}/events", f"/runs/{huge}"]:
        r = client.get(path)
        assert r.status_code == 422 and "experiment_id" in r.text, (path, r.text)
    r = client.get(f"/search/{huge}")
    assert r.status_code == 422 and "search_id" in r.text, r.text


def test_submit_lists_and_filters_queued_jobs(client):
    r = client.post("/experiments", json={**TINY, "name": "first"})
    assert r.status_code == 202 and r.headers["location"] == f"/experiments/{r.json()['id']}"
    ids = [r.json()["id"]] + [
        client.post("/experiments", json={**TINY, "name": f"page-{i}"}).json()["id"]
        for i in range(3)
    ]
    page = client.get("/experiments", params={"name": "page-", "limit": 2}).json()
    assert page["total"] == 3 and [e["id"] for e in page["items"]] == ids[::-1][:2]
    page2 = client.get("/experiments", params={"name": "page-", "limit": 2, "offset": 2}).json()
    assert [e["id"] for e in page2["items"]] == [ids[1]]
    queued = client.get("/experiments", params={"status": "queued"}).json()
    assert queued["total"] == 4
    # Queue positions follow submission order.
    assert sorted(e["queue_position"] for e in queued["items"]) == [1, 2, 3, 4]
    assert client.get("/experiments", params={"limit": 0}).status_code == 422
    bad = client.get("/experiments", params={"status": "done"})
    assert bad.status_code == 422 and "status" in bad.json()["message"]


def test_cancel_and_retry_follow_the_job_state(client):
    exp_id = client.post("/experiments", json=TINY).json()["id"]
    assert client.post(f"/experiments/{exp_id}/retry", json={}).status_code == 409  # queued
    assert client.get(f"/experiments/{exp_id}/history").json() == []
    for figure in ("filters.png", "history.png"):
        assert client.get(f"/experiments/{exp_id}/{figure}").status_code in (404, 409)
    cancelled = client.post(f"/experiments/{exp_id}/cancel", json={})
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    retried = client.post(f"/experiments/{exp_id}/retry", json={})
    assert retried.status_code == 202 and retried.json()["status"] == "queued"
    assert client.post("/experiments/999999/retry", json={}).status_code == 404


def test_openapi_documents_every_route(client):
    doc = client.get("/openapi.json").json()
    paths = set(doc["paths"])
    for path in ("/experiments", "/experiments/{experiment_id}", "/sweeps", "/presets", "/health"):
        assert any(p.rstrip("/") == path.rstrip("/") or p.startswith(path) for p in paths), path
    assert client.get("/docs").status_code == 200


def make_token(name: str) -> dict[str, str]:
    from db import tokens
    from db.session import session_scope

    with session_scope() as session:
        return {"Authorization": f"Bearer {tokens.create(session, name)}"}


def test_tokens_guard_writes_and_the_active_job_limit_is_429(make_client):
    client = make_client(LABQ_MAX_ACTIVE_JOBS_PER_TOKEN="2")
    alice = make_token("alice")
    assert client.post("/experiments", json=TINY).status_code == 401  # a token exists now
    bad = client.post("/experiments", json=TINY, headers={"Authorization": "Bearer labq_nope"})
    assert bad.status_code == 401
    assert client.get("/experiments").status_code == 200  # reads stay open on loopback
    for _ in range(2):
        assert client.post("/experiments", json=TINY, headers=alice).status_code == 202
    over = client.post("/experiments", json=TINY, headers=alice)
    assert over.status_code == 429 and count_rows(client) == 2


def test_every_error_status_is_declared_and_405_names_every_method(client):
    doc = client.get("/openapi.json").json()
    get_one = doc["paths"]["/experiments/{experiment_id}"]["get"]["responses"]
    assert {"404", "409", "422", "429"} <= set(get_one)
    assert get_one["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorBody")
    post = doc["paths"]["/experiments"]["post"]["responses"]
    assert {"400", "413", "415", "422"} <= set(post)
    r = client.request("OPTIONS", "/experiments")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}
    r = client.put("/experiments/1", headers={"content-type": "application/json"})
    assert r.status_code == 405 and {"GET", "DELETE"} <= set(r.headers["allow"].split(", "))
