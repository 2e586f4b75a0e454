"""Fault-injection hooks for the test suite, kept out of the training path.

Each hook does nothing unless its environment variable names the job (by experiment name; a
comma-separated list names several):

- `LABQ_TEST_CRASH_ON_EPOCH="<name>:<epoch>"`: the worker process SIGKILLs itself when that epoch
  ends, before recording it, as the kernel's OOM killer would.
- `LABQ_TEST_HOLD_IN_EPOCH="<name>:<epoch>"`: inside that epoch, at its first stop check (after
  the first run of batches), the worker writes `<data_dir>/holds/<experiment id>.held` holding
  its pid, then waits until `<experiment id>.release` exists or a stop is requested (cancel, lease
  lost, time limit). It holds once per experiment: another attempt of the same job passes.
  A test thus finds the job at a known point, whatever the machine's speed.

`for_job` returns `Hooks` that wrap the job's epoch callback and stop check; with no variable
set, the wrappers return the callbacks unchanged.
"""

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("labq.testhooks")

CRASH_ENV = "LABQ_TEST_CRASH_ON_EPOCH"
HOLD_ENV = "LABQ_TEST_HOLD_IN_EPOCH"
HOLD_POLL_SECONDS = 0.05


def _target_epoch(env: str, name: str) -> int | None:
    for item in os.environ.get(env, "").split(","):
        target, _, epoch = item.strip().rpartition(":")
        if target and target == name and epoch.isdigit():
            return int(epoch)
    return None


def hold_paths(data_dir: Path, experiment_id: int) -> tuple[Path, Path]:
    """(held, release) marker files of one experiment."""
    d = data_dir / "holds"
    return d / f"{experiment_id}.held", d / f"{experiment_id}.release"


class Hooks:
    def __init__(self, name: str, experiment_id: int, data_dir: Path, first_epoch: int = 1) -> None:
        self.experiment_id = experiment_id
        self.data_dir = data_dir
        self.crash_epoch = _target_epoch(CRASH_ENV, name)
        self.hold_epoch = _target_epoch(HOLD_ENV, name)
        self.epoch = first_epoch  # the epoch being trained

    def on_epoch(self, fn: Callable) -> Callable:
        if self.crash_epoch is None and self.hold_epoch is None:
            return fn

        def wrapped(report):
            if self.crash_epoch == report.epoch:
                log.warning("%s: killing this worker process at epoch %s", CRASH_ENV, report.epoch)
                os.kill(os.getpid(), signal.SIGKILL)
            self.epoch = report.epoch + 1
            return fn(report)

        return wrapped

    def should_stop(self, fn: Callable[[], bool]) -> Callable[[], bool]:
        if self.hold_epoch is None:
            return fn

        def wrapped() -> bool:
            if self.epoch == self.hold_epoch:
                self._hold(fn)
            return fn()

        return wrapped

    def _hold(self, stop: Callable[[], bool]) -> None:
        held, release = hold_paths(self.data_dir, self.experiment_id)
        held.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(held, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return  # held once already (an earlier attempt)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        log.warning("%s: experiment %s held in epoch %s", HOLD_ENV, self.experiment_id, self.epoch)
        while not release.exists() and not stop():
            time.sleep(HOLD_POLL_SECONDS)


def for_job(name: str, experiment_id: int, data_dir: Path, first_epoch: int = 1) -> Hooks:
    return Hooks(name, experiment_id, data_dir, first_epoch)
