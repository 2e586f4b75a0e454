"""Server-sent events: live changes of the whole queue (`GET /events`), of one run
(`GET /experiments/{id}/events`) and of one search (`GET /searches/{id}/events`), for the
dashboard and for anyone with `curl -N`.

The database is the source of truth (workers write to it, not to the API), so each stream polls it
from the API process every POLL_SECONDS. A queue stream first reads one aggregate over the
experiments table; only when that changed does it read the rows that can have changed (running
ones, ones that left the queue or the running set, new ones) and it sends those whose visible state
differs from what it sent before. Streams are bounded: at most `max_event_streams` at once per API
process and `max_event_streams_per_token` per token (requests without a token count as one caller),
503 beyond; each ends after MAX_STREAM_SECONDS (an EventSource reconnects by itself), at most
MAX_ROWS_PER_TICK rows per poll, and a client that goes away cancels its generator at its next
await, which releases its place.

Events of `/events`: `hello`, `queue` ({"queued", "running", "total"}), `experiment` (the
ExperimentSummary of GET /experiments). Events of `/experiments/{id}/events`: `experiment` (the
ExperimentPublic of GET /experiments/{id}), `history` (every epoch row, on connect and when a new
attempt starts), `epoch` (one new epoch row), `end` (the run finished; the stream closes).
Events of `/searches/{id}/events`: `search` (the SearchPublic of GET /searches/{id}, sent on
connect and whenever one of its runs changed; a search stream reads one aggregate over its runs
per poll and builds the body only then), `end` (the search is done or cancelled, or was deleted).
"""

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent, format_sse_event
from sqlalchemy import case, func, select
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.deps import IdPath, SettingsDep, get_actor, get_experiment, get_sight
from api.routes.experiments import to_public, to_summary
from api.routes.searches import ENDED_SEARCH, get_search, search_public
from api.schemas import EpochPublic
from core.constants import FINISHED, QUEUED, RUNNING
from core.settings import Settings
from db import repo, scheduling, users
from db import searches as db_searches
from db.models import EpochRow, Experiment
from db.session import session_scope

POLL_SECONDS = 0.5
MAX_STREAM_SECONDS = 600
MAX_ROWS_PER_TICK = 200
RETRY_MS = 2000
KEEPALIVE_SECONDS = 15

router = APIRouter(tags=["events"])


class StreamPlaces:
    """Open streams of this API process, in all and per token. A place is taken when a stream's
    response starts, by a check and a count with no await between them (so two requests on the
    event loop can never both take the last one), and given back when the response ends,
    however it ends."""

    def __init__(self) -> None:
        self.total = 0
        self.by_token: Counter[int | None] = Counter()  # token id (None: no token) -> open streams

    def take(self, token: int | None, settings: Settings) -> str | None:
        """Take a place for `token`; the reason for a refusal instead, if there is none."""
        if self.total >= settings.max_event_streams:
            return (
                f"too many event streams open ({settings.max_event_streams}); "
                "poll GET /experiments instead"
            )
        if self.by_token[token] >= settings.max_event_streams_per_token:
            return (
                "too many event streams open for this caller "
                f"({settings.max_event_streams_per_token} per token); close one, or poll "
                "GET /experiments instead"
            )
        self.total += 1
        self.by_token[token] += 1
        return None

    def give_back(self, token: int | None) -> None:
        self.total -= 1
        self.by_token[token] -= 1
        if not self.by_token[token]:
            del self.by_token[token]


places = StreamPlaces()


class EventStream(EventSourceResponse):
    """A stream that holds a place for as long as it is being sent, or a 503 when none is left
    (decided before any byte is sent)."""

    def __init__(
        self, content: AsyncIterator[bytes], token: int | None, settings: Settings
    ) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.token, self.settings = token, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = places.take(self.token, self.settings)
        if refusal is not None:
            refused = JSONResponse({"detail": refusal, "message": refusal}, status_code=503)
            return await refused(scope, receive, send)
        try:
            await super().__call__(scope, receive, send)
        finally:
            places.give_back(self.token)


def _changes() -> tuple[Any, ...]:
    """One aggregate over experiments that changes whenever a run is added, starts, trains an
    epoch, is cancelled, is taken over or ends: (count, max id, epochs, started, finished,
    cancels asked, attempts)."""
    return (
        func.count(),
        func.coalesce(func.max(Experiment.id), 0),
        func.coalesce(func.sum(Experiment.epochs_done), 0),
        func.count(Experiment.started_at),
        func.count(Experiment.finished_at),
        func.coalesce(func.sum(case((Experiment.cancel_requested, 1), else_=0)), 0),
        func.coalesce(func.sum(Experiment.attempt), 0),
    )


