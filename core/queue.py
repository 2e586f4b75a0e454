"""The Celery app's configuration, shared by the producer (API, CLI) and the worker.

The producer never imports the worker: it sends the task by name, with the experiment id only.
"""

from functools import lru_cache

from celery import Celery

from core.constants import QUEUE, TRAIN_TASK
from core.settings import get_settings


def make_celery() -> Celery:
    settings = get_settings()
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
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        # A send to a broker that is down should fail fast: the job stays queued in SQL and
        # is re-sent when a worker or `labq up` starts (see worker.tasks.requeue_orphans).
        broker_connection_timeout=3,
        broker_connection_max_retries=1,
    )
    return app


@lru_cache
def producer() -> Celery:
    return make_celery()


def enqueue(experiment_id: int) -> None:
    producer().send_task(TRAIN_TASK, args=[experiment_id], queue=QUEUE)
