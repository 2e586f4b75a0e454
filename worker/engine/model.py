"""Build the Keras model a spec describes: Flatten(28, 28) -> spec.layers -> Dense(10, softmax)."""

import keras
from keras import layers, regularizers

from core.spec import ExperimentSpec

if keras.backend.backend() != "tensorflow":
    # Keras probes for TensorFlow on every backend (to seed it in set_random_seed, to recognise its
    # shapes when saving a model) and imports it whenever it is installed: seconds per process,
    # and a machine with JAX alone has none. On another backend, labq tells Keras it is absent.
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


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
