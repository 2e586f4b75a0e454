"""Fused trials, the worker's side: a JAX worker that has claimed a run of a sweep or search also
claims the queued runs of that sweep or search with the same model shape and trains them all as
one program (worker.engine.fused), in the one process slot a single job would take.

Each member stays a Job of its own (worker.job): its claim, lease keeper and attempt number,
fenced writes, epoch rows with checkpoints, cancel and pruner checks, time limit and final
transaction. A member that ends (done, early-stopped, pruned, cancelled, diverged) is finished
at once while the others train on; a member whose own writes fail (its lease lost, its database
row gone) ends alone; a failure of the shared program ends every member still training the way a
solo job's failure ends it (failed, or given back when the worker's environment failed). A worker
that dies leaves each member's lease to lapse; each is then taken over alone and resumes from
its own last checkpoint, its history kept exactly once (docs/guarantees.md).

Only runs never started since they were submitted or retried are fused (a run with a checkpoint
resumes alone), only on the JAX backend, and at most settings.fuse_max at once. A sweep or search
submitted with `"fuse": false` trains every run alone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pydantic import ValidationError

from core.spec import ExperimentSpec
from db import repo, scheduling
from worker.lease import db_write, worker_name

if TYPE_CHECKING:
    from worker.engine.fused import Member
    from worker.engine.train import EpochReport, RunResult
    from worker.job import Job

log = logging.getLogger("labq.fusion")


def partners(job: Job, claimed: repo.Claim) -> list[Job]:
    """Claim and build the runs to train with `job` (just claimed and built); [] to train alone."""
    settings = job.settings
    if settings.fuse_max < 2 or not claimed.first or job.resume is not None:
        return []
    from worker.engine.steps import backend

    if backend() != "jax":  # before anything imports JAX: a TensorFlow worker may not have it
        return []
    from worker.engine.fused import fuse_key

    key = fuse_key(job.spec)

    def fits(raw: dict) -> bool:
        try:
            return fuse_key(ExperimentSpec.model_validate(raw)) == key
        except ValidationError:
            return False

    got = db_write(
        scheduling.claim_partners,
        job.id,
        fits,
        settings.fuse_max - 1,
        worker_name(),
        settings.lease_seconds,
    )
    jobs = []
    for exp_id, claim in got:
        other = type(job).adopted(exp_id, claim)
        try:
            built = other.build(claim)
        except Exception as exc:
            other.end_with(exc)
            built = False
        if built:
            jobs.append(other)
        else:
            other.keeper.stopped.set()
    return jobs


def run_group(jobs: list[Job]) -> str:
    """Train `jobs` (the first is the one this worker was woken for) as one fused program; each
    member ends on its own. Returns the first one's outcome."""
    from worker.engine.fused import train_fused

    outcomes: dict[int, str] = {}
    n = len(jobs)
    log.info("training experiments %s as one fused program", ", ".join(str(j.id) for j in jobs))
    for j in jobs:  # the program does the work of n jobs: each member gets n jobs' time, up to
        # the longest any job may take (a message's hard limit is counted from it: core.queue)
        limit = min(j.soft_limit * n, max(j.soft_limit, j.settings.max_time_limit))
        j.keeper.deadline = time.monotonic() + limit
    members = [_member(j, n, outcomes) for j in jobs]
    try:
        train_fused(members, jobs[0].data, check_every=jobs[0].settings.cancel_check_batches)
    except Exception as exc:
        for j in jobs:
            if j.id not in outcomes:
                outcomes[j.id] = j.end_with(exc)
    finally:
        for j in jobs:
            j.keeper.stopped.set()
    return outcomes.get(jobs[0].id, "abandoned")


def _member(job: Job, n: int, outcomes: dict[int, str]) -> Member:
    from worker.engine.fused import Member

    record = job.hooks.on_epoch(job.record)

    def ended(exc: Exception) -> None:
        if job.id not in outcomes:
            outcomes[job.id] = job.end_with(exc)

    def on_epoch(report: EpochReport) -> bool:
        try:
            return bool(record(report))
        except Exception as exc:  # this member's writes failed: it stops, the others go on
            ended(exc)
            return True

    def on_done(result: RunResult) -> None:
        if job.id in outcomes:
            return
        try:
            job._lease_or_stop()
            outcomes[job.id] = job.finish(result)
        except Exception as exc:
            ended(exc)

    return Member(
        spec=job.spec,
        on_epoch=on_epoch,
        on_done=on_done,
        on_error=ended,
        on_built=lambda result: job._record_build(result, n),
        checkpoint=job.saver.offer,
        should_stop=job.hooks.should_stop(job.keeper.should_stop),
    )
