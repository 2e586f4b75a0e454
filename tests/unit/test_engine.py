"""The fast engine against the notebook's plain `model.fit`: same spec, same data, they learn the
same thing; one history row per epoch; batch 1 and batch 10,000 run; callbacks still act."""

import numpy as np
import pytest

from core.spec import ExperimentSpec

tf = pytest.importorskip("tensorflow")

from bench.notebook import train_notebook  # noqa: E402
from worker.engine.data import Mnist, load_mnist  # noqa: E402
from worker.engine.steps import use_jit  # noqa: E402
from worker.engine.steps_tf import BackendSteps as Steps  # noqa: E402
from worker.engine.train import train  # noqa: E402

pytestmark = pytest.mark.tf  # trains with TensorFlow in this process


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Mnist:
    full = load_mnist(tmp_path_factory.mktemp("mnist"))
    return Mnist(full.x_train[:12000], full.y_train[:12000], full.x_test[:1000], full.y_test[:1000])


def spec(**kw) -> ExperimentSpec:
    body = {
        "layers": [{"units": 32}],
        "epochs": 2,
        "batch_size": 64,
        "train_samples": 2000,
        "seed": 3,
        **kw,
    }
    return ExperimentSpec.model_validate(body)


def run(s: ExperimentSpec, data: Mnist, **kw):
    reports = []
    result = train(s, data, on_epoch=lambda r: reports.append(r) or False, **kw)
    return result, reports


def test_engine_and_notebook_learn_the_same_thing(mnist):
    s = spec(epochs=3)
    nb = train_notebook(s, mnist)
    result, reports = run(s, mnist)
    assert [r.epoch for r in reports] == [1, 2, 3] and result.epochs == reports
    assert nb.epochs == 3
    engine_acc = [r.val_accuracy for r in reports]
    # Same model, initial weights, optimizer and batches per epoch: the curves agree within the
    # noise of a different shuffle (measured spread on this data: about 0.01).
    assert abs(engine_acc[-1] - nb.val_accuracy) < 0.04, (engine_acc, nb.history["val_accuracy"])
    assert engine_acc[-1] > 0.75 and nb.val_accuracy > 0.75  # chance is 0.1
    losses = [r.loss for r in reports]
    assert losses[0] > losses[-1]
    assert abs(losses[-1] - nb.history["loss"][-1]) < 0.1
    assert result.test_accuracy is not None and result.test_accuracy > 0.75
    assert set(reports[0].grad_norms) == {"dense_1", "output"}


def test_l2_penalty_is_in_the_reported_loss(mnist):
    plain, _ = run(spec(epochs=1, seed=5), mnist)
    penalised, _ = run(spec(epochs=1, seed=5, layers=[{"units": 32, "l2": 0.01}]), mnist)
    nb = train_notebook(spec(epochs=1, seed=5, layers=[{"units": 32, "l2": 0.01}]), mnist)
    # Keras adds the kernel penalty to loss and val_loss; the engine must report the same kind.
    assert penalised.epochs[0].val_loss > plain.epochs[0].val_loss + 0.05
    assert abs(penalised.epochs[0].val_loss - nb.history["val_loss"][0]) < 0.15


def test_batch_one_and_batch_ten_thousand_run(mnist):
    saved = {}
    one, reports = run(
        spec(batch_size=1, epochs=1, train_samples=300, validation={"holdout": 100}),
        mnist,
        checkpoint=lambda m, e: saved.update(it=int(m.optimizer.iterations)),
    )
    assert len(reports) == 1 and reports[0].val_accuracy is not None
    assert saved["it"] == 200  # 200 fitted images at batch 1 = 200 Adam updates
    big = ExperimentSpec(
        layers=[{"units": 16}], epochs=2, batch_size=10000, train_samples=12000, seed=1
    )
    result, reports = run(big, mnist)
    assert [r.epoch for r in reports] == [1, 2]
    assert 0.0 < reports[-1].val_accuracy <= 1.0


def test_partial_last_batch_counts_every_image(mnist):
    s = spec(epochs=1, batch_size=300, train_samples=1000)  # 3 full batches + one of 100
    saved = {}
    train(
        s,
        mnist,
        on_epoch=lambda r: False,
        checkpoint=lambda model, epochs: saved.update(it=int(model.optimizer.iterations)),
    )
    assert saved["it"] == 4


def test_early_stopping_fires(mnist):
    # min_delta 1.0 can never be met: EarlyStopping stops after patience + 1 epochs.
    s = spec(epochs=8, early_stopping={"monitor": "val_accuracy", "patience": 1, "min_delta": 1.0})
    result, reports = run(s, mnist)
    assert result.stopped == "early_stopping"
    assert len(reports) == 2


def test_reduce_lr_on_plateau_follows_val_loss(mnist):
    # Few images and a high rate overfit within a few epochs, so val_loss stops improving.
    s = spec(
        epochs=8,
        train_samples=300,
        batch_size=32,
        optimizer={"learning_rate": 0.01},
        reduce_lr_on_plateau={"monitor": "val_loss", "patience": 0, "factor": 0.5},
    )
    _, reports = run(s, mnist)
    val, lr = [r.val_loss for r in reports], [r.learning_rate for r in reports]
    assert len(reports) == 8
    for i in range(1, 7):  # patience 0: halved right after any epoch that is not a new best
        plateau = val[i] > min(val[:i]) - 1e-4
        assert (lr[i + 1] < lr[i]) == plateau, (val, lr)
    assert lr[-1] < lr[0], (val, lr)


def test_cancel_at_epoch_end(mnist):
    reports = []
    result = train(spec(epochs=5), mnist, on_epoch=lambda r: reports.append(r) or r.epoch == 2)
    assert result.stopped == "cancelled" and [r.epoch for r in reports] == [1, 2]


def test_xla_and_plain_steps_agree(mnist, monkeypatch):
    s = spec(
        epochs=1,
        batch_size=16,
        train_samples=800,
        layers=[{"units": 16}, {"type": "dropout", "rate": 0.2}],
    )
    monkeypatch.setenv("LABQ_JIT", "on")
    assert use_jit(s)
    jit, _ = run(s, mnist)
    monkeypatch.setenv("LABQ_JIT", "off")
    plain, _ = run(s, mnist)
    assert abs(jit.epochs[0].val_accuracy - plain.epochs[0].val_accuracy) < 0.05
    monkeypatch.setenv("LABQ_JIT", "auto")
    assert not use_jit(spec(batch_size=10000, train_samples=60000, epochs=5))


def test_chunked_evaluation_matches_one_pass(mnist, monkeypatch):
    import keras

    from worker.engine import steps as steps_module
    from worker.engine.model import build_model
    from worker.engine.steps import resident

    s = spec()
    model = build_model(s)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    steps = Steps(model, jit=False)
    r = resident(mnist)
    monkeypatch.setattr(steps_module, "EVAL_CHUNK", 300)  # 1000 images: chunks 300, 300, 300, 100
    loss, acc = steps.evaluate(r.x_test, r.y_test, 0, 1000)
    probs = model(r.x_test, training=False).numpy()
    expect = float(np.mean(np.argmax(probs, 1) == mnist.y_test))
    ce = float(keras.losses.SparseCategoricalCrossentropy()(r.y_test, probs))
    assert acc == pytest.approx(expect) and loss == pytest.approx(ce, rel=1e-4)
