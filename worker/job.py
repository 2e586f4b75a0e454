"""One job, start to finish: claim it, build its run, train, record each epoch, finish in SQL.

The database is the source of truth: the job is claimed with a conditional UPDATE and a lease, each
epoch row is written as the epoch ends (so polls see live progress) together with a checkpoint, and
every write after the claim is checked against our attempt number (worker.lease), so a copy of the
job that lost its lease stops writing. An attempt that takes over a job whose worker died resumes
from the checkpoint of the last saved epoch. Database writes are retried with backoff
(db_retry_seconds), so a database that is locked or away for a few seconds does not leave the job
stuck.

A failure of the worker's environment (no data or device, a disk that refuses writes, a database
away for longer than that) is not the job's failure: the job goes back to the queue, or, when the
database is what failed, its lease lapses and the reaper requeues it. A process that ends job
after job without training an epoch stops taking jobs (worker.breaker).
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import traceback
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from core.constants import CANCELLED, FAILED, PRUNED, QUEUED, SUCCEEDED
from core.model_artifacts import FIRST_KERNEL, NPY_TYPE
from core.queue import enqueue, mark_consumed, spec_flops, time_limits
from core.settings import get_settings
from core.spec import ExperimentSpec, estimate_flops
from db import model_artifacts, repo, scheduling, searches
from worker import checkpoint as ckpt
from worker import fusion, testhooks
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

if TYPE_CHECKING:  # the engine imports Keras: only a worker child, after fork, may
    from sqlalchemy.orm import Session

    from worker.engine.train import EpochReport, RunResult

log = logging.getLogger("labq.job")

CHECKPOINT_TYPE = "application/x-labq-checkpoint"

_breaker: Breaker | None = None


def run_job(experiment_id: int) -> str:
    """Run one job and score its outcome on this process's circuit breaker."""
    global _breaker
    _breaker = _breaker or Breaker()
    job = Job(experiment_id)
    outcome = job.run()
    if outcome in ("skipped", "lease-lost"):
        return outcome
    strike = outcome == "unclaimed" or (
        outcome in ("failed", "requeued", "abandoned") and job.epochs == 0
    )
    if _breaker.record(strike):
        stop_taking_jobs(
            f"{_breaker.strikes} jobs in a row ended without finishing an epoch "
            f"(the last: experiment {job.id}, {outcome})"
        )
    return outcome


def environment_failure(exc: BaseException) -> bool:
    """A failure of this worker's environment, not of the job: no data or device, a disk that
    refuses writes, a database that stayed away longer than db_retry_seconds."""
    return isinstance(exc, WorkerEnvironmentError | OSError) or transient(exc)


