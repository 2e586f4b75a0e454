"""A real labq stack for tests: `labq up` in a temporary data dir on free ports, with the embedded
Redis and SQLite, or with PostgreSQL and a separately started Redis (the distributed mode)."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.constants import FINISHED

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_database(admin_url: str) -> str:
    """A fresh database per stack, so legs and runs never see each other's rows."""
    import psycopg

    name = f"labq_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


@dataclass
class Stack:
    data_dir: Path
    database_url: str = ""  # empty: embedded SQLite
    redis_url: str = ""  # empty: embedded Redis started by `labq up`
    extra_env: dict = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(LABQ_DATA_DIR=str(self.data_dir), LABQ_PORT=str(self.port),
                   LABQ_REDIS_PORT=str(self.redis_port), PYTHONUNBUFFERED="1", **self.extra_env)
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_workers: bool = True, timeout: float = 120) -> "Stack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "up.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "cli.main", "up"], cwd=ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"labq up exited: {self.logs()}")
            try:
                h = httpx.get(f"{self.url}/health", timeout=3).json()
                if h["status"] == "ok" and (h["workers"] or not wait_workers):
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"stack did not become healthy: {self.logs()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def logs(self) -> str:
        out = []
        for path in [self.data_dir / "up.log", *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    # --- HTTP helpers -------------------------------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def submit(self, spec: dict) -> int:
        r = httpx.post(f"{self.url}/experiments", json=spec, timeout=30)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def get(self, exp_id: int) -> dict:
        return httpx.get(f"{self.url}/experiments/{exp_id}", timeout=30).json()

    def wait(self, exp_id: int, statuses=FINISHED, timeout: float = 180,
             until=None) -> dict:
        """Poll until the experiment reaches one of `statuses` (or `until(exp)` is true)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exp = self.get(exp_id)
            if (until(exp) if until else exp["status"] in statuses):
                return exp
            time.sleep(0.2)
        raise TimeoutError(f"experiment {exp_id} stuck at {self.get(exp_id)}\n{self.logs()}")
