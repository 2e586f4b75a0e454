"""`labq bench --pairs N` / `--backend both`: the training bench repeated in alternating runs,
each a fresh process (a process's Keras backend is fixed at its first import), reported as the
median and range over the runs.

One run of a case trains it twice in one process, the notebook's `model.fit` then labq's engine,
on one backend: a pair. Single pairs swing by up to 2x on a shared machine, so the bench runs N
pairs per case and backend, alternating the backends run by run (TensorFlow, JAX, TensorFlow, ...)
so that a slow minute of the machine falls on both, and reports per case and backend: the median
and the range (min-max) of the notebook's seconds, labq's seconds and the speed-up.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.table import Table


def spread(values: list[float], digits: int | None = None) -> dict:
    """Median, min, max and count of a list of figures (a bench's ratios over its pairs)."""
    r = (lambda v: round(v, digits)) if digits is not None else (lambda v: v)
    return {
        "median": r(statistics.median(values)),
        "min": r(min(values)),
        "max": r(max(values)),
        "pairs": len(values),
    }


def _one(backend: str, cases: str, seed: int, quick: bool, gpu: bool, notebook: bool, log) -> dict:
    with tempfile.TemporaryDirectory(prefix="labq-bench-") as tmp:
        out = Path(tmp) / "run.json"
        argv = [sys.executable, "-m", "cli.main", "bench", "--backend", backend, "--cases", cases]
        argv += ["--seeds", str(seed), "--json", str(out)]
        argv += ["--quick"] if quick else []
        argv += ["--gpu"] if gpu else []
        argv += [] if notebook else ["--no-notebook"]
        env = {**os.environ, "LABQ_BACKEND": backend}
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(
                f"bench on {backend} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
            )
        report = json.loads(out.read_text())
    for r in report["rows"]:
        log(
            f"{backend} {r['case']} seed {r['seed']}: notebook {r['notebook_seconds']:.2f}s, "
            f"labq {r['engine_seconds']:.2f}s ({r['speedup']:.2f}x)"
        )
    return report


def run_pairs(
    backends: list[str],
    cases: list[str],
    pairs: int,
    quick: bool,
    gpu: bool,
    notebook: bool = True,
    log=print,
) -> dict:
    """`pairs` runs of every case on every backend, backends alternating; seeds 1..pairs."""
    runs: list[dict] = []
    for i in range(pairs):
        order = backends if i % 2 == 0 else list(reversed(backends))
        for b in order:
            runs.append(_one(b, ",".join(cases), i + 1, quick, gpu, notebook, log))
    summary = []
    for b in backends:
        rows = [r for rep in runs if rep["backend"] == b for r in rep["rows"]]
        for c in cases:
            mine = [r for r in rows if r["case"] == c]
            if not mine:
                continue

            def stat(key: str, mine=mine) -> dict:
                return spread([r[key] for r in mine])

            summary.append(
                {
                    "backend": b,
                    "case": c,
                    "model": mine[0]["architecture"],
                    "batch_size": mine[0]["batch_size"],
                    "pairs": len(mine),
                    "notebook_seconds": stat("notebook_seconds"),
                    "engine_seconds": stat("engine_seconds"),
                    "speedup": stat("speedup"),
                    "engine_val_accuracy": stat("engine_val_accuracy"),
                }
            )
    devices = sorted({rep["device"] for rep in runs})
    return {"device": ", ".join(devices), "pairs": pairs, "runs": runs, "summary": summary}


def pairs_table(report: dict) -> Table:
    t = Table(
        title=f"notebook model.fit vs labq engine, {report['pairs']} alternating pair(s) per "
        f"case and backend, on {report['device']}: median (min-max)"
    )
    for col in (
        "backend",
        "case",
        "model",
        "batch",
        "pairs",
        "notebook s",
        "labq s",
        "speed-up",
        "labq val_acc",
    ):
        t.add_column(col, justify="left" if col in ("backend", "case", "model") else "right")

    def mm(s: dict, fmt: str, unit: str = "") -> str:
        if s["median"] != s["median"]:  # NaN: --no-notebook
            return "-"
        return f"{s['median']:{fmt}}{unit} ({s['min']:{fmt}}-{s['max']:{fmt}}{unit})"

    for s in report["summary"]:
        t.add_row(
            s["backend"],
            s["case"],
            s["model"],
            str(s["batch_size"]),
            str(s["pairs"]),
            mm(s["notebook_seconds"], ".2f"),
            mm(s["engine_seconds"], ".2f"),
            mm(s["speedup"], ".2f", "x"),
            f"{s['engine_val_accuracy']['median']:.4f}",
        )
    return t
