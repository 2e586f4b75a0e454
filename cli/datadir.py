"""What `labq up` keeps in its data dir to own it: a lock (one stack per data dir) and a state file
naming the pids of `labq up` and of its children. `labq ps` and `labq down` read the state file; the
next `labq up` uses it to find and stop whatever a stack that died left behind.

A process is identified by its pid *and* its start time (psutil's `create_time`), so a pid that the
system has since given to an unrelated process is never mistaken for a child of labq.
"""

import fcntl
import json
import os
import signal
import time
from pathlib import Path

import psutil

LOCK_FILE = "labq.lock"
STATE_FILE = "labq-up.json"


class DataDirLock:
    """An exclusive `flock` on <data dir>/labq.lock, held for as long as `labq up` runs (and by
    `labq restore` and `labq repair` while they change the data dir). The kernel releases it when
    the holder dies however it dies, so a stale lock never blocks the next start."""

    def __init__(self, data_dir: Path):
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_held(data_dir: Path) -> bool:
    """Whether a live process holds the data dir's lock (it is taken and let go at once)."""
    if not (data_dir / LOCK_FILE).exists():
        return False
    lock = DataDirLock(data_dir)
    if lock.acquire():
        lock.release()
        return False
    return True


def read_state(data_dir: Path) -> dict | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def write_state(data_dir: Path, state: dict) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


def process_of(entry: dict) -> psutil.Process | None:
    """The live process an entry of the state file names, or None when it is gone."""
    try:
        proc = psutil.Process(int(entry["pid"]))
        if abs(proc.create_time() - float(entry["create_time"])) > 0.5:
            return None  # the pid now belongs to another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except (psutil.Error, KeyError, TypeError, ValueError):
        return None


def describe_holder(data_dir: Path) -> str:
    """'pid 41 (redis 43, worker 45, api 47)' for the stack that holds the data dir."""
    state = read_state(data_dir) or {}
    if not state.get("pid"):
        return "a labq process whose pid is not recorded yet"
    kids = ", ".join(
        f"{c['name']} {c['pid']}" for c in state.get("children", []) if process_of(c) is not None
    )
    return f"labq up pid {state['pid']}" + (f" ({kids})" if kids else "")


def leftovers(data_dir: Path) -> list[tuple[str, psutil.Process]]:
    """Processes that a `labq up` which died left running: its recorded children and the rest of
    their process groups (a worker's pool processes), oldest stack first. Call only while holding
    the lock: then no live `labq up` owns them."""
    state = read_state(data_dir)
    if not state:
        return []
    found: dict[int, tuple[str, psutil.Process]] = {}
    groups: dict[int, str] = {}
    for entry in state.get("children", []):
        proc = process_of(entry)
        if proc is not None:
            found[proc.pid] = (entry["name"], proc)
        groups[int(entry["pid"])] = entry.get("name", "?")  # each child leads its own group
    since = float(state.get("create_time", 0)) - 1
    for proc in psutil.process_iter(["create_time"]):
        try:
            pgid = os.getpgid(proc.pid)
        except OSError:
            continue
        if pgid in groups and proc.pid not in found and proc.info["create_time"] >= since:
            found[proc.pid] = (groups[pgid], proc)
    return list(found.values())


def stop_processes(procs: list[psutil.Process], grace: float = 10.0) -> None:
    """SIGTERM (and SIGCONT, so that a stopped process acts on it), then SIGKILL for those still
    there after `grace` seconds."""
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.send_signal(signal.SIGCONT)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace)


def stop_leftovers(data_dir: Path, say) -> None:
    """Stop what a dead stack left behind: API and worker first, Redis last (it writes its AOF)."""
    found = leftovers(data_dir)
    if not found:
        return
    state = read_state(data_dir) or {}
    names = ", ".join(f"{name} {proc.pid}" for name, proc in found)
    say(f"stopping what the labq up that died (pid {state.get('pid')}) left running: {names}")
    stop_processes([p for name, p in found if name != "redis"])
    stop_processes([p for name, p in found if name == "redis"])
    clear_state(data_dir)


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
