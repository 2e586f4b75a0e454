"""Fused trials: train several specs of one model shape together, one member per spec.

The trials of a sweep or search that differ only in what the compiled step takes as data (seed,
learning rate, dropout rates, L2 factors, epochs, callbacks) are trained as one program
(worker.engine.fused_jax: `vmap` over the members' stacked state; JAX backend only). Everything
else stays per member, as train.train does it for one spec: its model built from its own seed (so
the same initial weights as alone), its data order, optimizer state and learning rate, its
callbacks (early stopping, reduce-on-plateau, labq's reporter with gradient norms and checkpoints),
its stop check (cancel within an epoch) and its end: a member that stops (its last epoch, an early
stop, a prune, a cancel, a divergence) is concluded and handed back through `on_done` at once while
the others go on. A member's seconds (per epoch and in all) are its share of the program's: the
steps' wall time divided among the members that trained in that epoch, plus its own evaluation. A
failure inside one member's own steps (its callbacks, its report, its export) goes to its
`on_error`; the others go on. A failure of the shared program raises to the caller.
"""

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from core.spec import ExperimentSpec
from worker.engine import warm
from worker.engine.data import Mnist
from worker.engine.fused_jax import FusedSteps
from worker.engine.model import build_model, build_optimizer, layer_table
from worker.engine.steps import Steps, backend, resident
from worker.engine.train import (
    EpochReport,
    RunResult,
    conclude,
    epoch_order,
    member_callbacks,
    validation,
)

_kept: "OrderedDict[str, FusedSteps]" = OrderedDict()
KEPT = 4  # fused programs kept per process, by model shape


@dataclass
class Member:
    spec: ExperimentSpec
    on_epoch: Callable[[EpochReport], bool]  # True stops this member at this epoch's end
    on_done: Callable[[RunResult], None]
    on_error: Callable[[Exception], None]
    on_built: Callable[[RunResult], None] | None = None
    checkpoint: Callable[[keras.Model, list[EpochReport]], None] | None = None
    should_stop: Callable[[], bool] | None = None  # asked between runs of batches


@dataclass
class _Run:
    member: Member
    model: keras.Model
    steps: Steps
    result: RunResult
    callbacks: list[keras.callbacks.Callback]
    cb: keras.callbacks.CallbackList
    spent: float = 0.0  # its share of the program's seconds so far

    @property
    def spec(self) -> ExperimentSpec:
        return self.member.spec


