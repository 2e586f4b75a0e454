"""The dashboard driven as a person would: a real Chromium against a live labq stack.

The runs page is opened first and never reloaded; two tiny experiments are submitted through the
form in another tab, both named for the stack's hold hook (tests/conftest.py HELD), which holds each
in its epoch 2 until the test releases it: the first keeps the single worker busy until the runs
page has shown the second waiting in the queue, and the second is held until the page has shown it
running, so a warm worker never finishes either between two updates of the page. The runs page
must show the second go queued -> running -> succeeded by itself. Then its own page, the
comparison of the two, and a form submission the API refuses.
"""

import httpx
import pytest

from tests.e2e.conftest import Recorder

pytestmark = pytest.mark.integration

HELD_NAME = "held-in-epoch-2"  # held in its epoch 2 by the stack's hold hook (tests/conftest.py)

# Records, for every row of the runs table, each distinct (status, queue cell) it has shown.
WATCH_ROWS = """() => {
  window.__seen = {};
  window.__notReloaded = true;
  const note = () => document.querySelectorAll('#rows tr[data-id]').forEach(tr => {
    const seen = (window.__seen[tr.dataset.id] ||= []);
    const status = tr.querySelector('.status').textContent;
    const queued = /in queue/.test(tr.lastElementChild.textContent);
    const last = seen[seen.length - 1];
    if (!last || last.status !== status || last.queued !== queued) seen.push({status, queued});
  });
  new MutationObserver(note).observe(document.getElementById('rows'),
                                     {childList: true, subtree: true, characterData: true});
  note();
}"""

# The row of run `id` shows its place in the queue (the test WATCH_ROWS records as `queued`).
IN_QUEUE = """id => {
  const tr = document.querySelector(`#rows tr[data-id="${id}"]`);
  return !!tr && /in queue/.test(tr.lastElementChild.textContent);
}"""

# Painted pixels of the chart's canvas (uPlot draws on the next microtask, hence the wait).
CANVAS_INK = """selector => {
  const canvas = document.querySelector(selector + ' canvas');
  if (!canvas || !canvas.width) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) ink++;
  return ink > 500;
}"""


def assert_drawn(page, selector: str) -> None:
    page.wait_for_function(CANVAS_INK, arg=selector, timeout=10_000)


def fill_form(page, name: str, units: int, epochs: int) -> None:
    page.fill('[data-field="name"]', name)
    page.fill('[data-field="layers.0.units"]', str(units))
    page.select_option('[data-field="layers.0.activation"]', "relu")
    page.fill('[data-field="epochs"]', str(epochs))
    page.fill('[data-field="train_samples"]', "2000")
    page.fill('[data-field="batch_size"]', "128")


def submit_form(page) -> int:
    page.click("#submit")
    page.wait_for_selector("#banner.ok")
    link = page.locator("#banner a").first
    return int(link.get_attribute("href").rsplit("/", 1)[1])


@pytest.fixture(scope="module")
def watched(stack, browser, shots):
    """Submit two runs through the form while the runs page, opened before, watches them."""
    rec = Recorder(browser)
    runs = rec.page()
    runs.goto(stack.url + "/")
    runs.wait_for_selector("#live.ok")  # the event stream is connected
    runs.evaluate(WATCH_ROWS)

    form = rec.page()
    form.goto(stack.url + "/submit")
    fill_form(form, HELD_NAME, units=48, epochs=3)
    first = submit_form(form)
    fill_form(form, HELD_NAME, units=32, epochs=3)
    second = submit_form(form)
    row = f'#rows tr[data-id="{second}"]'
    try:
        # The first is held running, so the second waits in the queue for as long as it takes
        # the page to show it there (a picture of the queue at work, for the docs).
        stack.held(first)
        runs.wait_for_selector(f'#rows tr[data-id="{first}"] .status.running')
        runs.wait_for_selector(f"{row} .status.queued")
        runs.wait_for_function(IN_QUEUE, arg=second)
        runs.wait_for_selector("#health.ok")
        runs.screenshot(path=shots / "dashboard-runs-live.png")
        stack.release(first)
        # The second is held running until the page has shown it so, then let finish.
        stack.held(second)
        runs.wait_for_selector(f"{row} .status.running")
        stack.release(second)
        runs.wait_for_selector(f"{row} .status.succeeded", timeout=240_000)
        runs.wait_for_selector(f'#rows tr[data-id="{first}"] .status.succeeded', timeout=60_000)
    finally:  # never leave a held run in front of the package's other tests
        stack.release(first)
        stack.release(second)
    runs.wait_for_selector("#health.ok")  # the header found the worker through GET /health
    assert "1 worker" in runs.inner_text("#health")
    runs.screenshot(path=shots / "dashboard-runs.png")
    result = {
        "first": first,
        "second": second,
        "seen": runs.evaluate("window.__seen"),
        "not_reloaded": runs.evaluate("window.__notReloaded === true"),
        "row_text": runs.inner_text(row),
        "form_banner": form.inner_text("#banner"),
    }
    rec.check()
    rec.context.close()
    return result


