"""The Celery app's configuration, shared by the producer (API, CLI) and the worker.

The producer never imports the worker: it sends the task by name, with the experiment id only.

Delivery is at-least-once and the database decides who trains (see db.repo.claim), so a duplicate
message is harmless; `enqueue` still bounds duplicates with a marker key per sent job
(`labq:sent:<id>`), which lives in the same Redis as the message: if Redis loses the message it
loses the marker too, and the reaper sends the job again.
"""

import logging
from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from core.constants import QUEUE, TRAIN_TASK
from core.settings import Settings, get_settings
from core.spec import ExperimentSpec, estimate_flops

log = logging.getLogger("labq.queue")

SENT_KEY = "labq:sent:{}"
# A send to a broker that is down fails within about a second: the job stays queued in SQL.
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
# A send to a broker that is up but does not answer (stopped, swapping, stuck on its disk) gives
# up after this many seconds per try, instead of holding the HTTP request forever.
PUBLISH_SOCKET_TIMEOUT = 3

# Redis delivers priority 0 first, then 3, 6, 9 (kombu's priority steps), oldest first within
# one. New jobs go at NEW_PRIORITY; a job that was interrupted (its worker died or the stack was
# stopped) is re-sent at RESUMED_PRIORITY, so it resumes before the jobs queued after it instead
# of behind every one of them.
RESUMED_PRIORITY = 0
NEW_PRIORITY = 6


def make_celery(producer_only: bool = False) -> Celery:
    """The worker reconnects to a Redis that went away, or that refuses commands for a while
    (MISCONF: it cannot write its append-only file), for as long as it takes; a producer (the
    API) gives up at once, because it must answer its HTTP request."""
    settings = get_settings()
    if not producer_only and settings.visibility_timeout <= time_limits(None, settings)[1]:
        log.warning(
            "LABQ_VISIBILITY_TIMEOUT (%s s) is not longer than the longest job's hard time "
            "limit: Redis will hand long jobs to a second worker, which will find the "
            "lease and leave (harmless, but wasteful)",
            settings.visibility_timeout,
        )
    app = Celery("labq", broker=settings.broker_url)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=settings.max_jobs_per_child,
        worker_max_memory_per_child=settings.max_child_memory_mb * 1024 or None,  # KiB
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Task events (sent, received, started, succeeded, failed) for Flower and `celery events`.
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=1 if producer_only else None,
        broker_connection_timeout=3,
        broker_channel_error_retry=not producer_only,
        broker_transport_options=_transport_options(settings, producer_only),
        task_publish_retry=True,
        task_publish_retry_policy=PUBLISH_RETRY,
        # The hard limit for a message sent without its job's cost; see time_limits().
        task_time_limit=time_limits(None, settings)[1],
    )
    return app


def _transport_options(settings: Settings, producer_only: bool = False) -> dict[str, int]:
    """Redis redelivers an unacknowledged message after `visibility_timeout`; kombu sweeps for such
    messages every interval x throttle seconds (100 s by default), sooner for short timeouts.
    A producer's commands time out (a consumer's blocking pop must not)."""
    vt = settings.visibility_timeout
    options = {
        "visibility_timeout": vt,
        "socket_connect_timeout": 3,
        "unacked_restore_interval": max(1, min(10, vt // 4)),
        "unacked_restore_throttle": 1 if vt < 600 else 10,
    }
    if producer_only:
        options["socket_timeout"] = PUBLISH_SOCKET_TIMEOUT
    return options


@lru_cache
def producer() -> Celery:
    return make_celery(producer_only=True)


@lru_cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(
        get_settings().broker_url, socket_timeout=3, socket_connect_timeout=3
    )


def time_limits(flops: float | None, settings: Settings | None = None) -> tuple[int, int]:
    """(soft, hard) seconds for a job of `flops` estimated operations (None: the maximum).

    The worker enforces the soft limit itself (it stops training and fails the job, keeping its
    history); the hard limit travels with the message and has Celery kill a child that is stuck."""
    s = settings or get_settings()
    if flops is None:
        soft = s.max_time_limit
    else:
        estimate = flops / s.job_flops_per_second * s.time_limit_factor
        soft = int(min(max(estimate, s.min_time_limit), s.max_time_limit))
    return soft, int(soft * 1.1) + 30


def spec_flops(raw: dict[str, Any]) -> float | None:
    """A stored spec's estimated cost, for its time limits (None: it no longer validates, and
    the maximum limit applies). The API and the reaper send every job with this."""
    try:
        return estimate_flops(ExperimentSpec.model_validate(raw))
    except ValueError:
        return None


def enqueue(experiment_id: int, flops: float | None = None, resumed: bool = False) -> None:
    """Send a wake-up for one job; `resumed`: an interrupted job, sent ahead of the queued ones.
    Raises when the broker is down or does not answer within PUBLISH_SOCKET_TIMEOUT (per try).

    The worker that takes the message starts the best-ranked job in the database, not
    necessarily this one (db/scheduling.py), so every message carries the hard limit of the
    costliest job (time_limits(None)); `flops` is no longer used for it, and the worker still
    enforces the started job's own soft limit from its cost."""
    settings = get_settings()
    del flops
    _, hard = time_limits(None, settings)
    producer().send_task(
        TRAIN_TASK,
        args=[experiment_id],
        queue=QUEUE,
        time_limit=hard,
        priority=RESUMED_PRIORITY if resumed else NEW_PRIORITY,
        retry=True,
        retry_policy=PUBLISH_RETRY,
    )
    try:
        _redis().set(SENT_KEY.format(experiment_id), 1, ex=max(settings.visibility_timeout, 60))
    except redis.RedisError:
        pass  # without the marker the reaper may send it once more: harmless


def queued_messages(client: redis.Redis) -> int:
    """Messages waiting in labq's queue, over all its priority lists (for tests and tools)."""
    keys = [QUEUE] + [f"{QUEUE}\x06\x16{p}" for p in (3, 6, 9)]
    return sum(client.llen(k) for k in keys)


def unsent(experiment_ids: list[int]) -> list[int]:
    """The ids among `experiment_ids` with no message known to be in the broker."""
    if not experiment_ids:
        return []
    pipe = _redis().pipeline(transaction=False)
    for exp_id in experiment_ids:
        pipe.exists(SENT_KEY.format(exp_id))
    return [i for i, present in zip(experiment_ids, pipe.execute(), strict=False) if not present]


def mark_consumed(experiment_id: int) -> None:
    """The worker took the job's message: a later re-send (after a lost lease) is needed."""
    try:
        _redis().delete(SENT_KEY.format(experiment_id))
    except redis.RedisError:
        pass
