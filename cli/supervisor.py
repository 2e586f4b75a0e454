"""The process supervisor behind `labq up`: starts each child, restarts one that dies (with backoff,
logging why), and stops them all, in reverse order, only when asked to.

Every child runs in its own session (a terminal's Ctrl-C reaches `labq up` alone, which stops the
children in order) and, on Linux, carries a parent-death signal: if `labq up` itself is killed
(SIGKILL, the OOM killer), the kernel sends each child its `death_signal`, so none outlives it.
The signal fires when the *thread* that started the child ends, so children are started from the
main thread only.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

STABLE_SECONDS = 30.0  # a child that ran this long before dying starts again at the first delay
MAX_BACKOFF = 30.0
PR_SET_PDEATHSIG = 1


class StackError(Exception):
    """A failure the user must act on; its message is one line that says what to do."""


class SpawnError(StackError):
    """A child's process could not be created (a missing program, no memory, no file handles)."""


class Interrupted(Exception):
    """A stop was asked for (Ctrl-C, SIGTERM, SIGHUP) while the stack was starting."""


def _death_signal_preexec(sig: int) -> Callable[[], None] | None:
    """Runs in the child between fork and exec: ask the kernel for `sig` when the parent dies."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            os._exit(111)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), sig)

    return preexec


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def last_line(path: Path, limit: int = 200) -> str:
    """The last non-empty line of a log, for a one-line account of why a child stopped."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    return lines[-1][:limit] if lines else ""


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    # What the kernel sends this child when `labq up` dies without stopping it.
    death_signal: int = signal.SIGTERM
    # ready(child, supervisor) blocks until the child serves or exits; it raises StackError when
    # the child cannot serve for a reason that restarting will not cure. None: no wait.
    ready: Callable[["Child", "Supervisor"], None] | None = None
    proc: subprocess.Popen | None = None
    log_offset: int = 0  # the size of its log when the current process started
    started_at: float = 0.0  # time.time() of the current process's start
    restarts: int = 0
    failures: int = 0  # consecutive short lives, for the backoff
    restart_at: float | None = None  # time.monotonic() of the scheduled restart

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass
class Supervisor:
    children: list[Child]
    say: Callable[[str], None]  # where events go (the terminal and logs/up.log)
    on_change: Callable[["Supervisor"], None] = lambda _s: None  # a child started or died
    env: dict = field(default_factory=lambda: {**os.environ, "PYTHONUNBUFFERED": "1"})
    stop_requested: str | None = None  # the name of the signal that asked for the stop

    def request_stop(self, signum: int, _frame=None) -> None:
        """A signal handler: only records the request; the loops below act on it."""
        self.stop_requested = signal.Signals(signum).name

    def sleep(self, seconds: float) -> None:
        """Sleep, unless a stop is asked for (then raise Interrupted)."""
        deadline = time.monotonic() + seconds
        while True:
            if self.stop_requested:
                raise Interrupted(self.stop_requested)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.1))

    def start(self, child: Child) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        try:
            out = open(child.log, "ab")
        except OSError as exc:
            raise SpawnError(f"cannot start {child.name}: {child.log}: {exc.strerror}") from None
        with out:
            child.log_offset = out.tell()
            child.proc = self._popen(child, out)
        child.started_at = time.time()
        child.restart_at = None
        self.on_change(self)
        if child.ready:
            child.ready(child, self)

    def _popen(self, child: Child, out) -> subprocess.Popen:
        try:
            return subprocess.Popen(
                child.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                preexec_fn=_death_signal_preexec(child.death_signal),
            )
        except OSError as exc:
            raise SpawnError(f"cannot start {child.name} ({child.argv[0]}): {exc}") from None

    def start_all(self) -> None:
        """Start each child in order; one that exits while it starts fails the start."""
        for child in self.children:
            self.start(child)
            if not child.alive:
                why = last_line(child.log)
                raise StackError(
                    f"{child.name} exited as it started ({exit_reason(child.proc.returncode)})"
                    + (f": {why}" if why else "")
                    + f"; see {child.log}"
                )

    def run(self) -> None:
        """Watch the children until a stop is asked for; restart each one that dies.

        Returns when a stop was asked for; raises StackError when a child cannot be started
        again for a reason that waiting will not cure (its `ready` says which)."""
        while True:
            try:
                self.sleep(0.2)
            except Interrupted:
                return
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is None and not child.alive:
                    self._schedule_restart(child)
                elif child.restart_at is not None and now >= child.restart_at:
                    child.restarts += 1
                    try:
                        self.start(child)
                    except Interrupted:
                        return
                    except SpawnError as exc:
                        child.failures += 1
                        delay = min(MAX_BACKOFF, 2.0 ** (child.failures - 1))
                        child.restart_at = time.monotonic() + delay
                        self.say(f"{exc}; trying again in {delay:.0f} s")
                        continue
                    if child.alive:
                        self.say(f"{child.name} started again (pid {child.pid})")

    def _schedule_restart(self, child: Child) -> None:
        lived = time.time() - child.started_at
        child.failures = 1 if lived >= STABLE_SECONDS else child.failures + 1
        delay = min(MAX_BACKOFF, 2.0 ** (child.failures - 1))
        child.restart_at = time.monotonic() + delay
        why = last_line(child.log)
        self.say(
            f"{child.name} (pid {child.pid}) exited ({exit_reason(child.proc.returncode)}) after "
            f"{lived:.0f} s; restarting in {delay:.0f} s; see {child.log}"
            + (f"; its last line: {why}" if why else "")
        )
        self.on_change(self)

    def stop(self, grace: float = 10.0) -> None:
        """Last started, first stopped: the API (no new work), the worker, then Redis (which
        writes its append-only file as it exits). SIGKILL for a child that outstays `grace`."""
        for child in reversed(self.children):
            proc = child.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {grace:.0f} s; killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
