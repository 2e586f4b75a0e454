"""The embedded stack keeps its data to labq's user, against a live `labq up`: the data dir and
all in it are 0700/0600 (also what an older labq left readable), and its Redis answers only
with the password generated into the data dir, without CONFIG, MODULE or DEBUG; `labq up`, the
API and the worker all find that password."""

import os
import stat

import httpx
import psutil
import pytest
import redis

from tests.stack import Stack

pytestmark = pytest.mark.integration

TINY = {"layers": [{"units": 8}], "epochs": 1, "train_samples": 500}


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    old_umask = os.umask(0o022)  # as a login shell has it: what labq creates must not follow it
    try:
        s = Stack(tmp_path_factory.mktemp("private") / "data")
        (s.data_dir / "logs").mkdir(parents=True)
        s.data_dir.chmod(0o755)
        (s.data_dir / "logs" / "api.log").write_text("an older labq's log\n")
        (s.data_dir / "logs" / "api.log").chmod(0o644)
        s.start()
    finally:
        os.umask(old_umask)
    yield s
    s.stop()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_data_dir_and_its_files_are_private(private):
    exp_id = private.submit(TINY)
    assert private.wait(exp_id)["status"] == "succeeded"
    assert mode(private.data_dir) == 0o700
    seen = set()
    for root, dirs, files in os.walk(private.data_dir):
        for name in dirs:
            assert mode(os.path.join(root, name)) == 0o700, os.path.join(root, name)
        for name in files:
            path = os.path.join(root, name)
            assert mode(path) == 0o600, (path, oct(mode(path)))
            seen.add(os.path.relpath(path, private.data_dir))
    for wanted in ("labq.db", "redis.password", "logs/api.log", "logs/worker.log", "up.log"):
        assert wanted in seen, seen
    assert any(p.startswith("redis/appendonly") for p in seen), seen


def test_embedded_redis_needs_the_generated_password(private):
    password = (private.data_dir / "redis.password").read_text().strip()
    assert len(password) == 64 and int(password, 16)
    port = private.redis_port
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="not-it").ping()
    client = redis.Redis(port=port, password=password)
    assert client.ping()
    for command in (("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LIST"), ("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)

    # Nobody else can read the password off a command line.
    labq_up = psutil.Process(private.proc.pid)
    lines = [" ".join(p.cmdline()) for p in [labq_up, *labq_up.children(recursive=True)]]
    assert any("redis-server" in line for line in lines), lines
    assert not [line for line in lines if password in line]

    # `labq up` (it waited for Redis), the API (the broker is ok) and the worker (it answers the
    # ping; the test above had it train a job) use it, and no log shows it.
    health = httpx.get(f"{private.url}/health").json()
    assert health["broker"] == "ok" and health["workers"]
    assert password not in private.logs(tail=10**7)
