"""When a job saves a checkpoint (worker/job.py's pacer, docs/guarantees.md "Resume"): the first
epoch always, unless it is the last; later epochs when the save fits the budget; the last epoch
only when due after a measured save (its result follows at once and deletes the checkpoint);
every epoch with a budget of 1."""

from types import SimpleNamespace

import pytest

from worker import job


@pytest.fixture(autouse=True)
def _cheap_dumps(monkeypatch):
    monkeypatch.setattr(job.ckpt, "dumps", lambda model, epochs: b"checkpoint")


def saved(budget: float, epochs: int, save_seconds: float, clock: list[float], monkeypatch):
    """Which epochs the pacer saves; each epoch takes 1 s on `clock`, each write `save_seconds`."""
    monkeypatch.setattr(job.time, "perf_counter", lambda: clock[0])
    pacer = job._CheckpointPacer(budget, epochs)
    reports, out = [], []
    for e in range(1, epochs + 1):
        clock[0] += 1.0
        reports.append(SimpleNamespace(epoch=e))
        pacer.offer(None, reports)
        if pacer.pending is not None:
            out.append(e)
            pacer.written(save_seconds)
    return out


def test_a_one_epoch_job_saves_no_checkpoint(monkeypatch):
    assert saved(0.05, 1, 0.01, [0.0], monkeypatch) == []


def test_cheap_saves_cover_every_epoch_but_the_last_when_due(monkeypatch):
    # a save of 10 ms against 1 s epochs fits a 5 % budget every time, the last included
    assert saved(0.05, 4, 0.01, [0.0], monkeypatch) == [1, 2, 3, 4]


def test_costly_saves_are_spaced_and_the_first_is_kept(monkeypatch):
    # a save of 0.2 s fits 5 % of 4 s of training: epoch 1, then every 4th
    assert saved(0.05, 10, 0.2, [0.0], monkeypatch) == [1, 5, 9]


def test_a_budget_of_1_saves_every_epoch_the_last_included(monkeypatch):
    assert saved(1.0, 1, 0.01, [0.0], monkeypatch) == [1]
    assert saved(1.0, 3, 0.5, [0.0], monkeypatch) == [1, 2, 3]
