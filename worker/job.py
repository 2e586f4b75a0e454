"""One job, start to finish: claim it, re-validate its spec, train, write every result to SQL.

The database is the source of truth: the job is claimed with a conditional UPDATE and a lease, each
epoch row is written as the epoch ends (so polls see live progress), and every write after the claim
is checked against our attempt number, so a copy of the job that lost its lease stops writing.
"""

import io
import logging
import os
import socket
import threading
import traceback

import numpy as np
from pydantic import ValidationError

from core.constants import CANCELLED, FAILED, SUCCEEDED
from core.settings import get_settings
from core.spec import ExperimentSpec
from db import repo
from db.session import session_scope

log = logging.getLogger("labq.job")

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """Another attempt took the job over; this copy must stop writing."""


class _LeaseKeeper(threading.Thread):
    """Renews the lease on a timer, so an epoch longer than the lease does not look like a death."""

    def __init__(self, experiment_id: int, attempt: int, lease_seconds: int):
        super().__init__(name="labq-lease", daemon=True)
        self.args = (experiment_id, attempt, lease_seconds)
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self):
        while not self.stopped.wait(self.args[2] / 3):
            try:
                with session_scope() as session:
                    if not repo.renew_lease(session, *self.args):
                        self.lost.set()
                        return
            except Exception:
                log.exception("lease renewal failed; will retry")


def run_job(experiment_id: int) -> str:
    settings = get_settings()
    with session_scope() as session:
        attempt = repo.claim(session, experiment_id, f"{WORKER_NAME}", settings.lease_seconds)
    if attempt is None:
        log.info("experiment %s is not claimable (finished, cancelled or leased); skipping",
                 experiment_id)
        return "skipped"

    keeper = _LeaseKeeper(experiment_id, attempt, settings.lease_seconds)
    keeper.start()
    try:
        return _train(experiment_id, attempt, keeper)
    except LeaseLost:
        log.warning("experiment %s attempt %s lost its lease; stopping", experiment_id, attempt)
        return "lease-lost"
    except Exception as exc:  # a failing job records why and leaves the worker healthy
        log.exception("experiment %s failed", experiment_id)
        summary = "".join(traceback.format_exception(exc)[-6:])
        with session_scope() as session:
            repo.finish(session, experiment_id, FAILED,
                        error=f"{type(exc).__name__}: {exc}"[:2000], traceback=summary[-8000:])
        return "failed"
    finally:
        keeper.stopped.set()
        _clear_session()


def _train(experiment_id: int, attempt: int, keeper: _LeaseKeeper) -> str:
    from worker import runtime
    from worker.engine.train import train

    with session_scope() as session:
        raw = repo.get(session, experiment_id).spec
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        with session_scope() as session:
            repo.finish(session, experiment_id, FAILED, error=f"stored spec is invalid: {exc}")
        return "failed"

    data, device = runtime.mnist(), runtime.device()

    def on_built(result) -> None:
        with session_scope() as session:
            repo.update_experiment(session, experiment_id, layers=result.layers,
                                   params=result.params, build_seconds=result.build_seconds,
                                   device=device)

    def on_epoch(report) -> bool:
        if keeper.lost.is_set():
            raise LeaseLost()
        with session_scope() as session:
            if not repo.renew_lease(session, experiment_id, attempt, get_settings().lease_seconds):
                raise LeaseLost()
            repo.record_epoch(session, experiment_id, attempt, {
                "epoch": report.epoch, "loss": report.loss, "accuracy": report.accuracy,
                "val_loss": report.val_loss, "val_accuracy": report.val_accuracy,
                "learning_rate": report.learning_rate, "seconds": report.seconds,
                "grad_norms": report.grad_norms,
            })
            return repo.cancel_requested(session, experiment_id)

    result = train(spec, data, on_epoch=on_epoch, on_built=on_built)

    status = CANCELLED if result.stopped == "cancelled" else SUCCEEDED
    buf = io.BytesIO()
    np.save(buf, result.first_kernel)
    with session_scope() as session:
        if not repo.renew_lease(session, experiment_id, attempt, get_settings().lease_seconds):
            raise LeaseLost()
        repo.put_artifact(session, experiment_id, "first_kernel.npy", "application/x-npy",
                          buf.getvalue())
        repo.finish(session, experiment_id, status, train_seconds=result.train_seconds,
                    test_loss=result.test_loss, test_accuracy=result.test_accuracy,
                    diverged=result.diverged,
                    error="training diverged (loss became NaN or infinite)" if result.diverged
                    else None)
    log.info("experiment %s %s (attempt %s)", experiment_id, status, attempt)
    return status


def _clear_session() -> None:
    import sys

    if "keras" in sys.modules:
        import keras

        keras.backend.clear_session()
