"""The server-sent-event streams the dashboard listens to, read as plain HTTP (as `curl -N` would):
what they carry, that a run's stream ends with the run, and that the number of open streams is
bounded and a client that disconnects frees its place."""

import json
import time

import httpx
import pytest

from tests.e2e.conftest import MAX_EVENT_STREAMS

pytestmark = pytest.mark.integration


def events(response, deadline: float):
    """Parse a text/event-stream response into (event, data) pairs until the deadline."""
    name, data = "message", []
    for line in response.iter_lines():
        if time.monotonic() > deadline:
            raise TimeoutError("stream deadline passed")
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_queue_stream_follows_a_new_run_to_the_end(stack, tiny):
    seen = []
    timeout = httpx.Timeout(30, read=30)
    with httpx.stream("GET", f"{stack.url}/events", timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        stream = events(r, time.monotonic() + 240)
        assert next(stream)[0] == "hello"
        assert next(stream)[0] == "queue"
        # Held in its epoch 2 (the stack's hold hook) until the stream has shown it running: a
        # warm worker may otherwise finish it between two polls of the stream.
        exp_id = stack.submit({**tiny, "name": "held-in-epoch-2"})
        for name, data in stream:
            if name == "experiment" and data["id"] == exp_id:
                seen.append(data["status"])
                if data["status"] == "running" and "released" not in seen:
                    stack.held(exp_id)
                    stack.release(exp_id)
                    seen.append("released")
                if data["status"] == "succeeded":
                    break
        final = data
    assert seen[0] in ("queued", "running") and "released" in seen and seen[-1] == "succeeded"
    assert final["epochs_done"] == final["epochs_total"] == tiny["epochs"]
    listed = httpx.get(f"{stack.url}/experiments", params={"limit": 50}).json()["items"]
    assert final == next(item for item in listed if item["id"] == exp_id)  # the same JSON shape


def test_run_stream_sends_state_history_and_ends(stack, tiny):
    exp_id = stack.submit({"name": "sse-run", **tiny})
    names, epochs = [], []
    with httpx.stream(
        "GET", f"{stack.url}/experiments/{exp_id}/events", timeout=httpx.Timeout(30, read=30)
    ) as r:
        assert r.status_code == 200
        for name, data in events(r, time.monotonic() + 240):
            names.append(name)
            if name == "history":
                epochs = [row["epoch"] for row in data]
            elif name == "epoch":
                epochs.append(data["epoch"])
            elif name == "experiment":
                last = data
            elif name == "end":
                assert data == {"id": exp_id, "status": "succeeded"}
                break
    # The stream closed itself after `end`: iter_lines returned without our deadline.
    assert names[0] == "hello" and names[1] == "experiment" and names[-1] == "end"
    assert epochs == list(range(1, tiny["epochs"] + 1))
    assert last["status"] == "succeeded" and last["id"] == exp_id
    assert httpx.get(f"{stack.url}/experiments/{exp_id}/events").status_code == 200  # ends at once
    missing = httpx.get(f"{stack.url}/experiments/999999/events")
    assert missing.status_code == 404
    assert httpx.get(f"{stack.url}/experiments/0/events").status_code == 422


def test_open_streams_are_bounded_and_freed_on_disconnect(stack):
    timeout = httpx.Timeout(10, read=10)
    clients = [
        httpx.Client(base_url=stack.url, timeout=timeout) for _ in range(MAX_EVENT_STREAMS + 1)
    ]
    streams, readers = [], []  # a dropped line iterator would close its response: keep them
    try:
        for c in clients[:MAX_EVENT_STREAMS]:
            r = c.send(c.build_request("GET", "/events"), stream=True)
            assert r.status_code == 200
            readers.append(r.iter_lines())
            assert next(readers[-1]).startswith("event: hello")
            streams.append(r)
        refused = clients[-1].get("/events")
        assert refused.status_code == 503 and "too many event streams" in refused.json()["detail"]
        streams.pop().close()
        clients[MAX_EVENT_STREAMS - 1].close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the disconnect at its next poll and frees the place
            r = clients[-1].send(clients[-1].build_request("GET", "/events"), stream=True)
            if r.status_code == 200:
                streams.append(r)
                break
            r.close()
            assert time.monotonic() < deadline, "a closed stream was never released"
            time.sleep(0.3)
    finally:
        for r in streams:
            r.close()
        for c in clients:
            c.close()
