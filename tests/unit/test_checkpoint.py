"""Checkpoint and resume in the engine: a run resumed from the checkpoint of epoch k continues with
epoch k+1 and carries the optimizer's state; a stop request ends a run inside an epoch."""

import numpy as np
import pytest

from core.spec import ExperimentSpec
from worker import checkpoint as ckpt
from worker.engine.data import Mnist, load_mnist
from worker.engine.train import train

pytestmark = pytest.mark.tf  # trains with TensorFlow in this process


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Mnist:
    full = load_mnist(tmp_path_factory.mktemp("mnist"))
    # The first 1500 training images are all these tests use; a small test set keeps them quick.
    return Mnist(full.x_train[:1500], full.y_train[:1500], full.x_test[:500], full.y_test[:500])


def spec(epochs: int) -> ExperimentSpec:
    return ExperimentSpec(
        layers=[{"units": 16}], epochs=epochs, batch_size=100, train_samples=1500, seed=7
    )


def test_resume_continues_after_the_checkpointed_epoch(mnist):
    saved: list[bytes] = []
    first = train(
        spec(2),
        mnist,
        on_epoch=lambda r: False,
        checkpoint=lambda model, epochs: saved.append(ckpt.dumps(model, epochs)),
    )
    assert [e.epoch for e in first.epochs] == [1, 2] and len(saved) == 2

    state = ckpt.loads(saved[-1])
    assert state.epoch == 2 and [h["epoch"] for h in state.history] == [1, 2]
    assert int(state.optimizer[0]) == 2 * 15  # Adam's iteration count: 2 epochs x 15 batches

    seen = []
    resumed = train(
        spec(4),
        mnist,
        on_epoch=lambda r: seen.append(r.epoch) or False,
        resume=state,
        checkpoint=lambda model, epochs: saved.append(ckpt.dumps(model, epochs)),
    )
    assert seen == [3, 4]  # only the epochs that were not done yet
    assert [e.epoch for e in resumed.epochs] == [1, 2, 3, 4]
    assert resumed.epochs[0].loss == first.epochs[0].loss
    final = ckpt.loads(saved[-1])
    assert int(final.optimizer[0]) == 4 * 15
    # Training went on from the saved weights: the loss keeps falling instead of starting over.
    assert resumed.epochs[2].loss < first.epochs[0].loss


def test_checkpoint_of_another_architecture_is_refused(mnist):
    saved = []
    train(
        spec(1),
        mnist,
        on_epoch=lambda r: False,
        checkpoint=lambda model, epochs: saved.append(ckpt.dumps(model, epochs)),
    )
    other = ExperimentSpec(layers=[{"units": 8}], epochs=2, batch_size=100, train_samples=1500)
    with pytest.raises(ValueError):
        train(other, mnist, on_epoch=lambda r: False, resume=ckpt.loads(saved[-1]))


def test_stop_request_ends_the_run_inside_the_epoch(mnist):
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 2  # the second check, 2 x 3 batches into the first epoch

    reports = []
    result = train(
        spec(3),
        mnist,
        on_epoch=lambda r: reports.append(r) or False,
        should_stop=should_stop,
        check_every=3,
    )
    assert result.stopped == "cancelled"
    assert reports == [] and result.epochs == []  # the unfinished epoch is not reported
    assert len(asked) == 2


def test_checkpoint_bytes_hold_no_pickle():
    data = b"not a checkpoint"
    with pytest.raises(ValueError):  # numpy refuses bytes that are not an npz
        ckpt.loads(data)
    arrays = {"meta": np.array('{"format": 99, "epoch": 1, "history": []}')}
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(ValueError):
        ckpt.loads(buf.getvalue())
