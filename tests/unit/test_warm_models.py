"""Warm models (worker/engine/warm.py): a job of a shape the process has compiled before reuses that
model, reset to exactly what a fresh build for its own seed would be: the same initial weights,
dropout seeds and a fresh optimizer with its learning rate; so it trains the same history."""

import numpy as np
import pytest

from core.spec import ExperimentSpec

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from worker.engine import warm  # noqa: E402
from worker.engine.data import Mnist, load_mnist  # noqa: E402
from worker.engine.model import build_model, seed_run  # noqa: E402
from worker.engine.train import train  # noqa: E402

pytestmark = pytest.mark.tf  # trains with TensorFlow in this process

LAYERS = [{"units": 32, "l2": 0.001}, {"type": "dropout", "rate": 0.3}, {"units": 16}]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Mnist:
    full = load_mnist(tmp_path_factory.mktemp("mnist"))
    return Mnist(full.x_train[:4000], full.y_train[:4000], full.x_test[:1000], full.y_test[:1000])


def spec(seed: int, lr: float, **kw) -> ExperimentSpec:
    body = {
        "layers": LAYERS,
        "epochs": 2,
        "batch_size": 64,
        "train_samples": 2000,
        "seed": seed,
        "optimizer": {"name": "adam", "learning_rate": lr},
        **kw,
    }
    return ExperimentSpec.model_validate(body)


def history(s: ExperimentSpec, data: Mnist) -> list[tuple[float, float]]:
    result = train(s, data, on_epoch=lambda r: False)
    return [(r.loss, r.val_loss) for r in result.epochs]


def test_a_kept_model_starts_as_a_fresh_build_would(monkeypatch):
    monkeypatch.setenv("LABQ_WARM_MODELS", "4")
    warm.clear()
    first = spec(seed=1, lr=0.01)
    keras.utils.set_random_seed(first.seed)
    model, _, kept = warm.model_and_steps(first)
    assert not kept
    model.optimizer.build(model.trainable_variables)
    for v in model.optimizer.variables:  # as if the first job had trained
        v.assign(np.ones(v.shape, dtype=v.dtype))
    second = spec(seed=2, lr=0.003)
    keras.utils.set_random_seed(second.seed)
    again, _, kept = warm.model_and_steps(second)
    assert kept and again is model

    keras.utils.set_random_seed(second.seed)
    fresh = build_model(second)
    for a, b in zip(again.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    generators = [
        (x.seed_generator.state.value, y.seed_generator.state.value)
        for x, y in zip(again.layers, fresh.layers, strict=True)
        if hasattr(x, "seed_generator")
    ]
    assert generators
    for a, b in generators:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    opt = again.optimizer
    assert int(np.asarray(opt.iterations)) == 0
    assert float(np.asarray(opt.learning_rate)) == pytest.approx(0.003)
    moments = [v for v in opt.variables if v.name not in ("iteration", "learning_rate")]
    assert moments and all(not np.asarray(v).any() for v in moments)

    other = spec(seed=2, lr=0.003, batch_size=32)  # another shape: another model
    keras.utils.set_random_seed(other.seed)
    assert warm.model_and_steps(other)[0] is not model
    warm.clear()


def test_a_warm_job_trains_the_history_a_cold_one_does(mnist, monkeypatch):
    job = spec(seed=5, lr=0.004)
    monkeypatch.setenv("LABQ_WARM_MODELS", "0")
    warm.clear()
    cold = history(job, mnist)
    monkeypatch.setenv("LABQ_WARM_MODELS", "4")
    history(spec(seed=9, lr=0.05), mnist)  # leaves its trained model and optimizer behind
    warm_ = history(job, mnist)
    assert len(warm.model_and_steps.__globals__["_kept"]) == 1
    np.testing.assert_allclose(warm_, cold, rtol=1e-5)
    warm.clear()


def test_seed_run_seeds_a_run_as_set_random_seed_does(mnist, monkeypatch):
    """The engine seeds each run without TensorFlow's global seed (setting it empties the kernel
    cache, which un-warms every kept model): the same initial weights, dropout seeds and
    unseeded Keras draws as keras.utils.set_random_seed, and the same trained history whatever
    TensorFlow's global seed is."""
    s = spec(seed=11, lr=0.01)

    def state():
        model = build_model(s)
        gens = [
            np.asarray(x.seed_generator.state.value)
            for x in model.layers
            if x.name[:7] == "dropout"
        ]
        draw = np.asarray(keras.random.uniform((4,)))
        return model.get_weights(), gens, draw, np.random.rand(), __import__("random").random()

    keras.utils.set_random_seed(s.seed)
    expected = state()
    tf.random.set_seed(12345)
    seed_run(s.seed)
    got = state()
    for a, b in zip(got[0] + got[1], expected[0] + expected[1], strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3:] == expected[3:]

    monkeypatch.setenv("LABQ_WARM_MODELS", "0")
    tf.random.set_seed(1)
    first = history(s, mnist)
    tf.random.set_seed(2)
    np.testing.assert_allclose(history(s, mnist), first, rtol=1e-6)
