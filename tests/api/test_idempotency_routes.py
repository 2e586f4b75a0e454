"""Idempotency-Key rules in process, on SQLite and PostgreSQL: a re-sent POST gets the first answer
and stores nothing; the same key with another body, or a malformed key, is a 422 naming the
header; keys are scoped to the path and to the token. (Concurrent twins against a live API:
tests/integration/test_idempotency.py.)"""

import json

from fastapi.testclient import TestClient

from tests.api.test_experiment_routes import TINY, count_rows, make_token

KEY = {"Idempotency-Key": "client-7f3a"}


def test_resent_submission_gets_the_first_answer(client: TestClient):
    first = client.post("/experiments", json=TINY, headers=KEY)
    assert first.status_code == 202 and "Idempotent-Replayed" not in first.headers
    again = client.post("/experiments", json=TINY, headers=KEY)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    # The same JSON document, spelled with other spacing and key order, is the same request.
    spelled = client.post(
        "/experiments",
        content=json.dumps(dict(reversed(list(TINY.items()))), indent=2),
        headers={**KEY, "content-type": "application/json"},
    )
    assert spelled.json()["id"] == first.json()["id"]
    assert count_rows(client) == 1
    # Without a key, every POST is a new job, as before.
    assert client.post("/experiments", json=TINY).json()["id"] != first.json()["id"]


def test_same_key_other_body_is_422_naming_the_header(client: TestClient):
    assert client.post("/experiments", json=TINY, headers=KEY).status_code == 202
    r = client.post("/experiments", json={**TINY, "epochs": 2}, headers=KEY)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "header.Idempotency-Key"
    assert "different request body" in r.json()["message"]
    assert count_rows(client) == 1


def test_malformed_key_is_422_and_stores_nothing(client: TestClient):
    for bad in ["x" * 256, "two words", ""]:
        r = client.post("/experiments", json=TINY, headers={"Idempotency-Key": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "Idempotency-Key" in r.json()["message"]
    assert count_rows(client) == 0


def test_keys_are_scoped_to_path_and_token(make_client):
    client = make_client()
    alice, bob = make_token("alice"), make_token("bob")
    a = client.post("/experiments", json=TINY, headers={**KEY, **alice})
    b = client.post("/experiments", json=TINY, headers={**KEY, **bob})
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]
    sweep = {"name": "s", "base": TINY, "grid": {"layers.0.units": [8, 16]}}
    s = client.post("/sweeps", json=sweep, headers={**KEY, **alice})
    assert s.status_code == 202  # the same key on another path is another request
    assert client.post("/sweeps", json=sweep, headers={**KEY, **alice}).json() == s.json()
    assert count_rows(client) == 4


def test_resent_sweep_and_preset_run_store_once(client: TestClient):
    sweep = {"name": "s", "base": TINY, "grid": {"layers.0.units": [8, 16]}, "repeats": 2}
    first = client.post("/sweeps", json=sweep, headers=KEY)
    again = client.post("/sweeps", json=sweep, headers=KEY)
    assert first.status_code == again.status_code == 202
    assert (
        again.json() == first.json()
        and again.headers["Location"] == f"/sweeps/{first.json()['id']}"
    )
    assert count_rows(client) == 4
    changed = client.post("/sweeps", json={**sweep, "repeats": 1}, headers=KEY)
    assert changed.status_code == 422 and "Idempotency-Key" in changed.json()["message"]

    run = {"overrides": {"train_samples": 1000, "epochs": 1}}
    preset = client.get("/presets").json()[0]["name"]
    ran = client.post(f"/presets/{preset}/run", json=run, headers=KEY)
    assert ran.status_code == 202, ran.text
    before = count_rows(client)
    assert client.post(f"/presets/{preset}/run", json=run, headers=KEY).json() == ran.json()
    assert count_rows(client) == before


def test_resent_search_stores_once(client: TestClient):
    from tests.api.test_delete_routes import SEARCH

    first = client.post("/searches", json=SEARCH, headers=KEY)
    again = client.post("/searches", json=SEARCH, headers=KEY)
    assert first.status_code == again.status_code == 202, first.text
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/searches/{first.json()['id']}"
    assert len(client.get("/searches").json()) == 1
    assert count_rows(client) == len(first.json()["trials"])  # the first trials, asked once
    changed = client.post("/searches", json={**SEARCH, "trials": 5}, headers=KEY)
    assert changed.status_code == 422 and "Idempotency-Key" in changed.json()["message"]
