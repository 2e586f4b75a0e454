"""Per-process resources of a worker child: TensorFlow, the device, MNIST. Built once, kept."""

import logging
import os

from core.settings import get_settings

log = logging.getLogger("labq.worker")

_state: dict = {}


def warm_up() -> None:
    """Import TensorFlow, configure the device and load MNIST (runs in the child, after fork)."""
    if _state:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from worker.engine.data import load_mnist

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    _state["device"] = f"gpu:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')}" if gpus else "cpu"
    _state["mnist"] = load_mnist(get_settings().data_dir / "datasets")
    log.info("worker child ready on %s", _state["device"])


def mnist():
    warm_up()
    return _state["mnist"]


def device() -> str:
    warm_up()
    return _state["device"]
