"""The JAX backend's compiled steps (see worker.engine.steps for the why).

JAX functions are pure, so the model's state travels as arrays: `model.stateless_call` runs the
Keras model on given variable values (returning the dropout layers' updated seed state and the
L2 penalties), `optimizer.stateless_apply` the spec's optimizer. A run of steps is one
`lax.fori_loop` inside one `jax.jit` (start and stop are traced, so every run of an epoch, of
every epoch, uses the same compiled program). The state is read from the Keras variables when an
epoch begins (so a resumed checkpoint, ReduceLROnPlateau's new learning rate or EarlyStopping's
restored weights are seen) and written back when it ends (so callbacks, checkpoints and the
export see the trained model). Nothing here imports TensorFlow.
"""

import jax
import jax.numpy as jnp
import keras
import numpy as np

from worker.engine.steps import Steps, dense_layers


def put(a: np.ndarray) -> jax.Array:
    return jax.device_put(a)


def _values(variables) -> list[jax.Array]:
    return [v.value for v in variables]


def read_state(model: keras.Model) -> tuple:
    """The model's training state as arrays: (trainable, non-trainable, optimizer variables)."""
    return (
        _values(model.trainable_variables),
        _values(model.non_trainable_variables),
        _values(model.optimizer.variables),
    )


def write_state(model: keras.Model, state: tuple) -> None:
    """Put `state` (as read_state returns it) back into the model's Keras variables."""
    groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables)
    for group, values in zip(groups, state, strict=True):
        for var, value in zip(group, values, strict=True):
            var.assign(value)


def kernel_positions(model: keras.Model) -> list[int]:
    """Where each Dense layer's kernel sits in model.trainable_variables."""
    kernels = {id(lyr.kernel) for lyr in dense_layers(model)}
    return [i for i, v in enumerate(model.trainable_variables) if id(v) in kernels]


def l2_factors(model: keras.Model) -> jax.Array:
    """Each Dense layer's L2 factor (0 where it has none), as data for a fused program."""
    regs = [lyr.kernel_regularizer for lyr in dense_layers(model)]
    return jnp.asarray([0.0 if r is None else r.l2 for r in regs], jnp.float32)


def _penalized(loss_fn, model: keras.Model, tv, ntv, x, y, training: bool, l2s=None):
    """(loss with the layers' L2 penalties, probabilities, new non-trainable state). The model's
    own regularizers give the penalties; with `l2s` (one factor per Dense layer, as data), those
    factors are applied as well, as Keras's L2 does (a fused program's template has none)."""
    probs, ntv, penalties = model.stateless_call(tv, ntv, x, training=training, return_losses=True)
    loss = loss_fn(y, probs)
    for p in penalties:
        loss = loss + p
    if l2s is not None:
        for j, k in enumerate(kernel_positions(model)):
            loss = loss + l2s[j] * jnp.sum(jnp.square(tv[k]))
    return loss, probs, ntv


def _hits(probs, y) -> jax.Array:
    return jnp.sum(jnp.argmax(probs, axis=1).astype(jnp.int32) == y, dtype=jnp.float32)


def train_step(model: keras.Model, loss_fn):
    """One optimizer step of `model` as a pure function: step((tv, ntv, ov), x, y, l2s=None) ->
    (new state, sample-weighted loss sum, hits). worker.engine.fused_jax maps it over members."""
    opt = model.optimizer

    def loss_and_out(tv, ntv, x, y, l2s):
        loss, probs, ntv = _penalized(loss_fn, model, tv, ntv, x, y, True, l2s)
        return loss, (probs, ntv)

    grad_fn = jax.value_and_grad(loss_and_out, has_aux=True)

    def step(state, x, y, l2s=None):
        tv, ntv, ov = state
        (loss, (probs, ntv)), grads = grad_fn(tv, ntv, x, y, l2s)
        tv, ov = opt.stateless_apply(ov, grads, tv)
        return (tv, ntv, ov), loss * jnp.float32(y.shape[0]), _hits(probs, y)

    return step


