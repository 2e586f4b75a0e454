"""Searches against a live stack (SQLite embedded, PostgreSQL + separate Redis), on tiny data:
Optuna asks for trials as earlier ones end, ASHA prunes weak trials at an epoch end (status
`pruned`, history kept up to there), the best configurations are confirmed on new seeds and
only the winner's test accuracy is reported; a cancel stops every trial of the search."""

import json
import os
import re
import signal
import time

import httpx
import pytest

from tests.conftest import make_stack

pytestmark = pytest.mark.integration

BASE = {
    "layers": [{"units": 16}],
    "epochs": 3,
    "batch_size": 128,
    "train_samples": 1000,
    "validation": {"holdout": 200},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, pg_admin_url, external_redis):
    # The hook holds the first trial of these searches inside its epoch 2 (worker/testhooks.py).
    s = make_stack(
        request.param,
        tmp_path_factory,
        pg_admin_url,
        external_redis,
        extra_env={
            "LABQ_TEST_HOLD_IN_EPOCH": (
                "cancel me #0:2,killed trial #0:2,restarted #0:2,streamed #0:2"
            )
        },
    )
    s.start()
    yield s
    s.stop()


def wait_search(stack, search_id: int, until, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = httpx.get(f"{stack.url}/searches/{search_id}", timeout=30).json()
        if until(s):
            return s
        time.sleep(0.5)
    raise TimeoutError(f"search {search_id} stuck: {s}\n{stack.logs()}")


def test_search_end_to_end(stack, tmp_path):
    body = {
        "name": "lr and width",
        "base": BASE,
        # One learning rate learns nothing in 3 epochs: trials drawn with it lose at epoch 1.
        "space": {
            "optimizer.learning_rate": {"type": "categorical", "choices": [0.1, 1e-7]},
            "layers.0.units": {"type": "int", "low": 8, "high": 32, "log": True},
        },
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": "random",
        "seed": 3,
        "pruner": {"type": "asha", "min_epochs": 1, "reduction_factor": 3},
        "trials": 6,
        "parallel": 2,
        "confirm": {"top": 2, "seeds": 2},
    }
    spec_file = tmp_path / "search.json"
    spec_file.write_text(json.dumps(body))
    out = stack.cli("search", str(spec_file), "--watch", "--interval", "0.5", timeout=600)
    sid = int(re.search(r"search (\d+) queued", out.stdout).group(1))
    assert "winner: trial" in out.stdout and "test accuracy (read once)" in out.stdout
    s = wait_search(stack, sid, lambda s: s["result"] is not None, timeout=30)

    assert s["status"] == "done" and s["trials_asked"] == 6 and len(s["trials"]) == 6
    assert {t["status"] for t in s["trials"]} <= {"succeeded", "pruned"}
    pruned = [t for t in s["trials"] if t["status"] == "pruned"]
    assert pruned, s["trials"]
    for t in pruned:  # stopped early, history kept up to the pruning epoch
        assert 1 <= t["epochs_done"] < t["epochs_total"] == 3
        hist = httpx.get(f"{stack.url}/experiments/{t['id']}/history").json()
        assert len(hist) == t["epochs_done"]
    for t in s["trials"]:  # chosen on the hold-out: the test set is not read for trials
        assert httpx.get(f"{stack.url}/experiments/{t['id']}").json()["test"]["accuracy"] is None
    best = s["best"]
    assert best["status"] == "succeeded" and best["params"]["optimizer.learning_rate"] == 0.1
    assert len(s["confirmation"]) == 4
    assert {c["status"] for c in s["confirmation"]} == {"succeeded"}
    result = s["result"]
    assert result["winner"] in {c["confirm_of"] for c in s["confirmation"]}
    assert 0 < result["test_accuracy"] <= 1 and len(result["test_runs"]) == 2
    assert all(c["n"] == 2 and c["std"] is not None for c in result["configs"])
    png = httpx.get(f"{stack.url}/searches/{sid}/progress.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert "pruned" in stack.cli("search", "show", str(sid)).stdout
    assert "lr and width" in stack.cli("search", "ls").stdout
    listed = httpx.get(f"{stack.url}/experiments", params={"limit": 50}).json()
    assert {t["id"] for t in s["trials"]} <= {e["id"] for e in listed["items"]}


def sse(lines):
    """(event, data) of a server-sent-event stream as they come, until the server closes it."""
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") and name is not None:
            yield name, json.loads(line.removeprefix("data: "))
            name = None


def test_a_search_streams_its_changes_until_it_ends(stack):
    body = {**small_search("streamed"), "base": {**BASE, "epochs": 2}, "parallel": 2}
    r = httpx.post(f"{stack.url}/searches", json=body, timeout=30)
    assert r.status_code == 202, r.text
    sid, first = r.json()["id"], r.json()["trials"][0]
    url = f"{stack.url}/searches/{sid}/events"
    try:
        stack.held(first)  # trial 0 waits inside its epoch 2: the search cannot be done yet
        with httpx.stream("GET", url, timeout=httpx.Timeout(30, read=600)) as stream:
            assert stream.status_code == 200
            events = sse(stream.iter_lines())
            seen = [next(events), next(events)]  # hello, and the search as it is
            stack.release(first)
            seen += list(events)  # the server ends the stream after `end`
    finally:
        stack.release(first)
    names = [n for n, _ in seen]
    assert names[0] == "hello" and names[-1] == "end" and names.count("end") == 1
    bodies = [d for n, d in seen if n == "search"]
    assert bodies[0]["id"] == sid and bodies[0]["status"] in {"queued", "running"}
    assert bodies[0]["trials"][0]["epochs_done"] == 1
    final = bodies[-1]
    assert final["status"] == "done" and final["result"] is not None
    assert [t["status"] for t in final["trials"]] == ["succeeded"] * 3
    assert seen[-1][1] == {"id": sid, "status": "done"}
    done = [sum(t["epochs_done"] for t in b["trials"]) for b in bodies]
    assert done == sorted(done) and done[-1] == 6  # followed as the trials went
    assert final == httpx.get(f"{stack.url}/searches/{sid}", timeout=30).json()
    # a search that has ended streams its state once and ends at once
    again = httpx.get(url, timeout=30)
    assert [n for n, _ in sse(again.text.splitlines())] == ["hello", "search", "end"]
    assert httpx.get(f"{stack.url}/searches/999999/events", timeout=30).status_code == 404


def test_several_objectives_end_with_the_pareto_front(stack):
    """nsga2 on hold-out accuracy against parameters: the worker's own numbers are the values."""
    body = {
        "name": "accuracy vs size",
        "base": {**BASE, "epochs": 1},
        "space": {"layers.0.units": {"type": "int", "low": 4, "high": 64, "log": True}},
        "objectives": [
            {"metric": "val_accuracy", "direction": "maximize"},
            {"metric": "params", "direction": "minimize"},
        ],
        "sampler": "nsga2",
        "seed": 4,
        "trials": 3,
        "parallel": 2,
    }
    r = httpx.post(f"{stack.url}/searches", json=body, timeout=30)
    assert r.status_code == 202, r.text
    s = wait_search(stack, r.json()["id"], lambda s: s["result"] is not None)
    assert s["status"] == "done" and {t["status"] for t in s["trials"]} == {"succeeded"}
    for t in s["trials"]:
        run = httpx.get(f"{stack.url}/experiments/{t['id']}").json()
        assert t["values"] == [t["value"], run["params"]] and run["test"]["accuracy"] is None
    assert s["pareto_front"] and s["result"]["pareto_front"] == s["pareto_front"]
    png = httpx.get(f"{stack.url}/searches/{s['id']}/pareto.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert "Pareto front" in stack.cli("search", "show", str(s["id"])).stdout


def test_cancel_stops_every_trial(stack):
    body = {
        "name": "cancel me",
        "base": BASE,
        "space": {"layers.0.units": {"type": "int", "low": 8, "high": 32}},
        "pruner": {"type": "none"},
        "trials": 6,
        "parallel": 2,
    }
    r = httpx.post(f"{stack.url}/searches", json=body, timeout=30)
    assert r.status_code == 202, r.text
    sid, first = r.json()["id"], r.json()["trials"][0]
    stack.held(first)  # trial 0 is inside its epoch 2
    r = httpx.post(f"{stack.url}/searches/{sid}/cancel", json={}, timeout=30)
    assert r.status_code == 202, r.text
    s = wait_search(stack, sid, lambda s: s["status"] == "cancelled", timeout=120)
    assert s["trials_asked"] == 2
    assert {t["status"] for t in s["trials"]} == {"cancelled"}
    assert s["trials"][0]["epochs_done"] == 1  # stopped inside epoch 2: it is not reported


def small_search(name: str) -> dict:
    return {
        "name": name,
        "base": {**BASE, "seed": 5},
        "space": {"layers.0.units": {"type": "int", "low": 8, "high": 32}},
        "sampler": "random",
        "pruner": {"type": "none"},
        "trials": 3,
        "parallel": 1,
    }


def search_rows(stack, sid: int) -> int:
    return stack.sql("SELECT count(*) FROM experiments WHERE search_id = :s", s=sid)[0][0]


def test_worker_killed_mid_trial_neither_loses_nor_doubles_it(stack):
    r = httpx.post(f"{stack.url}/searches", json=small_search("killed trial"), timeout=30)
    sid, first = r.json()["id"], r.json()["trials"][0]
    os.kill(stack.held(first), signal.SIGKILL)  # inside trial 0's epoch 2
    s = wait_search(stack, sid, lambda s: s["result"] is not None)
    assert s["trials_asked"] == 3 and search_rows(stack, sid) == 3
    why = [(t["id"], stack.get(t["id"]).get("error")) for t in s["trials"]]
    assert {t["status"] for t in s["trials"]} == {"succeeded"}, (why, stack.logs()[-4000:])
    assert stack.get(first)["attempt"] == 2
    assert [e for e, _ in stack.epoch_attempts(first)] == [1, 2, 3]  # each epoch once


def test_search_survives_a_restart_of_the_stack(stack):
    r = httpx.post(f"{stack.url}/searches", json=small_search("restarted"), timeout=30)
    sid, first = r.json()["id"], r.json()["trials"][0]
    stack.held(first)
    stack.release(first)
    stack.stop()  # mid-search: trial 0 ends (warm shutdown) or is resumed after the restart
    stack.start()
    s = wait_search(stack, sid, lambda s: s["result"] is not None)
    assert s["trials_asked"] == 3 and search_rows(stack, sid) == 3
    assert {t["status"] for t in s["trials"]} == {"succeeded"}
    assert s["result"]["winner"] in {0, 1, 2}
