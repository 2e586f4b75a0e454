"""One job, start to finish: claim it, re-validate its spec, train, write every result to SQL.

The database is the source of truth: the job is claimed with a conditional UPDATE and a lease, each
epoch row is written as the epoch ends (so polls see live progress) together with a checkpoint, and
every write after the claim is checked against our attempt number, so a copy of the job that lost
its lease stops writing. An attempt that takes over a job whose worker died resumes from the
checkpoint of the last finished epoch. Database writes are retried with backoff (db_retry_seconds),
so a database that is locked or away for a few seconds does not leave the job stuck.

A failure of the worker's environment (no data or device, a disk that refuses writes, a database
away for longer than that) is not the job's failure: the job goes back to the queue, or, when the
database is what failed, its lease lapses and the reaper requeues it. A process that ends job
after job without training an epoch stops taking jobs (worker.breaker).
"""

import contextlib
import io
import logging
import time
import traceback

import numpy as np
from pydantic import ValidationError

from core.constants import CANCELLED, FAILED, PRUNED, QUEUED, SUCCEEDED
from core.queue import enqueue, mark_consumed, spec_flops, time_limits
from core.settings import get_settings
from core.spec import ExperimentSpec, estimate_flops
from db import model_artifacts, repo, searches
from worker import checkpoint as ckpt
from worker import testhooks
from worker.breaker import Breaker, stop_taking_jobs
from worker.lease import (
    LeaseKeeper,
    LeaseLost,
    db_write,
    fenced,
    finish_if_ours,
    transient,
    truncate_if_ours,
    update_if_ours,
    worker_name,
)
from worker.runtime import WorkerEnvironmentError

log = logging.getLogger("labq.job")


_breaker: Breaker | None = None


def run_job(experiment_id: int) -> str:
    global _breaker
    _breaker = _breaker or Breaker()
    outcome, keeper = _run(experiment_id)
    if outcome in ("skipped", "lease-lost"):
        return outcome
    strike = outcome in ("failed", "requeued", "abandoned") and keeper.epochs == 0
    if _breaker.record(strike):
        stop_taking_jobs(
            f"{_breaker.strikes} jobs in a row ended without finishing an epoch "
            f"(the last: experiment {experiment_id}, {outcome})"
        )
    return outcome


def _run(experiment_id: int) -> tuple[str, "LeaseKeeper | None"]:
    settings = get_settings()
    claimed = db_write(repo.claim, experiment_id, worker_name(), settings.lease_seconds)
    if claimed is None:
        log.info(
            "experiment %s is not claimable (finished, cancelled or leased); skipping",
            experiment_id,
        )
        return "skipped", None
    mark_consumed(experiment_id)
    attempt = claimed.attempt

    keeper = LeaseKeeper(
        experiment_id, attempt, settings.lease_seconds, settings.cancel_poll_seconds
    )
    keeper.start()
    try:
        return _train(experiment_id, claimed, keeper), keeper
    except LeaseLost:
        log.warning("experiment %s attempt %s lost its lease; stopping", experiment_id, attempt)
        return "lease-lost", keeper
    except Exception as exc:
        if environment_failure(exc):
            return _give_back(experiment_id, attempt, exc), keeper
        # A failing job records why and leaves the worker healthy.
        log.exception("experiment %s failed", experiment_id)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        summary = "".join(traceback.format_exception(exc)[-6:])
        try:
            db_write(
                finish_if_ours,
                experiment_id,
                attempt,
                FAILED,
                error=error,
                traceback=summary[-8000:],
            )
            _next_trials(experiment_id)
        except LeaseLost:
            return "lease-lost", keeper
        except Exception:
            # The lease runs out and the reaper sends the job again: it is not stuck.
            log.exception("experiment %s: could not record the failure", experiment_id)
        return "failed", keeper
    finally:
        keeper.stopped.set()
        _clear_session()


def environment_failure(exc: BaseException) -> bool:
    """A failure of this worker's environment, not of the job: no data or device, a disk that
    refuses writes, a database that stayed away longer than db_retry_seconds."""
    return isinstance(exc, WorkerEnvironmentError | OSError) or transient(exc)


def _give_back(experiment_id: int, attempt: int, exc: BaseException) -> str:
    """Put the job back on the queue instead of failing it. When the database itself is what
    failed, write nothing: the lease lapses and the reaper requeues the job."""
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    if transient(exc):
        log.error(
            "experiment %s attempt %s: the database refused writes for %s s (%s); leaving the "
            "job to be requeued when its lease lapses",
            experiment_id,
            attempt,
            get_settings().db_retry_seconds,
            reason,
        )
        return "abandoned"
    log.error(
        "experiment %s attempt %s: this worker's environment failed (%s); giving the job back",
        experiment_id,
        attempt,
        reason,
    )
    try:
        status = db_write(repo.release, experiment_id, attempt, reason)
    except Exception:
        log.exception(
            "experiment %s: could not give the job back; its lease will lapse", experiment_id
        )
        return "abandoned"
    if status == QUEUED:
        with contextlib.suppress(Exception):  # else the reaper sends it: it is queued in SQL
            enqueue(experiment_id, resumed=True)
        return "requeued"
    if status == FAILED:
        _next_trials(experiment_id)
    return {None: "lease-lost", FAILED: "failed"}.get(status, status)


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


