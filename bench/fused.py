"""Fused trials against the same trials one by one, through the queue (BENCHMARKS.md, "Fused
trials"): `labq bench --fused [--pairs 3] [--backend jax] [--gpu]` or `python -m bench.fused [PAIRS]`.

The work: 8 trials of 784-100-10 at batch 32, 3 epochs on 12,000 images (with --gpu: 784-300-10
at batch 128, 5 epochs on all 60,000), learning rates 0.0005-0.004 x 2 seeds (one sweep's cells).
Three ways (with `--backend jax`, the last two), each on its own fresh stack with one worker
process (started once, warmed with one untimed round of every way), alternating within each pair:

- `tensorflow, one by one`: the 8 specs POSTed as single runs to a TensorFlow worker (labq's
  default backend before fused trials);
- `jax, one by one`: the same to a JAX worker;
- `jax, fused sweep`: the 8 as one sweep (`fuse` on) to the JAX worker: one program.

Each figure is the wall time from the first POST to the last run finished, as a client polling
every 50 ms sees it. Reported per pair, then the median and range of the ratios.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.pairs import spread
from cli.livestack import LiveStack
from core.constants import FINISHED
from core.sweep import SweepSpec, expand

CPU_BASE = {"layers": [{"units": 100}], "batch_size": 32, "epochs": 3, "train_samples": 12000}
GPU_BASE = {"layers": [{"units": 300}], "batch_size": 128, "epochs": 5}
WAYS = ("tensorflow, one by one", "jax, one by one", "jax, fused sweep")
FUSED = WAYS[2]


def sweep(gpu: bool) -> dict:
    return {
        "name": "fused bench",
        "base": {**(GPU_BASE if gpu else CPU_BASE), "seed": 1},
        "grid": {"optimizer.learning_rate": [0.0005, 0.001, 0.002, 0.004]},
        "repeats": 2,
    }


def _wait_all(http: httpx.Client, ids: list[int]) -> list[dict]:
    while True:
        runs = [http.get(f"/experiments/{i}").json() for i in ids]
        if all(r["status"] in FINISHED for r in runs):
            return runs
        time.sleep(0.05)


def one_way(http: httpx.Client, way: str, body: dict) -> dict:
    t0 = time.perf_counter()
    if way == FUSED:
        r = http.post("/sweeps", json=body)
        r.raise_for_status()
        ids = r.json()["children"]
    else:
        specs = [c.spec.model_dump(mode="json") for c in expand(SweepSpec(**body), 100)]
        ids = []
        for spec in specs:
            r = http.post("/experiments", json=spec)
            r.raise_for_status()
            ids.append(r.json()["id"])
    runs = _wait_all(http, ids)
    seconds = time.perf_counter() - t0
    bad = [r["status"] for r in runs if r["status"] != "succeeded"]
    if bad:
        raise RuntimeError(f"{way}: runs ended {bad}")
    return {
        "seconds": round(seconds, 2),
        "fused": sorted({r["fused"] or 1 for r in runs}),
        "test_accuracy": round(statistics.mean(r["test"]["accuracy"] for r in runs), 4),
    }


def run(
    pairs: int, backends: tuple[str, ...] = ("tensorflow", "jax"), gpu: bool = False, log=print
) -> dict:
    body = sweep(gpu)
    ways = [w for w in WAYS if w.split(",")[0] in backends]
    report: dict = {"pairs": [], "load_before": os.getloadavg(), "sweep": body, "ways": ways}
    with tempfile.TemporaryDirectory(prefix="labq-bench-fused-") as tmp:
        stacks = {
            backend: LiveStack(Path(tmp) / backend, extra_env={"LABQ_BACKEND": backend})
            for backend in backends
        }
        clients = {}
        try:
            for backend, stack in stacks.items():
                stack.start(timeout=300)
                clients[backend] = httpx.Client(base_url=stack.url, timeout=60)
            for way in ways:  # one untimed round: every shape built, every program compiled
                one_way(clients[way.split(",")[0]], way, body)
            for pair in range(pairs):
                row = {}
                for way in ways:
                    row[way] = one_way(clients[way.split(",")[0]], way, body)
                    log(f"pair {pair + 1}, {way}: {row[way]['seconds']:.2f} s")
                report["pairs"].append(row)
        finally:
            for c in clients.values():
                c.close()
            for stack in stacks.values():
                stack.stop()
    report["load_after"] = os.getloadavg()
    for way in ways[:-1]:
        ratios = [p[way]["seconds"] / p[FUSED]["seconds"] for p in report["pairs"]]
        report[f"fused vs {way}"] = spread(ratios, 2)
    return report


def summary(report: dict) -> list[str]:
    lines = []
    for way in report["ways"][:-1]:
        r = report[f"fused vs {way}"]
        lines.append(
            f"fused sweep vs {way}: median {r['median']:.2f}x faster "
            f"({r['min']:.2f}-{r['max']:.2f}x, {r['pairs']} pairs)"
        )
    lines.append(f"load average before {report['load_before']}, after {report['load_after']}")
    return lines


def main(pairs: int) -> None:
    print("\n".join(summary(run(pairs))))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
