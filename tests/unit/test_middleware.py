"""The API's ASGI middlewares, driven directly: in-flight cap and streamed-body cap."""

import anyio

from api.middleware import LimitInflight


def http_scope(path="/experiments", method="GET", headers=()):
    return {"type": "http", "path": path, "method": method, "headers": list(headers)}


def test_inflight_cap_holds_requests_back_but_not_event_streams():
    state = {"now": 0, "peak": 0, "streams": 0}

    async def app(scope, receive, send):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        if scope["path"].endswith("/events"):
            state["streams"] += 1
        await anyio.sleep(0.01)
        state["now"] -= 1

    limited = LimitInflight(app, limit=3)

    async def main():
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(limited, http_scope(), None, None)
        assert state["peak"] == 3
        state["peak"] = 0
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(limited, http_scope("/events"), None, None)
        assert state["peak"] == 6 and state["streams"] == 6

    anyio.run(main)


def test_writes_reads_and_health_have_slots_of_their_own():
    """Hung writes (a broker that does not answer) fill only the write slots: reads and /health
    still get in."""
    gate = anyio.Event()
    entered: list[str] = []

    async def app(scope, receive, send):
        entered.append(f"{scope['method']} {scope['path']}")
        if scope["method"] == "POST":
            await gate.wait()

    limited = LimitInflight(app, limit=4)  # 2 write slots

    async def main():
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(limited, http_scope(method="POST"), None, None)
            await anyio.sleep(0.05)
            assert entered.count("POST /experiments") == 2  # the other three wait
            with anyio.fail_after(5):
                await limited(http_scope("/experiments/1"), None, None)
                await limited(http_scope("/health"), None, None)
            gate.set()
        assert entered.count("POST /experiments") == 5

    anyio.run(main)
