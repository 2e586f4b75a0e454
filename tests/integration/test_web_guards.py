"""What a web page of another site, or a client, can make labq do through the loopback stack that
has no token: no cross-site writes, every write as JSON, only loopback Host names (and those of
LABQ_ALLOWED_HOSTS), sign-in never sends the browser elsewhere, any name draws as a figure,
results.csv holds no formula, and a failed run's traceback is its submitter's."""

import csv
import io
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import HELD
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.integration

PROXY_NAME = "labq.lab.example"
EVIL = "http://evil.example"
JSON = {"content-type": "application/json"}
# Held in its epoch 2 by the stack's hold hook (tests/conftest.py HELD) until it is cancelled, so
# it is still running when the cancel comes, however fast the worker.
LONG = {"name": "held-in-epoch-2", "layers": [{"units": 8}], "epochs": 3, "train_samples": 500}
TINY = {"layers": [{"units": 8}], "epochs": 2, "batch_size": 128, "train_samples": 500}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    s = Stack(
        tmp_path_factory.mktemp("web"),
        extra_env={**HELD, "LABQ_ALLOWED_HOSTS": f'["{PROXY_NAME}"]'},
    )
    s.start()
    yield s
    s.stop()


def totals(stack: Stack) -> tuple:
    return stack.sql("SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM sweeps)")[0]


def test_cross_site_and_non_json_writes_are_refused(web):
    before = totals(web)
    # The form a page of another site can post (text/plain, no preflight): refused, nothing queued.
    r = httpx.post(
        f"{web.url}/presets/s01-width/run",
        headers={"Origin": EVIL, "content-type": "text/plain"},
        content=b"",
    )
    assert r.status_code == 403 and "cross-site write refused" in r.json()["message"]
    # Even as JSON (only a CORS-allowed origin could send that from a script).
    r = httpx.post(f"{web.url}/experiments", headers={"Origin": EVIL}, json=TINY)
    assert r.status_code == 403
    r = httpx.post(f"{web.url}/experiments", headers={"Sec-Fetch-Site": "cross-site"}, json=TINY)
    assert r.status_code == 403
    r = httpx.post(f"{web.url}/experiments", headers={"Origin": "null"}, json=TINY)
    assert r.status_code == 403
    assert totals(web) == before

    exp_id = web.submit(LONG)  # curl, scripts, the CLI: no Origin, JSON
    web.held(exp_id)
    # A write with no body still has to say it is JSON: a form's or a no-cors fetch's is not.
    for headers in (
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "text/plain"},
        {},
    ):
        r = httpx.post(f"{web.url}/experiments/{exp_id}/cancel", headers=headers)
        assert r.status_code == 415, headers
        assert "Content-Type: application/json" in r.json()["message"]
    assert web.get(exp_id)["cancel_requested"] is False

    # labq's own pages (same origin, as the browser reports it) and plain clients may write.
    own = {"Origin": web.url, "Sec-Fetch-Site": "same-origin", **JSON}
    r = httpx.post(f"{web.url}/experiments/{exp_id}/cancel", headers=own)
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    assert web.wait(exp_id)["status"] == "cancelled"
    localhost = web.url.replace("127.0.0.1", "localhost")
    r = httpx.post(
        f"{localhost}/experiments",
        headers={"Origin": localhost, "content-type": "application/json; charset=utf-8"},
        content=b'{"layers": [{"units": 8}], "epochs": 1, "train_samples": 500}',
    )
    assert r.status_code == 202, r.text
    assert totals(web)[0] == before[0] + 2


def test_only_loopback_names_and_allowed_hosts_are_served(web):
    port = web.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        r = httpx.get(f"{web.url}/experiments", headers={"Host": host})
        assert r.status_code == 200, host
    r = httpx.get(f"{web.url}/experiments", headers={"Host": f"{PROXY_NAME}:{port}"})
    assert r.status_code == 200  # listed in LABQ_ALLOWED_HOSTS: a proxy in front of labq
    before = totals(web)
    for host in (f"attacker.example:{port}", "attacker.example", "127.0.0.1.attacker.example"):
        for method, kw in (("GET", {}), ("POST", {"json": TINY})):
            r = httpx.request(method, f"{web.url}/experiments", headers={"Host": host}, **kw)
            assert r.status_code == 400, (host, method)
            assert "LABQ_ALLOWED_HOSTS" in r.json()["message"]
        for path in ("/", "/health", "/static/common.js", "/login"):
            assert httpx.get(f"{web.url}{path}", headers={"Host": host}).status_code == 400
    assert totals(web) == before


@pytest.mark.parametrize(
    "target",
    [
        "/%5Cevil.example",
        "/%09/evil.example",
        "//evil.example",
        "/%0a/evil.example",
        "/%20/evil.example",
        "http://evil.example/",
        "/\\/evil.example",
        "evil.example",
    ],
)
def test_sign_in_goes_back_only_to_labq(web, target):
    page = httpx.get(f"{web.url}/login?next={target}")
    assert page.status_code == 200
    assert 'labq.sameOriginPath("/")' in page.text and "evil" not in page.text


