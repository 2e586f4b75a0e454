"""Per-token limits under concurrency, against a live labq on SQLite and on PostgreSQL: a burst of
submits with one token gets exactly its active-job limit accepted; a retry is charged like a submit,
to the token that sends it; event streams are capped per token and in total, and a place is taken
when it is granted."""

import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.conftest import HELD, make_stack
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.integration

LIMIT = 4
STREAMS, STREAMS_PER_TOKEN = 6, 4
BURST = 30
# Every run of LONG is held in its epoch 2 by the stack's hold hook until it is cancelled, so the
# jobs stay queued or running while the limits are checked, however fast the worker. A retry runs
# the same experiment again, and the hook holds an experiment once per time it is named: named
# RUNS_HELD times, each of the (at most three) runs of one experiment here is held.
LONG = {"name": "held-in-epoch-2", "layers": [{"units": 8}], "epochs": 3, "train_samples": 1000}
RUNS_HELD = 4
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(request, tmp_path_factory, pg_admin_url, external_redis):
    s = make_stack(
        request.param,
        tmp_path_factory,
        pg_admin_url,
        external_redis,
        extra_env={
            "LABQ_TEST_HOLD_IN_EPOCH": ",".join([HELD["LABQ_TEST_HOLD_IN_EPOCH"]] * RUNS_HELD),
            "LABQ_MAX_ACTIVE_JOBS_PER_TOKEN": str(LIMIT),
            "LABQ_MAX_EVENT_STREAMS": str(STREAMS),
            "LABQ_MAX_EVENT_STREAMS_PER_TOKEN": str(STREAMS_PER_TOKEN),
        },
    )
    s.data_dir.mkdir(parents=True, exist_ok=True)
    s.tokens = {}
    for name in ("alice", "bob", "carol", "dave", "erin"):
        made = subprocess.run(
            [sys.executable, "-m", "cli.main", "token", "create", name],
            cwd=ROOT,
            env=s.env,
            capture_output=True,
            text=True,
            check=True,
        )
        s.tokens[name] = {"Authorization": f"Bearer {made.stdout.strip()}"}
    s.start()
    yield s
    s.stop()


