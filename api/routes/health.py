"""/health: is the database reachable, is the broker, which workers answer.

Asking the workers (a Celery broadcast ping) always waits its whole timeout, because nobody knows
how many workers will answer. So the list is cached: a request older than `WORKERS_TTL` seconds
starts one background refresh and answers with the last known list; only the very first request
waits for a ping. /health therefore answers in milliseconds, and a worker that starts or stops
shows up within about TTL + the ping timeout.
"""

import threading
import time
from collections.abc import Callable

import redis
from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import SessionDep, SettingsDep
from api.schemas import Health
from core.queue import producer

router = APIRouter(tags=["health"])

WORKERS_TTL = 2.0
PING_TIMEOUT = 0.5


def _ping_workers() -> list[str]:
    try:
        return sorted(
            name for reply in producer().control.ping(timeout=PING_TIMEOUT) for name in reply
        )
    except Exception:
        return []


class WorkerCache:
    """The workers that answered the last ping, refreshed at most once per `ttl`, off-request."""

    def __init__(
        self, ping: Callable[[], list[str]] = _ping_workers, ttl: float = WORKERS_TTL
    ) -> None:
        self.ping, self.ttl = ping, ttl
        self.workers: list[str] | None = None
        self.at = 0.0
        self.lock = threading.Lock()
        self.refreshing = False

    def _refresh(self) -> None:
        try:
            workers = self.ping()
            with self.lock:
                self.workers, self.at = workers, time.monotonic()
        finally:
            self.refreshing = False

    def get(self) -> list[str]:
        with self.lock:
            if self.workers is not None and time.monotonic() - self.at < self.ttl:
                return self.workers
            first = self.workers is None
            start = not self.refreshing
            self.refreshing = self.refreshing or start
        if first:  # nothing known yet: this one request waits for the ping
            if start:
                self._refresh()
            return self.workers or []
        if start:
            threading.Thread(target=self._refresh, daemon=True, name="labq-worker-ping").start()
        return self.workers or []


_workers = WorkerCache()
_redis: dict[str, redis.Redis] = {}


def _broker(url: str) -> redis.Redis:
    client = _redis.get(url)
    if client is None:
        client = _redis[url] = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return client


@router.get("/health", response_model=Health)
def health(session: SessionDep, settings: SettingsDep, response: Response) -> Health:
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    try:
        _broker(settings.broker_url).ping()
        broker = "ok"
    except Exception as exc:
        broker = f"error: {type(exc).__name__}"
    workers = _workers.get() if broker == "ok" else []
    ok = database == "ok" and broker == "ok"
    response.status_code = 200 if ok else 503
    return Health(
        status="ok" if ok else "degraded", database=database, broker=broker, workers=workers
    )


def known_workers() -> list[str]:
    """The Celery nodes that answered the last ping (for /metrics)."""
    return _workers.get()