def test_sign_in_keeps_a_path_of_labq(web):
    page = httpx.get(f"{web.url}/login", params={"next": "/runs/3?x=1"})
    assert 'labq.sameOriginPath("/runs/3?x=1")' in page.text


MATH_NAMES = ["$\\foo$", "=2+3 $\\bar$", "$" + "\\sqrt{" * 28 + "x" + "}" * 28 + "$", "a $ b $$"]


def test_any_name_draws_as_plain_text(web):
    ids = [web.submit({**TINY, "name": name}) for name in MATH_NAMES]
    sweep = httpx.post(
        f"{web.url}/sweeps",
        json={"name": "=2+3 $\\bar$", "base": TINY, "grid": {"name": MATH_NAMES[1:3]}},
    )
    assert sweep.status_code == 202, sweep.text
    for exp_id in ids + sweep.json()["children"]:
        assert web.wait(exp_id, timeout=300)["status"] == "succeeded"
    for exp_id in ids:
        r = httpx.get(f"{web.url}/experiments/{exp_id}/history.png")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG", r.text[:300]
    r = httpx.get(f"{web.url}/sweeps/{sweep.json()['id']}/compare.png")
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG", r.text[:300]
    assert "Traceback" not in (web.data_dir / "logs" / "api.log").read_text()


FORMULAS = ['=HYPERLINK("http://evil.example")', "+1+1", "-1+1", "@SUM(A1)", "\tx", "\rx"]


def test_results_csv_has_no_formulas(web):
    """A sweep's children are named `<sweep name>: <config>`, and a grid over `name` puts those
    names in results.csv: a sweep name that starts like a formula stays text there."""
    for formula in FORMULAS:
        r = httpx.post(
            f"{web.url}/sweeps", json={"name": formula, "base": TINY, "grid": {"name": ["x"]}}
        )
        assert r.status_code == 202, r.text
        sweep_id = r.json()["id"]
        httpx.post(f"{web.url}/sweeps/{sweep_id}/cancel", headers=JSON)  # the rows are enough
        text = httpx.get(f"{web.url}/sweeps/{sweep_id}/results.csv").text
        (row,) = list(csv.DictReader(io.StringIO(text)))
        assert row["name"] == f"'{formula}: name=x", row
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert int(row["experiment_id"]) > 0 and row["sweep_id"] == str(sweep_id)


def labq(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def fail(stack: Stack, exp_id: int, traceback: str) -> None:
    """Mark a finished run failed with a traceback, as a worker does when training raises."""
    assert stack.wait(exp_id)["status"] == "cancelled"
    engine = create_engine(stack.sql_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE experiments SET status = 'failed', error = 'ValueError: x', "
                "traceback = :t WHERE id = :i"
            ),
            {"t": traceback, "i": exp_id},
        )
    engine.dispose()


def test_a_failed_runs_traceback_is_its_submitters(web):
    """Runs last in this module: it creates the stack's first tokens."""
    local = web.submit(LONG)
    httpx.post(f"{web.url}/experiments/{local}/cancel", headers=JSON)
    fail(web, local, "File /srv/labq/local.py")
    assert web.get(local)["traceback"] == "File /srv/labq/local.py"  # one local user, no token

    alice = {"Authorization": f"Bearer {labq(web, 'token', 'create', 'alice')}"}
    bob = {"Authorization": f"Bearer {labq(web, 'token', 'create', 'bob')}"}
    r = httpx.post(f"{web.url}/experiments", json=LONG, headers=alice)
    owned = r.json()["id"]
    httpx.post(f"{web.url}/experiments/{owned}/cancel", headers={**alice, **JSON})
    fail(web, owned, "File /srv/labq/alice.py")

    def traceback(exp_id, headers=None):
        r = httpx.get(f"{web.url}/experiments/{exp_id}", headers=headers or {})
        assert r.status_code == 200 and r.json()["error"] == "ValueError: x"
        return r.json()["traceback"]

    assert traceback(owned, alice) == "File /srv/labq/alice.py"
    assert traceback(owned, bob) is None
    assert traceback(owned) is None
    assert traceback(local) == "File /srv/labq/local.py"
    assert traceback(local, alice) is None

    def streamed(exp_id, headers=None):  # a finished run's stream: its state, then the end
        with httpx.stream(
            "GET", f"{web.url}/experiments/{exp_id}/events", headers=headers or {}, timeout=30
        ) as r:
            return next(line for line in r.iter_lines() if '"traceback"' in line)

    assert "alice.py" in streamed(owned, alice)
    assert "alice.py" not in streamed(owned, bob)

    health = httpx.get(f"{web.url}/health").json()  # loopback: whoever may read sees the parts
    assert health["status"] == "ok" and health["workers"]
