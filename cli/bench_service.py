"""`labq bench --service`: what the service itself adds to a job, measured against a live stack.

The bench starts its own embedded stack (`labq up` in a temporary data dir, on free loopback
ports), so nothing of the user's data is touched, and stops it at the end. Three figures:

- pickup: with a warm worker, POST -> `running` (the row's started_at - created_at, and as a client
  polling every 5 ms sees it) and last epoch -> `succeeded`, median over tiny jobs run one by one;
- API under load: `clients` concurrent pollers (httpx async, loopback) alternating GET
  /experiments/{id} and list pages for `duration` seconds while a job trains: p50/p99, errors;
- queue throughput: `jobs` tiny jobs through one worker process, then through two.
"""

import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from rich.table import Table

TINY = {"layers": [{"units": 32}], "epochs": 1, "batch_size": 128, "train_samples": 100}
LOAD_JOB = {"layers": [{"units": 300}], "epochs": 50, "batch_size": 128, "train_samples": 20000}
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stack:
    """`labq up --concurrency N` in its own data dir and process group."""

    def __init__(self, data_dir: Path, concurrency: int):
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(LABQ_DATA_DIR=str(data_dir), LABQ_PORT=str(self.port), LABQ_HOST="127.0.0.1",
                   LABQ_REDIS_PORT=str(_free_port()), PYTHONUNBUFFERED="1")
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir / "up.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up", "--concurrency", str(concurrency)], cwd=ROOT,
            env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def wait_healthy(self, workers: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the bench's stack exited; see {self.log}")
            try:
                h = self.http.get("/health").json()
                if h.get("status") == "ok" and len(h.get("workers") or []) >= 1:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the bench's stack did not become healthy; see {self.log}")

    def submit(self, spec: dict) -> int:
        r = self.http.post("/experiments", json=spec)
        r.raise_for_status()
        return r.json()["id"]

    def get(self, exp_id: int) -> dict:
        return self.http.get(f"/experiments/{exp_id}").json()

    def wait(self, exp_id: int, until, timeout: float = 300, every: float = 0.005) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exp = self.get(exp_id)
            if until(exp):
                return exp
            time.sleep(every)
        raise RuntimeError(f"experiment {exp_id} did not finish in {timeout} s")

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _finished(e: dict) -> bool:
    return e["status"] in ("succeeded", "failed", "cancelled")


def _ts(v: str) -> float:
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()


def pickup(stack: _Stack, n: int) -> dict:
    """Tiny jobs one at a time on a warm worker: queue and tail latencies in milliseconds."""
    server, client, tail = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        exp_id = stack.submit(TINY)
        stack.wait(exp_id, lambda e: e["status"] != "queued")
        client.append((time.perf_counter() - t0) * 1000)
        stack.wait(exp_id, lambda e: e["epochs_done"] >= e["epochs_total"] or _finished(e))
        t_last = time.perf_counter()
        e = stack.wait(exp_id, _finished)
        tail.append((time.perf_counter() - t_last) * 1000)
        server.append((_ts(e["started_at"]) - _ts(e["created_at"])) * 1000)
    med = statistics.median
    return {"jobs": n, "post_to_running_ms_server": med(server), "post_to_running_ms_client": med(client),
            "last_epoch_to_succeeded_ms_client": med(tail), "post_to_running_ms_server_max": max(server)}


async def _load(url: str, exp_id: int, clients: int, duration: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + duration
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:
        async def poller(i: int) -> None:
            nonlocal errors
            k = i
            while time.monotonic() < stop_at:
                path = f"/experiments/{exp_id}" if k % 2 else "/experiments?limit=20"
                k += 1
                t0 = time.perf_counter()
                try:
                    r = await http.get(path)
                    if r.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append((time.perf_counter() - t0) * 1000)

        await asyncio.gather(*(poller(i) for i in range(clients)))
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]  # noqa: E731
    return {"clients": clients, "seconds": duration, "requests": len(latencies), "errors": errors,
            "p50_ms": q(0.50), "p99_ms": q(0.99), "requests_per_s": len(latencies) / duration}


def load(stack: _Stack, clients: int, duration: float) -> dict:
    exp_id = stack.submit(LOAD_JOB)
    stack.wait(exp_id, lambda e: e["status"] == "running", every=0.05)
    result = asyncio.run(_load(stack.url, exp_id, clients, duration))
    result["training_during_load"] = stack.get(exp_id)["status"] == "running"
    stack.http.post(f"/experiments/{exp_id}/cancel")
    stack.wait(exp_id, _finished, every=0.1)
    return result


def throughput(stack: _Stack, jobs: int) -> dict:
    t0 = time.perf_counter()
    ids = [stack.submit(TINY) for _ in range(jobs)]
    posted = time.perf_counter() - t0
    last = stack.wait(ids[-1], _finished, timeout=3600, every=0.2)
    for exp_id in ids:  # every job, not just the last one, must be done
        last = stack.wait(exp_id, _finished, timeout=600, every=0.2)
    seconds = time.perf_counter() - t0
    page = stack.http.get("/experiments", params={"status": "succeeded", "limit": 1}).json()
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds,
            "post_seconds": posted, "succeeded_total": page["total"], "last_status": last["status"]}


