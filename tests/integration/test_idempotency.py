"""Idempotency-Key against a live API (issue 16, item 6): twins of one submission sent at the same
moment, as a client retrying on a timeout does, store one job and all get its answer. Both legs
(SQLite; PostgreSQL + a separate Redis). The route rules are in tests/api/test_idempotency_routes.py."""

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

pytestmark = pytest.mark.integration


def count(stack, table: str) -> int:
    return stack.sql(f"SELECT count(*) FROM {table}")[0][0]


def twins(stack, path: str, body: dict, key: str, n: int = 8) -> list[httpx.Response]:
    def post(_):
        return httpx.post(
            f"{stack.url}{path}", json=body, headers={"Idempotency-Key": key}, timeout=60
        )

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, range(n)))


def test_concurrent_twins_store_one_job(stack, tiny):
    before = count(stack, "experiments")
    answers = twins(stack, "/experiments", {**tiny, "name": "twins"}, "twins-1")
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    ids = {r.json()["id"] for r in answers}
    assert len(ids) == 1 and count(stack, "experiments") == before + 1
    assert stack.wait(ids.pop())["status"] == "succeeded"


def test_concurrent_sweep_twins_store_one_sweep(stack, tiny):
    before = count(stack, "sweeps"), count(stack, "experiments")
    body = {"name": "twin-sweep", "base": tiny, "grid": {"layers.0.units": [8, 16]}}
    answers = twins(stack, "/sweeps", body, "twins-2")
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert (count(stack, "sweeps"), count(stack, "experiments")) == (before[0] + 1, before[1] + 2)
