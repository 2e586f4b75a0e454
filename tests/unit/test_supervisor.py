"""The supervisor behind `labq up` with small real processes instead of the stack: backoff and the
logged reason, the parent-death signal, the data dir's lock and a port in use."""

import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from cli import datadir, ports
from cli.supervisor import Child, StackError, Supervisor, exit_reason


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(tmp_path):
    said: list[str] = []
    child = Child(
        "crasher", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], tmp_path / "c.log"
    )
    sup = Supervisor([child], said.append)
    sup.start(child)

    def stop_after_three_restarts():
        while child.restarts < 3:
            time.sleep(0.05)
        sup.request_stop(signal.SIGTERM)

    threading.Thread(target=stop_after_three_restarts, daemon=True).start()
    sup.run()
    sup.stop()
    exits = [m for m in said if "exited" in m]
    assert len(exits) >= 3
    assert "(exit code 3)" in exits[0] and "its last line: boom" in exits[0]
    assert [m.split("restarting in ")[1].split(" s")[0] for m in exits[:3]] == ["1", "2", "4"]
    assert sup.stop_requested == "SIGTERM"


def test_children_get_their_death_signal_when_the_supervisor_is_killed(tmp_path):
    """SIGKILL the process that runs the supervisor: its child gets SIGTERM from the kernel."""
    marker = tmp_path / "got-sigterm"
    child_code = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(marker)!r}).touch(), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    parent_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cli.supervisor import Child, Supervisor\n"
        f"c = Child('child', [sys.executable, '-c', {child_code!r}], Path({str(tmp_path / 'c.log')!r}))\n"
        "s = Supervisor([c], print)\n"
        "s.start(c)\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    child = psutil.Process(int(parent.stdout.readline()))
    log = tmp_path / "c.log"
    deadline = time.monotonic() + 60  # the handler that records which signal came is in place
    while not (log.exists() and "ready" in log.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    child.wait(30)
    assert marker.exists()


def test_exit_reasons():
    assert exit_reason(-9) == "killed by SIGKILL"
    assert exit_reason(2) == "exit code 2"


def test_one_lock_per_data_dir(tmp_path):
    first = datadir.DataDirLock(tmp_path)
    assert first.acquire() and datadir.lock_held(tmp_path)
    assert not datadir.DataDirLock(tmp_path).acquire()
    first.release()
    assert not datadir.lock_held(tmp_path)


def test_a_port_in_use_is_one_line_naming_holder_and_setting():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(StackError) as err:
            ports.require_free("127.0.0.1", port, "the API", "LABQ_PORT")
    message = str(err.value)
    assert message.startswith(f"port {port} (the API) is already in use by pid ")
    assert message.endswith("set LABQ_PORT to another port") and "\n" not in message


def test_a_holder_installed_deep_is_named_by_its_program(tmp_path):
    """A holder under a long install path is still named: the cut falls on its arguments, never on
    the program's own name (CI's venv path once cut 'redis-server' to 'redis-serve...')."""
    deep = tmp_path.joinpath(*["site-packages-of-a-long-install-path"] * 4)
    deep.mkdir(parents=True)
    program = deep / "port-holder-program"
    program.symlink_to(sys.executable)
    code = "import socket,sys;s=socket.socket();s.bind(('127.0.0.1',0));s.listen();"
    code += "print(s.getsockname()[1],flush=True);sys.stdin.read()"
    proc = subprocess.Popen(
        [str(program), "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(proc.stdout.readline())
        with pytest.raises(StackError) as err:
            ports.require_free("127.0.0.1", port, "embedded Redis", "LABQ_REDIS_PORT")
        assert f"by pid {proc.pid} (port-holder-program -c import socket" in str(err.value)
    finally:
        proc.kill()
        proc.wait()
