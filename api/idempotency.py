"""`Idempotency-Key` on the POSTs that create jobs (/experiments, /sweeps, /presets/{name}/run).

A client that never got the answer to a POST (a timeout, a dropped connection) sends it again
with the same key and gets the first answer, not a second job. Keys are scoped to the token that
sends them (or to everyone without a token) and to the path, and kept for
LABQ_IDEMPOTENCY_SECONDS (24 h). The same key with a different body is a 422 naming the header:
the client has a bug, and guessing which request it meant would be worse.

A route uses it as `idem: IdempotencyDep`, then: `replay(session, idem)` (the stored answer, or
None), `reserve(session, idem)` before creating its rows (a concurrent twin raises Replay), and
`remember(session, idem, status, answer)` before it commits.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.contract import ErrorBody
from api.deps import get_actor
from core.settings import get_settings
from db import idempotency as store

HEADER = "Idempotency-Key"
# The one status a keyed POST adds to the contract's (api/contract.py).
RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorBody,
        "description": f"A request with the same {HEADER} was in progress; send it again",
    }
}
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # visible ASCII, as in the IETF draft's examples


@dataclass
class Idempotency:
    key: str
    owner: int  # the acting token's id, 0 without a token
    path: str
    body_hash: str
    row_id: int | None = None


def _body_hash(body: bytes) -> str:
    """Of the JSON document, not of its spelling: re-sent with other spacing or key order, a
    body is the same request."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(canonical).hexdigest()


async def idempotency(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            pattern=KEY_PATTERN,
            description="a key of the client's choice (1-255 visible ASCII characters): the "
            "same request re-sent with the same key within 24 h gets the first answer",
        ),
    ] = None,
) -> Idempotency | None:
    if idempotency_key is None:
        return None
    return Idempotency(
        key=idempotency_key,
        owner=get_actor(request).token_id or 0,
        path=request.url.path,
        body_hash=_body_hash(await request.body()),
    )


IdempotencyDep = Annotated[Idempotency | None, Depends(idempotency)]


def _mismatch() -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "loc": ("header", HEADER),
                "msg": f"this {HEADER} was used with a different request body; "
                "use a new key for a new request",
                "type": "idempotency_key_reused",
            }
        ]
    )


def replay(session: Session, idem: Idempotency | None) -> JSONResponse | None:
    """The first answer to this key, or None when the key is new (or absent)."""
    if idem is None:
        return None
    row = store.find(session, idem.owner, idem.path, idem.key, get_settings().idempotency_seconds)
    if row is None:
        return None
    if row.body_hash != idem.body_hash:
        raise _mismatch()
    answer = row.response or {}
    headers = {"Idempotent-Replayed": "true"}
    if answer.get("location"):
        headers["Location"] = answer["location"]
    return JSONResponse(answer.get("body"), status_code=row.status_code or 200, headers=headers)


class Replay(Exception):
    """A concurrent request with the same key got there first; answer with its answer."""

    def __init__(self, response: JSONResponse):
        self.response = response


def reserve(session: Session, idem: Idempotency | None) -> None:
    """Take the key for this request, in its transaction; raises Replay when a concurrent twin
    has it (this request's transaction is rolled back: nothing of it is stored)."""
    if idem is None:
        return
    try:
        row = store.reserve(
            session,
            idem.owner,
            idem.path,
            idem.key,
            idem.body_hash,
            get_settings().idempotency_seconds,
        )
    except IntegrityError:
        session.rollback()
        first = replay(session, idem)
        if first is None:  # the twin gave up in between: let the client send it again
            raise HTTPException(
                409,
                f"a request with this {HEADER} was in progress; send it again",
                headers={"Retry-After": "1"},
            ) from None
        raise Replay(first) from None
    idem.row_id = row.id


def remember(
    session: Session,
    idem: Idempotency | None,
    status_code: int,
    answer: BaseModel,
    location: str | None,
) -> None:
    """Store the answer with the key, before the caller commits."""
    if idem is None or idem.row_id is None:
        return
    body: dict[str, Any] = answer.model_dump(mode="json")
    store.store_answer(session, idem.row_id, status_code, {"body": body, "location": location})


async def replay_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Replay)
    return exc.response
