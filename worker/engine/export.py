"""The end of a run: the trained model as `model.keras` and as plain dense weights, and where it
errs on the test set (and on the hold-out, when validation is one).

Called after training, once EarlyStopping has put back its best weights where it does, on the
same model whose test accuracy the run records.
"""

import functools
import io
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from core import evaluation
from core.dense_net import DenseLayer, DenseNet
from core.model_artifacts import ModelExport


def _memoize_skipsets() -> None:
    """Keras's saver asks, for every object it saves, which attributes a bare Layer or Optimizer
    has (saving_lib.get_attr_skipset), and builds a reference Layer and Optimizer, variables and
    all, to find out. It means to remember the answer, but reads it under another key than it
    stores it under ("saving_attr_skiplist_" / "saving_attr_skipset_"), so it builds them again
    on every save: about a third of a small model's save. The answer depends only on Keras's
    classes, so it is kept for the process."""
    from keras.src.saving import saving_lib

    if not hasattr(saving_lib.get_attr_skipset, "cache_info"):
        saving_lib.get_attr_skipset = functools.cache(saving_lib.get_attr_skipset)


_memoize_skipsets()


def keras_bytes(model: keras.Model) -> bytes:
    """The compiled model (architecture, weights, optimizer state) in Keras's native format,
    written in memory (Keras's saver takes a file object; keras.saving.save_model wants a path)."""
    from keras.src.saving import saving_lib

    buf = io.BytesIO()
    saving_lib.save_model(model, buf)
    return buf.getvalue()


def dense_net(model: keras.Model) -> DenseNet:
    """The model's Dense layers as arrays; Flatten and Dropout do nothing at inference."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
            layers.append(DenseLayer(kernel, bias, str(layer.get_config()["activation"])))
    return DenseNet(tuple(layers))


def export(
    model: keras.Model,
    predict: Callable[[Any], np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    holdout: tuple[Any, np.ndarray] | None,
    restored: bool,
    best_epoch: int | None,
) -> ModelExport:
    """`predict`: the model's compiled forward pass (Steps.predict: images -> float64 class
    probabilities); `test`: (the model's class probabilities of the test images, read with the
    test accuracy, the images as uint8, the labels); `holdout`: (images, labels) of the hold-out
    when validation is one."""
    test_probs, test_bytes, y_test = test
    result = {"test": evaluation.summary(y_test, test_probs)}
    if holdout is not None:
        result["holdout"] = evaluation.summary(holdout[1], predict(holdout[0]))
    return ModelExport(
        keras=keras_bytes(model),
        weights=dense_net(model).to_npz(),
        mistakes=evaluation.mistakes(test_bytes, y_test, test_probs).to_npz(),
        evaluation=result,
        restored=restored,
        best_epoch=best_epoch,
    )
