"""Who may call the API: bearer tokens and per-token limits.

The rules, applied to every route by HTTP method (routes added later are covered without edits):
- bound to loopback and no token created: everything open (the curl quick start);
- bound to loopback once a token exists: writes (POST, PUT, PATCH, DELETE) need a token;
- bound to anything else: every endpoint needs a token (`labq up` refuses to start without one);
- `/health`, `/login` and the dashboard's static assets are always open; a token that is sent
  must be valid, even where none is needed. `/health` shows its details (database, broker,
  worker names) only to a caller who may read the API; to anyone else, only its status.
- The dashboard's browser sends its token as the `labq_token` cookie (set by `/login`), which
  counts for reads (GET, HEAD) only: writes need the Authorization header, so a cross-site form
  can never act with a user's cookie.
Every request acts for a user (db.users.Actor, in the request's scope under ACTOR): the user whose
token it sent, or without a token on loopback the implicit local admin. A viewer's writes are a
403 here, for every route (but READ_ONLY_POST); whose runs a member may act on is the routes' part (api.deps).
What other sites' pages may do through a browser (CORS, cross-site writes, Host names) is
api.web_guards' part.
A token's requests are rate limited (settings.rate_limit_per_minute, 429 with Retry-After) and the
experiments it creates or retries count against settings.max_active_jobs_per_token (the routes
pass the actor's token id to db.repo explicitly). Tokens never appear in logs or error bodies.
"""

import dataclasses
import ipaddress
import re
from http.cookies import CookieError, SimpleCookie
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api.ratelimit import RateLimiter
from core.settings import Settings
from db import repo, tokens, users
from db.session import session_scope

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
READ_METHODS = frozenset({"GET", "HEAD"})
HEALTH = "/health"
OPEN_PATHS = frozenset({HEALTH, "/login", "/favicon.ico"})
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
COOKIE = "labq_token"
# Set in the request's scope: whether the caller may read the API (what /health shows it).
MAY_READ = "labq.may_read"
# POST routes that change nothing (a prediction sends its input in a body): viewers may use them.
READ_ONLY_POST = re.compile(r"^/experiments/[0-9]+/predict$")
# Set in the request's scope: the db.users.Actor the request acts for.
ACTOR = "labq.actor"
JOBS_RETRY_AFTER = 30


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie_auth(cookie_header: str) -> str | None:
    """The `labq_token` cookie as an Authorization value (None when absent or unreadable)."""
    try:
        morsel = SimpleCookie(cookie_header).get(COOKIE)
    except CookieError:
        return None
    return f"Bearer {morsel.value}" if morsel is not None and morsel.value else None


def _credentials(method: str, headers: Headers) -> str | None:
    """The Authorization value: the header, or for reads the `labq_token` cookie."""
    auth = headers.get("authorization")
    if auth is None and method in READ_METHODS:
        auth = _cookie_auth(headers.get("cookie", ""))
    return auth


def _lookup(token: str) -> users.Actor | None:
    with session_scope() as session:
        return tokens.lookup(session, token)


def _any_active() -> bool:
    with session_scope() as session:
        return tokens.any_active(session)


def _unauthorized(message: str) -> JSONResponse:
    return JSONResponse(
        {"detail": message, "message": message},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def _forbidden(message: str) -> JSONResponse:
    return JSONResponse({"detail": message, "message": message}, status_code=403)


def _too_many(message: str, retry_after: int) -> JSONResponse:
    return JSONResponse(
        {"detail": message, "message": message},
        status_code=429,
        headers={"Retry-After": str(retry_after)},
    )


class Authenticate:
    """The rules above as plain ASGI middleware (Starlette's BaseHTTPMiddleware, behind
    @app.middleware("http"), costs a task group and two memory streams per request)."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings
        self.loopback = is_loopback(settings.host)
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.broker_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        if path == HEALTH:
            return await self._health(scope, receive, send)
        if method == "OPTIONS" or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await self.app(scope, receive, send)
        auth = _credentials(method, Headers(scope=scope))
        denied = await self._check(method, auth)
        if isinstance(denied, JSONResponse):
            refusal: Response = denied
            if (
                denied.status_code == 401
                and method in READ_METHODS
                and "text/html" in Headers(scope=scope).get("accept", "")
            ):
                # A person opening a page: send them to sign in, then back here.
                target = quote(
                    path
                    + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
                )
                refusal = RedirectResponse(f"/login?next={target}", status_code=303)
            return await refusal(scope, receive, send)
        actor = denied or users.LOCAL
        client = scope.get("client")
        actor = dataclasses.replace(actor, source=client[0] if client else "")
        if (
            method in WRITE_METHODS
            and actor.role == users.VIEWER
            and not READ_ONLY_POST.match(path)
        ):
            return await _forbidden(
                f"user {actor.name!r} is a viewer: viewers read, they cannot change anything"
            )(scope, receive, send)
        scope[ACTOR] = actor
        await self.app(scope, receive, send)

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Always answered; its details only for a caller who could read the rest of the API."""
        auth = _credentials("GET", Headers(scope=scope))
        if auth is None:
            scope[MAY_READ] = self.loopback
        else:
            scope[MAY_READ] = not isinstance(await self._check("GET", auth), JSONResponse)
        await self.app(scope, receive, send)

    async def _check(self, method: str, header: str | None) -> JSONResponse | users.Actor | None:
        """The refusal to send, or the token's user (None: no token)."""
        actor = None
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                return _unauthorized("malformed Authorization header: expected 'Bearer <token>'")
            actor = await run_in_threadpool(_lookup, value.strip())
            if actor is None:
                return _unauthorized("invalid or revoked token, or its user is disabled")
        elif not self.loopback or (
            method in WRITE_METHODS and await run_in_threadpool(_any_active)
        ):
            return _unauthorized(
                "this request needs a token: send 'Authorization: Bearer <token>'"
                " (create one with `labq token create NAME`)"
            )
        if actor is not None:
            wait = await self.limiter.hit(actor.token_id)
            if wait:
                return _too_many(
                    f"more than {self.settings.rate_limit_per_minute} requests a "
                    "minute with this token",
                    wait,
                )
        return actor


def install(app: FastAPI, settings: Settings) -> None:
    """Add the auth middleware and the job-limit error handler."""
    app.add_middleware(Authenticate, settings=settings)

    @app.exception_handler(repo.QuotaExceeded)
    async def _quota(request: Request, exc: repo.QuotaExceeded) -> JSONResponse:
        retry_after = getattr(exc, "retry_after", JOBS_RETRY_AFTER)
        if retry_after is None:  # waiting does not help: no Retry-After
            message = str(exc)
            return JSONResponse({"detail": message, "message": message}, status_code=429)
        return _too_many(str(exc), retry_after)
