"""The circuit breaker of one worker process.

A process whose environment is broken (its data, device, disk or database) ends every job it is
given in milliseconds; unchecked, it would drain the whole queue. So each job's outcome is scored:
a job that ended without finishing a single epoch (it failed, or it was given back to the queue
because the environment failed) is a strike; any finished epoch, success or cancel clears them.
After `breaker_failures` strikes in a row the process stops taking jobs: it waits
`worker_pause_seconds` (so healthy workers take the queue meanwhile), then exits, and Celery
replaces it with a fresh process that sets its environment up again.
"""

import logging
import os
import time

from core.settings import get_settings

log = logging.getLogger("labq.worker")

EXIT_CODE = 75  # EX_TEMPFAIL: the environment, not the job


class Breaker:
    def __init__(self, threshold: int | None = None):
        self.threshold = threshold or get_settings().breaker_failures
        self.strikes = 0

    def record(self, strike: bool) -> bool:
        """Score one job; True when the breaker opens."""
        self.strikes = self.strikes + 1 if strike else 0
        return self.strikes >= self.threshold


def stop_taking_jobs(reason: str) -> None:
    """Hold this process's pool slot for the pause, then exit so Celery starts a fresh one."""
    pause = get_settings().worker_pause_seconds
    log.error(
        "circuit breaker open: %s; this worker process takes no job for %.0f s, then exits "
        "and is replaced",
        reason,
        pause,
    )
    time.sleep(pause)
    logging.shutdown()
    os._exit(EXIT_CODE)
