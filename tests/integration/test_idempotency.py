"""Idempotency-Key on the POSTs that create jobs (issue 16, item 6): a client that re-sends a POST
whose answer it never got gets the first answer, and no second job; the same key with another
body is a 422 naming the header. Both legs (SQLite; PostgreSQL + a separate Redis)."""

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.integration


def count(stack, table: str) -> int:
    return stack.sql(f"SELECT count(*) FROM {table}")[0][0]


def test_resent_experiment_gets_the_first_answer(stack, tiny):
    body = {**tiny, "name": "idempotent"}
    before = count(stack, "experiments")
    headers = {"Idempotency-Key": "submit-7f3a"}
    first = httpx.post(f"{stack.url}/experiments", json=body, headers=headers)
    assert first.status_code == 202
    again = httpx.post(f"{stack.url}/experiments", json=body, headers=headers)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    # The same document spelled differently is the same request.
    spelled = httpx.post(
        f"{stack.url}/experiments",
        content=json.dumps(dict(reversed(list(body.items()))), indent=2),
        headers={**headers, "content-type": "application/json"},
    )
    assert spelled.status_code == 202 and spelled.json()["id"] == first.json()["id"]
    assert count(stack, "experiments") == before + 1

    other = httpx.post(f"{stack.url}/experiments", json={**body, "epochs": 3}, headers=headers)
    assert other.status_code == 422
    assert other.json()["detail"][0]["field"] == "header.Idempotency-Key"
    assert "Idempotency-Key" in other.json()["message"]
    assert count(stack, "experiments") == before + 1
    # Another key is another request; no key, as before, always a new job.
    assert httpx.post(f"{stack.url}/experiments", json=body).json()["id"] != first.json()["id"]
    assert stack.wait(first.json()["id"])["status"] == "succeeded"


def test_concurrent_twins_store_one_job(stack, tiny):
    body = {**tiny, "name": "twins"}
    before = count(stack, "experiments")

    def post(_):
        return httpx.post(
            f"{stack.url}/experiments",
            json=body,
            headers={"Idempotency-Key": "twins-1"},
            timeout=60,
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert count(stack, "experiments") == before + 1


def test_resent_sweep_gets_the_first_answer(stack, tiny):
    body = {"name": "idem-sweep", "base": tiny, "grid": {"layers.0.units": [8, 16]}}
    before = count(stack, "sweeps"), count(stack, "experiments")
    headers = {"Idempotency-Key": "sweep-1"}
    first = httpx.post(f"{stack.url}/sweeps", json=body, headers=headers)
    assert first.status_code == 202
    again = httpx.post(f"{stack.url}/sweeps", json=body, headers=headers)
    assert again.status_code == 202 and again.json() == {**first.json(), "warning": None}
    assert (count(stack, "sweeps"), count(stack, "experiments")) == (before[0] + 1, before[1] + 2)
    changed = httpx.post(f"{stack.url}/sweeps", json={**body, "repeats": 2}, headers=headers)
    assert changed.status_code == 422 and "Idempotency-Key" in changed.json()["message"]
    # A key is scoped to its path: the same key on /experiments is a new request.
    assert httpx.post(f"{stack.url}/experiments", json=tiny, headers=headers).status_code == 202


def test_malformed_key_is_a_422_naming_the_header(stack, tiny):
    before = count(stack, "experiments")
    r = httpx.post(f"{stack.url}/experiments", json=tiny, headers={"Idempotency-Key": "x" * 256})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["message"]
    assert count(stack, "experiments") == before
