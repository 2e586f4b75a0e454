"""Puts orphaned jobs back on the queue: queued rows the broker may have lost, and running rows whose
worker stopped renewing its lease. A job that keeps losing its worker fails after `max_attempts`.

Every worker runs a pass every lease/4 seconds, and one at start (`requeue_queued=True`). A job is
re-sent only when no message for it is known to be in the broker (core.queue.unsent), so passes do
not flood the queue with copies; a worker start re-sends every queued job once, because a message
prefetched by a worker that died sits invisible in Redis until its visibility timeout. A job whose
lease expired was interrupted: it is sent at the resumed priority (core.queue.RESUMED_PRIORITY),
ahead of the jobs queued after it, so it keeps its place.
"""

import logging
import os
from datetime import timedelta

import redis
from sqlalchemy import update

from core.constants import FAILED, RUNNING
from core.queue import enqueue, spec_flops, unsent
from core.settings import get_settings
from db import repo, searches
from db.models import Experiment, utcnow
from db.session import rowcount, session_scope
from worker.lease import local_pid

log = logging.getLogger("labq.reaper")

QUEUED_GRACE_SECONDS = 5  # a fresh submission is being sent by the API; leave it alone


def reap(requeue_queued: bool = False) -> list[int]:
    settings = get_settings()
    candidates: list[int] = []
    asked: list[int] = []
    with session_scope() as session:
        _expire_dead_local(session)
        for exp_id in repo.expired_leases(session):
            exp = repo.get(session, exp_id)
            lost = exp.attempt - exp.retry_base  # attempts since the job was submitted or retried
            if lost >= settings.max_attempts:
                repo.finish(
                    session,
                    exp_id,
                    FAILED,
                    error=(
                        f"worker lost {lost} times (attempt cap {settings.max_attempts}); "
                        "the job may be killing its worker (out of memory?)"
                    ),
                )
                log.warning("experiment %s failed after %s lost attempts", exp_id, lost)
                if exp.search_id is not None:  # its search asks for the trials that follow
                    asked += searches.top_up(session, exp.search_id)
            else:
                candidates.append(exp_id)
        if requeue_queued:
            queued = repo.queued_ids(session)
        else:
            queued = repo.queued_ids(session, older_than=QUEUED_GRACE_SECONDS)
        queued = [i for i in queued if i not in candidates] + asked
    try:  # the database part above is committed even when Redis is away
        resumed = unsent(candidates)
        fresh = queued if requeue_queued else unsent(queued)
    except redis.RedisError as exc:
        log.warning("broker unavailable, nothing re-sent this pass: %s", exc)
        return []
    requeue = resumed + fresh
    with session_scope() as session:
        flops = {i: spec_flops(repo.get(session, i).spec) for i in requeue}
    # Interrupted jobs first and ahead of the queue (they keep their place); then the queued ones,
    # oldest first.
    for exp_id in requeue:
        enqueue(exp_id, flops[exp_id], resumed=exp_id in resumed)
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
    to run out: expire it now. "This host" is the lease's whole host identity (name, boot and pid
    namespace: worker.lease.local_pid), never the host name alone: a worker in another container
    or on another machine of the same name may run under a pid that is free here."""
    for exp in repo.running(session):
        pid = local_pid(exp.worker)
        if pid is None or _pid_alive(pid):
            continue
        # Only the run we saw: a claim that took the job over since (a new worker and attempt,
        # a fresh lease) must keep its lease.
        expired = session.execute(
            update(Experiment)
            .where(
                Experiment.id == exp.id,
                Experiment.status == RUNNING,
                Experiment.attempt == exp.attempt,
                Experiment.worker == exp.worker,
            )
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        if rowcount(expired):
            log.warning("experiment %s: its worker process %s is gone; lease expired", exp.id, pid)
