"""POST -> Celery worker -> SQL -> GET, against a live stack (embedded SQLite and PostgreSQL legs)."""

import io
import json
import subprocess
import sys

import httpx
import matplotlib.image as mpimg
import psutil
import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.integration


def png_shape(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(data), format="png").shape


def count_rows(stack) -> int:
    return httpx.get(f"{stack.url}/experiments", params={"limit": 1}).json()["total"]


def test_train_and_read_back(stack, tiny):
    tiny["layers"] = [
        {"units": 40, "activation": "relu"},
        {"type": "dropout", "rate": 0.2},
        {"units": 20, "activation": "tanh", "l2": 0.001},
    ]
    r = httpx.post(f"{stack.url}/experiments", json={"name": "e2e", **tiny})
    assert r.status_code == 202
    exp_id = r.json()["id"]
    assert r.headers["location"] == f"/experiments/{exp_id}"

    exp = stack.wait(exp_id)
    assert exp["status"] == "succeeded", exp
    assert exp["epochs_done"] == exp["epochs_total"] == 2
    assert exp["architecture"] == "784-40-20-10 relu/tanh dropout 0.2"
    shapes = [
        (lyr["name"], lyr["kernel_shape"], lyr["bias_shape"], lyr["params"])
        for lyr in exp["layers"]
    ]
    assert shapes == [
        ("dense_1", [784, 40], [40], 31400),
        ("dropout_2", None, None, 0),
        ("dense_3", [40, 20], [20], 820),
        ("output", [20, 10], [10], 210),
    ]
    assert exp["params"] == 31400 + 820 + 210
    assert exp["queue_seconds"] >= 0 and exp["train_seconds"] > 0 and exp["build_seconds"] > 0
    assert 0.5 < exp["test"]["accuracy"] <= 1 and exp["val"]["accuracy"] == exp["test"]["accuracy"]
    assert exp["started_at"] <= exp["finished_at"]

    hist = httpx.get(f"{stack.url}/experiments/{exp_id}/history").json()
    assert [h["epoch"] for h in hist] == [1, 2]
    for h in hist:
        assert h["loss"] > 0 and 0 < h["accuracy"] <= 1 and h["val_loss"] > 0
        assert h["learning_rate"] == pytest.approx(0.001) and h["seconds"] > 0
        assert set(h["grad_norms"]) == {"dense_1", "dense_3", "output"}
    assert hist[-1]["val_accuracy"] == exp["val"]["accuracy"]
    assert hist[1]["loss"] < hist[0]["loss"]

    f10 = httpx.get(f"{stack.url}/experiments/{exp_id}/filters.png")
    f3 = httpx.get(f"{stack.url}/experiments/{exp_id}/filters.png", params={"n": 3})
    assert f10.headers["content-type"] == "image/png"
    assert png_shape(f10.content)[1] > 2 * png_shape(f3.content)[1]  # ten tiles vs three
    assert (
        httpx.get(f"{stack.url}/experiments/{exp_id}/filters.png", params={"n": 0}).status_code
        == 422
    )
    h = httpx.get(f"{stack.url}/experiments/{exp_id}/history.png")
    assert h.status_code == 200 and png_shape(h.content)[1] > 500


def test_worker_field_names_the_training_process(stack, tiny):
    """`worker` is host:pid of the pool child that trained, not of the Celery parent: the reaper
    relies on it to requeue at once a job whose process died."""
    exp = stack.wait(stack.submit({**tiny, "epochs": 1}))
    pid = int(exp["worker"].rsplit(":", 1)[1])
    parents = [p for p in psutil.Process(stack.proc.pid).children() if "worker" in p.cmdline()]
    assert len(parents) == 1
    assert pid != parents[0].pid and pid in [c.pid for c in parents[0].children()]
    # The child is kept for the next job (LABQ_MAX_JOBS_PER_CHILD, LABQ_MAX_CHILD_MEMORY_MB),
    # with its warm models; test_worker_recycling.py shows the limit replacing it.
    again = stack.wait(stack.submit({**tiny, "epochs": 1}))
    assert int(again["worker"].rsplit(":", 1)[1]) == pid


