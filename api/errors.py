"""Readable 4xx bodies: every validation error names the field and the rule; nothing leaks."""

import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

log = logging.getLogger("labq.api")


def _field(loc: Sequence[int | str]) -> str:
    # Drop the "body" prefix and pydantic's union tags ("dense", "dropout") from paths.
    parts = [str(p) for p in loc if p not in ("body",)]
    return (
        ".".join(p for p in parts if p not in ("dense", "dropout", "Holdout", "literal['test']"))
        or "body"
    )


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


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


def install(app: FastAPI) -> None:
    # Starlette types every handler as taking `Exception`, so one for a subclass never matches.
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(OverflowError, out_of_range)
    app.add_exception_handler(DataError, out_of_range)
    app.add_exception_handler(Exception, unhandled_error)
