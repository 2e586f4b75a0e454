"""One job, start to finish: claim it, re-validate its spec, train, write every result to SQL.

The database is the source of truth: the job is claimed with a conditional UPDATE and a lease, each
epoch row is written as the epoch ends (so polls see live progress) together with a checkpoint, and
every write after the claim is checked against our attempt number, so a copy of the job that lost
its lease stops writing. An attempt that takes over a job whose worker died resumes from the
checkpoint of the last finished epoch. Database writes are retried with backoff (db_retry_seconds),
so a database that is locked or away for a few seconds does not leave the job stuck.
"""

import io
import logging
import os
import socket
import threading
import time
import traceback

import numpy as np
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from core.constants import CANCELLED, FAILED, SUCCEEDED
from core.queue import mark_consumed, time_limits
from core.settings import get_settings
from core.spec import ExperimentSpec, estimate_flops
from db import repo
from db.session import session_scope
from worker import checkpoint as ckpt
from worker import testhooks

log = logging.getLogger("labq.job")


def worker_name() -> str:
    """`host:pid` of the process that trains (a pool child, not the Celery parent): the reaper
    expires at once the lease of a job whose process on this host is gone."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseLost(Exception):
    """Another attempt took the job over; this copy must stop writing."""


def _transient(exc: BaseException) -> bool:
    """Errors worth retrying: the database is locked, restarting or unreachable."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def db_write(fn, *args, **kwargs):
    """Run fn(session, ...) in its own transaction, retried with backoff on transient errors."""
    retrying = Retrying(
        retry=retry_if_exception(_transient),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(get_settings().db_retry_seconds),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    for try_ in retrying:
        with try_:
            with session_scope() as session:
                return fn(session, *args, **kwargs)


class _LeaseKeeper(threading.Thread):
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


def run_job(experiment_id: int) -> str:
    settings = get_settings()
    attempt = db_write(repo.claim, experiment_id, worker_name(), settings.lease_seconds)
    if attempt is None:
        log.info(
            "experiment %s is not claimable (finished, cancelled or leased); skipping",
            experiment_id,
        )
        return "skipped"
    mark_consumed(experiment_id)

    keeper = _LeaseKeeper(
        experiment_id, attempt, settings.lease_seconds, settings.cancel_poll_seconds
    )
    keeper.start()
    try:
        return _train(experiment_id, attempt, keeper)
    except LeaseLost:
        log.warning("experiment %s attempt %s lost its lease; stopping", experiment_id, attempt)
        return "lease-lost"
    except Exception as exc:  # a failing job records why and leaves the worker healthy
        log.exception("experiment %s failed", experiment_id)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        summary = "".join(traceback.format_exception(exc)[-6:])
        try:
            db_write(
                _finish_if_ours,
                experiment_id,
                attempt,
                FAILED,
                error=error,
                traceback=summary[-8000:],
            )
        except Exception:
            # The lease runs out and the reaper sends the job again: it is not stuck.
            log.exception("experiment %s: could not record the failure", experiment_id)
        return "failed"
    finally:
        keeper.stopped.set()
        _clear_session()


def _finish_if_ours(session, experiment_id: int, attempt: int, status: str, **values) -> None:
    if not repo.renew_lease(session, experiment_id, attempt, get_settings().lease_seconds):
        raise LeaseLost()
    repo.finish(session, experiment_id, status, **values)


class _CheckpointPacer:
    """Decides at each epoch end whether to save a checkpoint, so that saving costs at most
    `budget` of the training time: an epoch much longer than a save (the usual case) is saved
    every time; epochs of a fraction of a second, on a large model, every few epochs. The first
    epoch is always saved. A resume restarts after the last saved epoch; epochs trained after it
    are trained again and their rows replaced, so the history still holds each epoch once."""

    def __init__(self, budget: float):
        self.budget = budget
        self.cost = 0.0  # seconds the last save took (serialize + write)
        self.since = time.perf_counter()  # end of the last save
        self.pending: bytes | None = None
        self._serialize = 0.0

    def offer(self, model, epochs) -> None:
        self.pending = None
        first = len(epochs) == 1 or self.cost == 0.0
        due = (time.perf_counter() - self.since) * self.budget >= self.cost
        if first or due or self.budget >= 1:
            t0 = time.perf_counter()
            self.pending = ckpt.dumps(model, epochs)
            self._serialize = time.perf_counter() - t0

    def written(self, seconds: float) -> None:
        """`pending` was committed, in `seconds`."""
        self.cost = self._serialize + seconds
        self.since = time.perf_counter()


def _truncate_if_ours(session, experiment_id: int, attempt: int, after_epoch: int) -> None:
    if not repo.renew_lease(session, experiment_id, attempt, get_settings().lease_seconds):
        raise LeaseLost()
    repo.truncate_history(session, experiment_id, after_epoch)


def _load_checkpoint(session, experiment_id: int):
    art = repo.get_artifact(session, experiment_id, repo.CHECKPOINT)
    return art.data if art is not None else None


def _train(experiment_id: int, attempt: int, keeper: _LeaseKeeper) -> str:
    from worker import runtime
    from worker.engine.train import train

    raw = db_write(lambda s: repo.get(s, experiment_id).spec)
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        db_write(
            _finish_if_ours, experiment_id, attempt, FAILED, error=f"stored spec is invalid: {exc}"
        )
        return "failed"

    resume = None
    saved = db_write(_load_checkpoint, experiment_id) if attempt > 1 else None
    if saved is not None:
        try:
            resume = ckpt.loads(saved)
            log.info(
                "experiment %s attempt %s resumes after epoch %s",
                experiment_id,
                attempt,
                resume.epoch,
            )
        except (ValueError, KeyError) as exc:
            log.warning(
                "experiment %s: unreadable checkpoint (%s); starting over", experiment_id, exc
            )

    if attempt > 1:
        db_write(_truncate_if_ours, experiment_id, attempt, resume.epoch if resume else 0)

    settings = get_settings()
    soft_limit, _ = time_limits(estimate_flops(spec), settings)
    keeper.deadline = time.monotonic() + soft_limit
    data, device = runtime.mnist(), runtime.device()
    hooks = testhooks.for_job(
        spec.name, experiment_id, settings.data_dir, resume.epoch + 1 if resume else 1
    )
    saver = _CheckpointPacer(settings.checkpoint_budget)

    def on_built(result) -> None:
        db_write(
            repo.update_experiment,
            experiment_id,
            layers=result.layers,
            params=result.params,
            build_seconds=result.build_seconds,
            device=device,
        )

    def on_checkpoint(model, epochs) -> None:
        saver.offer(model, epochs)

    def write_epoch(session, report) -> bool:
        if not repo.renew_lease(session, experiment_id, attempt, settings.lease_seconds):
            raise LeaseLost()
        repo.record_epoch(
            session,
            experiment_id,
            attempt,
            {
                "epoch": report.epoch,
                "loss": report.loss,
                "accuracy": report.accuracy,
                "val_loss": report.val_loss,
                "val_accuracy": report.val_accuracy,
                "learning_rate": report.learning_rate,
                "seconds": report.seconds,
                "grad_norms": report.grad_norms,
            },
        )
        if saver.pending is not None:
            repo.put_artifact(
                session,
                experiment_id,
                repo.CHECKPOINT,
                "application/x-labq-checkpoint",
                saver.pending,
            )
        return repo.cancel_requested(session, experiment_id)

    def on_epoch(report) -> bool:
        if keeper.lost.is_set():
            raise LeaseLost()
        t0 = time.perf_counter()
        cancel = db_write(write_epoch, report)
        if saver.pending is not None:
            saver.written(time.perf_counter() - t0)
        return cancel

    result = train(
        spec,
        data,
        on_epoch=hooks.on_epoch(on_epoch),
        on_built=on_built,
        resume=resume,
        checkpoint=on_checkpoint,
        should_stop=hooks.should_stop(keeper.should_stop),
        check_every=settings.cancel_check_batches,
    )
    if keeper.lost.is_set():
        raise LeaseLost()
    if keeper.timed_out and not keeper.cancel.is_set():
        db_write(
            _finish_if_ours,
            experiment_id,
            attempt,
            FAILED,
            train_seconds=result.train_seconds,
            error=f"time limit of {soft_limit} s exceeded (from the spec's estimated cost "
            f"{estimate_flops(spec):.3g} FLOP; see LABQ_JOB_FLOPS_PER_SECOND)",
        )
        return "failed"

    status = CANCELLED if result.stopped == "cancelled" else SUCCEEDED
    buf = io.BytesIO()
    np.save(buf, result.first_kernel)

    def write_result(session) -> None:
        repo.put_artifact(
            session, experiment_id, "first_kernel.npy", "application/x-npy", buf.getvalue()
        )
        _finish_if_ours(
            session,
            experiment_id,
            attempt,
            status,
            train_seconds=result.train_seconds,
            test_loss=result.test_loss,
            test_accuracy=result.test_accuracy,
            diverged=result.diverged,
            error="training diverged (loss became NaN or infinite)" if result.diverged else None,
        )

    db_write(write_result)
    log.info("experiment %s %s (attempt %s)", experiment_id, status, attempt)
    return status


def _clear_session() -> None:
    import sys

    if "keras" in sys.modules:
        import keras

        # No gc.collect() here (free_memory=False): it takes ~0.5 s, during which the next queued
        # job would wait; Python's collector and worker_max_tasks_per_child reclaim the memory.
        keras.backend.clear_session(free_memory=False)
