"""Fused trials on JAX: one compiled program trains several members of one model shape at once.

Each member's state (weights, dropout seed state, optimizer variables, its learning rate among
them) is one slice of stacked arrays; `jax.vmap` maps the backend's own train step
(worker.engine.steps_jax.train_step) over the slices, each member gathering its own batch from
its own data order. A member that stops inside an epoch (cancelled) is masked: its slice keeps
the state it had, the others train on. worker.engine.fused drives the epochs.

Dropout rates and L2 factors are data too, one per member and layer: the template (built without
regularizers) applies each member's L2 factors as Keras's L2 would, and while the program is
traced its Dropout layers keep units with each member's own probability, drawing the mask from
the member's seed state as Keras's dropout does on JAX (the same draws: a member's history
matches its solo run). Whether a Dropout layer's rate is 0 is part of the shape: Keras gives
such a layer no seed state.
"""

import copy
from contextlib import contextmanager

import jax
import jax.numpy as jnp
import keras
import numpy as np

from worker.engine.steps_jax import BackendSteps, l2_factors, read_state, train_step, write_state


def _stack(states: list[tuple]) -> tuple:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def _keep(active: jax.Array, new, old):
    """`new` where the member is active, else `old` (leading axis: members)."""

    def pick(n, o):
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


def _dropout(layer: keras.layers.Dropout, keep: jax.Array):
    """Layer.call for `layer` keeping units with probability `keep` (traced): Keras's JAX dropout
    (a uniform draw from the layer's seed generator below keep, survivors scaled by 1/keep)."""

    def call(inputs, training=False):
        if not training:
            return inputs
        mask = keras.random.uniform(inputs.shape, seed=layer.seed_generator) < keep
        return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))

    return call


@contextmanager
def _member_dropout(layers: list, keeps: jax.Array):
    """While tracing one member's step: the template's Dropout layers use its keep probabilities."""
    for j, layer in enumerate(layers):
        layer.call = _dropout(layer, keeps[j])
    try:
        yield
    finally:
        for layer in layers:
            del layer.call  # the class's own call again


def keep_probabilities(model: keras.Model) -> np.ndarray:
    """Each Dropout layer's keep probability, computed as Keras's dropout does (1.0 - rate)."""
    return np.asarray([1.0 - lyr.rate for lyr in _dropouts(model)], np.float32)


def _dropouts(model: keras.Model) -> list:
    """The Dropout layers that drop (a rate above 0)."""
    return [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dropout) and lyr.rate > 0]


class FusedSteps:
    """The vmapped train functions of one model shape, compiled from a template model of it (one
    without regularizers: each member's dropout rates and L2 factors are data)."""

    def __init__(self, template: keras.Model, steps: BackendSteps):
        self.template, self.steps = template, steps
        step = train_step(template, steps.loss_fn)
        drops = _dropouts(template)

        def member(state, x, y, idx, keeps, l2s):
            with _member_dropout(drops, keeps):
                return step(state, x[idx], y[idx], l2s)

        many = jax.vmap(member, in_axes=(0, None, None, 0, 0, 0))

        def rows_fn(state, x, y, rows, active, start, stop, keeps, l2s):
            def body(i, carry):
                state, loss_sum, hit_sum = carry
                new, loss, hits = many(state, x, y, rows[:, i], keeps, l2s)
                return _keep(active, new, state), loss_sum + loss, hit_sum + hits

            zero = jnp.zeros(rows.shape[0], jnp.float32)
            return jax.lax.fori_loop(start, stop, body, (state, zero, zero))

        def batch_fn(state, x, y, idx, active, keeps, l2s):
            new, loss, hits = many(state, x, y, idx, keeps, l2s)
            return _keep(active, new, state), loss, hits

        self._rows = jax.jit(rows_fn)
        self._batch = jax.jit(batch_fn)

    def bind(self, model: keras.Model) -> BackendSteps:
        """Evaluation and gradient norms for one member: the template's compiled functions (pure,
        so any model of the shape may use them) reading `model`'s variables."""
        mine = copy.copy(self.steps)
        mine.model, mine.state, mine.l2s = model, None, l2_factors(model)
        return mine

    def rows(self, index_rows: np.ndarray) -> jax.Array:
        """(members, batches, batch size) image indices, on the device."""
        return jax.device_put(index_rows)

    # -- one epoch of all members -----------------------------------------------------------------

    def begin(self, models: list[keras.Model]) -> tuple:
        """(stacked state, the members' hyperparameters as data: keep probabilities, L2 factors)."""
        hp = (
            jnp.asarray(np.stack([keep_probabilities(m) for m in models])),
            jnp.stack([l2_factors(m) for m in models]),
        )
        return _stack([read_state(m) for m in models]), hp

    def end(self, models: list[keras.Model], state: tuple) -> None:
        state, _ = state
        for i, m in enumerate(models):
            write_state(m, jax.tree.map(lambda a, i=i: a[i], state))

    def train_rows(self, state, x, y, rows, active: np.ndarray, start: int, stop: int):
        """Steps start..stop-1 of every active member: (state, loss sums, hit counts per member)."""
        state, hp = state
        state, loss, hits = self._rows(
            state, x, y, rows, jnp.asarray(active), jnp.int32(start), jnp.int32(stop), *hp
        )
        return (state, hp), np.asarray(loss), np.asarray(hits)

    def train_batch(self, state, x, y, idx: np.ndarray, active: np.ndarray):
        state, hp = state
        state, loss, hits = self._batch(state, x, y, jnp.asarray(idx), jnp.asarray(active), *hp)
        return (state, hp), np.asarray(loss), np.asarray(hits)