def interrupted(exc: BaseException) -> bool:
    """`exc` was raised while handling the process's own exit (a signal handler's SystemExit or
    a KeyboardInterrupt inside a database write): the process is stopping, the job did not fail."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, SystemExit | KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return False


class Job:
    """One run of one job, read top to bottom: `run` calls `claim`, `build`, `train` (which calls
    `record` at each epoch's end) and `finish`; `fail` and `give_back` end it otherwise.

    Every write after the claim is fenced on `attempt`; the lease keeper thread renews the lease
    and polls the cancel flag meanwhile. Outcomes: the final status, or "skipped" (not
    claimable), "unclaimed" (the claim failed; its wake-up is sent again), "lease-lost",
    "requeued", "abandoned" (left for the reaper).
    """

    def __init__(self, experiment_id: int) -> None:
        self.id = experiment_id
        self.settings = get_settings()
        self.attempt = 0  # the fencing number, from the claim
        # Set by claim and build:
        self.keeper: LeaseKeeper
        self.spec: ExperimentSpec
        self.search_id: int | None = None
        self.resume: ckpt.Checkpoint | None = None
        self.soft_limit = 0
        self.data: Any = None
        self.device = ""
        self.hooks: testhooks.Hooks
        self.saver: _CheckpointPacer
        self.pruned = False  # a search's pruner stopped this trial at the last epoch's end

    @property
    def epochs(self) -> int:
        """Epochs this run recorded (once claimed)."""
        return self.keeper.epochs

    def run(self) -> str:
        woken_by = self.id
        try:
            claimed = self.claim()
        except Exception as exc:
            return self.wake_again(woken_by, exc)
        if claimed is None:
            return "skipped"
        try:
            if not self.build(claimed):
                return "failed"
            partners = fusion.partners(self, claimed)
            if partners:
                return fusion.run_group([self, *partners])
            return self.finish(self.train())
        except Exception as exc:
            return self.end_with(exc)
        finally:
            self.keeper.stopped.set()
            _clear_session()

    # -- the phases ---------------------------------------------------------------------------

    def claim(self) -> repo.Claim | None:
        """Take the job the database ranks first (db/scheduling.py: the message that woke this
        worker is a wake-up, not an order) with a conditional UPDATE and a lease; None when no
        job may start now."""
        lease = self.settings.lease_seconds
        woken_by = self.id
        got = db_write(scheduling.claim_next, woken_by, worker_name(), lease)
        if got is None:
            log.info(
                "experiment %s is not claimable (finished, cancelled or leased) and no other job "
                "may start now; skipping",
                woken_by,
            )
            mark_consumed(woken_by)  # a job still queued is sent again by the reaper
            return None
        self.id, claimed = got
        mark_consumed(self.id)
        self._hold_lease(claimed)
        return claimed

    @classmethod
    def adopted(cls, experiment_id: int, claimed: repo.Claim) -> Job:
        """A job claimed on another's behalf (worker.fusion: a fused program's member)."""
        job = cls(experiment_id)
        job._hold_lease(claimed)
        return job

    def _hold_lease(self, claimed: repo.Claim) -> None:
        self.attempt = claimed.attempt
        self.keeper = LeaseKeeper(
            self.id, self.attempt, self.settings.lease_seconds, self.settings.cancel_poll_seconds
        )
        self.keeper.start()

    def build(self, claimed: repo.Claim) -> bool:
        """Everything the training needs: the spec re-validated from SQL, the checkpoint to resume
        from (history after it dropped), the time limit, data, device, test hooks. False when the
        stored spec is invalid (the job is failed)."""
        from worker import runtime

        raw, self.search_id = db_write(
            lambda s: (lambda e: (e.spec, e.search_id))(repo.get(s, self.id))
        )
        try:
            self.spec = ExperimentSpec.model_validate(raw)
        except ValidationError as exc:
            db_write(
                finish_if_ours,
                self.id,
                self.attempt,
                FAILED,
                error=f"stored spec is invalid: {exc}",
            )
            return False

        if not claimed.first:
            self.resume = self._saved_checkpoint()
            after = self.resume.epoch if self.resume else 0
            db_write(truncate_if_ours, self.id, self.attempt, after)

        self.soft_limit, _ = time_limits(estimate_flops(self.spec), self.settings)
        self.keeper.deadline = time.monotonic() + self.soft_limit
        self.data, self.device = runtime.mnist(), runtime.device()
        first_epoch = self.resume.epoch + 1 if self.resume else 1
        self.hooks = testhooks.for_job(self.spec.name, self.id, self.settings.data_dir, first_epoch)
        self.saver = _CheckpointPacer(self.settings.checkpoint_budget, self.spec.epochs)
        return True

    def train(self) -> RunResult:
        """Train the spec; `record` writes each epoch as it ends. It stops early on a cancel, a
        pruned trial, a lost lease or the time limit (the keeper's stop check, inside an epoch)."""
        from worker.engine.train import train

        result = train(
            self.spec,
            self.data,
            on_epoch=self.hooks.on_epoch(self.record),
            on_built=self._record_build,
            resume=self.resume,
            checkpoint=self.saver.offer,
            should_stop=self.hooks.should_stop(self.keeper.should_stop),
            check_every=self.settings.cancel_check_batches,
        )
        self._lease_or_stop()
        return result

    def record(self, report: EpochReport) -> bool:
        """At an epoch's end: its row (and a checkpoint when due) in one fenced transaction, which
        also asks whether to stop (a cancel, or the search's pruner). True stops the training."""
        self._lease_or_stop()
        t0 = time.perf_counter()
        cancel, self.pruned = db_write(self._write_epoch, report)
        self.keeper.epochs += 1
        if self.saver.pending is not None:
            self.saver.written(time.perf_counter() - t0)
        return bool(cancel or self.pruned)

    def finish(self, result: RunResult) -> str:
        """The final transaction: first-layer weights, the model, the status and test metrics
        (and a search's next trials), fenced; a run past its time limit is failed instead."""
        if self.keeper.timed_out and not self.keeper.cancel.is_set():
            db_write(
                finish_if_ours,
                self.id,
                self.attempt,
                FAILED,
                train_seconds=result.train_seconds,
                error=f"time limit of {self.soft_limit} s exceeded (from the spec's estimated "
                f"cost {estimate_flops(self.spec):.3g} FLOP; see LABQ_JOB_FLOPS_PER_SECOND)",
            )
            _next_trials(self.id)
            return "failed"

        status = CANCELLED if result.stopped == "cancelled" else SUCCEEDED
        if self.pruned and not self.keeper.cancel.is_set():
            status = PRUNED
        # A search's trial is chosen on the hold-out: its test set is not recorded (only the
        # confirmation runs', and the search reports only the winner's; docs/guarantees.md).
        trial = self.search_id is not None and status in (SUCCEEDED, PRUNED, CANCELLED)
        test = (
            {}
            if trial and _is_trial(self.id)
            else {"test_loss": result.test_loss, "test_accuracy": result.test_accuracy}
        )
        asked = db_write(self._write_result, result, status, test)
        _enqueue_trials(asked)
        log.info("experiment %s %s (attempt %s)", self.id, status, self.attempt)
        return status

    # -- ending otherwise ---------------------------------------------------------------------

    def wake_again(self, woken_by: int, exc: Exception) -> str:
        """The claim itself failed (the database refused it): this message is used up, and the
        job it named is still queued in SQL. Put a wake-up back, so the queue keeps one message
        per queued job; when the broker refuses too, forget its marker, so the reaper's next pass
        sends it (core.queue.unsent). Scored as a strike: a worker whose database is away stops
        taking jobs (worker.breaker)."""
        log.error(
            "experiment %s: could not claim a job (%s: %s); its wake-up goes back to the queue",
            woken_by,
            type(exc).__name__,
            str(exc)[:500],
        )
        try:
            enqueue(woken_by)
        except Exception:
            mark_consumed(woken_by)
        return "unclaimed"

    def end_with(self, exc: Exception) -> str:
        """The run stopped on `exc`: a lost lease stops writing; a process being stopped (the
        worker's shutdown interrupting a write) leaves the job to its lease, so it resumes
        elsewhere; a failure of this worker's environment gives the job back; anything else is
        the job's failure."""
        if isinstance(exc, LeaseLost):
            log.warning("experiment %s attempt %s lost its lease; stopping", self.id, self.attempt)
            return "lease-lost"
        if interrupted(exc):
            log.warning(
                "experiment %s attempt %s: interrupted by this process's shutdown (%s); leaving "
                "the job to be requeued when its lease lapses",
                self.id,
                self.attempt,
                type(exc).__name__,
            )
            return "abandoned"
        if environment_failure(exc):
            return self.give_back(exc)
        return self.fail(exc)

    def fail(self, exc: Exception) -> str:
        """The job itself failed: record why; the worker stays healthy."""
        log.exception("experiment %s failed", self.id)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        summary = "".join(traceback.format_exception(exc)[-6:])
        try:
            db_write(
                finish_if_ours,
                self.id,
                self.attempt,
                FAILED,
                error=error,
                traceback=summary[-8000:],
            )
            _next_trials(self.id)
        except LeaseLost:
            return "lease-lost"
        except Exception:
            # The lease runs out and the reaper sends the job again: it is not stuck.
            log.exception("experiment %s: could not record the failure", self.id)
        return "failed"

    def give_back(self, exc: BaseException) -> str:
        """Put the job back on the queue instead of failing it. When the database itself is what
        failed, write nothing: the lease lapses and the reaper requeues the job."""
        reason = f"{type(exc).__name__}: {exc}"[:1000]
        if transient(exc):
            log.error(
                "experiment %s attempt %s: the database refused writes for %s s (%s); leaving "
                "the job to be requeued when its lease lapses",
                self.id,
                self.attempt,
                self.settings.db_retry_seconds,
                reason,
            )
            return "abandoned"
        log.error(
            "experiment %s attempt %s: this worker's environment failed (%s); giving the job back",
            self.id,
            self.attempt,
            reason,
        )
        try:
            status = db_write(repo.release, self.id, self.attempt, reason)
        except Exception:
            log.exception(
                "experiment %s: could not give the job back; its lease will lapse", self.id
            )
            return "abandoned"
        if status == QUEUED:
            with contextlib.suppress(Exception):  # else the reaper sends it: it is queued in SQL
                enqueue(self.id, resumed=True)
            return "requeued"
        if status == FAILED:
            _next_trials(self.id)
        outcome: str = {None: "lease-lost", FAILED: "failed"}.get(status, status)
        return outcome

    # -- helpers ------------------------------------------------------------------------------

    def _lease_or_stop(self) -> None:
        """Renew-or-stop: the keeper renews the lease on a timer; once it found the job taken
        over, this run stops here, before writing anything more."""
        if self.keeper.lost.is_set():
            raise LeaseLost()

    def _saved_checkpoint(self) -> ckpt.Checkpoint | None:
        """The checkpoint of the last saved epoch, None when there is none or it is unreadable."""

        def load(session: Session) -> bytes | None:
            art = repo.get_artifact(session, self.id, repo.CHECKPOINT)
            return art.data if art is not None else None

        saved = db_write(load)
        if saved is None:
            return None
        try:
            resume = ckpt.loads(saved)
        except (ValueError, KeyError) as exc:
            log.warning("experiment %s: unreadable checkpoint (%s); starting over", self.id, exc)
            return None
        log.info(
            "experiment %s attempt %s resumes after epoch %s", self.id, self.attempt, resume.epoch
        )
        return resume

    def _record_build(self, result: RunResult, fused: int | None = None) -> None:
        """Once the model is built: its layers, parameter count, build time and device, and the
        members of the fused program it trains in (None: alone)."""
        db_write(
            update_if_ours,
            self.id,
            self.attempt,
            layers=result.layers,
            params=result.params,
            build_seconds=result.build_seconds,
            device=self.device,
            fused=fused,
        )

    def _write_epoch(self, session: Session, report: EpochReport) -> tuple[bool, bool]:
        """(cancel, prune), in the epoch row's transaction."""
        fenced(session, self.id, self.attempt)
        repo.record_epoch(
            session,
            self.id,
            self.attempt,
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
        if self.saver.pending is not None:
            repo.put_artifact(
                session, self.id, repo.CHECKPOINT, CHECKPOINT_TYPE, self.saver.pending
            )
        cancel = bool(repo.cancel_requested(session, self.id))
        # The pruner is asked before the last epoch only: a trial that trained every epoch is
        # complete, and stopping it there would save nothing.
        prune = (
            self.search_id is not None
            and not cancel
            and report.epoch < self.spec.epochs
            and searches.should_prune(session, self.id)
        )
        return cancel, bool(prune)

    def _write_result(
        self, session: Session, result: RunResult, status: str, test: dict[str, Any]
    ) -> list[int]:
        """The final transaction; a search's next trials (to send), asked for in it so that a
        trial's end is counted once."""
        kernel = io.BytesIO()
        np.save(kernel, result.first_kernel)
        repo.put_artifact(session, self.id, FIRST_KERNEL, NPY_TYPE, kernel.getvalue())
        model_artifacts.store(
            session, self.id, result.export, self.settings.max_model_bytes, "training diverged"
        )
        finish_if_ours(
            session,
            self.id,
            self.attempt,
            status,
            train_seconds=result.train_seconds,
            diverged=result.diverged,
            error="training diverged (loss became NaN or infinite)" if result.diverged else None,
            **test,
        )
        return [] if self.search_id is None else searches.top_up(session, self.search_id)


class _CheckpointPacer:
    """Decides at each epoch end whether to save a checkpoint, so that saving costs at most
    `budget` of the training time: an epoch much longer than a save (the usual case) is saved
    every time; epochs of a fraction of a second, on a large model, every few epochs. The first
    epoch is always saved, unless it is the last. The last epoch (of `epochs`) is saved only when
    the budget says so: its result follows within the test read and the export, and the result's
    transaction deletes the checkpoint (a one-epoch job would save one for nothing). A resume
    restarts after the last saved epoch; epochs trained after it are trained again and their rows
    replaced, so the history still holds each epoch once."""

    def __init__(self, budget: float, epochs: int):
        self.budget, self.epochs = budget, epochs
        self.cost = 0.0  # seconds the last save took (serialize + write)
        self.since = time.perf_counter()  # end of the last save
        self.pending: bytes | None = None
        self._serialize = 0.0

    def offer(self, model: Any, epochs: list[Any]) -> None:
        self.pending = None
        due = (time.perf_counter() - self.since) * self.budget >= self.cost
        if epochs[-1].epoch >= self.epochs:  # the last: only when due after a measured save
            save = self.cost > 0.0 and due
        else:
            save = len(epochs) == 1 or self.cost == 0.0 or due
        if save or self.budget >= 1:
            t0 = time.perf_counter()
            self.pending = ckpt.dumps(model, epochs)
            self._serialize = time.perf_counter() - t0

    def written(self, seconds: float) -> None:
        """`pending` was committed, in `seconds`."""
        self.cost = self._serialize + seconds
        self.since = time.perf_counter()


# -- a search's next trials -------------------------------------------------------------------


def _is_trial(experiment_id: int) -> bool:
    return bool(db_write(lambda s: searches.is_trial(repo.get(s, experiment_id))))


def _next_trials(experiment_id: int) -> None:
    """After a search trial failed: ask for the next ones (the search's lock serializes)."""

    def ask(session: Session) -> list[int]:
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

    if "keras" not in sys.modules:
        return
    import keras

    if keras.backend.backend() == "tensorflow" and get_settings().warm_models:
        # On TensorFlow, clear_session also empties the runtime's kernel cache, so each kept
        # model's compiled functions are instantiated again at their next call: about 40 ms each,
        # four a job, most of a warm tiny job (BENCHMARKS.md). Keras's global state carries
        # nothing from job to job here: layer names are explicit and each job sets its seed.
        return
    # No gc.collect() here (free_memory=False): it takes ~0.5 s, during which the next queued
    # job would wait; Python's collector and the child's memory limit reclaim the memory.
    keras.backend.clear_session(free_memory=False)
