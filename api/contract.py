"""The OpenAPI document as the contract: every status a route can answer is declared with its
error body, so generated clients handle them, and a method a path does not take is a 405 whose
`Allow` header lists every method the path does take (Starlette names only the first route's).

Which errors a route can return follows from what it is:
- every route: 400 (a Host name that labq on loopback does not answer, api/web_guards.py),
  401 / 403 (tokens, cross-site writes), 422 (validation), 429 (rate and job limits), 503 (the
  database or broker refuses work, the server is saturated, no event-stream place left);
- a route with a path parameter: 404 (unknown id or name) and 409 (the resource is not in a state
  that allows it: figures of an unfinished run, cancel or retry of a finished one);
- a write: 400 (also a body that is not UTF-8), 413 (over LABQ_MAX_BODY_BYTES) and 415 (not
  application/json, with a body or without).
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from core.settings import get_settings

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class FieldError(BaseModel):
    field: str
    msg: str
    type: str
    loc: list[str | int]


class ErrorBody(BaseModel):
    """Every 4xx and 5xx body: `detail` is a sentence, or a list naming each field and rule
    (validation); `message` repeats the list as one line."""

    detail: str | list[FieldError]
    message: str | None = None


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


COMMON = {
    400: _error("A Host name this labq does not answer (on loopback: see LABQ_ALLOWED_HOSTS)"),
    401: _error("No valid token where one is needed"),
    403: _error("A token that may not do this, or a write from another site's page"),
    422: _error("A parameter or the body breaks a rule; each field and rule is named"),
    429: _error("Over the rate or job limit; Retry-After says when to try again"),
    503: _error("The database or broker cannot take the request now; Retry-After when known"),
}
BY_PATH = {
    404: _error("No such resource"),
    409: _error("The resource is not in a state that allows this"),
}
BY_BODY = {
    400: _error("The body could not be read (not UTF-8), or a Host name this labq does not answer"),
    413: _error("The body is larger than LABQ_MAX_BODY_BYTES"),
    415: _error("Writes take application/json only, with a body or without"),
}


def _routes(routes: list[Any]) -> Iterator[Any]:
    """Every route of the app, looking into included routers (which FastAPI includes lazily).
    labq includes its routers without a prefix, so each route's path is its full path."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            yield from _routes(original.routes)
        else:
            yield route


def declare_errors(app: FastAPI) -> None:
    """Add the error statuses above to every API route's documented responses."""
    for route in _routes(app.router.routes):
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        extra: dict[int, dict[str, Any]] = dict(COMMON)
        if "{" in route.path:
            extra.update(BY_PATH)
        if (route.methods or set()) & WRITES:
            extra.update(BY_BODY)
        for status, spec in extra.items():
            route.responses.setdefault(status, spec)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method of every route whose path pattern matches `path`."""
    methods: set[str] = set()
    for route in _routes(app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def install(app: FastAPI) -> None:
    declare_errors(app)

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code != 405:
            headers = getattr(exc, "headers", None)
            detail = exc.detail
            if exc.status_code == 413:  # FastAPI's body limit says only "Content Too Large"
                cap = get_settings().max_body_bytes
                detail = f"body larger than {cap} bytes (LABQ_MAX_BODY_BYTES)"
            body = {"detail": detail, "message": str(detail)}
            return JSONResponse(body, exc.status_code, headers=headers)
        allow = ", ".join(sorted(allowed_methods(app, request.url.path)))
        return JSONResponse(
            {"detail": f"{request.method} is not allowed here; allowed: {allow}"},
            405,
            headers={"Allow": allow},
        )

    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
