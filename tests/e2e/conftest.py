"""Fixtures of the browser tests: one live labq stack (embedded SQLite and Redis, a real Celery
worker) for the package, Debian's Chromium driven by Playwright, and pages that record every
request they make so a test can prove none left the machine."""

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import HELD, make_stack
from tests.e2e.browser import launch

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Streams of the stack below; the event tests fill them all to prove that closed ones are freed.
MAX_EVENT_STREAMS = 4


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    s = make_stack(
        "sqlite",
        tmp_path_factory,
        None,
        None,
        extra_env={
            "LABQ_MAX_EVENT_STREAMS": str(MAX_EVENT_STREAMS),
            # test_search_page.py holds its search's first trial in epoch 1 while the page is open
            # (the held-in-epoch-2 run of the other tests is held too)
            "LABQ_TEST_HOLD_IN_EPOCH": HELD["LABQ_TEST_HOLD_IN_EPOCH"] + ",e2e-search #0:1",
        },
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="package")
def browser():
    with launch() as b:
        yield b


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    """Where screenshots go: LABQ_SCREENSHOTS (docs/ to refresh the README's), else a temp dir."""
    target = os.environ.get("LABQ_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def offsite(urls: list[str]) -> list[str]:
    """The requests whose host is not this machine (data: and blob: URLs never leave it)."""
    bad = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about"):
            continue
        if parts.scheme not in ("http", "https", "ws", "wss") or parts.hostname not in LOCAL_HOSTS:
            bad.append(url)
    return bad


class Recorder:
    """A browser context whose pages log every request URL and every uncaught script error."""

    def __init__(self, browser, **options):
        self.context = browser.new_context(viewport={"width": 1360, "height": 900}, **options)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))

    def page(self):
        page = self.context.new_page()
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.set_default_timeout(30_000)
        return page

    def check(self) -> None:
        assert self.requests, "the pages made no request at all"
        assert offsite(self.requests) == [], "requests left the machine"
        assert self.errors == [], f"script errors: {self.errors}"


@pytest.fixture
def recorder(browser):
    rec = Recorder(browser)
    yield rec
    rec.context.close()
