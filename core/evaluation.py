"""Where a trained model errs: confusion matrix, per-class precision and recall, and its most
confident mistakes.

The worker computes these at the end of a run from the model's class probabilities on the test set
(and on the hold-out when validation is one); the run's JSON carries the numbers (`evaluation`),
the API draws `confusion.png` and `mistakes.png` from them. Pure NumPy.

Precision of a class the model never predicted, and recall of a class with no image in the set,
are 0/0: reported as null, not as a number.
"""

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

CLASSES = 10
MISTAKES = 32  # misclassified test images kept for mistakes.png, most confident first


def _ratio(num: npt.NDArray[np.int64], den: npt.NDArray[np.int64]) -> list[float | None]:
    return [float(n) / float(d) if d else None for n, d in zip(num, den, strict=True)]


def confusion(labels: npt.NDArray[Any], predicted: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """counts[true, predicted]."""
    counts = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return counts


def summary(labels: npt.NDArray[Any], probabilities: npt.NDArray[Any]) -> dict[str, Any]:
    """One set's evaluation, as stored in the run's JSON."""
    counts = confusion(labels, np.argmax(probabilities, axis=1))
    hits = np.diag(counts)
    support = counts.sum(axis=1)
    total = int(counts.sum())
    return {
        "images": total,
        "accuracy": float(hits.sum()) / total if total else None,
        "confusion": counts.tolist(),
        "precision": _ratio(hits, counts.sum(axis=0)),
        "recall": _ratio(hits, support),
        "support": support.tolist(),
    }


@dataclass(frozen=True)
class Mistakes:
    """The most confidently misclassified images of a set, most confident first."""

    images: npt.NDArray[np.uint8]  # (k, 28, 28)
    labels: npt.NDArray[np.int64]  # true digit
    predicted: npt.NDArray[np.int64]
    confidence: npt.NDArray[np.float64]  # probability given to the predicted digit
    index: npt.NDArray[np.int64]  # position in the set
    total: int  # misclassified images in the set

    def to_npz(self) -> bytes:
        buf = io.BytesIO()
        np.savez(
            buf,
            meta=np.array(json.dumps({"format": 1, "total": self.total})),
            images=self.images,
            labels=self.labels,
            predicted=self.predicted,
            confidence=self.confidence,
            index=self.index,
        )
        return buf.getvalue()

    @classmethod
    def from_npz(cls, data: bytes) -> "Mistakes":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            return cls(
                images=npz["images"],
                labels=npz["labels"],
                predicted=npz["predicted"],
                confidence=npz["confidence"],
                index=npz["index"],
                total=int(meta["total"]),
            )


def mistakes(
    images: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    probabilities: npt.NDArray[Any],
    keep: int = MISTAKES,
) -> Mistakes:
    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != np.asarray(labels))
    confidence = probabilities[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:keep]
    return Mistakes(
        images=np.asarray(images[order], dtype=np.uint8),
        labels=np.asarray(labels, dtype=np.int64)[order],
        predicted=predicted[order].astype(np.int64),
        confidence=np.asarray(probabilities[order, predicted[order]], dtype=np.float64),
        index=order.astype(np.int64),
        total=int(wrong.size),
    )
