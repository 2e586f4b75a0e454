"""Per-process resources of a worker child: Keras on its backend, the device, MNIST. Built once,
kept.

The backend (LABQ_BACKEND: tensorflow or jax) is fixed here, before anything imports Keras:
KERAS_BACKEND is set from it, and a JAX worker never imports TensorFlow.

The state is filled only when all of it was built: a child whose start failed has none, and
says so with WorkerEnvironmentError (worker.celery_app then has the child exit, so Celery starts a
fresh one, instead of letting it fail every job it is given)."""

import logging
import os
import sys

from core.settings import Settings, get_settings

log = logging.getLogger("labq.worker")

_state: dict = {}


class WorkerEnvironmentError(RuntimeError):
    """This worker process cannot train (no data, no device): not the fault of any job."""


def warm_up() -> None:
    """Import the backend, configure the device and load MNIST (runs in the child, after fork)."""
    if _state:
        return
    try:
        backend = Settings().backend  # read now: `labq worker --backend` sets it late
        device = _start_backend(backend)
        from worker.engine.data import load_mnist

        mnist = load_mnist(get_settings().data_dir / "datasets")
    except Exception as exc:
        raise WorkerEnvironmentError(
            f"this worker process cannot train: {type(exc).__name__}: {exc}"
        ) from exc
    _state.update(device=device, mnist=mnist, backend=backend)
    log.info("worker child ready on %s (Keras on %s)", device, backend)


def _start_backend(backend: str) -> str:
    """Set KERAS_BACKEND, import the backend, take the GPU's memory as it is needed; the device."""
    loaded = sys.modules.get("keras")
    if loaded is not None and loaded.backend.backend() != backend:
        raise RuntimeError(f"Keras was imported on {loaded.backend.backend()}, not {backend}")
    os.environ["KERAS_BACKEND"] = backend
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0")
    if backend == "jax":
        # Memory as it is needed, like TensorFlow's memory growth, not 75 % of the card at once.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return f"gpu:{gpu}" if gpus else "cpu"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    return f"gpu:{gpu}" if gpus else "cpu"


def mnist():
    warm_up()
    return _state["mnist"]


def device() -> str:
    warm_up()
    return _state["device"]
