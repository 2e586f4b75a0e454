"""`labq up`, `labq down`, `labq ps`: the embedded stack as one supervised service per data dir.

`labq up` takes the data dir's lock, stops whatever a stack that died there left running, checks its
ports, migrates the database, then starts Redis, the worker and the API and keeps them running
(cli.supervisor) until Ctrl-C, SIGTERM, SIGHUP or `labq down`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.console import Console
from rich.table import Table

from cli import datadir, ports
from cli import tokens as tokens_cli
from cli.stack import log_dir, stack_children
from cli.supervisor import Interrupted, StackError, Supervisor
from core import privacy
from core.settings import Settings, get_settings

console = Console(highlight=False)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def fail(message: str, code: int = 1):
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(code)


class EventLog:
    """What `labq up` tells about itself: on its terminal, and with a time stamp in logs/up.log.
    Detached, its output *is* logs/up.log. A terminal that went away (SIGHUP) is not an error."""

    def __init__(self, path: Path, detached: bool):
        self.path = path
        self.detached = detached

    def __call__(self, message: str, error: bool = False) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {'error: ' if error else ''}{message}"
        try:
            print(line if self.detached else message, file=sys.stderr if error else sys.stdout)
            (sys.stderr if error else sys.stdout).flush()
        except OSError:
            pass
        if not self.detached:
            try:
                with open(self.path, "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass  # a full disk must not take the supervisor down


def _hang_up_terminal() -> None:
    """After SIGHUP the terminal is gone: write nothing more to it (logs/up.log has it all)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _record(settings: Settings, state: dict, sup: Supervisor) -> None:
    children = []
    for child in sup.children:
        if child.proc is None:
            continue
        try:
            created = psutil.Process(child.pid).create_time()
        except psutil.Error:
            created = child.started_at
        children.append(
            {
                "name": child.name,
                "pid": child.pid,
                "create_time": created,
                "started_at": child.started_at,
                "restarts": child.restarts,
                "status": "restarting" if child.restart_at is not None else "running",
                "log": str(child.log),
            }
        )
    state["children"] = children
    try:
        datadir.write_state(settings.data_dir, state)
    except OSError as exc:  # a full disk must not take the supervisor down; ps may lag
        sup.say(f"cannot record the children's pids in {settings.data_dir}: {exc.strerror}")


def busy_message(data_dir: Path) -> str:
    return (
        f"data dir {data_dir.resolve()} is in use by {datadir.describe_holder(data_dir)}; "
        "`labq ps` shows it, `labq down` stops it (or set LABQ_DATA_DIR to another one)"
    )


def run_stack(settings: Settings, concurrency: int, detached: bool) -> int:
    """Run the stack until asked to stop; the exit status of `labq up`."""
    from db.migrate import upgrade

    lock = datadir.DataDirLock(settings.data_dir)
    if not lock.acquire():
        raise StackError(busy_message(settings.data_dir))
    say = EventLog(log_dir(settings) / "up.log", detached)

    def interrupt(signum, _frame):
        if signum == signal.SIGHUP:
            _hang_up_terminal()
        raise KeyboardInterrupt

    for sig in STOP_SIGNALS:  # explicit: a shell that starts us in the background ignores SIGINT
        signal.signal(sig, interrupt)
    sup: Supervisor | None = None
    state = {
        "pid": os.getpid(),
        "create_time": psutil.Process().create_time(),
        "data_dir": str(settings.data_dir.resolve()),
        "api": settings.base_url,
        "status": "starting",
        "children": [],
    }
    try:
        datadir.stop_leftovers(settings.data_dir, say)
        datadir.write_state(settings.data_dir, state)
        ports.require_free(settings.host, settings.port, "the API", "LABQ_PORT")
        if settings.embedded_redis:
            ports.require_free(
                "127.0.0.1", settings.redis_port, "embedded Redis", "LABQ_REDIS_PORT"
            )
        upgrade()
        say(f"database {settings.db_url.split('@')[-1]} (migrated)")
        sup = Supervisor(
            stack_children(settings, concurrency),
            say,
            on_change=lambda s: _record(settings, state, s),
        )
        for sig in STOP_SIGNALS:
            signal.signal(sig, sup.request_stop)
        sup.start_all()
        state["status"] = "running"
        _record(settings, state, sup)
        for child in sup.children:
            say(f"{child.name:<8} pid {child.pid}  log {child.log}")
        if settings.embedded_redis:
            say(f"redis    127.0.0.1:{settings.redis_port} (AOF in {settings.data_dir}/redis)")
        say(f"api      {settings.base_url}  (docs at /docs)")
        say("`labq down` or Ctrl-C stops everything." if not detached else "`labq down` stops it.")
        sup.run()
        if sup.stop_requested == "SIGHUP":
            _hang_up_terminal()
        say(f"{sup.stop_requested}: stopping...")
        return 0
    except (Interrupted, KeyboardInterrupt):
        if sup and sup.stop_requested == "SIGHUP":
            _hang_up_terminal()
        say("stopping...")
        return 0
    except StackError as exc:
        say(str(exc), error=True)
        return 1
    finally:
        if sup:
            state["status"] = "stopping"
            datadir.write_state(settings.data_dir, state)
            sup.stop()
        datadir.clear_state(settings.data_dir)
        lock.release()
        say("stopped.")


