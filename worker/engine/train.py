"""Train one spec on in-memory MNIST, reporting each epoch as it ends.

Read top to bottom: build and compile the model, run the epochs with the compiled steps of
worker.engine.steps (data resident on the device, many steps per host call, large-batch
validation; TensorFlow or JAX, whichever backend Keras was imported with),
drive the spec's Keras callbacks plus labq's own (epoch report, gradient probe, divergence stop)
once per epoch exactly as `fit` would, evaluate on the test set once, and hand back everything the
worker stores. bench.notebook holds the plain `model.fit` way, the benchmark's baseline.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np

from core.model_artifacts import ModelExport
from core.spec import ExperimentSpec, Holdout
from worker.engine import warm
from worker.engine.data import Mnist
from worker.engine.export import export
from worker.engine.model import layer_table, seed_run, spec_callbacks
from worker.engine.steps import Resident, Steps, resident

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
    export: ModelExport | None = None  # the trained model and its evaluation (not if diverged)


def to_float(x: np.ndarray) -> np.ndarray:
    """The lab's preprocessing: pixels / 255 as float32."""
    return x.astype(np.float32) / 255.0


def _finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class _Reporter(keras.callbacks.Callback):
    """Times each epoch, measures gradient norms on a probe batch, reports, and obeys stop requests."""

    checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None = None
    # The epoch's seconds when not the wall time since it began (a fused member's: its share).
    seconds: Callable[[], float] | None = None

    def __init__(
        self,
        result: RunResult,
        steps: Steps,
        probe: tuple,
        on_epoch: Callable[[EpochReport], bool],
        first_epoch: int,
    ):
        super().__init__()
        self.result, self.steps, self.probe = result, steps, probe
        self.on_epoch, self.first_epoch = on_epoch, first_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.result.stopped == "cancelled":
            return  # stopped inside this epoch (should_stop): it did not finish, report nothing
        logs = logs or {}
        seconds = self.seconds() if self.seconds else time.perf_counter() - self.t0
        report = EpochReport(
            epoch=epoch + 1,
            loss=_finite(logs.get("loss")),
            accuracy=_finite(logs.get("accuracy")),
            val_loss=_finite(logs.get("val_loss")),
            val_accuracy=_finite(logs.get("val_accuracy")),
            learning_rate=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            seconds=seconds,
            grad_norms=self.steps.grad_norms(*self.probe),
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


def train(
    spec: ExperimentSpec,
    data: Mnist,
    on_epoch: Callable[[EpochReport], bool],
    on_built: Callable[[RunResult], None] | None = None,
    *,
    resume=None,
    checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    check_every: int = 50,
) -> RunResult:
    """Train `spec`. `on_epoch` is called after every epoch; returning True stops the run there.

    `resume` (a worker.checkpoint.Checkpoint) continues a run after its last finished epoch;
    `checkpoint(model, epochs)` is called at each epoch end just before `on_epoch`;
    `should_stop()` is asked every `check_every` batches and stops the run inside the epoch.
    """
    seed_run(spec.seed)
    t0 = time.perf_counter()
    data_t = resident(data)
    model, steps, _ = warm.model_and_steps(spec)
    result = RunResult(
        layers=layer_table(model),
        params=int(model.count_params()),
        build_seconds=time.perf_counter() - t0,
    )
    if on_built:
        on_built(result)

    initial_epoch = 0
    if resume is not None:
        resume.apply(model)
        result.epochs = [EpochReport(**h) for h in resume.history]
        initial_epoch = resume.epoch

    callbacks = member_callbacks(spec, data_t, result, steps, on_epoch, checkpoint)
    t1 = time.perf_counter()
    _run_epochs(
        spec,
        steps,
        data_t.x_train,
        data_t.y_train,
        validation(spec, data_t),
        callbacks,
        result,
        initial_epoch,
        should_stop,
        max(1, check_every),
    )
    result.train_seconds = time.perf_counter() - t1
    conclude(spec, data, steps, callbacks, result)
    return result


def member_callbacks(
    spec: ExperimentSpec,
    data_t: Resident,
    result: RunResult,
    steps: Steps,
    on_epoch: Callable[[EpochReport], bool],
    checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None,
) -> list[keras.callbacks.Callback]:
    """labq's epoch reporter (timing, gradient norms on a probe batch, checkpoint, report) and
    the spec's own Keras callbacks, in the order `fit` would run them."""
    n = min(PROBE_SIZE, spec.n_fit)
    reporter = _Reporter(result, steps, (data_t.x_train[:n], data_t.y_train[:n]), on_epoch, 1)
    reporter.checkpoint = checkpoint
    return [reporter, *spec_callbacks(spec)]


def validation(spec: ExperimentSpec, data_t: Resident) -> tuple:
    """(x, y, start, stop) of the images epochs are validated on."""
    if isinstance(spec.validation, Holdout):  # the last `holdout` of the training images in use
        return (data_t.x_train, data_t.y_train, spec.n_fit, spec.n_train_total)
    return (data_t.x_test, data_t.y_test, 0, int(data_t.y_test.shape[0]))


def conclude(
    spec: ExperimentSpec,
    data: Mnist,
    steps: Steps,
    callbacks: list[keras.callbacks.Callback],
    result: RunResult,
) -> None:
    """After the last epoch: the test read, the first layer's filters and the export."""
    model, data_t = steps.model, resident(data)
    stopper = next((c for c in callbacks if isinstance(c, keras.callbacks.EarlyStopping)), None)
    if result.stopped is None and len(result.epochs) < spec.epochs:
        result.stopped = "early_stopping"

    if not result.diverged:
        test_loss, test_acc, test_probs = steps.read(data_t.x_test, data_t.y_test)
        result.test_loss, result.test_accuracy = _finite(test_loss), _finite(test_acc)
    first = next((lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dense)), None)
    result.first_kernel = np.asarray(first.kernel)[:, :FILTER_COLUMNS].astype(np.float32)
    if not result.diverged:
        # Keras's EarlyStopping puts back its best weights at the end of training (whether or not
        # it stopped early) once it has seen an epoch; the test read above used them too.
        restored = bool(
            stopper is not None
            and stopper.restore_best_weights
            and stopper.best_weights is not None
        )
        holdout = None
        if isinstance(spec.validation, Holdout):
            n_fit, total = spec.n_fit, spec.n_train_total
            holdout = (data_t.x_train[n_fit:total], data.y_train[n_fit:total])
        result.export = export(
            model,
            steps.predict,
            (test_probs, data.x_test, data.y_test),
            holdout,
            restored=restored,
            best_epoch=stopper.best_epoch + 1 if restored else None,
        )


