"""Warm models: a worker process keeps compiled models with their traced train and evaluate
functions, one per model shape, and gives a job of a kept shape that model, reset.

Building a Keras model is cheap; tracing its step functions (tf.function) or compiling them
(jax.jit) is most of a tiny job's cost. A shape is what the traced code depends on: the layers
(type, units, activation, L2, dropout rate), the optimizer and its momentum, the batch size, the
backend and the XLA switch. The learning rate is an optimizer variable, so it is not part of it.

A reset gives the job exactly the state a fresh build would: with the job's seed set, the kept
model takes the weights a fresh build would draw (worker.engine.model.initial_state, the same
initializers in the same order, without building a model) and its dropout layers' seeds; the
optimizer's variables go back to a fresh optimizer's (step 0, moments zero) with the job's
learning rate. tests/unit/test_warm_models.py compares them.
"""

import json
from collections import OrderedDict

import keras
import numpy as np

from core.settings import Settings
from core.spec import ExperimentSpec
from worker.engine.model import build_model, build_optimizer, initial_state
from worker.engine.steps import Steps, backend, make_steps, use_jit

_kept: "OrderedDict[str, tuple[keras.Model, Steps]]" = OrderedDict()


def shape_key(spec: ExperimentSpec, jit: bool) -> str:
    opt = spec.optimizer
    return json.dumps(
        {
            "backend": backend(),
            "jit": jit,
            "batch_size": spec.batch_size,
            "optimizer": [opt.name, opt.momentum],
            "layers": [layer.model_dump(mode="json") for layer in spec.layers],
        },
        sort_keys=True,
    )


def model_and_steps(spec: ExperimentSpec) -> tuple[keras.Model, Steps, bool]:
    """(model, its compiled steps, whether they were kept from an earlier job), in the state a
    fresh build for this spec and seed has. Call with the job's seed already set."""
    settings = Settings()  # read per job, not cached: the bench switches them between runs
    jit, size = use_jit(spec, settings), settings.warm_models
    key = shape_key(spec, jit)
    kept = _kept.get(key) if size else None
    if kept is None:
        fresh = build_model(spec)
        fresh.compile(
            optimizer=build_optimizer(spec),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        steps = make_steps(fresh, jit)
        if size:
            _kept[key] = (fresh, steps)
            while len(_kept) > size:
                _kept.popitem(last=False)
        return fresh, steps, False
    _kept.move_to_end(key)
    model, steps = kept
    reset(model, spec)
    return model, steps, True


def reset(model: keras.Model, spec: ExperimentSpec) -> None:
    """Give `model` (of the spec's shape) the state a fresh build for the spec and its seed would
    have (worker.engine.model.initial_state), and a fresh optimizer's."""
    weights, seeds = initial_state(spec)
    model.set_weights(weights)
    for layer in model.layers:
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            state = np.array([seeds[layer.name], 0], dtype=generator.state.dtype)
            generator.state.assign(state)
    model.stop_training = False
    opt = model.optimizer
    for variable in opt.variables:
        variable.assign(np.zeros(variable.shape, dtype=variable.dtype))
    opt.learning_rate = spec.optimizer.learning_rate


def clear() -> None:
    _kept.clear()
