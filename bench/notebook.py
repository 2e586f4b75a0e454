"""The lab notebook's own way of training, kept as the benchmark's baseline.

Exactly what the notebook's cells do: pixels / 255 as numpy float32, one-hot labels
(`to_categorical`) with `categorical_crossentropy`, the arrays handed to `model.fit` with the
spec's batch size and epochs, metrics every epoch, validation on the test set (or the hold-out)
at `fit`'s default validation batch size, the spec's EarlyStopping / ReduceLROnPlateau. The model,
its initial weights (same seed) and the optimizer are the engine's, so the two learn the same thing
and only the way of training differs.
"""

import time
from dataclasses import dataclass

import keras

from core.spec import ExperimentSpec, Holdout
from worker.engine.data import Mnist
from worker.engine.model import build_model, build_optimizer, spec_callbacks


@dataclass
class NotebookResult:
    seconds: float  # building the model and model.fit (the data was prepared once, up front)
    history: dict[str, list[float]]  # Keras History.history: one value per epoch and metric

    @property
    def val_accuracy(self) -> float:
        return self.history["val_accuracy"][-1]

    @property
    def epochs(self) -> int:
        return len(self.history["loss"])


def arrays(spec: ExperimentSpec, data: Mnist):
    """The notebook's preprocessing, restricted to the images the spec uses."""
    n = spec.n_train_total
    x = data.x_train[:n].astype("float32") / 255.0
    y = keras.utils.to_categorical(data.y_train[:n], 10)
    if isinstance(spec.validation, Holdout):
        cut = spec.n_fit
        return x[:cut], y[:cut], x[cut:], y[cut:]
    x_test = data.x_test.astype("float32") / 255.0
    return x, y, x_test, keras.utils.to_categorical(data.y_test, 10)


def train_notebook(spec: ExperimentSpec, data: Mnist) -> NotebookResult:
    """Build and fit as the notebook does; `seconds` covers the model's build and `fit`."""
    keras.utils.set_random_seed(spec.seed)
    x, y, x_val, y_val = arrays(spec, data)
    start = time.perf_counter()
    model = build_model(spec)
    model.compile(
        optimizer=build_optimizer(spec), loss="categorical_crossentropy", metrics=["accuracy"]
    )
    history = model.fit(
        x,
        y,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        validation_data=(x_val, y_val),
        callbacks=spec_callbacks(spec),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    return NotebookResult(seconds, {k: [float(v) for v in vs] for k, vs in history.history.items()})
