"""create_app(): the FastAPI service. Run with `labq api` or `uvicorn api.main:app`."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from api import auth, errors
from api.routes import experiments, health
from api.dashboard import pages as dashboard
from api.routes import events
from api.routes import presets, sweeps
from core.settings import get_settings

log = logging.getLogger("labq.api")


def create_app() -> FastAPI:
    settings = get_settings()
    # /docs and /redoc with their assets served by labq itself: no CDN, works offline.
    app = FastAPIOffline(title="labq", version="0.1.0",
                         description="A job queue for Keras experiments on MNIST.")
    errors.install(app)
    auth.install(app, settings)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse({"detail": f"body larger than {settings.max_body_bytes} bytes"},
                                status_code=413)
        return await call_next(request)

    app.include_router(experiments.router)
    app.include_router(health.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)
    dashboard.mount_static(app)
    app.include_router(sweeps.router)
    app.include_router(presets.router)
    return app


app = create_app()