def eval_step(model: keras.Model, loss_fn):
    """Evaluation of `model` as a pure function: (tv, ntv, x, y, l2s) -> (loss sum, hits,
    probabilities)."""

    def evaluate(tv, ntv, x, y, l2s):
        loss, probs, _ = _penalized(loss_fn, model, tv, ntv, x, y, False, l2s)
        return loss * jnp.float32(y.shape[0]), _hits(probs, y), probs

    return evaluate


class BackendSteps(Steps):
    def __init__(self, model: keras.Model, jit: bool):
        self.model, self.jit = model, True
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy()
        opt = model.optimizer
        if not opt.built:
            opt.build(model.trainable_variables)
        self._kernel_at = kernel_positions(model)
        self.state: tuple | None = None
        self.l2s: jax.Array | None = None  # a fused member's own L2 factors (fused_jax.bind)

        step = train_step(model, self.loss_fn)

        def rows_fn(state, x, y, rows, start, stop):
            def body(i, carry):
                state, loss_sum, hit_sum = carry
                idx = rows[i]
                state, loss, hits = step(state, x[idx], y[idx])
                return state, loss_sum + loss, hit_sum + hits

            zero = jnp.float32(0.0)
            return jax.lax.fori_loop(start, stop, body, (state, zero, zero))

        def batch_fn(state, x, y, idx):
            return step(state, x[idx], y[idx])

        eval_fn = eval_step(model, self.loss_fn)

        def grads_fn(tv, ntv, x, y):
            def ce(tv):
                probs, _ = model.stateless_call(tv, ntv, x, training=False)
                return self.loss_fn(y, probs)

            grads = jax.grad(ce)(tv)
            return [jnp.linalg.norm(grads[i]) for i in self._kernel_at]

        self._rows = jax.jit(rows_fn)
        self._batch = jax.jit(batch_fn)
        self._eval = jax.jit(eval_fn)
        self._grads = jax.jit(grads_fn)
        self._predict = jax.jit(lambda tv, ntv, x: model.stateless_call(tv, ntv, x)[0])

    def begin_epoch(self) -> None:
        self.state = read_state(self.model)

    def end_epoch(self) -> None:
        if self.state is not None:
            write_state(self.model, self.state)
        self.state = None

    def rows(self, index_rows: np.ndarray) -> jax.Array:
        return jax.device_put(index_rows)

    def train_rows(self, x, y, rows, start: int, stop: int) -> tuple[float, float]:
        assert self.state is not None, "begin_epoch() first"
        self.state, loss, hits = self._rows(
            self.state, x, y, rows, jnp.int32(start), jnp.int32(stop)
        )
        return float(loss), float(hits)

    def train_batch(self, x, y, idx: np.ndarray) -> tuple[float, float]:
        assert self.state is not None, "begin_epoch() first"
        self.state, loss, hits = self._batch(self.state, x, y, jax.device_put(idx))
        return float(loss), float(hits)

    def eval_chunk(self, x, y) -> tuple[float, float]:
        loss, hits, _ = self.eval_probs_chunk(x, y, host=False)
        return loss, hits

    def eval_probs_chunk(self, x, y, host: bool = True) -> tuple[float, float, np.ndarray]:
        m = self.model
        loss, hits, probs = self._eval(
            _values(m.trainable_variables), _values(m.non_trainable_variables), x, y, self.l2s
        )
        return float(loss), float(hits), np.asarray(probs) if host else probs

    def predict_chunk(self, x) -> np.ndarray:
        m = self.model
        probs = self._predict(_values(m.trainable_variables), _values(m.non_trainable_variables), x)
        return np.asarray(probs)

    def grad_norms(self, x, y) -> dict[str, float]:
        m = self.model
        norms = self._grads(
            _values(m.trainable_variables), _values(m.non_trainable_variables), x, y
        )
        return {lyr.name: float(n) for lyr, n in zip(dense_layers(m), norms, strict=True)}
