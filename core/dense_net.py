"""A trained run's dense layers as plain arrays, and their forward pass in NumPy.

The worker writes them at the end of a run (`weights.npz`) from the same Keras model it saves as
`model.keras`; the API reads them to answer `POST /experiments/{id}/predict` without TensorFlow.
The network is what `worker/engine/model.py` builds: Flatten(28, 28), the spec's Dense layers
(dropout is the identity at inference, so it leaves no trace here), Dense(10, softmax). Inputs are
bytes 0-255, scaled as in training (float32 / 255). The arithmetic runs in float64, so the answer
is as close to the exact one as Keras's float32 is, or closer.

The file is one `.npz` of `kernel<i>` and `bias<i>` arrays and `meta`, a JSON string with the
format number and each layer's activation. It is read without pickle: loading never runs code.
"""

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import erf

FORMAT = 1
INPUT_SHAPE = (28, 28)
CLASSES = 10

F64 = npt.NDArray[np.float64]

# Keras's constants for selu (keras.activations.selu).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _relu(x: F64) -> F64:
    return np.maximum(x, 0.0)


def _sigmoid(x: F64) -> F64:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))  # 1 / (1 + e^-x), without overflow


def _tanh(x: F64) -> F64:
    return np.tanh(x)


def _elu(x: F64) -> F64:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


def _selu(x: F64) -> F64:
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _gelu(x: F64) -> F64:
    """Keras's default, exact gelu: x * Phi(x) with the normal CDF through erf."""
    return np.asarray(0.5 * x * (1.0 + erf(x / np.sqrt(2.0))))


def _linear(x: F64) -> F64:
    return x


def softmax(x: F64) -> F64:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


ACTIVATIONS: dict[str, Callable[[F64], F64]] = {
    "relu": _relu,
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "elu": _elu,
    "selu": _selu,
    "gelu": _gelu,
    "linear": _linear,
    "softmax": softmax,
}


@dataclass(frozen=True)
class DenseLayer:
    kernel: npt.NDArray[np.float32]  # (inputs, units)
    bias: npt.NDArray[np.float32]  # (units,)
    activation: str


@dataclass(frozen=True)
class DenseNet:
    layers: tuple[DenseLayer, ...]

    def __post_init__(self) -> None:
        width = INPUT_SHAPE[0] * INPUT_SHAPE[1]
        if not self.layers:
            raise ValueError("a network needs at least its output layer")
        for i, layer in enumerate(self.layers):
            if layer.activation not in ACTIVATIONS:
                raise ValueError(f"layer {i}: unknown activation {layer.activation!r}")
            if layer.kernel.ndim != 2 or layer.kernel.shape[0] != width:
                raise ValueError(f"layer {i}: kernel {layer.kernel.shape} does not take {width}")
            if layer.bias.shape != (layer.kernel.shape[1],):
                raise ValueError(f"layer {i}: bias {layer.bias.shape} for {layer.kernel.shape}")
            width = layer.kernel.shape[1]
        if width != CLASSES or self.layers[-1].activation != "softmax":
            raise ValueError(f"the output layer must be {CLASSES} softmax units")

    def probabilities(self, images: npt.NDArray[Any]) -> F64:
        """Class probabilities, (n, 10), of images (n, 28, 28) with pixel values 0-255."""
        x = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255.0)
        h: F64 = x.astype(np.float64)
        for layer in self.layers:
            h = ACTIVATIONS[layer.activation](h @ layer.kernel.astype(np.float64) + layer.bias)
        return h

    def to_npz(self) -> bytes:
        arrays: dict[str, Any] = {}
        for i, layer in enumerate(self.layers):
            arrays[f"kernel{i}"] = np.asarray(layer.kernel, np.float32)
            arrays[f"bias{i}"] = np.asarray(layer.bias, np.float32)
        meta = {"format": FORMAT, "activations": [layer.activation for layer in self.layers]}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> "DenseNet":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"unknown weights format {meta.get('format')}")
            return cls(
                tuple(
                    DenseLayer(npz[f"kernel{i}"], npz[f"bias{i}"], str(activation))
                    for i, activation in enumerate(meta["activations"])
                )
            )
