"""create_app(): the FastAPI service. Run with `labq api` or `uvicorn api.main:app`."""

import logging
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from api import auth, contract, errors, idempotency, metrics, web_guards
from api.dashboard import pages as dashboard
from api.middleware import DeclaredBodyLimit, LimitInflight
from api.routes import audit, events, experiments, health, models, presets, searches, sweeps
from core.settings import get_settings

log = logging.getLogger("labq.api")


def labq_version() -> str:
    try:
        return version("labq")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def create_app() -> FastAPI:
    settings = get_settings()
    # /docs and /redoc with their assets served by labq itself: no CDN, works offline.
    app = FastAPIOffline(
        title="labq",
        version=labq_version(),
        description="A job queue for Keras experiments on MNIST.",
    )
    # 413 for a body over LABQ_MAX_BODY_BYTES, as JSON: a declared length is refused before any of
    # it is read (DeclaredBodyLimit, outside), a streamed one as it passes the cap (Starlette's
    # limit, whose error the app's handlers answer). FastAPI's own max_body_size sits outside
    # every user middleware and would answer a declared length in plain text.
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=settings.max_body_bytes)
    app.add_middleware(DeclaredBodyLimit, limit=settings.max_body_bytes)
    errors.install(app)
    app.add_exception_handler(idempotency.Replay, idempotency.replay_handler)
    auth.install(app, settings)
    web_guards.install(app, settings)

    app.add_middleware(LimitInflight, limit=settings.max_inflight_requests)
    app.add_middleware(DeclaredBodyLimit, limit=settings.max_body_bytes)

    app.include_router(experiments.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.include_router(sweeps.router)
    app.include_router(searches.router)
    app.include_router(presets.router)
    app.include_router(audit.router)
    app.include_router(audit.me_router)
    metrics.install(app, workers=health.known_workers)  # outermost: times every request
    contract.install(app)
    return app


app = create_app()
