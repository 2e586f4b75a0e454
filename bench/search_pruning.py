"""Training seconds a pruned search spends against the same trials unpruned.

`python -m bench.search_pruning [--pairs 3 --trials 8 --epochs 6 --train-samples 6000]` runs the
same search with ASHA and with no pruner, `pairs` times each, the order alternating pair by pair
(ASHA first, then none first, ...), each search on a fresh embedded stack of its own (one worker
process): a search never inherits another's warm worker, whose kept models would make the
second one cheaper whatever its pruner. The random sampler with one seed draws the same points
in both, so the only difference is the pruning. Prints each search's training seconds, epochs
trained and best value, and the median and range of ASHA / none in training seconds.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cli.livestack import LiveStack


def run(stack: LiveStack, pruner: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    body = {
        "name": f"pruning {pruner['type']}",
        "base": {
            "layers": [{"units": 64}],
            "epochs": args.epochs,
            "batch_size": 128,
            "train_samples": args.train_samples,
            "validation": {"holdout": args.train_samples // 6},
            "seed": 1,
        },
        "space": {
            "optimizer.learning_rate": {"type": "float", "low": 1e-5, "high": 0.5, "log": True},
            "layers.0.units": {"type": "int", "low": 16, "high": 256, "log": True},
        },
        "sampler": "random",
        "seed": 11,
        "pruner": pruner,
        "trials": args.trials,
        "parallel": 1,
    }
    sid = httpx.post(f"{stack.url}/searches", json=body, timeout=30).json()["id"]
    t0 = time.monotonic()
    while True:
        s = httpx.get(f"{stack.url}/searches/{sid}", timeout=30).json()
        if s["result"] is not None:
            break
        time.sleep(1)
    trials = s["trials"]
    return {
        "pruner": pruner["type"],
        "trials": len(trials),
        "pruned": sum(t["status"] == "pruned" for t in trials),
        "epochs_trained": sum(t["epochs_done"] for t in trials),
        "train_seconds": round(sum(t["train_seconds"] or 0 for t in trials), 2),
        "wall_seconds": round(time.monotonic() - t0, 1),
        "best_value": s["best_value"],
        "best_params": s["best"]["params"] if s["best"] else None,
    }


PRUNERS = {"asha": {"type": "asha", "min_epochs": 1}, "none": {"type": "none"}}


def fresh(pruner: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    stack = LiveStack(Path(tempfile.mkdtemp()) / "data").start()
    try:
        return run(stack, pruner, args)
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--train-samples", type=int, default=6000)
    args = p.parse_args()
    pairs = []
    for i in range(args.pairs):
        order = ["asha", "none"] if i % 2 == 0 else ["none", "asha"]
        pair = {name: fresh(PRUNERS[name], args) for name in order}
        pairs.append(pair)
        print(json.dumps(pair), flush=True)
    ratios = [p["asha"]["train_seconds"] / p["none"]["train_seconds"] for p in pairs]
    print(
        f"ASHA / none, training seconds: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}, {len(ratios)} pairs); epochs "
        f"{pairs[0]['asha']['epochs_trained']} / {pairs[0]['none']['epochs_trained']}"
    )


if __name__ == "__main__":
    main()
