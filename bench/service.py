"""`labq bench --service`: what the service itself adds to a job, measured against a live stack.

The bench starts its own embedded stack (cli.livestack: `labq up` in a temporary data dir, on free
loopback ports), so nothing of the user's data is touched, and stops it at the end. Figures:

- requests: idle per-request time of GET /experiments/{id}, GET /experiments?limit=50, /health;
- pickup: with a warm worker, POST -> `running` (the row's started_at - created_at, and as a client
  polling every 5 ms sees it) and last epoch -> `succeeded`, median over tiny jobs run one by one;
- API under load: `clients` keep-alive connections (bench.loadgen) alternating GET /experiments/{id}
  and GET /experiments?limit=50 for `duration` seconds while a job trains: p50/p99, errors;
- queue throughput: `jobs` tiny jobs through one worker process, then through two.

Every request has a timeout and every section is guarded: a failure is recorded in the report
(and shown in its table) instead of ending the run, so the tables are always printed.
"""

import asyncio
import statistics
import tempfile
import time
import traceback
from datetime import datetime
from functools import partial
from pathlib import Path

import httpx
from rich.table import Table

from bench.loadgen import run_load
from cli.livestack import LiveStack
from core.constants import FINISHED

TINY = {"layers": [{"units": 32}], "epochs": 1, "batch_size": 128, "train_samples": 100}
LOAD_JOB = {"layers": [{"units": 300}], "epochs": 50, "batch_size": 128, "train_samples": 20000}
REQUEST_TIMEOUT = 10.0
STALL_SECONDS = 300  # throughput: give up when no job finished for this long