def test_submitted_run_goes_queued_running_succeeded_without_reload(watched, stack):
    assert watched["not_reloaded"]
    assert f"#{watched['second']}" in watched["form_banner"]
    statuses = [s["status"] for s in watched["seen"][str(watched["second"])]]
    order = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert order == ["queued", "running", "succeeded"], watched["seen"]
    assert any(s["queued"] for s in watched["seen"][str(watched["second"])]), (
        "the waiting run never showed its place in the queue"
    )
    exp = stack.get(watched["second"])
    assert exp["status"] == "succeeded" and exp["name"] == HELD_NAME
    assert exp["spec"]["train_samples"] == 2000 and exp["epochs_done"] == 3
    assert "3/3" in watched["row_text"]
    assert f"{100 * exp['val']['accuracy']:.2f}%" in watched["row_text"]


def test_run_page_shows_curves_filters_and_layers(watched, stack, recorder, shots):
    exp_id = watched["second"]
    exp = stack.get(exp_id)
    page = recorder.page()
    page.goto(f"{stack.url}/runs/{exp_id}")
    page.wait_for_selector("#chart-acc canvas")
    for chart in ("#chart-acc", "#chart-loss"):
        assert_drawn(page, chart)
        legend = page.inner_text(f"{chart} .u-legend")
        assert "train" in legend and "validation" in legend
    history = httpx.get(f"{stack.url}/experiments/{exp_id}/history").json()
    if any(h["grad_norms"] for h in history):
        assert_drawn(page, "#chart-grad")
        for layer in history[-1]["grad_norms"]:
            assert layer in page.inner_text("#chart-grad .u-legend")
    img = page.wait_for_selector("#filters img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    layers = page.inner_text("#layers")
    for layer in exp["layers"]:
        assert layer["name"] in layers
        if layer["kernel_shape"]:
            assert "(" + ", ".join(map(str, layer["kernel_shape"])) + ")" in layers
    assert f"{exp['params']:,}" in page.inner_text("#metrics")
    assert "succeeded" in page.inner_text("#status")
    page.wait_for_selector("#health.ok")
    page.screenshot(path=shots / "dashboard-run.png", full_page=True)
    recorder.check()


def test_run_page_in_dark_mode(watched, stack, browser, shots):
    rec = Recorder(browser, color_scheme="dark")
    page = rec.page()
    page.goto(f"{stack.url}/runs/{watched['first']}")
    page.wait_for_selector("#chart-acc canvas")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
    assert max(channels) < 80, background  # the dark palette applies
    img = page.wait_for_selector("#filters img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img)
    page.wait_for_selector("#health.ok")
    page.screenshot(path=shots / "dashboard-run-dark.png", full_page=True)
    rec.check()
    rec.context.close()


def test_rerun_and_cancel_buttons(watched, stack, recorder):
    page = recorder.page()
    page.goto(f"{stack.url}/runs/{watched['first']}")
    page.wait_for_selector("#status .status.succeeded")
    page.click("#rerun")
    page.wait_for_url(lambda url: f"/runs/{watched['first']}" not in url)
    new_id = int(page.url.rsplit("/", 1)[1])
    assert new_id > watched["second"]
    assert stack.get(new_id)["spec"] == stack.get(watched["first"])["spec"]
    try:
        # The same spec, so the same name: the hold hook keeps the re-run running (in its epoch
        # 2) until the cancel stops it.
        stack.held(new_id)
        page.wait_for_selector("#status .status.running")
        page.wait_for_selector("#cancel:not(.hidden)")
        page.click("#cancel")
        page.wait_for_selector("#status .status.cancelled", timeout=120_000)
        exp = stack.wait(new_id, timeout=60)
        assert exp["status"] == "cancelled" and exp["epochs_done"] == 1
    finally:
        stack.release(new_id)
    recorder.check()


def test_compare_two_runs_from_the_runs_page(watched, stack, recorder, shots):
    first, second = watched["first"], watched["second"]
    page = recorder.page()
    page.goto(stack.url + "/")
    for exp_id in (first, second):
        page.check(f'#rows tr[data-id="{exp_id}"] input.pick')
    page.click("#compare-selected")
    page.wait_for_url(f"**/compare?ids={first},{second}")
    page.wait_for_selector("#chart-acc canvas")
    assert_drawn(page, "#chart-acc")
    assert_drawn(page, "#chart-loss")
    legend = page.inner_text("#chart-acc .u-legend")
    assert f"#{first} {HELD_NAME}" in legend and f"#{second} {HELD_NAME}" in legend
    assert page.locator("#rows tr[data-id]").count() == 2

    exps = {i: stack.get(i) for i in (first, second)}
    best_acc = max(exps, key=lambda i: exps[i]["val"]["accuracy"])
    best_loss = min(exps, key=lambda i: exps[i]["val"]["loss"])
    fewest = min(exps, key=lambda i: exps[i]["params"])
    for col, winner in (("val", best_acc), ("loss", best_loss), ("params", fewest)):
        marked = page.locator(f'#rows td.best[data-col="{col}"]')
        assert marked.count() == 1, col
        assert marked.evaluate("td => td.closest('tr').dataset.id") == str(winner), col
    page.wait_for_selector("#health.ok")
    page.screenshot(path=shots / "dashboard-compare.png", full_page=True)

    page.goto(f"{stack.url}/compare?ids={second},{first}")  # the same view, by its address
    page.wait_for_selector("#rows tr[data-id]")
    assert page.locator("#rows tr[data-id]").count() == 2
    recorder.check()


def test_refused_submission_shows_the_api_message_by_the_field(stack, recorder, shots):
    before = httpx.get(f"{stack.url}/experiments", params={"limit": 1}).json()["total"]
    page = recorder.page()
    page.goto(stack.url + "/submit")
    fill_form(page, "e2e-refused", units=0, epochs=2)
    page.fill('[data-field="optimizer.learning_rate"]', "0")
    page.click("#submit")
    page.wait_for_selector("#banner.bad")
    spec = page.evaluate("JSON.parse(document.getElementById('json').textContent)")
    api = httpx.post(f"{stack.url}/experiments", json=spec)
    assert api.status_code == 422
    body = api.json()
    assert page.inner_text("#banner").strip() == body["message"]
    for detail in body["detail"]:
        shown = page.locator(f'.error-msg[data-for="{detail["field"]}"]')
        assert shown.count() == 1, detail
        assert shown.inner_text() == detail["msg"]
    assert {d["field"] for d in body["detail"]} >= {"layers.0.units", "optimizer.learning_rate"}
    assert "invalid" in page.get_attribute('[data-field="layers.0.units"]', "class")
    page.wait_for_selector("#health.ok")
    page.screenshot(path=shots / "dashboard-submit.png", full_page=True)
    after = httpx.get(f"{stack.url}/experiments", params={"limit": 1}).json()["total"]
    assert after == before  # nothing stored
    recorder.check()


def test_sweep_filter_and_sweep_compare(stack, recorder):
    r = httpx.post(
        f"{stack.url}/sweeps",
        json={
            "name": "e2e-sweep",
            "grid": {"layers.0.units": [16, 24]},
            "base": {"layers": [{"units": 8}], "epochs": 1, "train_samples": 1000},
        },
    )
    assert r.status_code == 202, r.text
    sweep = r.json()
    httpx.post(f"{stack.url}/sweeps/{sweep['id']}/cancel", json={})  # no need to train them here
    children = sorted(sweep["children"])
    assert len(children) == 2

    page = recorder.page()
    page.goto(stack.url + "/")
    page.wait_for_selector("#f-sweep-wrap:not(.hidden)")  # shown because GET /sweeps answers
    page.select_option("#f-sweep", str(sweep["id"]))
    page.wait_for_function(
        "n => document.querySelectorAll('#rows tr[data-id]').length === n", arg=len(children)
    )
    shown = page.eval_on_selector_all("#rows tr[data-id]", "trs => trs.map(t => +t.dataset.id)")
    assert sorted(shown) == children
    assert f"sweep_id={sweep['id']}" in page.url  # the filtered view is linkable

    page.goto(f"{stack.url}/compare?sweep={sweep['id']}")
    page.wait_for_selector("#rows tr[data-id]")
    ids = page.eval_on_selector_all("#rows tr[data-id]", "trs => trs.map(t => +t.dataset.id)")
    assert sorted(ids) == children
    assert f"sweep #{sweep['id']}" in page.inner_text("#what")
    recorder.check()
