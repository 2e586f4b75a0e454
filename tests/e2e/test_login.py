"""The dashboard on a labq that listens beyond loopback (every request needs a token): a person
is sent to /login, signs in with a token once, and then sees the runs page live (the event stream
reads with the labq_token cookie); a wrong token is refused on the page."""

import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import make_stack
from tests.e2e.conftest import Recorder
from tests.stack import ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    s = make_stack("sqlite", tmp_path_factory, None, None, extra_env={"LABQ_HOST": "0.0.0.0"})
    s.data_dir.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        [sys.executable, "-m", "cli.main", "token", "create", "browser"],
        cwd=ROOT,
        env=s.env,
        capture_output=True,
        text=True,
        check=True,
    )
    s.token = made.stdout.strip()
    s.start()
    yield s
    s.stop()


def test_sign_in_then_live_runs_page(guarded, browser):
    auth = {"Authorization": f"Bearer {guarded.token}"}
    r = httpx.post(
        f"{guarded.url}/experiments",
        headers=auth,
        json={"name": "behind-auth", "layers": [{"units": 16}], "epochs": 1, "train_samples": 1000},
    )
    assert r.status_code == 202, r.text

    rec = Recorder(browser)
    page = rec.page()
    page.goto(guarded.url + "/")
    assert page.url.startswith(guarded.url + "/login?next=")

    page.fill("#token", "labq_not-a-real-token")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:has-text('not valid')")
    assert "/login" in page.url

    page.fill("#token", guarded.token)
    page.click("#login button[type=submit]")
    page.wait_for_url(guarded.url + "/")
    page.wait_for_selector("#live.ok")  # GET /events opened with the cookie
    page.wait_for_selector("#rows >> text=behind-auth")
    cookies = {c["name"]: c for c in rec.context.cookies()}
    assert cookies["labq_token"]["sameSite"] == "Strict"
    rec.check()
    rec.context.close()


@pytest.mark.parametrize(
    "target", ["/%5Cevil.example", "/%09/evil.example", "//evil.example", "/%5C%5Cevil.example"]
)
def test_sign_in_never_leaves_labq(guarded, browser, target):
    """A link to /login?next=... that would point the browser at another site after the token is
    entered: the browser lands on labq's own runs page instead."""
    rec = Recorder(browser)
    left = []
    rec.context.route("**/*", lambda route: _stay_home(route, guarded.url, left))
    page = rec.page()
    page.goto(f"{guarded.url}/login?next={target}")
    page.fill("#token", guarded.token)
    page.click("#login button[type=submit]")
    page.wait_for_url(guarded.url + "/")
    assert left == []
    rec.check()
    rec.context.close()


def _stay_home(route, home: str, left: list) -> None:
    """Let requests to labq through; record (and stop) any other."""
    if route.request.url.startswith(home + "/"):
        route.continue_()
    else:
        left.append(route.request.url)
        route.abort()


def test_the_page_checks_the_target_again(guarded, browser):
    """The same rule in the browser (api/static/common.js), for a target the server let by."""
    rec = Recorder(browser)
    page = rec.page()
    page.goto(f"{guarded.url}/login")
    checks = {
        "/runs/2?x=1#top": "/runs/2?x=1#top",
        "/\\evil.example": "/",
        "/\\/evil.example": "/",
        "/\t/evil.example": "/",
        "/\n/evil.example": "/",
        "//evil.example": "/",
        "http://evil.example/": "/",
        "evil.example": "/",
        "/\u0085/evil.example": "/",
    }
    for target, expected in checks.items():
        assert page.evaluate("t => labq.sameOriginPath(t)", target) == expected, target
    rec.context.close()


def test_each_role_sees_only_the_actions_it_may_take(guarded, browser):
    """On a run's page a viewer sees no action, another member only Re-run (a new run of their
    own), the owner Delete too; deleting asks first, then the run is gone."""

    def user(name: str, role: str) -> str:
        return guarded.cli("user", "add", name, "--role", role).stdout.strip()

    tokens = {n: user(n, r) for n, r in (("ann", "member"), ("ben", "member"), ("vi", "viewer"))}
    spec = {"name": "ann-run", "layers": [{"units": 8}], "epochs": 1, "train_samples": 1000}
    r = httpx.post(
        f"{guarded.url}/experiments",
        json=spec,
        headers={"Authorization": f"Bearer {tokens['ann']}"},
    )
    assert r.status_code == 202, r.text
    run = r.json()["id"]
    admin = {"Authorization": f"Bearer {guarded.token}"}
    deadline = time.monotonic() + 600  # a backstop: the loop ends when the run does
    while httpx.get(f"{guarded.url}/experiments/{run}", headers=admin).json()["status"] != (
        "succeeded"
    ):
        assert time.monotonic() < deadline, guarded.logs()
        time.sleep(0.2)

    def signed_in(name: str):
        rec = Recorder(browser)
        page = rec.page()
        page.goto(f"{guarded.url}/login?next=/runs/{run}")
        page.fill("#token", tokens[name])
        page.click("#login button[type=submit]")
        page.wait_for_url(f"{guarded.url}/runs/{run}")
        page.wait_for_selector("#status .status.succeeded")
        page.wait_for_function("labq.me().then(() => true)")
        return rec, page

    shown = {}
    for name in ("vi", "ben", "ann"):
        rec, page = signed_in(name)
        shown[name] = {b: page.is_visible(f"#{b}") for b in ("delete", "rerun", "cancel")} | {
            "nav-submit": page.is_visible("nav a[href='/submit']")
        }
        if name != "ann":
            rec.context.close()
    assert shown["vi"] == {"delete": False, "rerun": False, "cancel": False, "nav-submit": False}
    assert shown["ben"] == {"delete": False, "rerun": True, "cancel": False, "nav-submit": True}
    assert shown["ann"] == {"delete": True, "rerun": True, "cancel": False, "nav-submit": True}

    page.once("dialog", lambda d: d.accept())
    page.click("#delete")
    page.wait_for_url(guarded.url + "/")
    r = httpx.get(f"{guarded.url}/experiments/{run}", headers=admin)
    assert r.status_code == 404
    rec.check()
    rec.context.close()
