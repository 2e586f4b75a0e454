"""The dashboard on a labq that listens beyond loopback (every request needs a token): a person
is sent to /login, signs in with a token once, and then sees the runs page live (the event stream
reads with the labq_token cookie); a wrong token is refused on the page."""

import subprocess
import sys

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