def run_service(clients: int, duration: float, jobs: int, log=print) -> dict:
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="labq-bench-") as tmp:
        stack = _Stack(Path(tmp) / "one", concurrency=1)
        try:
            stack.wait_healthy(1)
            log("stack up (1 worker process); warming the worker with one job")
            stack.wait(stack.submit(TINY), _finished, every=0.05)
            report["pickup"] = pickup(stack, 20)
            log(f"pickup: {report['pickup']}")
            report["load"] = load(stack, clients, duration)
            log(f"load: {report['load']}")
            report["throughput_1"] = throughput(stack, jobs)
            log(f"throughput, 1 worker: {report['throughput_1']}")
        finally:
            stack.stop()
        stack = _Stack(Path(tmp) / "two", concurrency=2)
        try:
            stack.wait_healthy(1)
            stack.wait(stack.submit(TINY), _finished, every=0.05)
            report["throughput_2"] = throughput(stack, jobs)
            log(f"throughput, 2 workers: {report['throughput_2']}")
        finally:
            stack.stop()
    return report


def service_tables(report: dict) -> list[Table]:
    p = report["pickup"]
    t1 = Table(title=f"pickup, warm worker (median of {p['jobs']} tiny jobs)")
    t1.add_column("measure")
    t1.add_column("ms", justify="right")
    t1.add_row("POST -> running (started_at - created_at)", f"{p['post_to_running_ms_server']:.1f}")
    t1.add_row("POST -> running (client, 5 ms polls)", f"{p['post_to_running_ms_client']:.1f}")
    t1.add_row("last epoch -> succeeded (client)", f"{p['last_epoch_to_succeeded_ms_client']:.1f}")
    lo = report["load"]
    t2 = Table(title=f"API under load: {lo['clients']} clients for {lo['seconds']:.0f} s, training running")
    for col in ("requests", "req/s", "p50 ms", "p99 ms", "errors"):
        t2.add_column(col, justify="right")
    t2.add_row(str(lo["requests"]), f"{lo['requests_per_s']:.0f}", f"{lo['p50_ms']:.1f}",
               f"{lo['p99_ms']:.1f}", str(lo["errors"]))
    t3 = Table(title="queue throughput, tiny jobs (100 images, 1 epoch)")
    for col in ("worker processes", "jobs", "seconds", "jobs/s"):
        t3.add_column(col, justify="right")
    for n in (1, 2):
        t = report[f"throughput_{n}"]
        t3.add_row(str(n), str(t["jobs"]), f"{t['seconds']:.1f}", f"{t['jobs_per_s']:.2f}")
    return [t1, t2, t3]
