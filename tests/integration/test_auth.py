"""Bearer tokens against a live labq: the open loopback quick start, 401 once a token exists,
per-token job and request limits (429 + Retry-After), revocation, CORS allowlist, and the refusal
to listen beyond loopback without a token."""

import subprocess
import sys

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import HELD
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.integration

SPEC = {"layers": [{"units": 16}], "epochs": 1, "train_samples": 1000}
# Held in its epoch 2 by the stack's hold hook (tests/conftest.py HELD) until it is cancelled, so
# it stays queued or running while the job limit is checked, however fast the worker.
LONG = {"name": "held-in-epoch-2", "layers": [{"units": 32}], "epochs": 3, "train_samples": 1000}
ALLOWED = "http://allowed.example"


def labq(stack: Stack, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=env or stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    s = Stack(
        tmp_path_factory.mktemp("auth"),
        extra_env={
            **HELD,
            "LABQ_RATE_LIMIT_PER_MINUTE": "40",
            "LABQ_MAX_ACTIVE_JOBS_PER_TOKEN": "2",
            "LABQ_CORS_ORIGINS": f'["{ALLOWED}"]',
        },
    )
    s.start()
    yield s
    s.stop()


def test_tokens_guard_writes_and_limits_apply(guarded):
    url = guarded.url
    # No token created, loopback: today's curl quick start works without one.
    assert httpx.post(f"{url}/experiments", json=SPEC).status_code == 202

    made = labq(guarded, "token", "create", "alice")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("labq_") and len(token) > 30
    listed = labq(guarded, "token", "ls")
    assert "alice" in listed.stdout and token not in listed.stdout
    assert labq(guarded, "token", "create", "alice").returncode == 1  # names are unique
    good = {"Authorization": f"Bearer {token}"}

    # Every write now needs a valid token; reads on loopback stay open.
    r = httpx.post(f"{url}/experiments", json=SPEC)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    for bad in ("Bearer wrong", "Bearer " + token[:-1] + "x", "Basic abc", "Bearer"):
        r = httpx.post(f"{url}/experiments", json=SPEC, headers={"Authorization": bad})
        assert r.status_code == 401, bad
        assert token not in r.text
    assert httpx.post(f"{url}/experiments/1/cancel", json={}).status_code == 401
    assert httpx.get(f"{url}/experiments").status_code == 200
    assert (
        httpx.get(f"{url}/experiments", headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )

    # Queued + running jobs per token: the third is refused and nothing is stored for it.
    ids = []
    for _ in range(2):
        r = httpx.post(f"{url}/experiments", json=LONG, headers=good)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    guarded.held(ids[0])  # running, and the second waits behind it
    assert [guarded.get(i)["status"] for i in ids] == ["running", "queued"]
    total = httpx.get(f"{url}/experiments").json()["total"]
    r = httpx.post(f"{url}/experiments", json=LONG, headers=good)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "queued or running" in r.json()["detail"]
    assert httpx.get(f"{url}/experiments").json()["total"] == total
    engine = create_engine(f"sqlite:///{guarded.data_dir / 'labq.db'}")
    with engine.connect() as conn:
        owners = (
            conn.execute(
                text(
                    "SELECT t.name FROM experiments e JOIN tokens t "
                    "ON t.id = e.token_id WHERE e.id IN (:a, :b)"
                ),
                {"a": ids[0], "b": ids[1]},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert owners == ["alice", "alice"]
    for exp_id in ids:
        assert (
            httpx.post(f"{url}/experiments/{exp_id}/cancel", headers=good, json={}).status_code
            == 202
        )
    for exp_id in ids:
        assert guarded.wait(exp_id)["status"] == "cancelled"

    # Requests per minute per token: 40, then 429 with Retry-After.
    codes = [httpx.get(f"{url}/experiments", headers=good).status_code for _ in range(45)]
    assert 429 in codes and codes.index(429) < 40
    r = httpx.get(f"{url}/experiments", headers=good)
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
    assert httpx.get(f"{url}/experiments").status_code == 200  # other callers are unaffected

    # Revoked: the token stops working at once.
    assert labq(guarded, "token", "revoke", "alice").returncode == 0
    assert httpx.post(f"{url}/experiments", json=SPEC, headers=good).status_code == 401
    assert token not in guarded.logs()


def test_cors_allowlist(guarded):
    pre = {"Access-Control-Request-Method": "POST"}
    ok = httpx.options(f"{guarded.url}/experiments", headers={"Origin": ALLOWED, **pre})
    assert ok.headers.get("access-control-allow-origin") == ALLOWED
    other = httpx.options(
        f"{guarded.url}/experiments", headers={"Origin": "http://evil.example", **pre}
    )
    assert "access-control-allow-origin" not in other.headers
    # Writes from an allowed origin pass the cross-site rule (and meet the token rules); from
    # any other, they are refused before anything else.
    cancel = f"{guarded.url}/experiments/999999/cancel"
    for origin, codes in ((ALLOWED, (401, 404)), ("http://evil.example", (403,))):
        headers = {"Origin": origin, "content-type": "application/json"}
        assert httpx.post(cancel, headers=headers).status_code in codes, origin


def test_non_loopback_needs_a_token(tmp_path):
    stack = Stack(tmp_path / "open", extra_env={"LABQ_HOST": "0.0.0.0"})
    stack.data_dir.mkdir()
    for args in (["up", "--host", "0.0.0.0"], ["up"], ["api"]):
        refused = labq(stack, *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert "refusing to listen on 0.0.0.0" in refused.stderr
        assert "labq token create" in refused.stderr

    token = labq(stack, "token", "create", "ops").stdout.strip()
    stack.token = token
    stack.start()
    try:
        assert httpx.get(f"{stack.url}/health").status_code == 200
        assert httpx.get(f"{stack.url}/experiments").status_code == 401
        assert httpx.get(f"{stack.url}/openapi.json").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{stack.url}/experiments", headers=auth).status_code == 200
        assert httpx.get(f"{stack.url}/metrics").status_code == 401
        assert httpx.get(f"{stack.url}/metrics", headers=auth).status_code == 200
        assert httpx.post(f"{stack.url}/experiments", json=SPEC, headers=auth).status_code == 202

        # The dashboard in a browser: pages redirect to /login; the labq_token cookie it sets
        # opens reads (pages, JSON, event streams) but never writes.
        page = httpx.get(f"{stack.url}/runs/1?x=1", headers={"Accept": "text/html"})
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=/runs/1%3Fx%3D1"
        login = httpx.get(f"{stack.url}/login", params={"next": "//evil.example/"})
        assert login.status_code == 200 and "evil.example" not in login.text
        assert httpx.get(f"{stack.url}/static/common.js").status_code == 200
        cookie = {"Cookie": f"labq_token={token}"}
        assert httpx.get(f"{stack.url}/experiments", headers=cookie).status_code == 200
        assert httpx.get(f"{stack.url}/runs/1", headers=cookie).status_code == 200
        assert (
            httpx.get(
                f"{stack.url}/experiments", headers={"Cookie": "labq_token=wrong"}
            ).status_code
            == 401
        )
        assert httpx.post(f"{stack.url}/experiments", json=SPEC, headers=cookie).status_code == 401

        # /health stays open (a probe needs no token) but names its parts and the workers' hosts
        # only to a caller who may read.
        assert httpx.get(f"{stack.url}/health").json() == {"status": "ok"}
        wrong = {"Authorization": "Bearer wrong"}
        assert httpx.get(f"{stack.url}/health", headers=wrong).json() == {"status": "ok"}
        for credentials in (auth, cookie):
            health = httpx.get(f"{stack.url}/health", headers=credentials).json()
            assert health["database"] == "ok" and health["workers"], health
        assert (
            httpx.post(f"{stack.url}/experiments/1/cancel", headers=cookie, json={}).status_code
            == 401
        )
    finally:
        stack.stop()
