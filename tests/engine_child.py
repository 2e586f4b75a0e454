"""Train one spec in a fresh Python process on a chosen Keras backend and print a JSON summary.

Keras's backend is fixed when keras is first imported, so a test that compares backends (or runs
JAX beside the TensorFlow tests of its own process) trains each in a child:

    python -m tests.engine_child jax '{"layers": [{"units": 32}], ...}' [cancel_after_chunks]

The child loads MNIST from LABQ_DATA_DIR's cache (tests point it at a prepared one); with a third
argument, should_stop() answers True after that many runs of batches, as a cancel would.
"""

import json
import os
import sys


def main() -> None:
    backend, body = sys.argv[1], json.loads(sys.argv[2])
    cancel_after = int(sys.argv[3]) if len(sys.argv) > 3 else None
    os.environ["KERAS_BACKEND"] = backend
    from core.settings import get_settings
    from core.spec import ExperimentSpec
    from worker import checkpoint
    from worker.engine.data import load_mnist
    from worker.engine.train import train

    spec = ExperimentSpec.model_validate(body)
    data = load_mnist(get_settings().data_dir / "datasets")
    saved: list[bytes] = []
    asks = {"n": 0}

    def should_stop() -> bool:
        asks["n"] += 1
        return cancel_after is not None and asks["n"] >= cancel_after

    result = train(
        spec,
        data,
        on_epoch=lambda r: False,
        checkpoint=lambda model, epochs: saved.append(checkpoint.dumps(model, epochs)),
        should_stop=should_stop,
        check_every=int(os.environ.get("LABQ_TEST_CHECK_EVERY", "50")),
    )
    resumed = None
    if os.environ.get("LABQ_TEST_RESUME_FROM"):  # resume from the checkpoint of that epoch
        ck = checkpoint.loads(saved[int(os.environ["LABQ_TEST_RESUME_FROM"]) - 1])
        again = train(spec, data, on_epoch=lambda r: False, resume=ck)
        resumed = [e.val_accuracy for e in again.epochs]
    import keras

    print(
        "RESULT "
        + json.dumps(
            {
                "backend": keras.backend.backend(),
                "tensorflow_imported": "tensorflow" in sys.modules,
                "epochs": [
                    {
                        "loss": e.loss,
                        "val_loss": e.val_loss,
                        "val_accuracy": e.val_accuracy,
                        "learning_rate": e.learning_rate,
                        "grad_norms": e.grad_norms,
                    }
                    for e in result.epochs
                ],
                "stopped": result.stopped,
                "test_accuracy": result.test_accuracy,
                "checkpoints": len(saved),
                "asks": asks["n"],
                "model_keras_bytes": len(result.export.keras) if result.export else 0,
                "resumed": resumed,
            }
        )
    )


if __name__ == "__main__":
    main()
