"""Train one spec on in-memory MNIST, reporting each epoch as it ends.

Read top to bottom: split the data the spec asks for, build and compile the model, fit with the
spec's callbacks plus labq's own (epoch report, gradient probe, divergence stop), evaluate on the
test set once, and hand back everything the worker stores.
"""

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from core.spec import ExperimentSpec, Holdout
from worker.engine.data import Mnist
from worker.engine.model import build_model, build_optimizer, layer_table

PROBE_SIZE = 512  # fixed batch of training images for per-layer gradient norms
FILTER_COLUMNS = 100  # first-layer kernel columns kept for filters.png


@dataclass
class EpochReport:
    epoch: int  # 1-based
    loss: float | None
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    seconds: float
    grad_norms: dict[str, float]


@dataclass
class RunResult:
    layers: list[dict]
    params: int
    build_seconds: float
    train_seconds: float = 0.0
    epochs: list[EpochReport] = field(default_factory=list)
    test_loss: float | None = None
    test_accuracy: float | None = None
    diverged: bool = False
    stopped: str | None = None  # "cancelled", "early_stopping", "diverged"
    first_kernel: np.ndarray | None = None  # (784, <=100) float32


@dataclass
class Arrays:
    x_fit: tf.Tensor
    y_fit: tf.Tensor
    x_val: tf.Tensor
    y_val: tf.Tensor
    x_test: tf.Tensor
    y_test: tf.Tensor


def to_float(x: np.ndarray) -> np.ndarray:
    """The lab's preprocessing: pixels / 255 as float32."""
    return x.astype(np.float32) / 255.0


def split(spec: ExperimentSpec, data: Mnist) -> Arrays:
    n = spec.n_train_total
    x, y = data.x_train[:n], data.y_train[:n]
    x_test, y_test = to_float(data.x_test), data.y_test.astype(np.int32)
    if isinstance(spec.validation, Holdout):
        cut = n - spec.validation.holdout
        x_fit, y_fit = to_float(x[:cut]), y[:cut].astype(np.int32)
        x_val, y_val = to_float(x[cut:]), y[cut:].astype(np.int32)
    else:
        x_fit, y_fit = to_float(x), y.astype(np.int32)
        x_val, y_val = x_test, y_test
    t = tf.convert_to_tensor
    return Arrays(t(x_fit), t(y_fit), t(x_val), t(y_val), t(x_test), t(y_test))


def _finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class _Reporter(keras.callbacks.Callback):
    """Times each epoch, measures gradient norms on a probe batch, reports, and obeys stop requests."""

    checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None = None

    def __init__(self, result: RunResult, probe: tuple[tf.Tensor, tf.Tensor],
                 on_epoch: Callable[[EpochReport], bool], first_epoch: int):
        super().__init__()
        self.result, self.probe, self.on_epoch, self.first_epoch = result, probe, on_epoch, first_epoch
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def grad_norms(self) -> dict[str, float]:
        x, y = self.probe
        dense = [l for l in self.model.layers if isinstance(l, keras.layers.Dense)]
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=False))
        grads = tape.gradient(loss, [l.kernel for l in dense])
        return {l.name: float(tf.norm(g)) for l, g in zip(dense, grads) if g is not None}

    def on_epoch_end(self, epoch, logs=None):
        if self.result.stopped == "cancelled":
            return  # stopped inside this epoch (_StopCheck): it did not finish, report nothing
        logs = logs or {}
        seconds = time.perf_counter() - self.t0
        report = EpochReport(
            epoch=epoch + 1,
            loss=_finite(logs.get("loss")),
            accuracy=_finite(logs.get("accuracy")),
            val_loss=_finite(logs.get("val_loss")),
            val_accuracy=_finite(logs.get("val_accuracy")),
            learning_rate=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            seconds=seconds,
            grad_norms=self.grad_norms(),
        )
        self.result.epochs.append(report)
        if report.loss is None:
            self.result.diverged, self.result.stopped = True, "diverged"
            self.model.stop_training = True
        if self.checkpoint:
            self.checkpoint(self.model, self.result.epochs)
        if self.on_epoch(report):
            self.result.stopped = "cancelled"
            self.model.stop_training = True


class _StopCheck(keras.callbacks.Callback):
    """Asks `should_stop` every `every` batches, so a cancel need not wait for a long epoch's end.
    Dispatched off the training thread (async_safe): it costs the training loop nothing."""

    async_safe = True

    def __init__(self, result: RunResult, should_stop: Callable[[], bool], every: int):
        super().__init__()
        self.result, self.should_stop, self.every, self.next = result, should_stop, every, every

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 >= self.next:
            self.next = batch + 1 + self.every
            if self.should_stop():
                self.result.stopped = "cancelled"
                self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self.next = self.every


def train(spec: ExperimentSpec, data: Mnist, on_epoch: Callable[[EpochReport], bool],
          on_built: Callable[[RunResult], None] | None = None, *, resume=None,
          checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None = None,
          should_stop: Callable[[], bool] | None = None, check_every: int = 50) -> RunResult:
    """Train `spec`. `on_epoch` is called after every epoch; returning True stops the run there.

    `resume` (a worker.checkpoint.Checkpoint) continues a run after its last finished epoch;
    `checkpoint(model, epochs)` is called at each epoch end just before `on_epoch`;
    `should_stop()` is asked every `check_every` batches and stops the run inside the epoch.
    """
    keras.utils.set_random_seed(spec.seed)
    t0 = time.perf_counter()
    arrays = split(spec, data)
    model = build_model(spec)
    model.compile(optimizer=build_optimizer(spec), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    result = RunResult(layers=layer_table(model), params=int(model.count_params()),
                       build_seconds=time.perf_counter() - t0)
    if on_built:
        on_built(result)

    initial_epoch = 0
    if resume is not None:
        resume.apply(model)
        result.epochs = [EpochReport(**h) for h in resume.history]
        initial_epoch = resume.epoch

    probe = (arrays.x_fit[:PROBE_SIZE], arrays.y_fit[:PROBE_SIZE])
    reporter = _Reporter(result, probe, on_epoch, 1)
    reporter.checkpoint = checkpoint
    callbacks: list[keras.callbacks.Callback] = [reporter]
    if should_stop:
        callbacks.append(_StopCheck(result, should_stop, check_every))
    if spec.early_stopping:
        es = spec.early_stopping
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=es.monitor, patience=es.patience, min_delta=es.min_delta,
            restore_best_weights=es.restore_best_weights))
    if spec.reduce_lr_on_plateau:
        rl = spec.reduce_lr_on_plateau
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=rl.monitor, factor=rl.factor, patience=rl.patience, min_lr=rl.min_lr))

    t1 = time.perf_counter()
    model.fit(arrays.x_fit, arrays.y_fit, batch_size=spec.batch_size, epochs=spec.epochs,
              validation_data=(arrays.x_val, arrays.y_val), callbacks=callbacks, verbose=0,
              shuffle=True, initial_epoch=initial_epoch)
    result.train_seconds = time.perf_counter() - t1
    if result.stopped is None and len(result.epochs) < spec.epochs:
        result.stopped = "early_stopping"

    if not result.diverged:
        test_loss, test_acc = model.evaluate(arrays.x_test, arrays.y_test, batch_size=2048, verbose=0)
        result.test_loss, result.test_accuracy = _finite(test_loss), _finite(test_acc)
    first = next((l for l in model.layers if isinstance(l, keras.layers.Dense)), None)
    result.first_kernel = np.asarray(first.kernel)[:, :FILTER_COLUMNS].astype(np.float32)
    return result
