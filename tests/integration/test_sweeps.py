"""Sweeps and presets against a live stack (SQLite and PostgreSQL legs), on tiny data."""

import csv
import io
import json
import re
import subprocess
import sys
import time

import httpx
import matplotlib.image as mpimg
import pytest

from tests.conftest import HELD, make_stack
from tests.stack import ROOT

pytestmark = pytest.mark.integration

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}
# The sweep that the CLI cancels: its children are named "<sweep>: <config>", and the stack's hold
# hook holds its first child in epoch 2 (worker/testhooks.py) until the cancel stops it.
TO_CANCEL = "to-cancel"
TO_CANCEL_FIRST = f"{TO_CANCEL}: units=16"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory, pg_admin_url, external_redis):
    hold = HELD["LABQ_TEST_HOLD_IN_EPOCH"] + f",{TO_CANCEL_FIRST}:2"
    s = make_stack(
        request.param,
        tmp_path_factory,
        pg_admin_url,
        external_redis,
        extra_env={"LABQ_TEST_HOLD_IN_EPOCH": hold},
    )
    s.start()
    yield s
    s.stop()


def wait_sweep(stack, sweep_id: int, timeout: float = 240, until=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = httpx.get(f"{stack.url}/sweeps/{sweep_id}", timeout=30).json()
        if until(s) if until else s["status"] == "finished":
            return s
        time.sleep(0.3)
    raise TimeoutError(f"sweep {sweep_id} stuck: {s}\n{stack.logs()}")


def totals(stack) -> tuple[int, int]:
    sweeps = httpx.get(f"{stack.url}/sweeps", params={"limit": 1})
    exps = httpx.get(f"{stack.url}/experiments", params={"limit": 1}).json()["total"]
    return int(sweeps.headers["x-total-count"]), exps


def labq(stack, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=ROOT,
        env={**stack.env, "LABQ_URL": stack.url},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sweep_end_to_end(stack):
    body = {
        "name": "widths",
        "base": {**TINY, "seed": 7, "train_samples": 2000},
        "grid": {"layers.0.units": [16, 48]},
        "repeats": 2,
    }
    r = httpx.post(f"{stack.url}/sweeps", json=body)
    assert r.status_code == 202, r.text
    sweep_id = r.json()["id"]
    assert r.headers["location"] == f"/sweeps/{sweep_id}" and len(r.json()["children"]) == 4

    s = wait_sweep(stack, sweep_id)
    assert s["counts"] == {"succeeded": 4} and s["epochs_done"] == s["epochs_total"] == 4
    assert [c["config"]["layers.0.units"] for c in s["children"]] == [16, 16, 48, 48]
    assert [c["seed"] for c in s["children"]] == [7, 8, 7, 8]
    assert s["children"][0]["config_key"] == s["children"][1]["config_key"]
    for child in s["children"]:
        assert child["status"] == "succeeded" and child["epochs_run"] == 1
        assert 0.2 < child["final_val_accuracy"] <= 1 and child["test_accuracy"] is not None
        assert child["train_seconds"] > 0 and child["best_val_loss"] <= child["final_val_loss"]
    assert [c["params"] for c in s["children"]][::2] == [784 * 16 + 16 + 170, 784 * 48 + 48 + 490]
    assert [c["label"] for c in s["configs"]] == ["units=16", "units=48"]
    for config in s["configs"]:
        runs = [c["final_val_accuracy"] for c in s["children"] if c["id"] in config["children"]]
        st = config["stats"]["final_val_accuracy"]
        assert st["n"] == 2 and st["mean"] == pytest.approx(sum(runs) / 2)
        assert st["std"] == pytest.approx(abs(runs[0] - runs[1]) / 2**0.5)

    listed = httpx.get(f"{stack.url}/sweeps").json()
    assert listed[0]["id"] == sweep_id and listed[0]["status"] == "finished"
    page = httpx.get(f"{stack.url}/experiments", params={"sweep_id": sweep_id}).json()
    assert page["total"] == 4

    png = httpx.get(f"{stack.url}/sweeps/{sweep_id}/compare.png")
    assert png.headers["content-type"] == "image/png"
    assert mpimg.imread(io.BytesIO(png.content), format="png").shape[1] > 500

    text = httpx.get(f"{stack.url}/sweeps/{sweep_id}/results.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["experiment_id"]) for r in rows] == [c["id"] for c in s["children"]]
    assert [r["layers.0.units"] for r in rows] == ["16", "16", "48", "48"]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert float(rows[0]["final_val_accuracy"]) == s["children"][0]["final_val_accuracy"]

    shown = labq(stack, "sweep", "show", str(sweep_id))
    assert shown.returncode == 0 and "units=48" in shown.stdout and "±" in shown.stdout
    for path in ["/sweeps/999999", "/sweeps/999999/compare.png", "/sweeps/999999/results.csv"]:
        assert httpx.get(stack.url + path).status_code == 404


def test_cancel_sweep_from_the_cli(stack, tmp_path):
    spec = {
        "name": TO_CANCEL,
        "base": {**TINY, "epochs": 3},
        "grid": {"layers.0.units": [16, 32, 48]},
    }
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    out = labq(stack, "sweep", str(tmp_path / "sweep.json"))
    assert out.returncode == 0, out.stderr
    sweep_id = int(re.search(r"sweep (\d+) queued: 3 experiment", out.stdout).group(1))
    children = httpx.get(f"{stack.url}/sweeps/{sweep_id}", timeout=30).json()["children"]
    assert children[0]["name"] == TO_CANCEL_FIRST
    stack.held(children[0]["id"])  # running in its epoch 2; the other two wait behind it
    held = httpx.get(f"{stack.url}/sweeps/{sweep_id}", timeout=30).json()
    assert [c["status"] for c in held["children"]] == ["running", "queued", "queued"]
    assert labq(stack, "sweep", "cancel", str(sweep_id)).returncode == 0
    s = wait_sweep(stack, sweep_id)
    assert s["counts"] == {"cancelled": 3}
    first, *rest = s["children"]
    assert first["epochs_done"] == 1  # stopped inside epoch 2
    assert all(c["epochs_done"] == 0 for c in rest)
    assert labq(stack, "sweep", "ls").returncode == 0


def test_presets_run_and_lab_report(stack, tmp_path):
    presets = httpx.get(f"{stack.url}/presets").json()
    assert {p["section"] for p in presets} == set(range(1, 13))
    width = next(p for p in presets if p["name"] == "s01-width")
    assert width["reference"][0]["published"]["val_accuracy"] == 0.9617

    before = totals(stack)
    bad = httpx.post(
        f"{stack.url}/presets/s12-optimal/run", json={"overrides": {"train_samples": 1000}}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "overrides"
    assert (
        httpx.post(
            f"{stack.url}/presets/s01-width/run", json={"overrides": {"layers.4.units": 3}}
        ).status_code
        == 422
    )
    assert httpx.post(f"{stack.url}/presets/nope/run", json={}).status_code == 404
    assert httpx.post(f"{stack.url}/presets/s11-visualization/run", json={}).status_code == 409
    assert totals(stack) == before

    r = httpx.post(
        f"{stack.url}/presets/s01-width/run",
        json={"repeats": 1, "overrides": {"train_samples": 1000, "epochs": 1}},
    )
    assert r.status_code == 202, r.text
    s = wait_sweep(stack, r.json()["id"])
    assert s["preset"] == "s01-width" and s["counts"] == {"succeeded": 5}
    assert [c["config"]["layers.0.units"] for c in s["configs"]] == [50, 100, 200, 300, 500]

    ran = labq(stack, "lab", "run", "--sections", "6", "--train-samples", "1000", "--epochs", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"section 6: s06-batch10000 -> sweep \d+ \(3 run\(s\)\)", ran.stdout)
    assert "done: 1 sweep(s)" in ran.stdout

    # --search also queues section 12's search preset, its hold-out scaled like the grid's.
    ran = labq(
        stack,
        *("lab", "run", "--sections", "12", "--search", "--no-follow"),
        *("--train-samples", "1000", "--epochs", "1"),
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert re.search(r"section 12: s12-optimal -> sweep \d+", ran.stdout), ran.stdout
    found = re.search(r"section 12: s12-search -> search (\d+) \(2 trial\(s\)", ran.stdout)
    assert found, ran.stdout
    search = httpx.get(f"{stack.url}/searches/{found.group(1)}", timeout=30).json()
    assert search["name"] == "s12-search" and search["trials_target"] == 40
    assert search["spec"]["base"]["validation"] == {"holdout": 100}
    assert search["spec"]["base"]["train_samples"] == 1000
    grid = int(re.search(r"s12-optimal -> sweep (\d+)", ran.stdout).group(1))
    httpx.post(f"{stack.url}/searches/{found.group(1)}/cancel", json={}, timeout=30)
    httpx.post(f"{stack.url}/sweeps/{grid}/cancel", json={}, timeout=30)
    # The report's section 12 reads the search beside the grid (tests/unit/test_report_search.py
    # replays a finished one); this one was cancelled before any result.
    out = labq(stack, "lab", "report", "--out", str(tmp_path / "rep12"), "--sections", "12")
    assert out.returncode == 0, out.stdout + out.stderr
    rep12 = (tmp_path / "rep12" / "report.md").read_text()
    assert f"Search #{found.group(1)} (`s12-search`)" in rep12 and "No result yet" in rep12
    index = json.loads((tmp_path / "rep12" / "report.json").read_text())
    assert index["12"] == {"sweep": grid, "preset": "s12-optimal", "search": int(found.group(1))}

    out = labq(stack, "lab", "report", "--out", str(tmp_path / "rep"), "--sections", "1,6,11")
    assert out.returncode == 0, out.stdout + out.stderr
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "## 1. Width of the hidden layer" in report and "96.17%" in report
    assert f"Sweep #{s['id']}" in report and "Best final validation accuracy" in report
    assert "## 6. Batch size 10,000" in report and "against batch 128 (section 1)" in report
    assert "## 11. Visualization" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert "s01/compare.png" in images and "s06/compare.png" in images
    assert len(images) == (1 + 2 * 5) + (1 + 2 * 3)
    for img in images:
        assert (tmp_path / "rep" / img).read_bytes()[:4] == b"\x89PNG"
