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
  Naming a job n times holds it n times, one run each: the k-th hold (k >= 2) comes in the k-th
  listed epoch, in a run that has not held yet, with markers `<experiment id>.<k>.held` and
  `.<k>.release` (e.g. "fenced:3,fenced:3": the first run held in epoch 3, then the run that
  takes the job over held in epoch 3 too).

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


def _target_epochs(env: str, name: str) -> list[int]:
    epochs = []
    for item in os.environ.get(env, "").split(","):
        target, _, epoch = item.strip().rpartition(":")
        if target and target == name and epoch.isdigit():
            epochs.append(int(epoch))
    return epochs


def _target_epoch(env: str, name: str) -> int | None:
    epochs = _target_epochs(env, name)
    return epochs[0] if epochs else None


def hold_paths(data_dir: Path, experiment_id: int, n: int = 1) -> tuple[Path, Path]:
    """(held, release) marker files of the n-th hold of one experiment."""
    d = data_dir / "holds"
    stem = f"{experiment_id}" if n == 1 else f"{experiment_id}.{n}"
    return d / f"{stem}.held", d / f"{stem}.release"


class Hooks:
    def __init__(self, name: str, experiment_id: int, data_dir: Path, first_epoch: int = 1) -> None:
        self.experiment_id = experiment_id
        self.data_dir = data_dir
        self.crash_epoch = _target_epoch(CRASH_ENV, name)
        self.hold_epochs = _target_epochs(HOLD_ENV, name)
        self.hold_epoch = self.hold_epochs[0] if self.hold_epochs else None
        self.held = False  # this run held once already
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
            for n, epoch in enumerate(self.hold_epochs, start=1):
                if self.held:
                    break
                if self.epoch == epoch:
                    self.held = self._hold(fn, n)
            return fn()

        return wrapped

    def _hold(self, stop: Callable[[], bool], n: int) -> bool:
        """Hold here as the n-th hold of the experiment; False when that hold was taken already
        (by an earlier attempt)."""
        held, release = hold_paths(self.data_dir, self.experiment_id, n)
        held.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(held, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        log.warning(
            "%s: experiment %s held in epoch %s (hold %s)",
            HOLD_ENV,
            self.experiment_id,
            self.epoch,
            n,
        )
        while not release.exists() and not stop():
            time.sleep(HOLD_POLL_SECONDS)
        return True


def for_job(name: str, experiment_id: int, data_dir: Path, first_epoch: int = 1) -> Hooks:
    return Hooks(name, experiment_id, data_dir, first_epoch)
