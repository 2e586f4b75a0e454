"""Side-by-side training benchmark: the notebook's `model.fit` code and labq's engine, same specs,
same process, same machine, same Keras backend (KERAS_BACKEND: TensorFlow or JAX, set by
`labq bench --backend` before this module is imported; it imports that backend).

Per case and seed: both wall times (model build to trained model; the engine's time also covers its
per-epoch gradient probe and the final test evaluation, work the notebook does not do), both final
validation accuracies, and the engine's distance from the arithmetic floor: the spec's estimated
FLOP (core.spec.estimate_flops, scaled to the epochs actually run) divided by this machine's dense
matmul rate, measured in the same run.
"""

import os
import time
from dataclasses import asdict, dataclass

from core.settings import Settings
from core.spec import ExperimentSpec
from lab.presets import OPTIMAL_LAYERS

LAB12_LAYERS = OPTIMAL_LAYERS  # the section-12 preset's own layers
LAB12_CALLBACKS = {
    "early_stopping": {"monitor": "val_accuracy", "patience": 3},
    "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 2, "min_lr": 1e-7},
}

CASES: dict[str, dict] = {
    "b128": {"layers": [{"units": 300}], "batch_size": 128, "epochs": 5},
    "lab12": {"layers": LAB12_LAYERS, "batch_size": 256, "epochs": 15, **LAB12_CALLBACKS},
    "b1": {"layers": [{"units": 300}], "batch_size": 1, "epochs": 1, "train_samples": 6000},
    "b10000": {"layers": [{"units": 200}], "batch_size": 10000, "epochs": 5},
}
# --quick: the same shapes on little data, for a smoke run well under a minute. The batch-1 case
# validates on a small hold-out: the notebook would otherwise evaluate 10,000 test images one by one.
QUICK: dict[str, dict] = {
    "b128": {**CASES["b128"], "epochs": 1, "train_samples": 2000},
    "lab12": {**CASES["lab12"], "epochs": 2, "train_samples": 2000},
    "b1": {**CASES["b1"], "train_samples": 300, "validation": {"holdout": 100}},
    "b10000": {**CASES["b10000"], "epochs": 1, "train_samples": 20000},
}


@dataclass
class Row:
    case: str
    seed: int
    architecture: str
    batch_size: int
    epochs: int  # epochs the engine ran (early stopping may end a run sooner)
    notebook_seconds: float
    engine_seconds: float
    speedup: float
    notebook_val_accuracy: float
    engine_val_accuracy: float
    floor_seconds: float
    engine_over_floor: float
    jit: bool


def backend() -> str:
    """The Keras backend this bench process trains on (KERAS_BACKEND, set by `labq bench`)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def setup_device(gpu: bool) -> str:
    """Before the backend is imported: hide GPUs unless asked for; with --gpu, require one."""
    if not gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    if backend() == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if not gpu:
            os.environ["JAX_PLATFORMS"] = "cpu"
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if gpu and not gpus:
            raise RuntimeError("--gpu: JAX sees no GPU on this machine")
        return f"GPU 0: {gpus[0].device_kind}" if gpus else "CPU"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # each case's new model retraces; that is expected here
    gpus = tf.config.list_physical_devices("GPU")
    if gpu and not gpus:
        raise RuntimeError("--gpu: TensorFlow sees no GPU on this machine")
    for g in gpus:
        tf.config.experimental.set_memory_growth(g, True)
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        return f"GPU 0: {name}"
    return "CPU"


def matmul_gflops(seconds: float = 1.0, n: int = 2048) -> float:
    """Sustained float32 matmul rate of this device, in GFLOP/s (n x n by n x n, on the bench's
    backend)."""
    if backend() == "jax":
        import jax
        import jax.numpy as jnp

        a = jax.random.uniform(jax.random.key(0), (n, n))
        b = jax.random.uniform(jax.random.key(1), (n, n))
        mm = jax.jit(lambda a, b: jnp.sum(a @ b))
        float(mm(a, b))
        runs, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            float(mm(a, b))
            runs += 1
        return 2 * n**3 * runs / (time.perf_counter() - t0) / 1e9
    import tensorflow as tf

    with tf.device("/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"):
        a = tf.random.uniform((n, n))
        b = tf.random.uniform((n, n))
        tmm = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
        float(tmm(a, b))
        runs, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            float(tmm(a, b))
            runs += 1
        elapsed = time.perf_counter() - t0
    return 2 * n**3 * runs / elapsed / 1e9


def load_data():
    from core.settings import get_settings
    from worker.engine.data import load_mnist

    return load_mnist(get_settings().data_dir / "datasets")


def run_case(name: str, body: dict, seed: int, data, gflops: float, notebook: bool = True) -> Row:
    from bench.notebook import train_notebook
    from core.spec import estimate_flops
    from worker.engine.steps import resident, use_jit
    from worker.engine.train import train

    spec = ExperimentSpec.model_validate({**body, "seed": seed})
    resident(data)  # once per worker process, as in labq's worker: not part of a job's time
    nb = train_notebook(spec, data) if notebook else None  # None: labq's engine alone
    nb_seconds = nb.seconds if nb else float("nan")
    t0 = time.perf_counter()
    result = train(spec, data, on_epoch=lambda report: False)
    engine_seconds = time.perf_counter() - t0
    ran = len(result.epochs)
    floor = estimate_flops(spec) * ran / spec.epochs / (gflops * 1e9)
    return Row(
        case=name,
        seed=seed,
        architecture=spec.name,
        batch_size=spec.batch_size,
        epochs=ran,
        notebook_seconds=nb_seconds,
        engine_seconds=engine_seconds,
        speedup=nb_seconds / engine_seconds,
        notebook_val_accuracy=nb.val_accuracy if nb else float("nan"),
        engine_val_accuracy=result.epochs[-1].val_accuracy or 0.0,
        floor_seconds=floor,
        engine_over_floor=engine_seconds / floor,
        jit=use_jit(spec),
    )


def run(
    cases: list[str], seeds: list[int], quick: bool, gpu: bool, on_row=None, notebook: bool = True
) -> dict:
    device = setup_device(gpu)
    import keras

    table = QUICK if quick else CASES
    data = load_data()
    gflops = matmul_gflops()
    rows = []
    for name in cases:
        for seed in seeds:
            row = run_case(name, table[name], seed, data, gflops, notebook)
            rows.append(row)
            if on_row:
                on_row(row)
            keras.backend.clear_session()
    framework = __import__("jax" if backend() == "jax" else "tensorflow")
    return {
        "device": device,
        "backend": backend(),
        "matmul_gflops": gflops,
        "quick": quick,
        backend(): framework.__version__,
        "keras": keras.__version__,
        "jit": Settings().jit,
        "rows": [asdict(r) for r in rows],
    }
