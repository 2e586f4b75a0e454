"""Build the Keras model a spec describes: Flatten(28, 28) -> spec.layers -> Dense(10, softmax)."""

import random

import keras
import numpy as np
from keras import layers, regularizers

from core.spec import ExperimentSpec

if keras.backend.backend() != "tensorflow":
    # Keras probes for TensorFlow on every backend (to seed it in set_random_seed, to recognise its
    # shapes when saving a model) and imports it whenever it is installed: seconds per process,
    # and a machine with JAX alone has none. On another backend, labq tells Keras it is absent.
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def seed_run(seed: int) -> None:
    """Seed a run: what keras.utils.set_random_seed does (Python's and NumPy's generators, and
    Keras's global seed, from which every initializer and seed generator draws), without
    TensorFlow's global seed. Setting that one empties TensorFlow's kernel cache, so a warm
    model's compiled functions would be instantiated again at their next call (about 40 ms
    each); Keras's ops on TensorFlow are stateless and never read it. tests/unit/test_warm_models.py
    checks that this seeds a run exactly as set_random_seed does."""
    if keras.backend.backend() != "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils

    global_state.set_global_attribute(rng_utils.GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)
    random.seed(seed)
    np.random.seed(seed)


def build_model(spec: ExperimentSpec) -> keras.Model:
    model = keras.Sequential(name="labq")
    model.add(keras.Input(shape=(28, 28)))
    model.add(layers.Flatten())
    for i, layer in enumerate(spec.layers, start=1):
        if layer.type == "dense":
            reg = regularizers.L2(layer.l2) if layer.l2 > 0 else None
            model.add(
                layers.Dense(
                    layer.units,
                    activation=layer.activation,
                    kernel_regularizer=reg,
                    name=f"dense_{i}",
                )
            )
        else:
            model.add(layers.Dropout(layer.rate, seed=spec.seed + i, name=f"dropout_{i}"))
    model.add(layers.Dense(10, activation="softmax", name="output"))
    return model


def initial_state(spec: ExperimentSpec) -> tuple[list[np.ndarray], dict[str, int]]:
    """What build_model(spec) starts from, without building a model: its weights (in
    get_weights() order) and each Dropout layer's seed. Call with the run seeded (seed_run).

    Keras gives each Dense layer's initializer a seed drawn from Python's generator when the
    layer is created, in build_model's order, and draws the values from that seed when the layer
    is built; this makes the same draws, in the same order. A warm model takes these instead of a
    fresh build's (worker.engine.warm), which costs about as much as a tiny job's training;
    tests/unit/test_warm_models.py checks the two are identical."""
    weights: list[np.ndarray] = []
    seeds: dict[str, int] = {}
    fan_in = 28 * 28
    for i, layer in enumerate([*spec.layers, None], start=1):
        if layer is not None and layer.type != "dense":
            seeds[f"dropout_{i}"] = spec.seed + i
            continue
        units = 10 if layer is None else layer.units
        kernel = keras.initializers.GlorotUniform()((fan_in, units), dtype="float32")
        weights += [np.asarray(kernel), np.zeros(units, np.float32)]
        fan_in = units
    return weights, seeds


def build_optimizer(spec: ExperimentSpec) -> keras.optimizers.Optimizer:
    opt = spec.optimizer
    if opt.name == "adam":
        return keras.optimizers.Adam(learning_rate=opt.learning_rate)
    if opt.name == "sgd":
        return keras.optimizers.SGD(learning_rate=opt.learning_rate, momentum=opt.momentum or 0.0)
    return keras.optimizers.RMSprop(learning_rate=opt.learning_rate, momentum=opt.momentum or 0.0)


def layer_table(model: keras.Model) -> list[dict]:
    """Per layer after the input: kernel and bias shapes and parameter count (the lab's section 2)."""
    rows = []
    for layer in model.layers:
        if isinstance(layer, layers.Flatten):
            continue
        kernel = getattr(layer, "kernel", None)
        bias = getattr(layer, "bias", None)
        rows.append(
            {
                "name": layer.name,
                "type": "dense" if isinstance(layer, layers.Dense) else "dropout",
                "kernel_shape": list(kernel.shape) if kernel is not None else None,
                "bias_shape": list(bias.shape) if bias is not None else None,
                "params": int(layer.count_params()),
            }
        )
    return rows


def _mode(monitor: str) -> str:
    return "max" if "acc" in monitor else "min"


def spec_callbacks(spec: ExperimentSpec) -> list[keras.callbacks.Callback]:
    """The Keras callbacks a spec asks for (early stopping, reduce-on-plateau), built the same way
    for labq's engine and for the notebook baseline."""
    out: list[keras.callbacks.Callback] = []
    if spec.early_stopping:
        es = spec.early_stopping
        out.append(
            keras.callbacks.EarlyStopping(
                monitor=es.monitor,
                patience=es.patience,
                min_delta=es.min_delta,
                restore_best_weights=es.restore_best_weights,
                mode=_mode(es.monitor),
            )
        )
    if spec.reduce_lr_on_plateau:
        rl = spec.reduce_lr_on_plateau
        out.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=rl.monitor,
                factor=rl.factor,
                patience=rl.patience,
                min_lr=rl.min_lr,
                mode=_mode(rl.monitor),
            )
        )
    return out