class BenchClient:
    """The bench's own requests: each bounded by REQUEST_TIMEOUT; reads are retried until their
    deadline, so one slow answer right after the load does not end the run."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)

    def read(self, path: str, deadline: float = 120, **params) -> dict:
        stop_at = time.monotonic() + deadline
        while True:
            try:
                r = self.http.get(path, params=params)
                r.raise_for_status()
                return r.json()
            except (httpx.HTTPError, ValueError):
                if time.monotonic() > stop_at:
                    raise
                time.sleep(0.2)

    def submit(self, spec: dict) -> int:
        r = self.http.post("/experiments", json=spec, timeout=60)
        r.raise_for_status()
        return r.json()["id"]

    def cancel(self, exp_id: int) -> None:
        try:
            self.http.post(f"/experiments/{exp_id}/cancel", json={})
        except httpx.HTTPError:
            pass

    def wait(self, exp_id: int, until, timeout: float = 300, every: float = 0.005) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exp = self.read(f"/experiments/{exp_id}")
            if until(exp):
                return exp
            time.sleep(every)
        raise TimeoutError(f"experiment {exp_id} did not get there in {timeout} s")

    def count(self, status: str) -> int:
        return int(self.read("/experiments", status=status, limit=1)["total"])

    def close(self) -> None:
        self.http.close()


def _finished(e: dict) -> bool:
    return e["status"] in FINISHED


def _ts(v: str) -> float:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def requests_idle(bc: BenchClient, exp_id: int, n: int = 100) -> dict:
    """Median time of single requests one after another (nothing else asking), in ms."""
    out = {}
    for label, path in (
        ("GET /experiments/{id}", f"/experiments/{exp_id}"),
        ("GET /experiments?limit=50", "/experiments?limit=50"),
        ("GET /health", "/health"),
    ):
        times = []
        for _ in range(n if path != "/health" else 20):
            t0 = time.perf_counter()
            bc.http.get(path)
            times.append((time.perf_counter() - t0) * 1000)
        out[label] = statistics.median(times)
    return out


def pickup(bc: BenchClient, n: int) -> dict:
    """Tiny jobs one at a time on a warm worker: queue and tail latencies in milliseconds."""
    server, client, tail = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        exp_id = bc.submit(TINY)
        bc.wait(exp_id, lambda e: e["status"] != "queued")
        client.append((time.perf_counter() - t0) * 1000)
        bc.wait(exp_id, lambda e: e["epochs_done"] >= e["epochs_total"] or _finished(e))
        t_last = time.perf_counter()
        e = bc.wait(exp_id, _finished)
        tail.append((time.perf_counter() - t_last) * 1000)
        server.append((_ts(e["started_at"]) - _ts(e["created_at"])) * 1000)
    med = statistics.median
    return {
        "jobs": n,
        "post_to_running_ms_server": med(server),
        "post_to_running_ms_client": med(client),
        "last_epoch_to_succeeded_ms_client": med(tail),
        "post_to_running_ms_server_max": max(server),
    }


def load(stack: LiveStack, bc: BenchClient, clients: int, duration: float) -> dict:
    exp_id = bc.submit(LOAD_JOB)
    try:
        bc.wait(exp_id, lambda e: e["status"] == "running", every=0.05)
        paths = [f"/experiments/{exp_id}", "/experiments?limit=50"]
        result = asyncio.run(
            run_load("127.0.0.1", stack.port, paths, clients, duration, timeout=REQUEST_TIMEOUT)
        ).summary()
        t0 = time.perf_counter()
        after = bc.read(f"/experiments/{exp_id}")  # retried: the API may still be catching up
        result["first_request_after_load_ms"] = (time.perf_counter() - t0) * 1000
        result["training_during_load"] = after["status"] == "running"
    finally:
        bc.cancel(exp_id)
    bc.wait(exp_id, _finished, every=0.1)
    return result


def throughput(bc: BenchClient, jobs: int, log=print, label: str = "") -> dict:
    """Submit `jobs` tiny jobs and wait until all are finished; a progress line every ~10%."""
    base = {s: bc.count(s) for s in FINISHED}
    t0 = time.perf_counter()
    ids = []
    for _ in range(jobs):
        ids.append(bc.submit(TINY))
    posted = time.perf_counter() - t0
    step, shown, last_total, last_change = max(1, jobs // 10), 0, -1, time.monotonic()
    while True:
        done = {s: bc.count(s) - base[s] for s in FINISHED}
        total = sum(done.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            raise TimeoutError(f"no job finished in {STALL_SECONDS} s ({total}/{jobs} done)")
        if total >= shown + step or total >= jobs:
            shown = total
            el = time.perf_counter() - t0
            log(
                f"throughput{label}: {total}/{jobs} finished ({done['failed']} failed) in "
                f"{el:.0f} s, {total / el:.2f} jobs/s"
            )
        if total >= jobs:
            break
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    errors = []
    if done["failed"]:
        page = bc.read("/experiments", status="failed", limit=5)
        errors = [f"{i['id']}: {bc.read(i['url']).get('error')}" for i in page["items"]]
    return {
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "post_seconds": posted,
        "succeeded": done["succeeded"],
        "failed": done["failed"],
        "cancelled": done["cancelled"],
        "failed_errors": errors,
    }


def _guarded(report: dict, key: str, fn, log) -> None:
    """Run one section; a failure is recorded under report[key]['error'] and the run goes on."""
    try:
        report[key] = fn()
        log(f"{key}: {report[key]}")
    except Exception as exc:
        report[key] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"[red]{key} failed: {report[key]['error']}\n{traceback.format_exc(limit=3)}")


def run_service(
    clients: int,
    duration: float,
    jobs: int,
    pickups: int = 20,
    log=print,
    worker_counts: tuple[int, ...] = (1, 2),
) -> dict:
    """One stack per entry of `worker_counts` (worker processes); the first one also measures
    single requests, pickup and the load."""
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="labq-bench-") as tmp:
        for k, workers in enumerate(worker_counts):
            if k and not jobs:
                break
            stack = LiveStack(Path(tmp) / f"w{workers}", concurrency=workers)
            bc = None
            try:
                stack.start(timeout=300)
                bc = BenchClient(stack.url)
                # Two tiny jobs per worker process, sent together, so every process has built
                # and traced a model once before anything is timed.
                log(f"stack up ({workers} worker process(es)); warming them with tiny jobs")
                warm_ids = [bc.submit(TINY) for _ in range(2 * workers)]
                for warm in warm_ids:
                    bc.wait(warm, _finished, every=0.05)
                if k == 0:
                    _guarded(report, "requests", partial(requests_idle, bc, warm), log)
                    if pickups:
                        _guarded(report, "pickup", partial(pickup, bc, pickups), log)
                    if clients:
                        _guarded(report, "load", partial(load, stack, bc, clients, duration), log)
                if jobs:
                    _guarded(
                        report,
                        f"throughput_{workers}",
                        partial(throughput, bc, jobs, log, f", {workers} worker(s)"),
                        log,
                    )
            except Exception as exc:
                report.setdefault("stack_errors", []).append(
                    f"{workers} worker(s): {type(exc).__name__}: {str(exc)[:2000]}"
                )
                log(f"[red]stack with {workers} worker(s) failed: {exc}")
            finally:
                if bc:
                    bc.close()
                stack.stop()
    return report


def _failed(section: dict | None) -> str | None:
    if section is None:
        return "not run"
    return section.get("error")


def service_tables(report: dict) -> list[Table]:
    tables = []
    t0 = Table(title="single requests, idle stack (median ms)")
    t0.add_column("request")
    t0.add_column("ms", justify="right")
    req = report.get("requests")
    if _failed(req):
        t0.add_row("not measured", _failed(req))
    else:
        for label, ms in req.items():
            t0.add_row(label, f"{ms:.1f}")
    tables.append(t0)

    p = report.get("pickup")
    t1 = Table(
        title=f"pickup, warm worker (median of {p.get('jobs', '?') if p else '?'} tiny jobs)"
    )
    t1.add_column("measure")
    t1.add_column("ms", justify="right")
    if _failed(p):
        t1.add_row("not measured", _failed(p))
    else:
        t1.add_row(
            "POST -> running (started_at - created_at)", f"{p['post_to_running_ms_server']:.1f}"
        )
        t1.add_row("POST -> running (client, 5 ms polls)", f"{p['post_to_running_ms_client']:.1f}")
        t1.add_row(
            "last epoch -> succeeded (client)", f"{p['last_epoch_to_succeeded_ms_client']:.1f}"
        )
    tables.append(t1)

    lo = report.get("load")
    title = (
        f"API under load: {lo['clients']} clients for {lo['seconds']:.0f} s, training "
        f"{'running' if lo.get('training_during_load') else 'NOT running at the end'}"
        if lo and not _failed(lo)
        else "API under load"
    )
    t2 = Table(title=title)
    for col in ("requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"):
        t2.add_column(col, justify="right")
    if _failed(lo):
        t2.add_row("not measured", *[""] * 5, _failed(lo))
    else:
        f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        kinds = ", ".join(f"{k}: {v}" for k, v in lo["error_kinds"].items())
        t2.add_row(
            str(lo["requests"]),
            f"{lo['requests_per_s']:.0f}",
            f(lo["p50_ms"]),
            f(lo["p90_ms"]),
            f(lo["p99_ms"]),
            f(lo["max_ms"]),
            f"{lo['errors']}" + (f" ({kinds})" if kinds else ""),
        )
    tables.append(t2)

    t3 = Table(title="queue throughput, tiny jobs (100 images, 1 epoch)")
    for col in ("worker processes", "jobs", "seconds", "jobs/s", "succeeded", "failed"):
        t3.add_column(col, justify="right")
    counts = sorted(int(k.split("_")[1]) for k in report if k.startswith("throughput_")) or [1, 2]
    for n in counts:
        t = report.get(f"throughput_{n}")
        if _failed(t):
            t3.add_row(str(n), "not measured", "", "", "", _failed(t))
        else:
            t3.add_row(
                str(n),
                str(t["jobs"]),
                f"{t['seconds']:.1f}",
                f"{t['jobs_per_s']:.2f}",
                str(t["succeeded"]),
                str(t["failed"]),
            )
    tables.append(t3)
    for n in counts:
        for err in (report.get(f"throughput_{n}") or {}).get("failed_errors", []):
            t3.caption = (t3.caption + "\n" if t3.caption else "") + f"failed {err[:300]}"
    if report.get("stack_errors"):
        t3.caption = (t3.caption + "\n" if t3.caption else "") + "\n".join(report["stack_errors"])
    return tables
