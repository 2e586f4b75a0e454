"""The pure parts of a run's model (no TensorFlow): the NumPy network's activations and file,
the evaluation's numbers, the mistakes kept, the figures drawn from them, and what the run's JSON
says about a model over the size cap."""

import io
import json

import matplotlib.image as mpimg
import numpy as np
import pytest
from scipy.special import erf, expit

from core import evaluation, model_figures
from core.dense_net import ACTIVATIONS, SELU_ALPHA, SELU_SCALE, DenseLayer, DenseNet
from core.model_artifacts import ModelExport, model_info


def shape(png: bytes) -> tuple:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(png), format="png").shape


X = np.linspace(-30, 30, 2001)


@pytest.mark.parametrize(
    "name, reference",
    [
        ("relu", lambda x: np.where(x > 0, x, 0.0)),
        ("sigmoid", expit),
        ("tanh", np.tanh),
        ("elu", lambda x: np.where(x > 0, x, np.exp(x) - 1)),
        ("selu", lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * (np.exp(x) - 1))),
        ("gelu", lambda x: 0.5 * x * (1 + erf(x / np.sqrt(2)))),
        ("linear", lambda x: x),
    ],
)
def test_activations_are_keras_formulas(name, reference):
    got = ACTIVATIONS[name](X)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference(X), rtol=1e-12, atol=1e-12)


def net(*widths_acts: tuple[int, str], seed: int = 0) -> DenseNet:
    rng = np.random.default_rng(seed)
    layers, width = [], 784
    for units, act in widths_acts:
        k = rng.normal(0, 0.1, (width, units)).astype(np.float32)
        layers.append(DenseLayer(k, rng.normal(0, 0.1, units).astype(np.float32), act))
        width = units
    return DenseNet(tuple(layers))


def test_forward_pass_and_file_round_trip():
    n = net((32, "gelu"), (16, "selu"), (10, "softmax"))
    x = np.random.default_rng(1).integers(0, 256, (50, 28, 28))
    p = n.probabilities(x)
    assert p.shape == (50, 10) and np.allclose(p.sum(axis=1), 1)
    h = x.reshape(50, -1).astype(np.float32) / np.float32(255)
    for layer in n.layers:  # the same thing written out
        h = ACTIVATIONS[layer.activation](h.astype(np.float64) @ layer.kernel + layer.bias)
    np.testing.assert_allclose(p, h, rtol=1e-12)
    again = DenseNet.from_npz(n.to_npz())
    assert np.array_equal(again.probabilities(x), p)
    assert [lyr.activation for lyr in again.layers] == ["gelu", "selu", "softmax"]
    huge = np.full((1, 28, 28), 255.0)  # saturating logits stay finite
    big = net((10, "softmax"), seed=3)
    scaled = DenseNet((DenseLayer(big.layers[0].kernel * 1e4, big.layers[0].bias, "softmax"),))
    assert np.all(np.isfinite(scaled.probabilities(huge)))


@pytest.mark.parametrize(
    "layers, words",
    [
        ((), "at least its output"),
        (((10, "swish"),), "unknown activation"),
        (((12, "softmax"),), "10 softmax units"),
        (((10, "relu"),), "10 softmax units"),
    ],
)
def test_malformed_networks_are_refused(layers, words):
    with pytest.raises(ValueError, match=words):
        net(*layers)


def test_a_file_of_another_format_is_refused():
    layer = net((10, "softmax")).layers[0]
    buf = io.BytesIO()
    meta = json.dumps({"format": 9, "activations": ["softmax"]})
    np.savez(buf, meta=np.array(meta), kernel0=layer.kernel, bias0=layer.bias)
    with pytest.raises(ValueError, match="unknown weights format 9"):
        DenseNet.from_npz(buf.getvalue())


def test_confusion_precision_recall():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 1, 1])
    probs = np.eye(10)[predicted]
    s = evaluation.summary(labels, probs)
    assert s["images"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["confusion"][0][:3] == [2, 1, 0] and s["confusion"][2][:3] == [0, 1, 0]
    assert s["precision"][:3] == [1.0, pytest.approx(2 / 4), None]  # 2 never predicted
    assert s["recall"][:3] == [pytest.approx(2 / 3), 1.0, 0.0]
    assert s["recall"][3] is None and s["support"][:4] == [3, 2, 1, 0]  # no 3 in the set


def test_mistakes_most_confident_first_and_round_trip():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 28, 28)).astype(np.uint8)
    labels = np.arange(100) % 10
    probs = rng.dirichlet(np.ones(10), size=100)
    m = evaluation.mistakes(images, labels, probs, keep=7)
    wrong = probs.argmax(axis=1) != labels
    assert m.total == wrong.sum() and len(m.labels) == 7
    assert np.all(np.diff(m.confidence) <= 0) and np.all(m.predicted != m.labels)
    assert m.confidence[0] == probs[wrong].max()
    assert np.array_equal(m.images[0], images[m.index[0]])
    back = evaluation.Mistakes.from_npz(m.to_npz())
    assert back.total == m.total and np.array_equal(back.images, m.images)
    assert np.array_equal(back.confidence, m.confidence)


def test_figures():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (10, 10)) + np.diag(np.full(10, 900))
    assert shape(model_figures.confusion_png(counts.tolist(), "#3 $x^2$ {run}"))[1] > 400
    assert shape(model_figures.confusion_png([[0] * 10] * 10, "empty"))[0] > 300
    images = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    m = evaluation.mistakes(images, np.zeros(40, int), rng.dirichlet(np.ones(10), 40))
    eight, sixteen = (shape(model_figures.mistakes_png(m, "$\\bad", n)) for n in (8, 16))
    assert sixteen[0] > 1.5 * eight[0]  # a second row of eight
    none = evaluation.mistakes(images[:3], np.zeros(3, int), np.eye(10)[[0, 0, 0]])
    assert none.total == 0 and shape(model_figures.mistakes_png(none, "perfect"))[0] > 50


def test_model_info_says_which_weights_and_what_was_kept():
    export = ModelExport(b"k" * 100, b"w" * 40, b"", {}, restored=True, best_epoch=4)
    assert model_info(export, 100) == {
        "weights": "best",
        "best_epoch": 4,
        "bytes": 100,
        "stored": True,
        "predict": True,
        "note": None,
    }
    over = model_info(export, 99)
    assert over["stored"] is False and over["predict"] is True
    assert over["note"] == "model.keras is 100 bytes, over LABQ_MAX_MODEL_BYTES (99): not stored"
    both = model_info(export, 10)
    assert both["predict"] is False and "dense weights (40 bytes) are over it too" in both["note"]
    final = ModelExport(b"k", b"w", b"", {}, restored=False, best_epoch=None)
    assert model_info(final, 10)["weights"] == "final"
    assert (
        model_info(None, 10, "training diverged")["note"] == "no model was kept: training diverged"
    )
