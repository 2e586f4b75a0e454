"""A page of another site, open in the same Chromium as the dashboard, posts forms to the loopback
labq that has no token (what any website could try on a person who runs `labq up`): labq refuses
them and queues nothing. The page is served by Playwright as http://evil.example; the forms reach
the real labq."""

import httpx
import pytest

pytestmark = pytest.mark.integration

EVIL = "http://evil.example"
# Held in its epoch 2 by the stack's hold hook until the module's end cancels it, so it is
# running throughout, however fast the worker.
LONG = {
    "name": "held-in-epoch-2",
    "layers": [{"units": 8}],
    "epochs": 3,
    "batch_size": 32,
    "train_samples": 3000,
}


@pytest.fixture(scope="module")
def target(stack):
    """A run that a cancel would change (queued or running) for as long as these tests run."""
    exp_id = stack.submit(LONG)
    yield exp_id
    httpx.post(f"{stack.url}/experiments/{exp_id}/cancel", json={})


def form_page(action: str, enctype: str, fields: dict) -> str:
    inputs = "".join(f"<input type=hidden name='{k}' value='{v}'>" for k, v in fields.items())
    return (
        f"<html><body><form id=f method=post enctype='{enctype}' action='{action}'>{inputs}"
        "</form><script>document.getElementById('f').submit()</script></body></html>"
    )


def totals(stack) -> tuple:
    return stack.sql("SELECT (SELECT count(*) FROM experiments), (SELECT count(*) FROM sweeps)")[0]


@pytest.mark.parametrize(
    ("path", "enctype", "fields"),
    [
        # text/plain with a JSON-looking body: the classic way to fake a JSON post from a form.
        ("/presets/s01-width/run", "text/plain", {'{"repeats": 1, "x": "': '"}'}),
        ("/experiments", "text/plain", {'{"layers": [{"units": 8}], "x": "': '"}'}),
        ("/presets/s01-width/run", "application/x-www-form-urlencoded", {}),
        ("/experiments/{id}/cancel", "application/x-www-form-urlencoded", {}),
        ("/experiments/{id}/cancel", "multipart/form-data", {"a": "b"}),
    ],
)
def test_a_form_on_another_site_cannot_write(stack, browser, target, path, enctype, fields):
    action = stack.url + path.format(id=target)
    before = totals(stack)
    context = browser.new_context()
    try:
        context.route(
            f"{EVIL}/**",
            lambda route: route.fulfill(
                status=200, content_type="text/html", body=form_page(action, enctype, fields)
            ),
        )
        page = context.new_page()
        with page.expect_response(lambda r: r.url == action, timeout=30_000) as answer:
            page.goto(f"{EVIL}/cat-pictures")
        response = answer.value
        # labq itself answered (the browser did send the form), and refused it.
        assert response.status == 403, response.text()
        assert "cross-site write refused" in response.text()
        assert response.request.header_value("origin") == EVIL
    finally:
        context.close()
    assert totals(stack) == before
    after = httpx.get(f"{stack.url}/experiments/{target}").json()
    assert after["status"] in ("queued", "running") and after["cancel_requested"] is False
