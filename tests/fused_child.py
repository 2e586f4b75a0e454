"""Train specs one by one and as fused members, in one fresh JAX process; print both as JSON.

    python -m tests.fused_child '[spec, spec, ...]' [cancel_member:after_chunks]

Each spec is trained alone with worker.engine.train.train, then all together with
worker.engine.fused.train_fused. With the second argument, member `cancel_member`'s stop check
answers True after that many runs of batches (as a cancel would) in the fused run only; with
LABQ_TEST_FAIL_BUILD=<member>, that member's build-time write raises. Prints
`RESULT {"solo": [...], "fused": [...], "order": [...], "errors": {...}}`: per spec its epochs,
test accuracy and how it stopped (fused: None for a member that never trained); `order` is the
order members ended in; `errors` what each failed member's `on_error` got.
"""

import json
import os
import sys


def main() -> None:
    os.environ["KERAS_BACKEND"] = "jax"
    bodies = json.loads(sys.argv[1])
    cancel = sys.argv[2].split(":") if len(sys.argv) > 2 else None
    import keras

    from core.settings import get_settings
    from core.spec import ExperimentSpec
    from worker.engine.data import load_mnist
    from worker.engine.fused import Member, train_fused
    from worker.engine.train import RunResult, train

    specs = [ExperimentSpec.model_validate(b) for b in bodies]
    data = load_mnist(get_settings().data_dir / "datasets")
    check_every = int(os.environ.get("LABQ_TEST_CHECK_EVERY", "20"))

    def summary(result: RunResult) -> dict:
        return {
            "epochs": [
                {k: getattr(e, k) for k in ("loss", "accuracy", "val_loss", "val_accuracy")}
                | {"learning_rate": e.learning_rate, "grad_norms": e.grad_norms}
                for e in result.epochs
            ],
            "test_accuracy": result.test_accuracy,
            "stopped": result.stopped,
            "exported": result.export is not None,
            "layers": [row["name"] for row in result.layers],
        }

    solo = []
    for spec in specs:
        r = train(spec, data, on_epoch=lambda r: False, check_every=check_every)
        solo.append(summary(r))
        keras.backend.clear_session(free_memory=False)

    done: dict[int, RunResult] = {}
    order: list[int] = []
    asks = {"n": 0}

    def stopper(i: int):
        def should_stop() -> bool:
            if cancel is None or int(cancel[0]) != i:
                return False
            asks["n"] += 1
            return asks["n"] >= int(cancel[1])

        return should_stop

    def ended(i: int):
        def on_done(result: RunResult) -> None:
            done[i] = result
            order.append(i)

        return on_done

    errors: dict[int, str] = {}
    fail_build = int(os.environ.get("LABQ_TEST_FAIL_BUILD", "-1"))

    def failed(i: int):
        def on_error(exc: Exception) -> None:
            errors[i] = f"{type(exc).__name__}: {exc}"

        return on_error

    def refuse(result: RunResult) -> None:  # as a lost lease at the build's write would
        raise RuntimeError("the build's write was refused")

    members = [
        Member(
            spec=s,
            on_epoch=lambda r: False,
            on_done=ended(i),
            on_error=failed(i),
            on_built=refuse if i == fail_build else None,
            should_stop=stopper(i),
        )
        for i, s in enumerate(specs)
    ]
    train_fused(members, data, check_every=check_every)
    fused = [summary(done[i]) if i in done else None for i in range(len(specs))]
    result = {"solo": solo, "fused": fused, "order": order, "errors": errors}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
