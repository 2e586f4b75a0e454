"""The worker's Celery app: the shared configuration plus labq's tasks and process hooks.

Start with `labq worker` (or `celery -A worker.celery_app worker`). The main process never imports
TensorFlow: each pool child imports it, and loads MNIST, once in `worker_process_init`.
"""

import logging
import os
import threading

from celery.signals import worker_process_init, worker_ready, worker_shutdown

from core.queue import make_celery
from core.settings import get_settings

log = logging.getLogger("labq.worker")

app = make_celery()
# Importing TensorFlow and loading MNIST take several seconds in a fresh child.
app.conf.worker_proc_alive_timeout = 120
app.conf.include = ["worker.tasks"]

_stop = threading.Event()
# Held by the reaper thread for each pass, and by every fork of this process (the pool replacing a
# child that died): a child forked while the thread is inside SQLite would inherit that moment's
# library mutexes and file-lock bookkeeping, taken mid-operation, and could then wait forever on
# a lock nobody holds (seen as a replacement child that never claimed its job, or "database is
# locked" for over a minute). So a fork waits for the pass in progress, and a pass for the fork.
_reaping = threading.Lock()


@worker_process_init.connect
def _child_init(**_):
    """A child that cannot train must not take jobs: it exits (after a pause, so a lasting fault
    does not spin) and Celery starts another, instead of failing every job it is given."""
    from db.session import get_engine
    from worker import runtime
    from worker.breaker import stop_taking_jobs

    # A child forked after the parent's reaper used the database (one started to replace a child
    # that died) inherits the parent's pooled connections: on PostgreSQL two processes on one
    # socket garble each other's replies. Give the child a pool of its own, leaving the
    # parent's connections open for the parent.
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    try:
        runtime.warm_up()
    except runtime.WorkerEnvironmentError as exc:
        log.exception("worker process start failed")
        stop_taking_jobs(str(exc))


def _reaper_loop() -> None:
    from worker.reaper import reap

    interval = max(2.0, get_settings().lease_seconds / 4)
    while not _stop.wait(interval):
        try:
            with _reaping:
                reap()
        except Exception:  # the reaper must never take the worker down
            log.exception("reaper pass failed")


@worker_ready.connect
def _on_ready(**_):
    from worker.reaper import reap

    reap(requeue_queued=True)
    os.register_at_fork(
        before=_reaping.acquire,
        after_in_parent=_reaping.release,
        after_in_child=_reaping.release,  # the child's copy, locked at the fork
    )
    threading.Thread(target=_reaper_loop, name="labq-reaper", daemon=True).start()


@worker_shutdown.connect
def _on_shutdown(**_):
    _stop.set()
