"""The engine's fast path, whichever Keras backend runs it: MNIST resident on the device, many
training steps per host call, evaluation in large chunks.

What `model.fit` on numpy arrays spends its time on, besides the arithmetic: a data pipeline per
fit, a Python round trip per batch, validation at the training batch size (10,000 round trips per
epoch at batch 1). Here the images live on the device as float32 arrays built once per process,
each epoch's shuffle is one index permutation, a compiled function runs a whole run of steps
(gather a batch, forward, backward, optimizer update, running loss and accuracy), and evaluation
runs in large chunks. The step is the one Keras runs in `fit`: loss = sparse categorical
cross-entropy + the layers' L2 penalties, gradients of that, the spec's optimizer; epoch loss and
accuracy are sample-weighted means over the epoch's batches.

Each backend has its own small file with the compiled functions (`steps_tf.py`: `tf.function`
loops; `steps_jax.py`: `jax.jit` of Keras's stateless calls, a run of steps as one
`lax.fori_loop`). Both offer the interface of `Steps` below; train.py uses nothing else.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from core import evaluation
from core.settings import Settings
from core.spec import ExperimentSpec
from worker.engine.data import Mnist

EVAL_CHUNK = 5000  # images per evaluation call


@dataclass(frozen=True)
class Resident:
    """MNIST as device arrays with the lab's preprocessing (pixels / 255 as float32)."""

    x_train: Any  # (60000, 28, 28) float32, a backend tensor
    y_train: Any  # (60000,) int32
    x_test: Any
    y_test: Any


def backend() -> str:
    """The Keras backend of this process ("tensorflow" or "jax"), fixed when keras was imported."""
    return str(keras.backend.backend())


def _impl():
    if backend() == "jax":
        from worker.engine import steps_jax

        return steps_jax
    from worker.engine import steps_tf

    return steps_tf


_resident: dict[int, tuple[Mnist, Resident]] = {}


def resident(data: Mnist) -> Resident:
    """Device arrays for `data`, built on its first use in this process, kept while `data` lives."""
    hit = _resident.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    put: Callable[[np.ndarray], Any] = _impl().put
    r = Resident(
        put(data.x_train.astype(np.float32) / 255.0),
        put(data.y_train.astype(np.int32)),
        put(data.x_test.astype(np.float32) / 255.0),
        put(data.y_test.astype(np.int32)),
    )
    _resident.clear()
    _resident[id(data)] = (data, r)
    return r


def use_jit(spec: ExperimentSpec, settings: Settings | None = None) -> bool:
    """Whether the step loop is compiled by XLA. JAX: always (that is how JAX runs). TensorFlow:
    LABQ_JIT=on|off forces it; "auto" (the default) is off, the measured faster choice here.
    `settings`: the job's, read once per job (not cached: the bench switches them between runs)."""
    if backend() == "jax":
        return True
    forced = (settings or Settings()).jit
    if forced != "auto":
        return forced == "on"
    # auto = off: measured here, the XLA loop called in runs of `check_every` steps was ~60x slower
    # at batch 1 than the plain graph loop (BENCHMARKS.md), so XLA is opt-in until that is solved.
    return False


class Steps:
    """Compiled train / evaluate functions bound to one compiled Keras model (the interface).

    An epoch is `begin_epoch()`, `rows(order)`, `train_rows(...)` over runs of batches (the caller
    may stop between runs), `train_batch(...)` for the last smaller batch, then `end_epoch()`,
    after which the Keras model's variables hold the trained state (callbacks, checkpoints and the
    export read them there). `evaluate` and `grad_norms` read the model's current variables.
    """

    model: keras.Model
    jit: bool

    def begin_epoch(self) -> None: ...

    def end_epoch(self) -> None: ...

    def rows(self, index_rows: np.ndarray) -> Any:
        raise NotImplementedError

    def train_rows(self, x: Any, y: Any, rows: Any, start: int, stop: int) -> tuple[float, float]:
        """Steps `start`..`stop`-1; row i of `rows` holds batch i's image indices. Returns the
        sample-weighted loss sum and the hit count."""
        raise NotImplementedError

    def train_batch(self, x: Any, y: Any, idx: np.ndarray) -> tuple[float, float]:
        raise NotImplementedError

    def eval_chunk(self, x: Any, y: Any) -> tuple[float, float]:
        raise NotImplementedError

    def eval_probs_chunk(self, x: Any, y: Any) -> tuple[float, float, np.ndarray]:
        """eval_chunk's loss sum and hits, and the class probabilities, from one forward pass."""
        raise NotImplementedError

    def predict_chunk(self, x: Any) -> np.ndarray:
        """The class probabilities (inference mode) of the images x, compiled."""
        raise NotImplementedError

    def predict(self, x: Any) -> np.ndarray:
        """Class probabilities of all images x as float64, in chunks of EVAL_CHUNK."""
        n = int(x.shape[0])
        parts = [
            np.asarray(self.predict_chunk(x[a : a + EVAL_CHUNK]), np.float64)
            for a in range(0, n, EVAL_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, evaluation.CLASSES))

    def grad_norms(self, x: Any, y: Any) -> dict[str, float]:
        """Per Dense layer: the norm of the cross-entropy's gradient (no penalties, inference
        mode) with respect to its kernel, on the images x."""
        raise NotImplementedError

    def evaluate(self, x: Any, y: Any, start: int, stop: int) -> tuple[float, float]:
        """Mean loss and accuracy over images start..stop-1, in chunks of EVAL_CHUNK."""
        loss, accuracy, _ = self._chunked(self.eval_chunk, x, y, start, stop)
        return loss, accuracy

    def read(self, x: Any, y: Any) -> tuple[float, float, np.ndarray]:
        """A whole set's mean loss, accuracy and class probabilities (float64) in one pass: the
        test read and the export's evaluation of the same forward pass."""
        loss, accuracy, parts = self._chunked(self.eval_probs_chunk, x, y, 0, int(y.shape[0]))
        probs = [np.asarray(p, np.float64) for p in parts]
        return loss, accuracy, np.concatenate(probs) if probs else np.zeros((0, evaluation.CLASSES))

    @staticmethod
    def _chunked(fn, x: Any, y: Any, start: int, stop: int) -> tuple[float, float, list]:
        """`fn` (images, labels) -> (loss sum, hits, *more) over images start..stop-1 in chunks of
        EVAL_CHUNK: (mean loss, accuracy, every chunk's further outputs in order)."""
        loss_sum = hit_sum = 0.0
        more: list = []
        for a in range(start, stop, EVAL_CHUNK):
            b = min(a + EVAL_CHUNK, stop)
            loss, hits, *rest = fn(x[a:b], y[a:b])
            loss_sum += loss
            hit_sum += hits
            more += rest
        n = max(stop - start, 1)
        return loss_sum / n, hit_sum / n, more


def make_steps(model: keras.Model, jit: bool) -> Steps:
    steps: Steps = _impl().BackendSteps(model, jit)
    return steps


def dense_layers(model: keras.Model) -> list:
    return [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dense)]
