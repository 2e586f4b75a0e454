"""The whole lab through the queue, wall time (BENCHMARKS.md, "The whole lab"):
`labq bench --lab [--ways before,tensorflow,jax] [--before REV]` or `python -m bench.lab_wall`.

What `labq lab run` queues: sections 1-6, 8-10 and 12 as their sweep presets, and section 7 in
its short form (6,000 images at batch 1), one seed per configuration. Each way runs on its own
fresh `labq up` (embedded SQLite and Redis, one worker process, as a new user gets it):

- `before`: labq at git revision REV (checked out in a throw-away worktree), the code before
  the throughput work (default abdc22a: one TensorFlow engine, no warm models, no fused trials);
- `tensorflow`: this checkout with TensorFlow workers (the default backend);
- `jax`: this checkout with JAX workers (warm models and fused trials).

The ways run one after another, in the order given. Each figure is the wall time from the first
POST to the last run finished as a client polling once a second sees it, with the sum of the
runs' own training seconds beside it. The lab's runs take minutes each, so a way is run once;
compare ways of one command only (one machine, one load).
"""

import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.revisions import checkout
from cli.livestack import ROOT, LiveStack
from core.constants import FINISHED

WAYS = ("before", "tensorflow", "jax")
BEFORE = "abdc22a"  # the commit before the JAX backend, warm models and fused trials
SECTIONS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)


def lab_presets(http: httpx.Client, sections: tuple[int, ...]) -> list[str]:
    """The preset `labq lab run` picks for each section (section 7: the short one)."""
    chosen = []
    presets = http.get("/presets").json()
    for number in sections:
        options = [
            p
            for p in presets
            if p["section"] == number
            and p.get("kind", "sweep") == "sweep"
            and p.get("base") is not None
            and (number != 7 or not p["faithful"])
        ]
        if options:
            chosen.append(options[0]["name"])
    return chosen


def run_lab(http: httpx.Client, names: list[str], log=print) -> dict:
    t0 = time.perf_counter()
    ids = []
    for name in names:
        r = http.post(f"/presets/{name}/run", json={"repeats": 1, "overrides": {}})
        r.raise_for_status()
        ids.extend(c if isinstance(c, int) else c["id"] for c in r.json()["children"])
    left = set(ids)
    while left:
        time.sleep(1)
        left = {i for i in left if http.get(f"/experiments/{i}").json()["status"] not in FINISHED}
    seconds = time.perf_counter() - t0
    runs = [http.get(f"/experiments/{i}").json() for i in ids]
    statuses = sorted({r["status"] for r in runs})
    log(f"{len(runs)} runs in {seconds:.0f} s, ended {statuses}")
    return {
        "seconds": round(seconds, 1),
        "runs": len(runs),
        "statuses": statuses,
        "train_seconds": round(sum(r.get("train_seconds") or 0 for r in runs), 1),
        "fused_runs": sum(1 for r in runs if (r.get("fused") or 1) > 1),
        "mean_test_accuracy": round(
            statistics.mean(r["test"]["accuracy"] for r in runs if r.get("test")), 4
        ),
    }


def run(
    ways: tuple[str, ...] = WAYS,
    before: str = BEFORE,
    sections: tuple[int, ...] = SECTIONS,
    log=print,
) -> dict:
    report: dict = {"load_before": os.getloadavg(), "before": before, "ways": {}}
    with tempfile.TemporaryDirectory(prefix="labq-bench-lab-") as tmp, ExitStack() as trees:
        for way in ways:
            root = trees.enter_context(checkout(before)) if way == "before" else ROOT
            backend = "tensorflow" if way == "before" else way
            stack = LiveStack(
                Path(tmp) / f"data-{way}", root=root, extra_env={"LABQ_BACKEND": backend}
            )
            try:
                stack.start(timeout=300)
                with httpx.Client(base_url=stack.url, timeout=60) as http:
                    names = lab_presets(http, sections)
                    log(f"{way}: {', '.join(names)}")
                    report["ways"][way] = {"presets": names, **run_lab(http, names, log)}
            finally:
                stack.stop()
    report["load_after"] = os.getloadavg()
    return report


def summary(report: dict) -> list[str]:
    lines = []
    base = report["ways"].get("before")
    for way, r in report["ways"].items():
        vs = (
            f", {base['seconds'] / r['seconds']:.2f}x of before" if base and way != "before" else ""
        )
        lines.append(
            f"{way}: {r['runs']} runs, wall {r['seconds']:.0f} s, training {r['train_seconds']:.0f}"
            f" s, {r['fused_runs']} fused, mean test accuracy {r['mean_test_accuracy']:.4f}{vs}"
        )
    lines.append(f"load average before {report['load_before']}, after {report['load_after']}")
    return lines


if __name__ == "__main__":
    print("\n".join(summary(run())))
