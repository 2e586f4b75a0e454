"""Build the Keras model a spec describes: Flatten(28, 28) -> spec.layers -> Dense(10, softmax)."""

import keras
from keras import layers, regularizers

from core.spec import ExperimentSpec


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