def epoch_order(spec: ExperimentSpec, epoch: int) -> np.ndarray:
    """The epoch's shuffle of the training images in use: one permutation per (seed, epoch)."""
    return np.random.default_rng([spec.seed, epoch]).permutation(spec.n_fit).astype(np.int32)


def _run_epochs(
    spec: ExperimentSpec,
    steps: Steps,
    x,
    y,
    val,
    callbacks,
    result: RunResult,
    initial_epoch: int,
    should_stop: Callable[[], bool] | None,
    chunk: int,
) -> None:
    """`fit`'s epoch loop: shuffle, train in runs of `chunk` steps (asking `should_stop` between
    runs), validate, then the callbacks' epoch end; stops where a callback sets stop_training."""
    model = steps.model
    n_fit, bs = spec.n_fit, spec.batch_size
    full = n_fit // bs  # full batches; the rest (n_fit % bs images) is the epoch's last batch
    cb = keras.callbacks.CallbackList(callbacks, model=model)
    model.stop_training = False
    cb.on_train_begin()
    for epoch in range(initial_epoch, spec.epochs):
        cb.on_epoch_begin(epoch)
        order = epoch_order(spec, epoch)
        rows = steps.rows(order[: full * bs].reshape(full, bs))
        loss_sum = hit_sum = 0.0
        steps.begin_epoch()
        for start in range(0, full, chunk):
            loss, hits = steps.train_rows(x, y, rows, start, min(start + chunk, full))
            loss_sum, hit_sum = loss_sum + loss, hit_sum + hits
            if should_stop is not None and should_stop():
                result.stopped = "cancelled"  # inside the epoch: it is not reported
                break
        if result.stopped != "cancelled" and full * bs < n_fit:
            loss, hits = steps.train_batch(x, y, order[full * bs :])
            loss_sum, hit_sum = loss_sum + loss, hit_sum + hits
        steps.end_epoch()  # the model's variables now hold the trained state
        if result.stopped == "cancelled":
            break
        val_loss, val_acc = steps.evaluate(*val)
        logs = {
            "loss": loss_sum / n_fit,
            "accuracy": hit_sum / n_fit,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
        }
        cb.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cb.on_train_end()
