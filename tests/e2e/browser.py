"""Debian's Chromium driven by Playwright, with nothing of it reaching outside the machine.

Playwright's own browser download (`playwright install`) is not used: labq's tests and its
benchmark launch the system package (`apt-get install chromium`), or LABQ_CHROMIUM.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    path = os.environ.get("LABQ_CHROMIUM") or "/usr/bin/chromium"
    return path if os.path.exists(path) else shutil.which("chromium")


@contextmanager
def launch() -> Iterator[Browser]:
    path = chromium_path()
    if not path:
        raise RuntimeError("no Chromium found: apt-get install chromium (or set LABQ_CHROMIUM)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
