"""How much a worker's pool child grows per job (BENCHMARKS.md, "Tiny jobs per worker process"):
`python -m bench.child_memory BACKEND JOBS SHAPES`, e.g. `jax 200 1` or `tensorflow 100 25`.

One fresh embedded stack with one worker process whose child is never replaced; 20 tiny jobs
warm it, then JOBS tiny jobs cycle through SHAPES hidden widths (16, 17, ...), and the child's
resident memory is read before and after them.
"""

import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from cli.livestack import LiveStack
from core.constants import FINISHED


def children(stack: LiveStack) -> list[psutil.Process]:
    assert stack.proc is not None
    procs = psutil.Process(stack.proc.pid).children(recursive=True)
    return [p for p in procs if not p.children() and "worker" in " ".join(p.cmdline())]


def run(backend: str, jobs: int, shapes: int) -> dict:
    env = {"LABQ_BACKEND": backend, "LABQ_MAX_JOBS_PER_CHILD": "100000"}
    with tempfile.TemporaryDirectory(prefix="labq-bench-memory-") as tmp:
        stack = LiveStack(Path(tmp) / "data", extra_env=env).start(timeout=300)
        try:
            http = httpx.Client(base_url=stack.url, timeout=60)

            def submit(n: int, offset: int) -> float:
                t0 = time.perf_counter()
                ids = [
                    http.post(
                        "/experiments",
                        json={
                            "layers": [{"units": 16 + (i + offset) % shapes}],
                            "epochs": 1,
                            "batch_size": 128,
                            "train_samples": 100,
                        },
                    ).json()["id"]
                    for i in range(n)
                ]
                while http.get(f"/experiments/{ids[-1]}").json()["status"] not in FINISHED:
                    time.sleep(0.2)
                return time.perf_counter() - t0

            submit(20, 0)
            before = {p.pid: p.memory_info().rss for p in children(stack)}
            seconds = submit(jobs, 20)
            after = {p.pid: p.memory_info().rss for p in children(stack)}
        finally:
            stack.stop()
    grown = [(after[pid] - rss) / 2**20 for pid, rss in before.items() if pid in after]
    return {
        "backend": backend,
        "jobs": jobs,
        "shapes": shapes,
        "jobs_per_s": round(jobs / seconds, 2),
        "rss_before_mib": [rss >> 20 for rss in before.values()],
        "rss_after_mib": [rss >> 20 for rss in after.values()],
        "mib_per_job": [round(g / jobs, 3) for g in grown],
    }


if __name__ == "__main__":
    print(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
