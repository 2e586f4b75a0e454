"""/health: is the database reachable, is the broker, which workers answer."""

import redis
from fastapi import APIRouter, Response
from sqlalchemy import text

from api.deps import SessionDep, SettingsDep
from api.schemas import Health
from core.queue import producer

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(session: SessionDep, settings: SettingsDep, response: Response):
    try:
        session.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:
        database = f"error: {type(exc).__name__}"
    try:
        redis.Redis.from_url(settings.broker_url, socket_timeout=1,
                             socket_connect_timeout=1).ping()
        broker = "ok"
    except Exception as exc:
        broker = f"error: {type(exc).__name__}"
    workers: list[str] = []
    if broker == "ok":
        try:
            workers = sorted(name for reply in producer().control.ping(timeout=0.5)
                             for name in reply)
        except Exception:
            workers = []
    ok = database == "ok" and broker == "ok"
    response.status_code = 200 if ok else 503
    return Health(status="ok" if ok else "degraded", database=database, broker=broker,
                  workers=workers)
