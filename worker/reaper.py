"""Puts orphaned jobs back on the queue: queued rows the broker may have lost, and running rows whose
worker stopped renewing its lease. A job that keeps losing its worker fails after `max_attempts`."""

import logging
import os
import socket
from datetime import timedelta

from core.constants import FAILED
from core.queue import enqueue
from core.settings import get_settings
from db import repo
from db.models import utcnow
from db.session import session_scope

log = logging.getLogger("labq.reaper")


def reap(requeue_queued: bool = False) -> list[int]:
    settings = get_settings()
    requeue: list[int] = []
    with session_scope() as session:
        _expire_dead_local(session)
        for exp_id in repo.expired_leases(session):
            exp = repo.get(session, exp_id)
            if exp.attempt >= settings.max_attempts:
                repo.finish(session, exp_id, FAILED, error=(
                    f"worker lost {exp.attempt} times (attempt cap {settings.max_attempts}); "
                    "the job may be killing its worker (out of memory?)"))
                log.warning("experiment %s failed after %s lost attempts", exp_id, exp.attempt)
            else:
                requeue.append(exp_id)
        if requeue_queued:
            requeue.extend(repo.queued_ids(session))
    for exp_id in requeue:
        enqueue(exp_id)
    if requeue:
        log.info("re-sent %d job(s) to the broker: %s", len(requeue), requeue)
    return requeue


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _expire_dead_local(session) -> None:
    """A job leased by a process of this host that no longer exists need not wait for its lease
    to run out: expire it now (worker names are `host:pid`)."""
    host = socket.gethostname()
    for exp in repo.running(session):
        owner_host, _, pid = (exp.worker or "").rpartition(":")
        if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
            log.warning("experiment %s: its worker process %s is gone; lease expired", exp.id, pid)
            repo.update_experiment(session, exp.id,
                                   lease_expires_at=utcnow() - timedelta(seconds=1))
