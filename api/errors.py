"""Readable 4xx bodies: every validation error names the field and the rule; nothing leaks.

A database that refuses work (disk full, locked past the busy timeout, restarting, unreachable)
is a 503 with Retry-After, not a 500: the request was fine and nothing of it was stored (its
transaction rolled back), so the client may send it again.
"""

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, OperationalError

from core.settings import get_settings
from core.spec import field_path

log = logging.getLogger("labq.api")


def _field(loc: Sequence[int | str]) -> str:
    # Drop the "body" prefix and pydantic's union tags ("dense", "dropout") from paths.
    return ".".join(p for p in field_path(loc) if p != "body") or "body"


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = []
    for err in exc.errors():
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        detail.append(
            {
                "field": _field(err.get("loc", ())),
                "msg": msg,
                "type": err.get("type", "invalid"),
                "loc": list(err.get("loc", ())),
            }
        )
    message = "; ".join(f"{d['field']}: {d['msg']}" for d in detail)
    return JSONResponse({"detail": detail, "message": message}, status_code=422)


async def out_of_range(request: Request, exc: Exception) -> JSONResponse:
    """A number the database cannot hold (a route without a bound on it): the client's fault."""
    msg = "a value in the request is out of range for the database (ids are 64-bit)"
    return JSONResponse(
        {
            "detail": [{"field": "query", "msg": msg, "type": "out_of_range", "loc": []}],
            "message": msg,
        },
        status_code=422,
    )


def database_unavailable(exc: BaseException) -> bool:
    """The database could not do the work now; the same request may succeed later."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def unavailable(request: Request, exc: Exception) -> JSONResponse:
    reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
    retry_after = get_settings().db_retry_after
    msg = f"the database cannot take this request now ({reason}); nothing was stored, retry later"
    return JSONResponse(
        {"detail": msg, "message": msg},
        status_code=503,
        headers={"Retry-After": str(retry_after)},
    )


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    if database_unavailable(exc):  # raised outside a route too (the auth middleware's lookups)
        return unavailable(request, exc)
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    return await unhandled_error(request, exc)


def install(app: FastAPI) -> None:
    # Starlette types every handler as taking `Exception`, so one for a subclass never matches.
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(DataError, out_of_range)
    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(Exception, unhandled_error)