class QueueWatch:
    """What one queue stream has seen, and the poll that finds what changed since."""

    def __init__(self, sight: users.Sight = users.EVERYONE) -> None:
        self.sight = sight  # whose runs this stream may show (LABQ_VISIBILITY)
        self.signature: tuple[Any, ...] | None = None
        self.started = False
        self.done = False  # a queue stream ends only by time or by disconnect
        self.queued: set[int] = set()
        self.running: set[int] = set()
        self.max_id = 0
        # id -> fingerprint last sent (unfinished rows only)
        self.sent: dict[int, tuple[Any, ...]] = {}

    def poll(self) -> list[ServerSentEvent]:
        with session_scope() as s:
            running_count = func.coalesce(
                func.sum(case((Experiment.status == RUNNING, 1), else_=0)), 0
            )
            signature = tuple(s.execute(select(*_changes(), running_count)).one())
            if signature == self.signature:
                return []
            first, self.started = not self.started, True
            queued = set(s.scalars(select(Experiment.id).where(Experiment.status == QUEUED)))
            running = set(s.scalars(select(Experiment.id).where(Experiment.status == RUNNING)))
            events = [
                ServerSentEvent(
                    event="queue",
                    data={"queued": len(queued), "running": len(running), "total": signature[0]},
                )
            ]
            if first:
                self.max_id = signature[1]
                candidates: set[int] = set()
            else:
                candidates = running | (self.queued - queued) | (self.running - running)
            new_ids = list(
                s.scalars(
                    select(Experiment.id)
                    .where(Experiment.id > self.max_id)
                    .order_by(Experiment.id)
                    .limit(MAX_ROWS_PER_TICK)
                )
            )
            candidates |= set(new_ids)
            picked = sorted(candidates)[:MAX_ROWS_PER_TICK]
            more = len(candidates) > len(picked) or len(new_ids) == MAX_ROWS_PER_TICK
            rows = (
                list(s.scalars(select(Experiment).where(Experiment.id.in_(picked))))
                if picked
                else []
            )
            positions = scheduling.queue_positions(s, [r.id for r in rows if r.status == QUEUED])
            owners = users.names(s, {r.owner_id for r in rows})
            for row in rows:
                if not self.sight.sees(row.owner_id):
                    continue
                mark = (
                    row.status,
                    row.epochs_done,
                    row.attempt,
                    row.cancel_requested,
                    row.val_accuracy,
                    row.train_seconds,
                )
                if self.sent.get(row.id) != mark:
                    events.append(
                        ServerSentEvent(
                            event="experiment",
                            id=str(row.id),
                            data=to_summary(row, positions.get(row.id), owners),
                        )
                    )
                if row.status in FINISHED:
                    self.sent.pop(row.id, None)
                else:
                    self.sent[row.id] = mark
            for gone in set(self.sent) - queued - running:
                self.sent.pop(gone, None)
            self.queued, self.running = queued, running
            self.max_id = max([self.max_id, *new_ids])
            # Rows left for the next tick: a signature that matches nothing makes it read them.
            self.signature = ("more",) if more else signature
            return events


class RunWatch:
    """What one run's stream has sent: its visible state and the epochs it has delivered."""

    def __init__(self, experiment_id: int, viewer: int | None) -> None:
        self.id, self.viewer = experiment_id, viewer  # the token it is streamed to
        self.mark: tuple[Any, ...] | None = None
        self.attempt: int | None = None
        self.epoch = 0
        self.done = False

    def poll(self) -> list[ServerSentEvent]:
        with session_scope() as s:
            exp = repo.get(s, self.id)
            if exp is None:  # deleted while watched
                self.done = True
                return [ServerSentEvent(event="end", data={"id": self.id, "status": None})]
            public = to_public(s, exp, self.viewer)
            events: list[ServerSentEvent] = []
            mark = (
                exp.status,
                exp.epochs_done,
                exp.attempt,
                exp.cancel_requested,
                exp.finished_at,
                exp.train_seconds,
                exp.test_accuracy,
                exp.error,
                public.queue_position,
            )
            if mark != self.mark:
                self.mark = mark
                events.append(ServerSentEvent(event="experiment", data=public))
            query = select(EpochRow).where(EpochRow.experiment_id == self.id)
            if exp.attempt != self.attempt:
                self.attempt = exp.attempt
                rows = list(s.scalars(query.order_by(EpochRow.epoch)))
                events.append(
                    ServerSentEvent(
                        event="history",
                        data=[EpochPublic.model_validate(r, from_attributes=True) for r in rows],
                    )
                )
                self.epoch = 0
            else:
                rows = list(
                    s.scalars(
                        query.where(EpochRow.epoch > self.epoch)
                        .order_by(EpochRow.epoch)
                        .limit(MAX_ROWS_PER_TICK)
                    )
                )
                events += [
                    ServerSentEvent(
                        event="epoch",
                        id=str(r.epoch),
                        data=EpochPublic.model_validate(r, from_attributes=True),
                    )
                    for r in rows
                ]
            if rows:
                self.epoch = rows[-1].epoch
            if exp.status in FINISHED:
                self.done = True
                events.append(
                    ServerSentEvent(event="end", data={"id": self.id, "status": exp.status})
                )
            return events