def _detach(settings: Settings, concurrency: int) -> None:
    """Start `labq up` in the background, its output in logs/up.log; return once it serves."""
    if datadir.lock_held(settings.data_dir):
        fail(busy_message(settings.data_dir))
    log = log_dir(settings) / "up.log"
    argv = [sys.executable, "-m", "cli.main", "up", "--concurrency", str(concurrency)]
    with open(log, "ab") as out:
        offset = out.tell()
        proc = subprocess.Popen(
            [*argv, "--detached-child"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while True:
        state = datadir.read_state(settings.data_dir) or {}
        if state.get("pid") == proc.pid and state.get("status") == "running":
            console.print(
                f"labq up runs in the background (pid {proc.pid}): api {settings.base_url}, "
                f"logs in {log.parent}; `labq ps` shows it, `labq down` stops it",
                soft_wrap=True,
            )
            return
        if proc.poll() is not None:
            with open(log, "rb") as f:
                f.seek(offset)
                tail = f.read().decode(errors="replace").strip().splitlines() or [""]
            errors = [ln.partition(" error: ")[2] for ln in tail if " error: " in ln]
            fail(errors[-1] if errors else f"labq up exited: {tail[-1]} (see {log})")
        time.sleep(0.2)


def up(
    concurrency: Annotated[int, typer.Option(help="worker processes")] = 1,
    host: Annotated[str | None, typer.Option(help="API bind address (LABQ_HOST)")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="run in the background; logs in DATA_DIR/logs")
    ] = False,
    detached_child: Annotated[bool, typer.Option(hidden=True)] = False,
):
    """Start the embedded stack (Redis, SQLite, a Celery worker, the API) and keep it running."""
    if host:
        os.environ["LABQ_HOST"] = host  # the API child reads it too
        get_settings.cache_clear()
    settings = get_settings()
    privacy.private_umask()
    privacy.make_private(settings.data_dir)
    tokens_cli.refuse_open_bind(settings)
    if detach:
        _detach(settings, concurrency)
        return
    try:
        code = run_stack(settings, concurrency, detached=detached_child)
    except StackError as exc:
        fail(str(exc))
    raise typer.Exit(code)


def _age(since: float) -> str:
    s = int(time.time() - since)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def ps(as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False):
    """Show the stack that runs on this data dir: each child's pid, state, restarts and log."""
    data_dir = get_settings().data_dir
    state = datadir.read_state(data_dir) if datadir.lock_held(data_dir) else None
    if state:
        for child in state.get("children", []):
            if datadir.process_of(child) is None:
                child["status"] = "restarting" if child["status"] == "restarting" else "exited"
    if as_json:
        print(
            json.dumps(
                {"running": bool(state), "data_dir": str(data_dir.resolve()), **(state or {})}
            )
        )
    elif not state:
        console.print(f"no labq stack is running on data dir {data_dir.resolve()}", soft_wrap=True)
    else:
        console.print(
            f"labq up pid {state['pid']} ({state['status']}, up {_age(state['create_time'])}) "
            f"on data dir {state['data_dir']}; api {state['api']}",
            soft_wrap=True,
        )
        table = Table("name", "pid", "state", "restarts", "up", "log")
        for c in state.get("children", []):
            table.add_row(
                c["name"],
                str(c["pid"]),
                c["status"],
                str(c["restarts"]),
                _age(c["started_at"]),
                c["log"],
            )
        console.print(table)
    if not state:
        raise typer.Exit(1)


def down(
    timeout: Annotated[float, typer.Option(help="seconds to wait before killing it")] = 60,
):
    """Stop the stack that runs on this data dir (started with `labq up --detach` or not)."""
    data_dir = get_settings().data_dir
    stopped = False
    if datadir.lock_held(data_dir):
        owner = datadir.process_of(datadir.read_state(data_dir) or {})
        if owner is None:
            fail(f"data dir {data_dir.resolve()} is locked by a process whose pid is not recorded")
        console.print(f"stopping labq up (pid {owner.pid})...")
        try:
            owner.send_signal(signal.SIGTERM)
        except psutil.AccessDenied:
            fail(f"labq up (pid {owner.pid}) belongs to another user; stop it as that user")
        if not datadir.wait_until(lambda: not datadir.lock_held(data_dir), timeout):
            console.print(f"it did not stop within {timeout:.0f} s; killing it")
            owner.kill()  # its children get their parent-death signal
            datadir.wait_until(lambda: not datadir.lock_held(data_dir), 10)
        stopped = True
    lock = datadir.DataDirLock(data_dir)
    if data_dir.is_dir() and lock.acquire():
        try:
            stopped = bool(datadir.leftovers(data_dir)) or stopped
            datadir.stop_leftovers(data_dir, console.print)
        finally:
            lock.release()
    if stopped:
        console.print("stopped.")
    else:
        console.print(f"no labq stack is running on data dir {data_dir.resolve()}", soft_wrap=True)