def template_spec(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec a fused program's template is built from: the spec's shape without L2 (each
    member's dropout rates and L2 factors are data in the program, worker.engine.fused_jax)."""
    layers = [
        lyr.model_copy(update={"l2": 0.0}) if lyr.type == "dense" else lyr for lyr in spec.layers
    ]
    return spec.model_copy(update={"layers": layers})


def fuse_key(spec: ExperimentSpec) -> str:
    """Specs with the same key may train as members of one program: the same model shape (the
    warm-model key, the values of dropout rates and L2 factors aside), training images and
    validation."""
    layers = [  # a Dropout layer of rate 0 has no seed state: that much is the shape
        lyr.model_copy(update={"l2": 0.0} if lyr.type == "dense" else {"rate": float(lyr.rate > 0)})
        for lyr in spec.layers
    ]
    shape = warm.shape_key(spec.model_copy(update={"layers": layers}), True)
    return f"{shape}|{spec.n_fit}|{spec.n_train_total}|{spec.validation}"


def train_fused(members: list[Member], data: Mnist, check_every: int = 50) -> None:
    """Train `members` (the same fuse_key) together until each has ended."""
    if backend() != "jax":
        raise RuntimeError("fused trials need the JAX backend")
    keys = {fuse_key(m.spec) for m in members}
    if len(keys) != 1:
        raise ValueError(f"members of one fused program need one model shape, got {len(keys)}")
    data_t = resident(data)
    fused = _program(members[0].spec)
    live = []
    for m in members:
        try:
            live.append(_build(fused, m, data_t))
        except Exception as exc:  # this member's own build or its first write: it alone ends
            m.on_error(exc)
    spec0 = members[0].spec
    x, y, val = data_t.x_train, data_t.y_train, validation(spec0, data_t)
    n_fit, bs, chunk = spec0.n_fit, spec0.batch_size, max(1, check_every)
    full = n_fit // bs  # full batches; the rest is each epoch's last, smaller batch
    for r in live:
        r.cb.on_train_begin()
    epoch = 0
    while live:
        for r in live:
            r.cb.on_epoch_begin(epoch)
        orders = np.stack([epoch_order(r.spec, epoch) for r in live])
        rows = fused.rows(orders[:, : full * bs].reshape(len(live), full, bs))
        active = np.ones(len(live), dtype=bool)
        loss_sum, hit_sum = np.zeros(len(live)), np.zeros(len(live))
        t0 = time.perf_counter()
        state = fused.begin([r.model for r in live])
        for start in range(0, full, chunk):
            state, loss, hits = fused.train_rows(
                state, x, y, rows, active, start, min(start + chunk, full)
            )
            loss_sum, hit_sum = loss_sum + loss, hit_sum + hits
            for j, r in enumerate(live):
                stop = r.member.should_stop
                if active[j] and stop is not None and stop():
                    r.result.stopped = "cancelled"  # inside the epoch: it is not reported
                    active[j] = False
            if not active.any():
                break
        if active.any() and full * bs < n_fit:
            state, loss, hits = fused.train_batch(state, x, y, orders[:, full * bs :], active)
            loss_sum, hit_sum = loss_sum + loss, hit_sum + hits
        fused.end([r.model for r in live], state)  # each model now holds its trained state
        share = (time.perf_counter() - t0) / len(live)  # each member's share of the steps
        epoch += 1
        going = []
        for j, r in enumerate(live):
            t_own = time.perf_counter()
            r.spent += share
            try:
                if r.result.stopped != "cancelled":
                    reporter = r.callbacks[0]
                    reporter.seconds = lambda t=t_own, s=share: s + time.perf_counter() - t
                    val_loss, val_acc = r.steps.evaluate(*val)
                    logs = {
                        "loss": float(loss_sum[j]) / n_fit,
                        "accuracy": float(hit_sum[j]) / n_fit,
                        "val_loss": val_loss,
                        "val_accuracy": val_acc,
                    }
                    r.cb.on_epoch_end(epoch - 1, logs)
                    r.spent += time.perf_counter() - t_own
                ended = (
                    r.result.stopped == "cancelled"
                    or r.model.stop_training
                    or epoch >= r.spec.epochs
                )
                if not ended:
                    going.append(r)
                    continue
                r.cb.on_train_end()
                r.result.train_seconds = r.spent
                conclude(r.spec, data, r.steps, r.callbacks, r.result)
            except Exception as exc:  # this member's own failure: the others go on
                r.member.on_error(exc)
                continue
            r.member.on_done(r.result)
        live = going


def _program(spec: ExperimentSpec) -> FusedSteps:
    """The shape's fused program, compiled once per process (its template is the warm model)."""
    key = fuse_key(spec)
    hit = _kept.get(key)
    if hit is not None:
        _kept.move_to_end(key)
        return hit
    keras.utils.set_random_seed(spec.seed)
    template, steps, _ = warm.model_and_steps(template_spec(spec))
    fused = FusedSteps(template, steps)  # type: ignore[arg-type]  # JAX: steps_jax.BackendSteps
    _kept[key] = fused
    while len(_kept) > KEPT:
        _kept.popitem(last=False)
    return fused


def _build(fused: FusedSteps, member: Member, data_t) -> _Run:
    """The member's own model, built from its seed (the initial weights a solo run would have)."""
    spec = member.spec
    t0 = time.perf_counter()
    keras.utils.set_random_seed(spec.seed)
    model = build_model(spec)
    model.compile(
        optimizer=build_optimizer(spec),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.optimizer.build(model.trainable_variables)
    model.stop_training = False
    result = RunResult(
        layers=layer_table(model),
        params=int(model.count_params()),
        build_seconds=time.perf_counter() - t0,
    )
    if member.on_built:
        member.on_built(result)
    steps = fused.bind(model)
    callbacks = member_callbacks(spec, data_t, result, steps, member.on_epoch, member.checkpoint)
    cb = keras.callbacks.CallbackList(callbacks, model=model)
    return _Run(member, model, steps, result, callbacks, cb)


def clear() -> None:
    _kept.clear()
