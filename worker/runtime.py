"""Per-process resources of a worker child: TensorFlow, the device, MNIST. Built once, kept.

The state is filled only when all of it was built: a child whose start failed has none, and
says so with WorkerEnvironmentError (worker.celery_app then has the child exit, so Celery starts a
fresh one, instead of letting it fail every job it is given)."""

import logging
import os

from core.settings import get_settings

log = logging.getLogger("labq.worker")

_state: dict = {}


class WorkerEnvironmentError(RuntimeError):
    """This worker process cannot train (no data, no device): not the fault of any job."""


def warm_up() -> None:
    """Import TensorFlow, configure the device and load MNIST (runs in the child, after fork)."""
    if _state:
        return
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        from worker.engine.data import load_mnist

        gpus = tf.config.list_physical_devices("GPU")
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        device = f"gpu:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')}" if gpus else "cpu"
        mnist = load_mnist(get_settings().data_dir / "datasets")
    except Exception as exc:
        raise WorkerEnvironmentError(
            f"this worker process cannot train: {type(exc).__name__}: {exc}"
        ) from exc
    _state.update(device=device, mnist=mnist)
    log.info("worker child ready on %s", device)


def mnist():
    warm_up()
    return _state["mnist"]


def device() -> str:
    warm_up()
    return _state["device"]
