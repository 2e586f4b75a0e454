"""/health: does the database take a write, does the broker answer and can it persist what it is
given (its append-only file and snapshots write), which workers answer. 503 when a part is down.

Open to everyone, as a load balancer's probe; the parts and the workers' host names are shown only
to a caller who may read the API (api.auth sets MAY_READ), anyone else gets the status alone.

Asking the workers (a Celery broadcast ping) always waits its whole timeout, because nobody knows
how many workers will answer. So the list is cached: a request older than `WORKERS_TTL` seconds
starts one background refresh and answers with the last known list; only the very first request
waits for a ping. /health therefore answers in milliseconds, and a worker that starts or stops
shows up within about TTL + the ping timeout.
"""

import logging
import threading
import time
from collections.abc import Callable

import redis
from fastapi import APIRouter, Request, Response
from sqlalchemy.orm import Session

from api.auth import MAY_READ
from api.deps import SessionDep, SettingsDep
from api.schemas import Health
from core.queue import producer
from db.health import MIN_FREE_BYTES, probe_write, sqlite_free_bytes

log = logging.getLogger("labq.api")
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


# Redis answers but refuses writes (MISCONF) when one of these is not "ok".
PERSISTENCE = ("aof_last_write_status", "rdb_last_bgsave_status")


def _reason(part: str, exc: Exception) -> str:
    """The error's type only: /health is open to anyone, the details (hosts, paths) go to the log."""
    log.warning("health: %s failed: %s", part, str(getattr(exc, "orig", exc)).strip()[:500])
    return f"error: {type(exc).__name__}"


def _database(session: Session, url: str) -> str:
    try:
        probe_write(session)
        free = sqlite_free_bytes(url)
    except Exception as exc:
        session.rollback()
        return _reason("database write", exc)
    if free is not None and free < MIN_FREE_BYTES:
        log.warning("health: the database's disk has %s bytes free", free)
        return "error: disk full"
    return "ok"


def _broker_status(url: str) -> str:
    try:
        info = _broker(url).info("persistence")
    except Exception as exc:
        return _reason("broker", exc)
    failing = [f"{k}={info[k]}" for k in PERSISTENCE if info.get(k, "ok") != "ok"]
    return f"error: cannot persist ({', '.join(failing)})" if failing else "ok"


@router.get("/health", response_model=Health, response_model_exclude_none=True)
def health(
    request: Request, session: SessionDep, settings: SettingsDep, response: Response
) -> Health:
    database = _database(session, settings.db_url)
    broker = _broker_status(settings.broker_url)
    workers = _workers.get() if broker == "ok" else []
    ok = database == "ok" and broker == "ok"
    response.status_code = 200 if ok else 503
    status = "ok" if ok else "degraded"
    if not request.scope.get(MAY_READ):
        return Health(status=status)
    return Health(status=status, database=database, broker=broker, workers=workers)


def known_workers() -> list[str]:
    """The Celery nodes that answered the last ping (for /metrics)."""
    return _workers.get()
