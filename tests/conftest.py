"""Fixtures. `stack` is a live labq (module-scoped), once per database backend:
sqlite (embedded everything) and postgres (PostgreSQL + a separately started Redis, i.e. the
distributed configuration). The postgres leg needs LABQ_TEST_PG_URL (scripts/postgres.sh sets it,
`make test` runs it); with LABQ_REQUIRE_PG=1, as on CI, a missing PostgreSQL fails the run."""

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from cli.stack import redis_server_binary, write_redis_config
from tests.stack import DistributedStack, Stack, create_pg_database, free_port

TINY = {"layers": [{"units": 32}], "epochs": 2, "batch_size": 128, "train_samples": 2000}


def pytest_configure(config):
    # Unit tests import TensorFlow in-process; keep its logging quiet.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # httpx's 5 s default is shorter than a first request takes on a heavily loaded machine (a
    # live stack's API answering while its worker imports TensorFlow): a backstop, not a target.
    default = httpx._config.DEFAULT_TIMEOUT_CONFIG  # the object every httpx call's default is
    for phase in ("connect", "read", "write", "pool"):
        setattr(default, phase, 60.0)


@pytest.fixture(scope="session")
def pg_admin_url() -> str | None:
    url = os.environ.get("LABQ_TEST_PG_URL")
    if not url and os.environ.get("LABQ_REQUIRE_PG") == "1":
        pytest.fail("LABQ_REQUIRE_PG=1 but LABQ_TEST_PG_URL is not set (scripts/postgres.sh)")
    return url


EXTERNAL_REDIS_PASSWORD = "distributed-test-password"


@pytest.fixture(scope="session")
def external_redis(tmp_path_factory):
    """A Redis server started by the test, standing in for the distributed mode's broker: like
    docker-compose.yml's, it needs a password (given in REDIS_URL) and has no CONFIG command."""
    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    conf = write_redis_config(d / "redis.conf", EXTERNAL_REDIS_PASSWORD)
    proc = subprocess.Popen(
        [str(redis_server_binary()), str(conf), "--port", str(port), "--bind", "127.0.0.1"]
        + ["--dir", str(d), "--save", "", "--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"redis://:{EXTERNAL_REDIS_PASSWORD}@127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


_redis_db = iter(range(1, 16))


# Jobs the worker's test hook holds inside an epoch (worker/testhooks.py): a test finds them
# running at a known point on any machine, and a cancel or a release lets them go.
HELD = {"LABQ_TEST_HOLD_IN_EPOCH": "held-in-epoch-2:2"}


def make_stack(backend: str, tmp_path_factory, pg_admin_url, external_redis, **kw) -> Stack:
    kw["extra_env"] = {**HELD, **kw.get("extra_env", {})}
    data = tmp_path_factory.mktemp(f"labq-{backend}")
    if backend == "postgres":
        if not pg_admin_url:
            pytest.skip("PostgreSQL leg: LABQ_TEST_PG_URL not set (run via `make test`)")
        return Stack(
            data,
            database_url=create_pg_database(pg_admin_url),
            redis_url=external_redis.replace("/0", f"/{next(_redis_db)}"),
            **kw,
        )
    return Stack(data, **kw)


def make_distributed(tmp_path_factory, pg_admin_url, workers: int = 1, **kw) -> DistributedStack:
    """The distributed leg as separate processes (tests.stack.DistributedStack) on a fresh
    PostgreSQL database; skipped without PostgreSQL, like the postgres leg."""
    if not pg_admin_url:
        pytest.skip("distributed leg: LABQ_TEST_PG_URL not set (run via `make test`)")
    return DistributedStack(
        tmp_path_factory.mktemp("labq-distributed"),
        database_url=create_pg_database(pg_admin_url),
        workers=workers,
        **kw,
    )


@contextmanager
def started(stack: Stack) -> Iterator[Stack]:
    """A live stack for the `with` block (a test's own fixture: `with started(make_stack(...))`)."""
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, pg_admin_url, external_redis):
    s = make_stack(request.param, tmp_path_factory, pg_admin_url, external_redis)
    s.backend = request.param
    s.start()
    yield s
    s.stop()


@pytest.fixture
def tiny() -> dict:
    return {**TINY, "layers": [dict(lyr) for lyr in TINY["layers"]]}
