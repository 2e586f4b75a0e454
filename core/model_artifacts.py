"""What a finished run leaves of its model, shared by the worker (which writes it) and the API.

Artifacts, in the experiment's artifact store (the same one as checkpoints; deleted with the run):
- `model.keras`: the trained model in Keras's native format, compiled, loadable with
  `keras.saving.load_model`;
- `weights.npz`: its dense layers as plain arrays (core.dense_net), for predictions without
  TensorFlow;
- `mistakes.npz`: the most confidently misclassified test images (core.evaluation).

The run's JSON says which weights the model holds and whether it was kept (`model`), and carries
the evaluation (`evaluation`). A model larger than LABQ_MAX_MODEL_BYTES is not stored, and `model`
says so; so are its plain weights when they too are over the cap.
"""

from dataclasses import dataclass
from typing import Any

FIRST_KERNEL = "first_kernel.npy"  # the first Dense layer's kernel columns, for filters.png
NPY_TYPE = "application/x-npy"
MODEL = "model.keras"
WEIGHTS = "weights.npz"
MISTAKES = "mistakes.npz"
KERAS_TYPE = "application/octet-stream"
NPZ_TYPE = "application/x-npz"

FINAL, BEST = "final", "best"


@dataclass(frozen=True)
class ModelExport:
    """Everything the end of a run hands over about its model, ready to store."""

    keras: bytes  # model.keras
    weights: bytes  # core.dense_net.DenseNet.to_npz()
    mistakes: bytes  # core.evaluation.Mistakes.to_npz()
    evaluation: dict[str, Any]  # {"test": summary, "holdout": summary (hold-out validation only)}
    restored: bool  # EarlyStopping put back the weights of its best epoch
    best_epoch: int | None  # that epoch (1-based), when restored


def model_info(export: ModelExport | None, max_bytes: int, why_none: str = "") -> dict[str, Any]:
    """The run's `model` object: which weights, how large, what was kept and, if not, why."""
    if export is None:
        return {
            "weights": None,
            "best_epoch": None,
            "bytes": None,
            "stored": False,
            "predict": False,
            "note": f"no model was kept: {why_none}" if why_none else "no model was kept",
        }
    size = len(export.keras)
    stored, predict = size <= max_bytes, len(export.weights) <= max_bytes
    notes = []
    if not stored:
        notes.append(f"model.keras is {size} bytes, over LABQ_MAX_MODEL_BYTES ({max_bytes})")
    if not predict:
        notes.append(f"its dense weights ({len(export.weights)} bytes) are over it too")
    return {
        "weights": BEST if export.restored else FINAL,
        "best_epoch": export.best_epoch if export.restored else None,
        "bytes": size,
        "stored": stored,
        "predict": predict,
        "note": "; ".join(notes) + ": not stored" if notes else None,
    }