def _load_checkpoint(session, experiment_id: int):
    art = repo.get_artifact(session, experiment_id, repo.CHECKPOINT)
    return art.data if art is not None else None


def _train(experiment_id: int, claimed: repo.Claim, keeper: LeaseKeeper) -> str:
    from worker import runtime
    from worker.engine.train import train

    attempt = claimed.attempt

    raw, search_id = db_write(
        lambda s: (lambda e: (e.spec, e.search_id))(repo.get(s, experiment_id))
    )
    pruned = False  # a search's pruner stopped this trial at an epoch end
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        db_write(
            finish_if_ours, experiment_id, attempt, FAILED, error=f"stored spec is invalid: {exc}"
        )
        return "failed"

    resume = None
    saved = None if claimed.first else db_write(_load_checkpoint, experiment_id)
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

    if not claimed.first:
        db_write(truncate_if_ours, experiment_id, attempt, resume.epoch if resume else 0)

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
            update_if_ours,
            experiment_id,
            attempt,
            layers=result.layers,
            params=result.params,
            build_seconds=result.build_seconds,
            device=device,
        )

    def on_checkpoint(model, epochs) -> None:
        saver.offer(model, epochs)

    def write_epoch(session, report) -> bool:
        fenced(session, experiment_id, attempt)
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
        cancel = repo.cancel_requested(session, experiment_id)
        # The pruner is asked before the last epoch only: a trial that trained every epoch is
        # complete, and stopping it there would save nothing.
        prune = (
            search_id is not None
            and not cancel
            and report.epoch < spec.epochs
            and searches.should_prune(session, experiment_id)
        )
        return cancel, prune

    def on_epoch(report) -> bool:
        nonlocal pruned
        if keeper.lost.is_set():
            raise LeaseLost()
        t0 = time.perf_counter()
        cancel, pruned = db_write(write_epoch, report)
        keeper.epochs += 1
        if saver.pending is not None:
            saver.written(time.perf_counter() - t0)
        return cancel or pruned

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
            finish_if_ours,
            experiment_id,
            attempt,
            FAILED,
            train_seconds=result.train_seconds,
            error=f"time limit of {soft_limit} s exceeded (from the spec's estimated cost "
            f"{estimate_flops(spec):.3g} FLOP; see LABQ_JOB_FLOPS_PER_SECOND)",
        )
        _next_trials(experiment_id)
        return "failed"

    status = CANCELLED if result.stopped == "cancelled" else SUCCEEDED
    if pruned and not keeper.cancel.is_set():
        status = PRUNED
    # A search's trial is chosen on the hold-out: its test set is not recorded (only the
    # confirmation runs', and the search reports only the winner's; docs/guarantees.md).
    trial = search_id is not None and status in (SUCCEEDED, PRUNED, CANCELLED)
    test = (
        {}
        if trial and _is_trial(experiment_id)
        else {
            "test_loss": result.test_loss,
            "test_accuracy": result.test_accuracy,
        }
    )
    asked: list[int] = []
    buf = io.BytesIO()
    np.save(buf, result.first_kernel)

    def write_result(session) -> None:
        repo.put_artifact(
            session, experiment_id, "first_kernel.npy", "application/x-npy", buf.getvalue()
        )
        model_artifacts.store(
            session, experiment_id, result.export, settings.max_model_bytes, "training diverged"
        )
        finish_if_ours(
            session,
            experiment_id,
            attempt,
            status,
            train_seconds=result.train_seconds,
            diverged=result.diverged,
            error="training diverged (loss became NaN or infinite)" if result.diverged else None,
            **test,
        )
        if search_id is not None:  # in the fenced transaction: a trial's end is counted once
            asked[:] = searches.top_up(session, search_id)

    db_write(write_result)
    _enqueue_trials(asked)
    log.info("experiment %s %s (attempt %s)", experiment_id, status, attempt)
    return status


def _is_trial(experiment_id: int) -> bool:
    return bool(db_write(lambda s: searches.is_trial(repo.get(s, experiment_id))))


def _next_trials(experiment_id: int) -> None:
    """After a search trial failed: ask for the next ones (the search's lock serializes)."""

    def ask(session) -> list[int]:
        exp = repo.get(session, experiment_id)
        return [] if exp.search_id is None else searches.top_up(session, exp.search_id)

    try:
        _enqueue_trials(db_write(ask))
    except Exception:
        log.exception("experiment %s: could not ask for the search's next trials", experiment_id)


def _enqueue_trials(ids: list[int]) -> None:
    flops = db_write(lambda s: {i: spec_flops(repo.get(s, i).spec) for i in ids}) if ids else {}
    for exp_id in ids:
        try:
            enqueue(exp_id, flops[exp_id])
        except Exception:  # stored and queued in SQL: re-sent when a worker starts
            log.exception("could not send search trial %s to the broker", exp_id)


def _clear_session() -> None:
    import sys

    if "keras" in sys.modules:
        import keras

        # No gc.collect() here (free_memory=False): it takes ~0.5 s, during which the next queued
        # job would wait; Python's collector and worker_max_tasks_per_child reclaim the memory.
        keras.backend.clear_session(free_memory=False)
