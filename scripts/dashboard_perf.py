"""First paint of the dashboard's `/` with 10,000 runs in the database, in headless Chromium.

Builds a throw-away SQLite database (migrated like `labq up` does), inserts N experiments directly
with SQLAlchemy (a realistic mix: finished with metrics, failed, cancelled, running, queued), starts
`labq api` on a free port (no broker or worker needed to read), then loads `/` several times in a
fresh browser context each and reads the browser's own paint timings:

    .venv/bin/python scripts/dashboard_perf.py [--runs 10000] [--loads 7] [--screenshot PNG]

Reported per load: first-contentful-paint, and `rows` = the moment the first page of runs (read from
GET /experiments) is in the table (a performance.mark set by queue.js). Chromium is Debian's
/usr/bin/chromium (LABQ_CHROMIUM overrides).
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.constants import FINISHED  # noqa: E402 - after the path insert above
from tests.e2e.browser import launch  # noqa: E402
from tests.stack import free_port  # noqa: E402


def fill_database(n: int) -> None:
    """Runs in a child process whose LABQ_DATA_DIR points at the temp dir."""
    from sqlalchemy import insert

    from core.spec import ExperimentSpec, param_count
    from db.migrate import upgrade
    from db.models import Experiment, utcnow
    from db.session import session_scope

    upgrade()
    rng = random.Random(0)
    start = utcnow() - timedelta(days=30)
    rows = []
    for i in range(n):
        units = rng.choice([32, 100, 300, 512])
        act = rng.choice(["relu", "sigmoid", "tanh"])
        epochs = rng.choice([5, 10, 20])
        spec = ExperimentSpec(
            layers=[{"units": units, "activation": act}],
            epochs=epochs,
            batch_size=rng.choice([32, 128, 512]),
            seed=i,
        )
        status = (
            "queued"
            if i >= n - 40
            else "running"
            if i >= n - 41
            else rng.choices(["succeeded", "failed", "cancelled"], [90, 5, 5])[0]
        )
        done = epochs if status == "succeeded" else (epochs // 2 if status == "running" else 0)
        acc = 0.9 + 0.08 * rng.random() if done else None
        created = start + timedelta(seconds=200 * i)
        rows.append(
            {
                "name": spec.name,
                "spec": spec.model_dump(mode="json"),
                "status": status,
                "epochs_total": epochs,
                "epochs_done": done,
                "created_at": created,
                "started_at": created + timedelta(seconds=5) if status != "queued" else None,
                "finished_at": created + timedelta(seconds=60) if status in FINISHED else None,
                "train_seconds": 2.5 * done if done else None,
                "params": param_count(spec),
                "val_accuracy": acc,
                "best_val_accuracy": acc,
                "val_loss": (1 - acc) * 2 if acc else None,
                "train_accuracy": acc + 0.01 if acc else None,
                "attempt": 1 if status != "queued" else 0,
            }
        )
    with session_scope() as s:
        for k in range(0, n, 2000):
            s.execute(insert(Experiment), rows[k : k + 2000])


def measure(url: str, loads: int, screenshot: str | None = None) -> list[dict]:
    out = []
    with launch() as browser:
        if screenshot:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.goto(url + "/")
            page.wait_for_selector("#live.ok")
            page.screenshot(path=screenshot)
            page.close()
        for _ in range(loads):
            context = browser.new_context()
            page = context.new_page()
            t0 = time.perf_counter()
            page.goto(url + "/", wait_until="load")
            page.wait_for_function("performance.getEntriesByName('labq:rows').length > 0")
            timing = page.evaluate("""() => {
                const p = Object.fromEntries(performance.getEntriesByType('paint')
                                             .map(e => [e.name, e.startTime]));
                return {fp: p['first-paint'], fcp: p['first-contentful-paint'],
                        rows: performance.getEntriesByName('labq:rows')[0].startTime,
                        shown: document.querySelectorAll('#rows tr[data-id]').length};
            }""")
            timing["wall"] = (time.perf_counter() - t0) * 1000
            out.append(timing)
            context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--loads", type=int, default=7)
    ap.add_argument("--screenshot", help="also save a picture of / to this PNG path")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="labq-perf-") as tmp:
        env = {
            **os.environ,
            "LABQ_DATA_DIR": tmp,
            "LABQ_PORT": str(free_port()),
            "LABQ_REDIS_PORT": str(free_port()),
        }
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; sys.path.insert(0, '.');"
                "from scripts.dashboard_perf import fill_database;"
                f"fill_database({args.runs})",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
        print(f"inserted {args.runs} runs in {time.perf_counter() - t0:.1f} s")
        url = f"http://127.0.0.1:{env['LABQ_PORT']}"
        api = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "api"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    total = httpx.get(url + "/experiments?limit=1", timeout=2).json()["total"]
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert total == args.runs, total
            api_ms = []
            for _ in range(10):
                t = time.perf_counter()
                httpx.get(url + "/experiments?limit=50", timeout=10).raise_for_status()
                api_ms.append((time.perf_counter() - t) * 1000)
            print(
                f"GET /experiments?limit=50 over {total} runs: median "
                f"{statistics.median(api_ms):.1f} ms"
            )
            results = measure(url, args.loads, args.screenshot)
        finally:
            api.terminate()
            api.wait(10)
    for i, r in enumerate(results, 1):
        print(
            f"load {i}: first-paint {r['fp']:.0f} ms, first-contentful-paint {r['fcp']:.0f} ms, "
            f"rows shown {r['rows']:.0f} ms ({r['shown']} rows), goto+rows {r['wall']:.0f} ms"
        )
    for key, label in (("fcp", "first-contentful-paint"), ("rows", "rows shown")):
        values = [r[key] for r in results]
        print(
            f"{label}: median {statistics.median(values):.0f} ms, max {max(values):.0f} ms "
            f"over {len(values)} loads"
        )


if __name__ == "__main__":
    main()
