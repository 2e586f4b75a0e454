"""Fencing and the lease of one run of a job.

A run holds the job while it renews its lease under its attempt number. Every write of the run
goes through `fenced` in the same transaction, so a run that lost the job (another attempt took it
over after the lease lapsed, or the job was cancelled and retried) writes nothing more; attempt
numbers only grow, so no later run can share one. `db_write` retries a write with backoff while
the database is locked or away, for up to db_retry_seconds.
"""

import hashlib
import logging
import os
import socket
import threading
import time
from functools import cache
from pathlib import Path

from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from core.settings import get_settings
from db import repo
from db.session import session_scope

log = logging.getLogger("labq.job")


# --- who holds a lease: the worker name a claim records -----------------------------------------


@cache
def _namespace() -> str:
    """A short digest of this kernel's boot and this process's pid namespace ('' where the
    system does not say, as off Linux). Two containers on one machine share the boot but not the
    pid namespace; two machines share neither; so equal digests mean the same pids."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")  # e.g. "pid:[4026531836]"
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{pid_ns}".encode()).hexdigest()[:8]


def host_identity() -> str:
    """This host as a lease records it: `LABQ_WORKER_HOST` (default: the host name), then `~` and
    the namespace digest when there is one. Two workers share it only when they see the same
    processes under the same pids."""
    host = get_settings().worker_host or socket.gethostname()
    ns = _namespace()
    return f"{host}~{ns}" if ns else host


def worker_name() -> str:
    """`host~namespace:pid` of the process that trains (a pool child, not the Celery parent)."""
    return f"{host_identity()}:{os.getpid()}"


def local_pid(worker: str | None) -> int | None:
    """The pid of the lease holder when it is a process this one can see under that pid: the
    same host name and the same boot and pid namespace. None for any other host, for a name
    without a namespace digest (an older labq, or a system that gives none: those leases are
    left to run out), and for anything unparsable. So the reaper's "dead pid on this host" rule
    never looks up another host's pid here, where it may mean nothing or another process."""
    owner, _, pid = (worker or "").rpartition(":")
    if not pid.isdigit() or "~" not in owner or owner != host_identity():
        return None
    return int(pid)


class LeaseLost(Exception):
    """Another attempt took the job over; this copy must stop writing."""


def fenced(session, experiment_id: int, attempt: int) -> None:
    """Every write of a run goes through here first, in the same transaction: the job must still
    be running under our attempt number (which no later run can have, see repo.claim/retry)."""
    if not repo.renew_lease(session, experiment_id, attempt, get_settings().lease_seconds):
        raise LeaseLost()


def update_if_ours(session, experiment_id: int, attempt: int, **values) -> None:
    fenced(session, experiment_id, attempt)
    repo.update_experiment(session, experiment_id, **values)


def finish_if_ours(session, experiment_id: int, attempt: int, status: str, **values) -> None:
    fenced(session, experiment_id, attempt)
    repo.finish(session, experiment_id, status, **values)


def truncate_if_ours(session, experiment_id: int, attempt: int, after_epoch: int) -> None:
    fenced(session, experiment_id, attempt)
    repo.truncate_history(session, experiment_id, after_epoch)


def transient(exc: BaseException) -> bool:
    """Errors worth retrying: the database is locked, restarting or unreachable."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def db_write(fn, *args, **kwargs):
    """Run fn(session, ...) in its own transaction, retried with backoff on transient errors."""
    retrying = Retrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(get_settings().db_retry_seconds),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    for try_ in retrying:
        with try_:
            with session_scope() as session:
                return fn(session, *args, **kwargs)


class LeaseKeeper(threading.Thread):
    """Renews the lease on a timer, so an epoch longer than the lease does not look like a death,
    and polls the cancel flag, so a cancel is seen inside a long epoch."""

    def __init__(self, experiment_id: int, attempt: int, lease_seconds: int, poll: float):
        super().__init__(name="labq-lease", daemon=True)
        self.args = (experiment_id, attempt, lease_seconds)
        self.poll = min(poll, lease_seconds / 3)
        self.stopped = threading.Event()
        self.lost = threading.Event()
        self.cancel = threading.Event()
        self.deadline: float | None = None  # time.monotonic() at which the job's time is up
        self.epochs = 0  # epochs this run recorded

    def run(self):
        experiment_id, attempt, lease_seconds = self.args
        renewed = time.monotonic()
        while not self.stopped.wait(self.poll):
            try:
                with session_scope() as session:
                    if repo.cancel_requested(session, experiment_id):
                        self.cancel.set()
                    if time.monotonic() - renewed >= lease_seconds / 3:
                        if not repo.renew_lease(session, *self.args):
                            self.lost.set()
                            return
                        renewed = time.monotonic()
            except Exception as exc:
                log.warning(
                    "lease renewal / cancel poll failed (%s); will retry", type(exc).__name__
                )

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        return self.cancel.is_set() or self.lost.is_set() or self.timed_out
