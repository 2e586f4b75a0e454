"""Epoch-end checkpoints as bytes: model weights, optimizer state and the history so far.

Written by the job (as the experiment's "checkpoint" artifact, in the same transaction as the epoch's
row) and read back when another attempt takes the job over, which then continues with the next
epoch (Keras `fit(initial_epoch=...)`). The format is one `.npz`: `w<i>` model weights, `o<i>`
optimizer variables (iteration count, learning rate, moments), and `meta`, a JSON string with the
epoch number and the epoch reports. No pickle: loading never runs code.

What a resume does not carry over: the state of the EarlyStopping / ReduceLROnPlateau callbacks
(their patience counters start again) and the random shuffling order, so a resumed run is a
faithful continuation, not a bit-identical replay.
"""

import io
import json
from dataclasses import asdict, dataclass

import numpy as np

FORMAT = 1


@dataclass
class Checkpoint:
    epoch: int  # epochs finished (1-based count); training resumes at this 0-based index
    weights: list[np.ndarray]
    optimizer: list[np.ndarray]
    history: list[dict]  # EpochReport fields, one per finished epoch

    def apply(self, model) -> None:
        """Load weights and optimizer state into a compiled model of the same spec."""
        model.set_weights(self.weights)
        opt = model.optimizer
        if not opt.built:
            opt.build(model.trainable_variables)
        variables = list(opt.variables)
        if len(variables) != len(self.optimizer):
            raise ValueError(
                f"checkpoint has {len(self.optimizer)} optimizer variables, "
                f"the model's optimizer {len(variables)}"
            )
        for var, value in zip(variables, self.optimizer, strict=False):
            var.assign(value)


def dumps(model, epochs: list) -> bytes:
    """Serialize the model and the epoch reports (dataclasses) finished so far."""
    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    opt = model.optimizer
    if opt.built:
        arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(opt.variables)})
    meta = {
        "format": FORMAT,
        "epoch": len(epochs),
        "history": [asdict(e) if not isinstance(e, dict) else e for e in epochs],
    }
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def loads(data: bytes) -> Checkpoint:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown checkpoint format {meta.get('format')}")

        def series(prefix: str) -> list[np.ndarray]:
            n = sum(1 for k in npz.files if k.startswith(prefix) and k[1:].isdigit())
            return [npz[f"{prefix}{i}"] for i in range(n)]

        return Checkpoint(
            epoch=int(meta["epoch"]),
            weights=series("w"),
            optimizer=series("o"),
            history=meta["history"],
        )
