"""Route rules of /sweeps in process: a bad grid, base or cap is a 422 naming the field, and
nothing (no sweep, no child) is stored."""

import pytest
from fastapi.testclient import TestClient

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}


def totals(client: TestClient) -> tuple[int, int]:
    sweeps = client.get("/sweeps", params={"limit": 1})
    exps = client.get("/experiments", params={"limit": 1}).json()["total"]
    return int(sweeps.headers["x-total-count"]), exps


@pytest.mark.parametrize(
    "body, field",
    [
        ({"grid": {"layers.7.units": [10]}}, "grid.layers.7.units"),
        ({"grid": {"layers.0.units": [16, 0]}}, "grid.layers.0.units"),
        ({"grid": {"layers.0.activation": ["relu", "swish"]}}, "grid.layers.0.activation"),
        ({"grid": {"optimizer.momentum": [0.9]}}, "grid.optimizer.momentum"),
        ({"grid": {"epochs": 3}}, "grid.epochs"),
        ({"grid": {"batch_size": list(range(1, 202))}}, "grid"),  # 201 children > cap of 200
        ({"grid": {"layers.0.units": [8, 16]}, "repeats": 101}, "repeats"),
        (
            {
                "base": {**TINY, "epochs": 500, "train_samples": None},
                "grid": {"layers.0.units": [16, 8192]},
            },
            "grid",
        ),  # the second child is over the cost cap
        ({"base": {**TINY, "epochs": 0}}, "base.epochs"),
    ],
)
def test_bad_sweeps_are_422_and_store_nothing(client, body, field):
    before = totals(client)
    r = client.post("/sweeps", json={"name": "bad", "base": TINY, **body})
    assert r.status_code == 422, r.text
    assert any(d["field"] == field for d in r.json()["detail"]), r.json()
    assert totals(client) == before


def test_a_sweep_stores_every_child_queued(client):
    r = client.post(
        "/sweeps", json={"name": "ok", "base": TINY, "grid": {"layers.0.units": [8, 16]}}
    )
    assert r.status_code == 202, r.text
    assert totals(client) == (1, 2)
    assert client.get("/sweeps/999999").status_code == 404
