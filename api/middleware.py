"""Plain ASGI middlewares (cheaper per request than @app.middleware("http")).

- LimitInflight: at most N requests inside the app at once; the rest wait in the event loop,
  holding neither a worker thread nor a database connection. Sync routes take a pooled connection
  in one thread hop and give it back in another, so with more requests in flight than pool +
  threads every thread can end up waiting for a connection held by a request waiting for a
  thread. Keeping in-flight requests below the pool size rules that out. Event streams are
  long-lived and poll on their own, so they are not counted.
  Writes, reads and `/health` have slots of their own: writes that hang (a broker that does not
  answer holds a submission for its socket timeout) never keep a read or a health check waiting.
- DeclaredBodyLimit: a body whose Content-Length is over LABQ_MAX_BODY_BYTES is a 413 with the
  API's JSON error body before any of it is read. FastAPI's own limit (max_body_size) still stops
  a streamed body with no length; for a declared one Starlette would answer in plain text.
"""

import anyio
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEALTH_SLOTS = 4


class LimitInflight:
    """`limit` reads, half as many writes (at least one) and HEALTH_SLOTS health checks at once."""

    def __init__(self, app: ASGIApp, limit: int, write_limit: int | None = None):
        self.app = app
        self.reads = anyio.Semaphore(limit)
        self.writes = anyio.Semaphore(write_limit or max(1, limit // 2))
        self.health = anyio.Semaphore(HEALTH_SLOTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].endswith("/events"):
            return await self.app(scope, receive, send)
        if scope["path"] == "/health":
            slots = self.health
        elif scope["method"] in WRITE_METHODS:
            slots = self.writes
        else:
            slots = self.reads
        async with slots:
            await self.app(scope, receive, send)


class DeclaredBodyLimit:
    """413, as JSON naming LABQ_MAX_BODY_BYTES, for a declared Content-Length over `limit`."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                detail = f"body larger than {self.limit} bytes (LABQ_MAX_BODY_BYTES)"
                answer = JSONResponse({"detail": detail, "message": detail}, 413)
                return await answer(scope, receive, send)
        await self.app(scope, receive, send)
