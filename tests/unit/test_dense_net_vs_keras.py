"""The API's NumPy forward pass (core.dense_net) against Keras's own `predict` on all 10,000 test
images: the same predicted digit for every image and probabilities within 1e-5, for every
activation a spec can name, with dropout and L2 in the model. The exported model.keras loads with
`keras.saving.load_model` and scores the run's recorded test accuracy."""

import numpy as np
import pytest

from core.dense_net import DenseNet
from core.model_artifacts import ModelExport
from core.spec import ExperimentSpec, Holdout

tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from worker.engine.data import Mnist, load_mnist  # noqa: E402
from worker.engine.train import train  # noqa: E402

pytestmark = pytest.mark.tf  # trains with TensorFlow in this process

# On a GPU, TensorFlow multiplies float32 matrices in TF32 (10-bit mantissa) unless told not to;
# the comparison is with Keras in float32.
tf.config.experimental.enable_tensor_float_32_execution(False)

SPECS = {
    "relu-dropout-l2-holdout": {
        "layers": [
            {"units": 64, "activation": "relu", "l2": 0.0001},
            {"type": "dropout", "rate": 0.3},
            {"units": 32, "activation": "tanh"},
        ],
        "validation": {"holdout": 500},
    },
    "every-activation": {
        "layers": [
            {"units": 24, "activation": "gelu"},
            {"units": 24, "activation": "selu"},
            {"units": 24, "activation": "elu"},
            {"units": 24, "activation": "sigmoid"},
            {"units": 16, "activation": "linear"},
        ]
    },
    "softmax-regression": {"layers": []},
}


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Mnist:
    return load_mnist(tmp_path_factory.mktemp("mnist"))


@pytest.fixture(scope="module", params=sorted(SPECS))
def trained(request, mnist):
    spec = ExperimentSpec.model_validate(
        {"epochs": 1, "batch_size": 64, "train_samples": 3000, "seed": 7, **SPECS[request.param]}
    )
    result = train(spec, mnist, on_epoch=lambda report: False)
    assert isinstance(result.export, ModelExport)
    return spec, result


def load(export: ModelExport, tmp_path) -> keras.Model:
    path = tmp_path / "model.keras"
    path.write_bytes(export.keras)
    return keras.saving.load_model(path)


def test_numpy_forward_pass_matches_keras_predict(trained, mnist, tmp_path):
    _, result = trained
    model = load(result.export, tmp_path)
    x = mnist.x_test.astype(np.float32) / 255.0
    expected = model.predict(x, batch_size=1000, verbose=0)
    got = DenseNet.from_npz(result.export.weights).probabilities(mnist.x_test)
    assert got.shape == expected.shape == (10_000, 10)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.abs(got - expected).max() < 1e-5
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-9)


def test_model_keras_scores_the_recorded_test_accuracy(trained, mnist, tmp_path):
    spec, result = trained
    model = load(result.export, tmp_path)
    loss, accuracy = model.evaluate(
        mnist.x_test.astype(np.float32) / 255.0, mnist.y_test, batch_size=1000, verbose=0
    )
    assert abs(accuracy - result.test_accuracy) < 1e-4
    assert abs(loss - result.test_loss) < 1e-4
    test = result.export.evaluation["test"]
    assert test["images"] == 10_000 and np.asarray(test["confusion"]).sum() == 10_000
    assert abs(test["accuracy"] - result.test_accuracy) < 1e-4
    assert test["support"] == np.bincount(mnist.y_test, minlength=10).tolist()
    holdout = result.export.evaluation.get("holdout")
    if isinstance(spec.validation, Holdout):
        assert holdout["images"] == 500 and np.asarray(holdout["confusion"]).sum() == 500
    else:
        assert holdout is None
    assert not result.export.restored and result.export.best_epoch is None
