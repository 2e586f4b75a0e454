"""The engine's fast path: MNIST resident as tensors, many training steps per host call.

What `model.fit` on numpy arrays spends its time on, besides the arithmetic: a tf.data pipeline
per fit, a Python round trip per batch, validation at the training batch size (10,000 round trips
per epoch at batch 1). Here the images live on the device as float32 tensors built once per
process, each epoch's shuffle is one index permutation, a compiled function runs a whole run of
steps (gather a batch, forward, backward, optimizer update, running loss and accuracy) inside one
`tf.while_loop`, and evaluation runs in large chunks. The step is the same one Keras runs in
`fit`: loss = sparse categorical cross-entropy + the layers' L2 penalties, gradients of that, the
spec's optimizer; epoch loss and accuracy are sample-weighted means over the epoch's batches.

XLA (`jit_compile`) compiles the loop into one program. That removes the per-op dispatch cost that
dominates small batches, but compiling takes seconds per model, so `use_jit` turns it on only where
the measured saving is larger than the compile time; on this 2-core CPU that is nowhere yet, so
it is opt-in (LABQ_JIT=on; see BENCHMARKS.md).
"""

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from core.settings import Settings
from core.spec import ExperimentSpec
from worker.engine.data import Mnist

EVAL_CHUNK = 5000  # images per evaluation call


@dataclass(frozen=True)
class Resident:
    """MNIST as device tensors with the lab's preprocessing (pixels / 255 as float32)."""

    x_train: tf.Tensor  # (60000, 28, 28) float32
    y_train: tf.Tensor  # (60000,) int32
    x_test: tf.Tensor
    y_test: tf.Tensor


_resident: dict[int, tuple[Mnist, Resident]] = {}


def device_name() -> str:
    return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def resident(data: Mnist) -> Resident:
    """Tensors for `data`, built on its first use in this process and kept while `data` lives."""
    hit = _resident.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    with tf.device(device_name()):

        def put(a: np.ndarray) -> tf.Tensor:
            return tf.identity(tf.convert_to_tensor(a))

        r = Resident(
            put(data.x_train.astype(np.float32) / 255.0),
            put(data.y_train.astype(np.int32)),
            put(data.x_test.astype(np.float32) / 255.0),
            put(data.y_test.astype(np.int32)),
        )
    _resident.clear()
    _resident[id(data)] = (data, r)
    return r


def use_jit(spec: ExperimentSpec) -> bool:
    """LABQ_JIT=on|off forces it; "auto" (the default) is off, the measured faster choice here."""
    forced = Settings().jit  # read per job, not cached: the bench switches it between runs
    if forced != "auto":
        return forced == "on"
    # auto = off: measured here, the XLA loop called in runs of `check_every` steps was ~60x slower
    # at batch 1 than the plain graph loop (BENCHMARKS.md), so XLA is opt-in until that is solved.
    return False


class Steps:
    """Compiled train / evaluate functions bound to one compiled Keras model."""

    def __init__(self, model: keras.Model, jit: bool):
        self.model, self.jit = model, jit
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self.train_rows = tf.function(self._train_rows, jit_compile=jit)
        # The epoch's last, smaller batch: one call per epoch, not worth a second XLA compile.
        self.train_batch = tf.function(self._train_batch)
        self.eval_batch = tf.function(self._eval_batch, reduce_retracing=True)

    def _loss(self, y, probs):
        loss = self.loss_fn(y, probs)
        penalties = self.model.losses
        if penalties:
            loss = loss + tf.add_n(penalties)
        return loss

    def _step(self, x, y):
        model = self.model
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            loss = self._loss(y, probs)
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply(grads, model.trainable_variables)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        hits = tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32)
        return loss * n, tf.reduce_sum(hits)

    def _train_rows(self, x, y, rows, start, stop):
        """Steps `start`..`stop`-1 of an epoch; row i of `rows` holds batch i's image indices."""
        loss_sum, hit_sum = tf.constant(0.0), tf.constant(0.0)
        for i in tf.range(start, stop):
            idx = rows[i]
            loss, hits = self._step(tf.gather(x, idx), tf.gather(y, idx))
            loss_sum += loss
            hit_sum += hits
        return loss_sum, hit_sum

    def _train_batch(self, x, y, idx):
        return self._step(tf.gather(x, idx), tf.gather(y, idx))

    def _eval_batch(self, x, y):
        probs = self.model(x, training=False)
        loss = self._loss(y, probs)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        hits = tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32)
        return loss * n, tf.reduce_sum(hits)

    def evaluate(self, x: tf.Tensor, y: tf.Tensor, start: int, stop: int) -> tuple[float, float]:
        """Mean loss and accuracy over images start..stop-1, in chunks of EVAL_CHUNK."""
        loss_sum = hit_sum = 0.0
        for a in range(start, stop, EVAL_CHUNK):
            b = min(a + EVAL_CHUNK, stop)
            loss, hits = self.eval_batch(x[a:b], y[a:b])
            loss_sum += float(loss)
            hit_sum += float(hits)
        n = stop - start
        return loss_sum / n, hit_sum / n
