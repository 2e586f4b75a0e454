"""Celery tasks. Thin: the message carries an experiment id; `worker.job` does the rest."""

from celery import shared_task

from core.constants import TRAIN_TASK


@shared_task(name=TRAIN_TASK, acks_late=True, reject_on_worker_lost=True)
def train(experiment_id: int) -> str:
    from worker.job import run_job

    return run_job(int(experiment_id))
