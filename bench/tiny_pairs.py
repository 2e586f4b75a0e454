"""Tiny jobs per second through one worker process, this checkout against an earlier revision
(BENCHMARKS.md, "Queue throughput"): `labq bench --tiny --before REV [--pairs 3] [--jobs 200]
[--backend jax]`.

Each pair starts a fresh `labq up` (embedded, one worker process) of each revision in turn, the
order alternating between pairs; each stack is warmed with two tiny jobs, then `jobs` tiny jobs
(bench.service.TINY) are POSTed at once and timed until the last one has finished
(bench.service.throughput). Reported per pair, then the median and range of the ratio.
"""

import os
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.pairs import spread
from bench.revisions import checkout
from bench.service import TINY, BenchClient, _finished, throughput
from cli.livestack import ROOT, LiveStack


def one(root: Path, data: Path, backend: str, jobs: int, log) -> float:
    stack = LiveStack(data, root=root, extra_env={"LABQ_BACKEND": backend})
    bc = BenchClient(stack.url)
    try:
        stack.start(timeout=300)
        for exp_id in [bc.submit(TINY) for _ in range(2)]:
            bc.wait(exp_id, _finished, every=0.1)
        result = throughput(bc, jobs, log=lambda _: None)
        if result["failed"]:
            raise RuntimeError(f"failed jobs: {result['failed_errors']}")
        return float(result["jobs_per_s"])
    finally:
        bc.close()
        stack.stop()


def run(before: str, pairs: int, jobs: int, backend: str, log=print) -> dict:
    report: dict = {"before": before, "backend": backend, "jobs": jobs, "pairs": []}
    report["load_before"] = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="labq-bench-tiny-") as tmp, ExitStack() as trees:
        roots = {"before": trees.enter_context(checkout(before)), "now": ROOT}
        for pair in range(pairs):
            order = ["before", "now"] if pair % 2 == 0 else ["now", "before"]
            row = {}
            for way in order:
                row[way] = one(roots[way], Path(tmp) / f"{pair}-{way}", backend, jobs, log)
                log(f"pair {pair + 1}, {way}: {row[way]:.2f} jobs/s")
            report["pairs"].append(row)
    report["load_after"] = os.getloadavg()
    ratios = [p["now"] / p["before"] for p in report["pairs"]]
    report["now vs before"] = spread(ratios, 2)
    return report


def summary(report: dict) -> list[str]:
    r = report["now vs before"]
    now = statistics.median(p["now"] for p in report["pairs"])
    before = statistics.median(p["before"] for p in report["pairs"])
    return [
        f"{report['backend']}, {report['jobs']} tiny jobs, one worker process: "
        f"{now:.2f} jobs/s now, {before:.2f} at {report['before']} (medians); "
        f"now/before median {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}x, {r['pairs']} pairs)",
        f"load average before {report['load_before']}, after {report['load_after']}",
    ]
