"""create_app(): the FastAPI service. Run with `labq api` or `uvicorn api.main:app`."""

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from api import auth, errors
from api.routes import experiments, health
from api.dashboard import pages as dashboard
from api.routes import events
from api.routes import presets, sweeps
from core.settings import get_settings

log = logging.getLogger("labq.api")


class LimitBody:
    """413 for a declared body over the cap, before anything reads it (plain ASGI middleware:
    cheaper per request than @app.middleware("http"))."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length")
            if length and length.isdigit() and int(length) > self.max_bytes:
                response = JSONResponse({"detail": f"body larger than {self.max_bytes} bytes"},
                                        status_code=413)
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


def create_app() -> FastAPI:
    settings = get_settings()
    # /docs and /redoc with their assets served by labq itself: no CDN, works offline.
    app = FastAPIOffline(title="labq", version="0.1.0",
                         description="A job queue for Keras experiments on MNIST.")
    errors.install(app)
    auth.install(app, settings)

    app.add_middleware(LimitBody, max_bytes=settings.max_body_bytes)

    app.include_router(experiments.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.include_router(sweeps.router)
    app.include_router(presets.router)
    return app


app = create_app()
