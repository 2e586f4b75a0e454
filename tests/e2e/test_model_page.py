"""The trained model in the dashboard, driven by a real Chromium against a live stack: a stroke
drawn on the run page's pad is predicted (through POST /predict, sent as same-origin JSON), the
confusion matrix and the gallery of mistakes show, and the compare page lays the runs' per-digit
test accuracy side by side."""

import httpx
import pytest

pytestmark = pytest.mark.integration

RUN = {"epochs": 2, "batch_size": 128, "train_samples": 6000, "seed": 3}


@pytest.fixture(scope="module")
def runs(stack) -> list[dict]:
    ids = [
        stack.submit({**RUN, "name": "e2e-model-plain", "layers": [{"units": 64}]}),
        stack.submit(
            {
                **RUN,
                "name": "e2e-model-dropout",
                "layers": [{"units": 64}, {"type": "dropout", "rate": 0.2}],
                "validation": {"holdout": 1000},
            }
        ),
    ]
    done = [stack.wait(i) for i in ids]
    assert [r["status"] for r in done] == ["succeeded", "succeeded"], done
    return done


def draw(page, points: list[tuple[float, float]]) -> None:
    """One stroke through `points` (fractions of the pad's width and height)."""
    page.locator("#pad").scroll_into_view_if_needed()
    box = page.locator("#pad").bounding_box()
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for a, b in zip(xy, xy[1:], strict=False):
        for i in range(1, 9):  # intermediate moves, as a hand makes them
            page.mouse.move(a[0] + (b[0] - a[0]) * i / 8, a[1] + (b[1] - a[1]) * i / 8)
    page.mouse.up()


def test_draw_a_digit_and_see_its_prediction(stack, runs, recorder, shots):
    run = runs[1]
    page = recorder.page()
    predictions: list[dict] = []
    page.on(
        "request",
        lambda r: (
            predictions.append({"type": r.headers.get("content-type"), "method": r.method})
            if r.url.endswith("/predict")
            else None
        ),
    )
    page.goto(f"{stack.url}/runs/{run['id']}")
    page.wait_for_selector("#try:not(.hidden)")
    assert "model.keras" in page.text_content("#model-info")
    assert "final weights" in page.text_content("#model-info")

    draw(page, [(0.5, 0.15), (0.52, 0.85)])  # a one: a stroke down the middle
    page.wait_for_function("/^[0-9]$/.test(document.getElementById('digit').textContent)")
    page.wait_for_function("document.querySelectorAll('#probs .num').length === 10")
    probs = page.eval_on_selector_all(
        "#probs .num", "els => els.map(e => parseFloat(e.textContent))"
    )
    assert abs(sum(probs) - 100) < 1.0
    digit = int(page.text_content("#digit"))
    assert probs[digit] == max(probs)
    assert page.get_attribute(f'#probs [data-digit="{digit}"]', "class") == "top"
    # The 28x28 the model saw has ink: the server's MNIST form of the drawing.
    seen = page.evaluate(
        "() => { const d = document.getElementById('seen').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) if (d[i] > 128) n++; return n; }"
    )
    assert seen > 15
    assert predictions and all(
        p == {"type": "application/json", "method": "POST"} for p in predictions
    ), predictions

    # Where the model errs: the confusion matrix (10 digits and a precision row) and mistakes.
    assert page.locator("#confusion-table tbody tr").count() == 11
    diagonal = page.eval_on_selector_all(
        "#confusion-table td.diag", "els => els.map(e => Number(e.textContent))"
    )
    test = run["evaluation"]["test"]
    assert diagonal == [test["confusion"][d][d] for d in range(10)]
    page.select_option("#eval-set", "holdout")
    assert "1,000 images" in page.text_content("#eval-what")
    page.wait_for_function(
        "() => { const i = document.getElementById('mistakes-img');"
        " return i && i.complete && i.naturalWidth > 400; }"
    )
    page.locator("#model-panels").screenshot(path=str(shots / "dashboard-run-model.png"))

    page.click("#clear")
    assert page.text_content("#digit") == "–"
    recorder.check()


def test_a_run_still_training_shows_no_pad(stack, recorder, tiny):
    held = stack.submit({**tiny, "name": "held-in-epoch-2", "epochs": 3})
    stack.held(held)
    try:
        page = recorder.page()
        page.goto(f"{stack.url}/runs/{held}")
        page.wait_for_selector("#status .status.running")
        assert page.is_hidden("#try")
        assert "once the run has finished" in page.text_content("#try-empty")
    finally:
        stack.release(held)
    stack.wait(held)
    recorder.check()


def test_compare_shows_per_digit_accuracy_side_by_side(stack, runs, recorder, shots):
    page = recorder.page()
    page.goto(f"{stack.url}/compare?ids={runs[0]['id']},{runs[1]['id']}")
    page.wait_for_selector('#digits-rows tr[data-digit="9"]')
    for d in range(10):
        cells = page.eval_on_selector_all(
            f'#digits-rows tr[data-digit="{d}"] td.num', "els => els.map(e => e.textContent)"
        )
        a, b = (r["evaluation"]["test"]["recall"][d] for r in runs)
        assert cells[:2] == [f"{100 * a:.2f}%", f"{100 * b:.2f}%"]
        assert float(cells[2]) == pytest.approx(100 * (b - a), abs=0.006)  # the change, in pp
    heads = page.text_content("#digits-head")
    assert "e2e-model-plain" in heads and "e2e-model-dropout" in heads
    page.locator("#digits").screenshot(path=str(shots / "dashboard-compare-digits.png"))
    recorder.check()
    assert httpx.get(f"{stack.url}/compare", params={"ids": "1,x"}).status_code == 422