def at_once(n: int, call) -> list:
    """Run `call(i)` in n threads released together; their results in order."""
    gate = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        gate.wait()
        results[i] = call(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def active(stack: Stack, token: str) -> int:
    return stack.sql(
        "SELECT count(*) FROM experiments e JOIN tokens t ON t.id = e.token_id "
        "WHERE t.name = :n AND e.status IN ('queued', 'running')",
        n=token,
    )[0][0]


def cancel_all(stack: Stack, auth: dict, ids) -> None:
    for exp_id in ids:
        r = httpx.post(f"{stack.url}/experiments/{exp_id}/cancel", headers={**auth, **JSON})
        assert r.status_code == 202, r.text
    for exp_id in ids:
        assert stack.wait(exp_id, timeout=120)["status"] == "cancelled"


def submit(stack: Stack, auth: dict) -> httpx.Response:
    return httpx.post(f"{stack.url}/experiments", json=LONG, headers=auth, timeout=120)


def test_a_burst_of_submits_gets_exactly_the_limit(limited):
    auth = limited.tokens["alice"]
    # Connections opened beforehand, so that the submits reach the API together.
    clients = [httpx.Client(base_url=limited.url, headers=auth, timeout=120) for _ in range(BURST)]
    for client in clients:
        assert client.get("/health").status_code == 200
    try:
        answers = at_once(BURST, lambda i: clients[i].post("/experiments", json=LONG))
    finally:
        for client in clients:
            client.close()
    codes = sorted(r.status_code for r in answers)
    assert codes == [202] * LIMIT + [429] * (BURST - LIMIT), codes
    assert active(limited, "alice") == LIMIT
    # A sweep that would pass the limit is refused whole.
    r = httpx.post(
        f"{limited.url}/sweeps",
        json={"name": "over", "base": LONG, "grid": {"seed": [1, 2]}},
        headers=limited.tokens["erin"],
    )
    assert r.status_code == 202  # erin has room for two
    sweep = r.json()["children"]
    sweeps = limited.sql("SELECT count(*) FROM sweeps")
    r = httpx.post(
        f"{limited.url}/sweeps",
        json={"name": "over", "base": LONG, "grid": {"seed": [3, 4, 5]}},
        headers=limited.tokens["erin"],
    )
    assert r.status_code == 429 and active(limited, "erin") == 2
    assert limited.sql("SELECT count(*) FROM sweeps") == sweeps
    cancel_all(limited, limited.tokens["erin"], sweep)
    cancel_all(limited, auth, [r.json()["id"] for r in answers if r.status_code == 202])


def test_retry_is_charged_like_a_submit_to_the_token_that_sends_it(limited):
    bob, carol = limited.tokens["bob"], limited.tokens["carol"]
    first = [submit(limited, bob).json()["id"] for _ in range(LIMIT)]
    cancel_all(limited, bob, first)
    second = [submit(limited, bob).json()["id"] for _ in range(LIMIT)]
    assert active(limited, "bob") == LIMIT

    def retry(exp_id, auth):
        return httpx.post(
            f"{limited.url}/experiments/{exp_id}/retry", headers={**auth, **JSON}, timeout=120
        )

    for exp_id in first:
        r = retry(exp_id, bob)
        assert r.status_code == 429 and "queued or running" in r.json()["message"]
        assert limited.get(exp_id)["status"] == "cancelled"  # nothing changed
    assert active(limited, "bob") == LIMIT

    cancel_all(limited, bob, second[:1])
    assert retry(first[0], bob).status_code == 202
    assert retry(first[1], bob).status_code == 429
    assert active(limited, "bob") == LIMIT

    # Concurrent retries of several runs by one token: still exactly up to the limit.
    cancel_all(limited, bob, [first[0], *second[1:]])
    answers = at_once(LIMIT + 2, lambda i: retry([*first, *second][i], bob))
    assert sorted(r.status_code for r in answers) == [202] * LIMIT + [429] * 2
    assert active(limited, "bob") == LIMIT

    # Another token retrying one of bob's runs is charged for it: carol at her limit cannot.
    carols = [submit(limited, carol).json()["id"] for _ in range(LIMIT)]
    bobs_cancelled = next(i for i in [*first, *second] if limited.get(i)["status"] == "cancelled")
    assert retry(bobs_cancelled, carol).status_code == 429
    cancel_all(limited, carol, carols)
    cancel_all(limited, bob, [i for i in [*first, *second] if i != bobs_cancelled])


def open_stream(stack: Stack, auth: dict, streams: list, path: str = "/events") -> int:
    """Open an event stream and keep it (in `streams`) if it is granted; its status."""
    client = httpx.Client(base_url=stack.url, headers=auth, timeout=httpx.Timeout(30, read=30))
    r = client.send(client.build_request("GET", path), stream=True)
    if r.status_code == 200:
        streams.append((client, r))
    else:
        r.read()
        r.close()
        client.close()
    return r.status_code


def test_event_streams_are_capped_per_token_and_in_total(limited):
    tok = limited.tokens
    held: list = []
    running = submit(limited, tok["erin"]).json()["id"]  # its stream lasts while it is active
    try:
        codes = at_once(3 * STREAMS_PER_TOKEN, lambda i: open_stream(limited, tok["dave"], held))
        assert codes.count(200) == STREAMS_PER_TOKEN, codes
        assert codes.count(503) == 2 * STREAMS_PER_TOKEN
        # Another token still gets the places left in all, and no more (here on a run's stream).
        path = f"/experiments/{running}/events"
        codes = at_once(STREAMS_PER_TOKEN, lambda i: open_stream(limited, tok["erin"], held, path))
        assert codes.count(200) == STREAMS - STREAMS_PER_TOKEN, codes
        r = httpx.get(f"{limited.url}/events", headers=tok["carol"])
        assert r.status_code == 503 and "too many event streams" in r.json()["message"]

        # Closed streams give their places back (the server notices at its next poll).
        for client, response in held[:STREAMS_PER_TOKEN]:
            response.close()
            client.close()
        del held[:STREAMS_PER_TOKEN]
        deadline = time.monotonic() + 30
        while open_stream(limited, tok["carol"], held) != 200:
            assert time.monotonic() < deadline, "closed streams were never given back"
            time.sleep(0.3)
    finally:
        for client, response in held:
            response.close()
            client.close()
        cancel_all(limited, tok["erin"], [running])