def test_list_filter_and_paginate(stack, tiny):
    ids = [stack.submit({**tiny, "name": f"page-{i}", "epochs": 1}) for i in range(3)]
    for i in ids:
        stack.wait(i)
    page = httpx.get(f"{stack.url}/experiments", params={"name": "page-", "limit": 2}).json()
    assert page["total"] == 3 and [e["id"] for e in page["items"]] == ids[::-1][:2]
    page2 = httpx.get(
        f"{stack.url}/experiments", params={"name": "page-", "limit": 2, "offset": 2}
    ).json()
    assert [e["id"] for e in page2["items"]] == [ids[0]]
    done = httpx.get(f"{stack.url}/experiments", params={"status": "succeeded", "name": "page-"})
    assert done.json()["total"] == 3
    bad = httpx.get(f"{stack.url}/experiments", params={"status": "done"})
    assert bad.status_code == 422 and "status" in bad.json()["message"]


def test_cancel_running_keeps_history_and_queued_never_runs(stack, tiny):
    long_id = stack.submit({**tiny, "name": "held-in-epoch-2", "epochs": 20, "train_samples": 6000})
    queued_id = stack.submit({**tiny, "name": "behind"})
    stack.held(long_id)
    queued = httpx.post(f"{stack.url}/experiments/{queued_id}/cancel", json={}).json()
    assert queued["status"] == "cancelled"
    running = httpx.post(f"{stack.url}/experiments/{long_id}/cancel", json={}).json()
    assert running["status"] == "running" and running["cancel_requested"]
    done = stack.wait(long_id)
    assert done["status"] == "cancelled" and done["epochs_done"] == 1
    hist = httpx.get(f"{stack.url}/experiments/{long_id}/history").json()
    assert [h["epoch"] for h in hist] == list(range(1, done["epochs_done"] + 1))
    behind = stack.get(queued_id)
    assert behind["status"] == "cancelled" and behind["started_at"] is None
    assert httpx.get(f"{stack.url}/experiments/{queued_id}/history").json() == []
    # The worker is free again and the cancelled job was never trained.
    after = stack.wait(stack.submit(tiny))
    assert after["status"] == "succeeded"
    assert stack.get(queued_id)["attempt"] == 0


def test_failed_job_records_error_and_worker_stays_healthy(stack, tiny):
    """A spec that was valid when stored but is not any more (re-validated by the worker)."""
    exp_id = stack.submit({**tiny, "epochs": 1, "name": "to-break"})
    stack.wait(exp_id)
    url = stack.database_url or f"sqlite:///{stack.data_dir / 'labq.db'}"
    engine = create_engine(url)
    bad = json.dumps({**tiny, "layers": [{"units": -5}]})
    with engine.begin() as conn:
        new_id = conn.execute(
            text(
                "INSERT INTO experiments (name, spec, status, epochs_total, epochs_done, created_at, "
                "diverged, cancel_requested, attempt) VALUES ('broken', :spec, 'queued', 2, 0, "
                "CURRENT_TIMESTAMP, false, false, 0) RETURNING id"
            ),
            {"spec": bad},
        ).scalar()
    engine.dispose()
    subprocess.run(
        [sys.executable, "-c", f"from core.queue import enqueue; enqueue({new_id})"],
        env=stack.env,
        check=True,
    )
    failed = stack.wait(new_id)
    assert failed["status"] == "failed" and "units" in failed["error"]
    assert stack.wait(stack.submit(tiny))["status"] == "succeeded"


def test_health_reports_parts(stack):
    h = httpx.get(f"{stack.url}/health").json()
    assert h["database"] == "ok" and h["broker"] == "ok" and h["workers"]
