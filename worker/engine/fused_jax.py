"""Fused trials on JAX: one compiled program trains several members of one model shape at once.

Each member's state (weights, dropout seed state, optimizer variables, its learning rate among
them) is one slice of stacked arrays; `jax.vmap` maps the backend's own train step
(worker.engine.steps_jax.train_step) over the slices, each member gathering its own batch from
its own data order. A member that stops inside an epoch (cancelled) is masked: its slice keeps
the state it had, the others train on. worker.engine.fused drives the epochs.
"""

import copy

import jax
import jax.numpy as jnp
import keras
import numpy as np

from worker.engine.steps_jax import BackendSteps, read_state, train_step, write_state


def _stack(states: list[tuple]) -> tuple:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def _keep(active: jax.Array, new, old):
    """`new` where the member is active, else `old` (leading axis: members)."""

    def pick(n, o):
        return jnp.where(active.reshape((-1,) + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(pick, new, old)


class FusedSteps:
    """The vmapped train functions of one model shape, compiled from a template model of it."""

    def __init__(self, template: keras.Model, steps: BackendSteps):
        self.template, self.steps = template, steps
        step = train_step(template, steps.loss_fn)

        def member(state, x, y, idx):
            return step(state, x[idx], y[idx])

        many = jax.vmap(member, in_axes=(0, None, None, 0))

        def rows_fn(state, x, y, rows, active, start, stop):
            def body(i, carry):
                state, loss_sum, hit_sum = carry
                new, loss, hits = many(state, x, y, rows[:, i])
                return _keep(active, new, state), loss_sum + loss, hit_sum + hits

            zero = jnp.zeros(rows.shape[0], jnp.float32)
            return jax.lax.fori_loop(start, stop, body, (state, zero, zero))

        def batch_fn(state, x, y, idx, active):
            new, loss, hits = many(state, x, y, idx)
            return _keep(active, new, state), loss, hits

        self._rows = jax.jit(rows_fn)
        self._batch = jax.jit(batch_fn)

    def bind(self, model: keras.Model) -> BackendSteps:
        """Evaluation and gradient norms for one member: the template's compiled functions (pure,
        so any model of the shape may use them) reading `model`'s variables."""
        mine = copy.copy(self.steps)
        mine.model, mine.state = model, None
        return mine

    def rows(self, index_rows: np.ndarray) -> jax.Array:
        """(members, batches, batch size) image indices, on the device."""
        return jax.device_put(index_rows)

    # -- one epoch of all members -----------------------------------------------------------------

    def begin(self, models: list[keras.Model]) -> tuple:
        return _stack([read_state(m) for m in models])

    def end(self, models: list[keras.Model], state: tuple) -> None:
        for i, m in enumerate(models):
            write_state(m, jax.tree.map(lambda a, i=i: a[i], state))

    def train_rows(self, state, x, y, rows, active: np.ndarray, start: int, stop: int):
        """Steps start..stop-1 of every active member: (state, loss sums, hit counts per member)."""
        state, loss, hits = self._rows(
            state, x, y, rows, jnp.asarray(active), jnp.int32(start), jnp.int32(stop)
        )
        return state, np.asarray(loss), np.asarray(hits)

    def train_batch(self, state, x, y, idx: np.ndarray, active: np.ndarray):
        state, loss, hits = self._batch(state, x, y, jnp.asarray(idx), jnp.asarray(active))
        return state, np.asarray(loss), np.asarray(hits)
