"""The TensorFlow backend's compiled steps (see worker.engine.steps for the why).

A run of steps is one `tf.function` holding a `tf.while_loop`; the model's own variables are
updated in place. XLA (`jit_compile`) compiles the loop into one program. That removes the per-op
dispatch cost that dominates small batches, but compiling takes seconds per model, so it is
opt-in (LABQ_JIT=on; see BENCHMARKS.md).
"""

import keras
import numpy as np
import tensorflow as tf

from worker.engine.steps import Steps, dense_layers


def device_name() -> str:
    return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"


def put(a: np.ndarray) -> tf.Tensor:
    with tf.device(device_name()):
        return tf.identity(tf.convert_to_tensor(a))


class BackendSteps(Steps):
    def __init__(self, model: keras.Model, jit: bool):
        self.model, self.jit = model, jit
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        self._train_rows = tf.function(self._rows_fn, jit_compile=jit)
        # The epoch's last, smaller batch: one call per epoch, not worth a second XLA compile.
        self._train_batch = tf.function(self._batch_fn)
        self._eval = tf.function(self._eval_fn, reduce_retracing=True)
        self._grads = tf.function(self._grads_fn, reduce_retracing=True)
        self._predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

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

    def _rows_fn(self, x, y, rows, start, stop):
        loss_sum, hit_sum = tf.constant(0.0), tf.constant(0.0)
        for i in tf.range(start, stop):
            idx = rows[i]
            loss, hits = self._step(tf.gather(x, idx), tf.gather(y, idx))
            loss_sum += loss
            hit_sum += hits
        return loss_sum, hit_sum

    def _batch_fn(self, x, y, idx):
        return self._step(tf.gather(x, idx), tf.gather(y, idx))

    def _eval_fn(self, x, y):
        probs = self.model(x, training=False)
        loss = self._loss(y, probs)
        n = tf.cast(tf.shape(y)[0], tf.float32)
        hits = tf.cast(tf.equal(tf.argmax(probs, axis=1, output_type=tf.int32), y), tf.float32)
        return loss * n, tf.reduce_sum(hits), probs

    def _grads_fn(self, x, y):
        kernels = [lyr.kernel for lyr in dense_layers(self.model)]
        with tf.GradientTape() as tape:
            loss = self.loss_fn(y, self.model(x, training=False))
        return [tf.norm(g) for g in tape.gradient(loss, kernels)]

    def rows(self, index_rows: np.ndarray) -> tf.Tensor:
        return tf.constant(index_rows)

    def train_rows(self, x, y, rows, start: int, stop: int) -> tuple[float, float]:
        loss, hits = self._train_rows(x, y, rows, tf.constant(start), tf.constant(stop))
        return float(loss), float(hits)

    def train_batch(self, x, y, idx: np.ndarray) -> tuple[float, float]:
        loss, hits = self._train_batch(x, y, tf.constant(idx))
        return float(loss), float(hits)

    def eval_chunk(self, x, y) -> tuple[float, float]:
        loss, hits, _ = self._eval(x, y)
        return float(loss), float(hits)

    def eval_probs_chunk(self, x, y) -> tuple[float, float, np.ndarray]:
        loss, hits, probs = self._eval(x, y)
        return float(loss), float(hits), np.asarray(probs)

    def predict_chunk(self, x) -> np.ndarray:
        return np.asarray(self._predict(x))

    def grad_norms(self, x, y) -> dict[str, float]:
        norms = self._grads(x, y)
        return {lyr.name: float(n) for lyr, n in zip(dense_layers(self.model), norms, strict=True)}
