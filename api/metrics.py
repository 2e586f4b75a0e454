"""GET /metrics: labq in Prometheus's text format (prometheus-client).

The job figures are read from the database at each scrape. It is the source of truth for every job
on every host, so one scrape of the API covers every worker, and a restart of the API loses no
count. Histograms of job, epoch and pickup times are counted over the stored rows, by SQL. HTTP
request latency (time to the first byte of the answer, so event streams count too) is measured by
a middleware here, per route template. The endpoint is guarded like every other one: open on
loopback, a token beyond it (api/auth.py).
"""

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import SQLColumnExpression, case, func, select
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.constants import QUEUED, RUNNING, STATUSES
from db.models import EpochRow, Experiment
from db.session import session_scope

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
EPOCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
PICKUP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

router = APIRouter(tags=["metrics"])


def _seconds_between(
    session: Session, start: SQLColumnExpression[Any], end: SQLColumnExpression[Any]
) -> SQLColumnExpression[Any]:
    """end - start in seconds, in the database's own dialect (both columns are naive UTC)."""
    if session.get_bind().dialect.name == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * 86400.0
    return func.extract("epoch", end - start)


def _histogram(
    session: Session,
    name: str,
    doc: str,
    value: SQLColumnExpression[Any],
    buckets: tuple[float, ...],
    *where: SQLColumnExpression[bool],
) -> HistogramMetricFamily:
    """Bucket counts of `value` over the rows that match `where`, in one query."""
    counts = [func.sum(case((value <= b, 1), else_=0)) for b in buckets]
    row = session.execute(select(func.count(), func.sum(value), *counts).where(*where)).one()
    total, total_sum, *cumulative = row
    pairs = [(str(float(b)), int(c or 0)) for b, c in zip(buckets, cumulative, strict=True)]
    pairs.append(("+Inf", int(total or 0)))
    return HistogramMetricFamily(name, doc, buckets=pairs, sum_value=float(total_sum or 0))


class JobCollector(Collector):
    """The queue as the database has it, read at scrape time."""

    def __init__(self, workers: Callable[[], list[str]]) -> None:
        self.workers = workers  # the workers that answered the last ping (api.routes.health)

    def collect(self) -> Iterator[Any]:
        with session_scope() as session:
            by_status = dict(
                session.execute(
                    select(Experiment.status, func.count()).group_by(Experiment.status)
                ).all()
            )
            oldest = session.execute(
                select(func.min(Experiment.created_at)).where(Experiment.status == QUEUED)
            ).scalar()
            per_worker = session.execute(
                select(Experiment.worker, func.count())
                .where(Experiment.status == RUNNING)
                .group_by(Experiment.worker)
            ).all()
            pickup = _seconds_between(session, Experiment.created_at, Experiment.started_at)
            histograms = [
                _histogram(
                    session,
                    "labq_job_train_seconds",
                    "Training time of finished jobs (their last attempt).",
                    Experiment.train_seconds,
                    JOB_BUCKETS,
                    Experiment.train_seconds.is_not(None),
                ),
                _histogram(
                    session,
                    "labq_epoch_seconds",
                    "Duration of each stored epoch.",
                    EpochRow.seconds,
                    EPOCH_BUCKETS,
                    EpochRow.seconds.is_not(None),
                ),
                _histogram(
                    session,
                    "labq_pickup_seconds",
                    "From submission to the start of training, for every started job.",
                    pickup,
                    PICKUP_BUCKETS,
                    Experiment.started_at.is_not(None),
                ),
            ]
        jobs = GaugeMetricFamily("labq_jobs", "Jobs by status.", labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], by_status.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "labq_queue_depth", "Jobs waiting for a worker.", value=by_status.get(QUEUED, 0)
        )
        age = (datetime.now(UTC) - oldest.replace(tzinfo=UTC)).total_seconds() if oldest else 0
        yield GaugeMetricFamily(
            "labq_queue_oldest_age_seconds", "Age of the oldest queued job (0: none).", value=age
        )
        running = GaugeMetricFamily(
            "labq_running_jobs",
            "Running jobs per worker process (host~namespace:pid).",
            labels=["worker"],
        )
        for worker, n in per_worker:
            running.add_metric([worker or "unknown"], n)
        yield running
        yield from histograms
        up = GaugeMetricFamily(
            "labq_worker_up", "Workers that answered the last ping (Celery node).", labels=["node"]
        )
        for node in self.workers():
            up.add_metric([node], 1)
        yield up


class MeasureLatency:
    """HTTP request latency per route template (`/experiments/{experiment_id}`), method and
    status, from the request's arrival to the start of its answer."""

    def __init__(self, app: ASGIApp, histogram: Histogram):
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                self.histogram.labels(
                    getattr(route, "path", "unmatched"), scope["method"], message["status"]
                ).observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, timed_send)


def install(app: FastAPI, workers: Callable[[], list[str]]) -> None:
    """A registry per app (tests build several), the latency middleware and the route."""
    registry = CollectorRegistry()
    registry.register(JobCollector(workers))
    latency = Histogram(
        "labq_http_request_seconds",
        "HTTP request latency (to the first byte of the answer).",
        ["route", "method", "status"],
        buckets=HTTP_BUCKETS,
        registry=registry,
    )
    app.state.metrics_registry = registry
    app.add_middleware(MeasureLatency, histogram=latency)
    app.include_router(router)


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