class SearchWatch:
    """What one search's stream has seen: an aggregate of its runs (and whether it is cancelled
    or has its result); the body is built and sent only when that changed."""

    def __init__(self, search_id: int, sight: users.Sight) -> None:
        self.id, self.sight = search_id, sight
        self.signature: tuple[Any, ...] | None = None
        self.done = False

    def poll(self) -> list[ServerSentEvent]:
        with session_scope() as s:
            search = db_searches.get_search(s, self.id)
            if search is None or not self.sight.sees(search.owner_id):  # deleted while watched
                self.done = True
                return [ServerSentEvent(event="end", data={"id": self.id, "status": None})]
            runs = s.execute(select(*_changes()).where(Experiment.search_id == self.id)).one()
            signature = (search.result is not None, search.cancelled, *runs)
            if signature == self.signature:
                return []
            self.signature = signature
            public = search_public(s, search)
            events = [ServerSentEvent(event="search", data=public)]
            if public.status in ENDED_SEARCH:
                self.done = True
                events.append(
                    ServerSentEvent(event="end", data={"id": self.id, "status": public.status})
                )
            return events


def encode(event: ServerSentEvent) -> bytes:
    """The wire form of one event; its data is always JSON."""
    data = None
    if event.data is not None:
        data = json.dumps(jsonable_encoder(event.data), separators=(",", ":"))
    return format_sse_event(data_str=data, event=event.event, id=event.id, retry=event.retry)


Watch = QueueWatch | RunWatch | SearchWatch


async def _stream(request: Request, watch: Watch) -> AsyncIterator[bytes]:
    """Poll, send what changed, sleep; until the client leaves, the watch is done or the stream
    has lived MAX_STREAM_SECONDS. A disconnect is noticed here at the next tick (and Starlette
    cancels this generator as soon as it sees one), so the place is freed within a poll."""
    yield encode(
        ServerSentEvent(event="hello", data={"poll_seconds": POLL_SECONDS}, retry=RETRY_MS)
    )
    started = last_sent = time.monotonic()
    while time.monotonic() - started < MAX_STREAM_SECONDS and not watch.done:
        if await request.is_disconnected():
            return
        events = await run_in_threadpool(watch.poll)
        for event in events:
            yield encode(event)
        if events:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def _response(request: Request, watch: Watch, settings: Settings) -> EventStream:
    return EventStream(_stream(request, watch), get_actor(request).token_id, settings)


def reader_sight(request: Request) -> users.Sight:
    """The caller's Sight, in a session of its own (a stream outlives the request's session)."""
    with session_scope() as s:
        return get_sight(s, get_actor(request))


def run_exists(request: Request, experiment_id: IdPath) -> int:
    """The run's id, or 404 (also when it is not the caller's to read), before the stream starts."""
    with session_scope() as s:
        get_experiment(experiment_id, s, get_sight(s, get_actor(request)))
    return experiment_id


def search_exists(request: Request, search_id: IdPath) -> int:
    """The search's id, or 404 (also when it is not the caller's to read), before the stream."""
    with session_scope() as s:
        get_search(search_id, s, get_sight(s, get_actor(request)))
    return search_id


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}},
    503: {"description": "no place left for another stream (in all, or for this token)"},
}


@router.get("/events", responses=STREAM_RESPONSES)
async def queue_events(
    request: Request, settings: SettingsDep, sight: Annotated[users.Sight, Depends(reader_sight)]
) -> StreamingResponse:
    """Changes of every experiment, as they reach the database (see the module docstring)."""
    return _response(request, QueueWatch(sight), settings)


@router.get("/experiments/{experiment_id}/events", responses=STREAM_RESPONSES)
async def run_events(
    request: Request, settings: SettingsDep, experiment_id: int = Depends(run_exists)
) -> StreamingResponse:
    """One run's state and epochs as they are written; ends when the run has finished."""
    return _response(request, RunWatch(experiment_id, get_actor(request).token_id), settings)


@router.get("/searches/{search_id}/events", responses=STREAM_RESPONSES)
async def search_events(
    request: Request,
    settings: SettingsDep,
    sight: Annotated[users.Sight, Depends(reader_sight)],
    search_id: int = Depends(search_exists),
) -> StreamingResponse:
    """One search's state (trials, best, figures' data, result) whenever one of its runs changed;
    ends when the search is done or cancelled."""
    return _response(request, SearchWatch(search_id, sight), settings)
