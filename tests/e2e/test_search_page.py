"""The search page driven by a real Chromium against a live stack: opened while the search's
first trial is held inside its first epoch (the worker's hold hook), it shows that trial running,
then, without a reload, every trial end, the objective per trial and the best so far, parallel
coordinates, importances, the confirmation runs and the single test accuracy of the winner. The
list page starts a search from the JSON written in its form: its example is a valid search, text
that is not JSON or a spec the API refuses is shown and stores nothing, and a good one opens the
new search's page."""

import json

import httpx
import pytest

from core.search import SearchSpec

pytestmark = pytest.mark.integration

SEARCH = {
    "name": "e2e-search",
    "base": {
        "layers": [{"units": 16}],
        "epochs": 2,
        "batch_size": 128,
        "train_samples": 1000,
        "validation": {"holdout": 200},
        "seed": 5,
    },
    "space": {
        "layers.0.units": {"type": "int", "low": 8, "high": 32},
        "optimizer.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
    },
    "sampler": "random",
    "pruner": {"type": "none"},
    "trials": 3,
    "parallel": 1,
    "confirm": {"top": 1, "seeds": 2},
}

# Records, for every row of the trials table, each distinct status it has shown.
WATCH_TRIALS = """() => {
  window.__seen = {};
  window.__notReloaded = true;
  const note = () => document.querySelectorAll('#trials tr[data-id]').forEach(tr => {
    const seen = (window.__seen[tr.dataset.id] ||= []);
    if (seen[seen.length - 1] !== tr.dataset.status) seen.push(tr.dataset.status);
  });
  new MutationObserver(note).observe(document.getElementById('trials'),
                                     {childList: true, subtree: true});
  note();
}"""


def test_the_search_page_follows_a_search_live(stack, recorder, shots):
    r = httpx.post(f"{stack.url}/searches", json=SEARCH, timeout=30)
    assert r.status_code == 202, r.text
    sid, first = r.json()["id"], r.json()["trials"][0]
    stack.held(first)  # trial #0 is inside epoch 1

    page = recorder.page()
    page.goto(f"{stack.url}/search")
    page.click(f'#searches tr[data-id="{sid}"] a')
    page.wait_for_url(f"**/search/{sid}")
    page.wait_for_selector(f'#trials tr[data-id="{first}"][data-status="running"]')
    page.evaluate(WATCH_TRIALS)
    assert page.text_content("#search-status") == "running"
    assert not page.locator("#cancel").is_hidden()
    stack.release(first)

    page.wait_for_function(
        "document.getElementById('search-status').textContent === 'done'", timeout=240_000
    )
    assert page.evaluate("window.__notReloaded") is True
    seen = page.evaluate("window.__seen")
    assert seen[str(first)] == ["running", "succeeded"], seen  # followed live, no reload
    assert len(seen) == 3 and all(s[-1] == "succeeded" for s in seen.values()), seen
    # Drawn in the browser from the JSON: a point per trial, a line per trial, the best so far.
    assert page.locator("#chart-progress circle.pt").count() == 3
    assert page.locator("#chart-progress path.best-line").count() == 1
    assert page.locator("#chart-parallel path.trial-line").count() == 3
    page.wait_for_selector("#importance .imp-row")
    assert page.locator("#importance .imp-row").count() == 2
    assert page.locator("#pareto-panel").is_hidden()  # one objective
    # The answer: the confirmation runs and the winner's one test accuracy.
    s = httpx.get(f"{stack.url}/searches/{sid}", timeout=30).json()
    assert len(s["confirmation"]) == 2 and s["result"]["test_accuracy"] is not None
    assert page.locator("#confirms tr").count() == 2
    shown = page.text_content("#test-accuracy")
    assert shown == f"{100 * s['result']['test_accuracy']:.2f}%"
    assert page.text_content("#winner").startswith(f"winnertrial #{s['result']['winner']}")
    assert page.locator("#cancel").is_hidden()
    page.screenshot(path=str(shots / "dashboard-search.png"), full_page=True)
    recorder.check()


def searches(stack) -> int:
    return int(httpx.get(f"{stack.url}/searches", timeout=30).headers["x-total-count"])


def test_a_search_is_started_from_the_list_page(stack, recorder):
    page = recorder.page()
    page.goto(f"{stack.url}/search")
    spec = page.locator("#search-spec")
    spec.wait_for()
    SearchSpec.model_validate(json.loads(spec.input_value()))  # the example is a valid search
    before = searches(stack)

    spec.fill("{not json")
    page.click("#submit-search")
    page.wait_for_selector("#message.bad")
    assert page.text_content("#message").startswith("not JSON")

    bad = {**SEARCH, "space": {"layers.7.units": {"type": "int", "low": 8, "high": 32}}}
    spec.fill(json.dumps(bad))
    page.click("#submit-search")
    page.wait_for_function(
        "document.getElementById('message').textContent.includes('space.layers.7.units')"
    )
    assert searches(stack) == before  # refused whole: nothing stored

    small = {**SEARCH, "name": "e2e-form", "trials": 2, "parallel": 2, "confirm": None}
    spec.fill(json.dumps(small))
    page.click("#submit-search")
    page.wait_for_url("**/search/*")
    sid = int(page.url.rsplit("/", 1)[1])
    assert searches(stack) == before + 1
    assert httpx.get(f"{stack.url}/searches/{sid}", timeout=30).json()["name"] == "e2e-form"
    page.wait_for_function(
        "document.getElementById('search-status').textContent === 'done'", timeout=240_000
    )
    assert page.locator("#trials tr[data-id]").count() == 2
    recorder.check()
