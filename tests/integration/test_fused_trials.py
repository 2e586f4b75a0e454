"""Fused trials in a live stack with a JAX worker, on both legs (SQLite embedded; PostgreSQL with a
separate Redis): a sweep's runs of one model shape train as one program, each keeping its own
history, figures, model and seconds; a sweep submitted with `"fuse": false` trains each alone; a
worker killed mid-program leaves every member to be taken over alone, resuming from its own
checkpoint with each epoch stored exactly once; cancelling one member stops it inside its epoch
while the others train to the end (docs/guarantees.md)."""

import io
import json
import os
import signal
import time
import zipfile

import httpx
import pytest

from core.sweep import SweepSpec, expand
from tests.conftest import make_stack, started

pytestmark = [pytest.mark.integration, pytest.mark.jax]

BASE = {
    "layers": [{"units": 32}],
    "epochs": 3,
    "batch_size": 64,
    "train_samples": 3000,
    "validation": {"holdout": 500},
    "seed": 11,
}
GRID = {"optimizer.learning_rate": [0.001, 0.01]}


def sweep_body(name: str, **kw) -> dict:
    return {"name": name, "base": BASE, "grid": GRID, "repeats": 2, **kw}


def child_names(name: str) -> list[str]:
    """The names the sweep's children get (core/sweep.py), for the test hooks."""
    return [c.spec.name for c in expand(SweepSpec(**sweep_body(name)), 100, None)]


KILLED, CANCELLED = child_names("fused-killed")[1], child_names("fused-cancel")[2]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def jax_stack(request, tmp_path_factory, pg_admin_url, external_redis):
    env = {
        "LABQ_BACKEND": "jax",
        "LABQ_LEASE_SECONDS": "6",
        "LABQ_CANCEL_POLL_SECONDS": "0.5",
        "LABQ_CANCEL_CHECK_BATCHES": "10",
        "LABQ_TEST_HOLD_IN_EPOCH": f"{KILLED}:2,{CANCELLED}:2",
    }
    stack = make_stack(request.param, tmp_path_factory, pg_admin_url, external_redis, extra_env=env)
    with started(stack):
        yield stack


def submit_sweep(stack, body: dict) -> list[int]:
    r = httpx.post(f"{stack.url}/sweeps", json=body, timeout=30)
    assert r.status_code == 202, r.text
    return r.json()["children"]


def history(stack, exp_id: int) -> list[dict]:
    return httpx.get(f"{stack.url}/experiments/{exp_id}/history", timeout=30).json()


def test_a_sweep_trains_as_one_program_and_each_run_keeps_its_own_record(jax_stack):
    ids = submit_sweep(jax_stack, sweep_body("fused-ok"))
    done = [jax_stack.wait(i, timeout=600) for i in ids]
    assert [d["status"] for d in done] == ["succeeded"] * 4, done
    assert [d["fused"] for d in done] == [4] * 4  # one program, all four members
    finals = set()
    for d in done:
        hist = history(jax_stack, d["id"])
        assert [h["epoch"] for h in hist] == [1, 2, 3]
        assert all(h["seconds"] > 0 and h["grad_norms"] for h in hist)
        assert hist[0]["learning_rate"] == pytest.approx(d["spec"]["optimizer"]["learning_rate"])
        assert d["train_seconds"] > 0 and d["test"]["accuracy"] > 0.5
        finals.add(hist[-1]["val_loss"])
        for part in ("filters.png", "history.png", "model.keras"):
            r = httpx.get(f"{jax_stack.url}/experiments/{d['id']}/{part}", timeout=60)
            assert r.status_code == 200 and len(r.content) > 1000, part
    assert len(finals) == 4  # four different runs (seeds, learning rates), not one four times


def _saved_layers(stack, exp_id: int) -> dict:
    """The exported model's layer configs by name, read from the .keras archive's config.json."""
    r = httpx.get(f"{stack.url}/experiments/{exp_id}/model.keras", timeout=60)
    assert r.status_code == 200
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        config = json.loads(z.read("config.json"))
    return {lyr["config"]["name"]: lyr["config"] for lyr in config["config"]["layers"]}


def test_a_sweep_over_dropout_and_l2_trains_as_one_program(jax_stack):
    base = {**BASE, "layers": [{"units": 32}, {"type": "dropout", "rate": 0.2}]}
    grid = {"layers.1.rate": [0.2, 0.5], "layers.0.l2": [0.0, 0.01]}  # section 10's kind of grid
    ids = submit_sweep(jax_stack, {"name": "fused-reg", "base": base, "grid": grid})
    done = [jax_stack.wait(i, timeout=600) for i in ids]
    assert [d["status"] for d in done] == ["succeeded"] * 4, done
    assert [d["fused"] for d in done] == [4] * 4
    finals = set()
    for d in done:  # each member keeps its own rate and factor, in its history and its model
        saved = _saved_layers(jax_stack, d["id"])
        spec = d["spec"]["layers"]
        assert saved["dropout_2"]["rate"] == pytest.approx(spec[1]["rate"])
        reg = saved["dense_1"]["kernel_regularizer"]
        l2 = 0.0 if reg is None else reg["config"]["l2"]
        assert l2 == pytest.approx(spec[0]["l2"])
        finals.add(history(jax_stack, d["id"])[-1]["loss"])
    assert len(finals) == 4


def test_a_sweep_submitted_without_fusing_trains_each_run_alone(jax_stack):
    ids = submit_sweep(jax_stack, sweep_body("fused-off", fuse=False))
    done = [jax_stack.wait(i, timeout=600) for i in ids]
    assert [d["status"] for d in done] == ["succeeded"] * 4, done
    assert [d["fuse"] for d in done] == [False] * 4
    assert [d["fused"] for d in done] == [None] * 4


def test_a_worker_killed_mid_program_leaves_each_member_to_resume_alone(jax_stack):
    ids = submit_sweep(jax_stack, sweep_body("fused-killed"))
    held = ids[1]  # KILLED: the program stops in its epoch 2, every member with it
    pid = jax_stack.held(held)
    assert [jax_stack.get(i)["fused"] for i in ids] == [4] * 4
    os.kill(pid, signal.SIGKILL)
    done = [jax_stack.wait(i, timeout=600) for i in ids]
    assert [d["status"] for d in done] == ["succeeded"] * 4, (done, jax_stack.logs())
    for d in done:
        rows = jax_stack.epoch_attempts(d["id"])
        assert [e for e, _ in rows] == [1, 2, 3], rows  # every epoch exactly once
        assert d["attempt"] == 2 and d["fused"] is None  # taken over and trained alone
        assert {a for e, a in rows if e == 3} == {2}


def test_cancelling_one_member_stops_it_inside_its_epoch_and_the_others_go_on(jax_stack):
    ids = submit_sweep(jax_stack, sweep_body("fused-cancel"))
    held = ids[2]  # CANCELLED
    try:
        jax_stack.held(held)
        assert jax_stack.get(held)["epochs_done"] == 1
        r = httpx.post(f"{jax_stack.url}/experiments/{held}/cancel", json={}, timeout=30)
        assert r.status_code == 202
        cancelled = jax_stack.wait(held, timeout=300)
        others = [jax_stack.wait(i, timeout=600) for i in ids if i != held]
    finally:
        jax_stack.release(held)
    assert cancelled["status"] == "cancelled" and cancelled["epochs_done"] == 1
    assert [h["epoch"] for h in history(jax_stack, held)] == [1]  # epoch 2 was not recorded
    assert [d["status"] for d in others] == ["succeeded"] * 3, others
    assert all(d["fused"] == 4 and d["epochs_done"] == 3 for d in others)


def test_a_searchs_trials_and_confirmation_runs_train_fused(jax_stack):
    body = {
        "name": "fused-search",
        "base": BASE,
        "space": {"optimizer.learning_rate": {"type": "categorical", "choices": [0.05, 1e-7]}},
        "sampler": "random",
        "seed": 7,  # draws 1e-7, 1e-7, 0.05, 0.05
        "pruner": {"type": "asha", "min_epochs": 1, "reduction_factor": 2},
        "trials": 4,
        "parallel": 4,  # all four asked at once: one program
        "confirm": {"top": 1, "seeds": 2},
    }
    r = httpx.post(f"{jax_stack.url}/searches", json=body, timeout=30)
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    deadline = time.monotonic() + 600
    while (s := httpx.get(f"{jax_stack.url}/searches/{sid}", timeout=30).json())["result"] is None:
        assert time.monotonic() < deadline, (s, jax_stack.logs())
        time.sleep(0.5)
    trials = [jax_stack.get(t["id"]) for t in s["trials"]]
    assert len(trials) == 4 and {t["status"] for t in trials} <= {"succeeded", "pruned"}
    assert [t["fused"] for t in trials] == [4] * 4
    for t in trials:  # each ends on its own: a pruned member keeps its history up to there
        assert [h["epoch"] for h in history(jax_stack, t["id"])] == list(
            range(1, t["epochs_done"] + 1)
        )
        assert t["test"]["accuracy"] is None  # trials are chosen on the hold-out
    confirms = [jax_stack.get(c["id"]) for c in s["confirmation"]]
    assert [c["status"] for c in confirms] == ["succeeded"] * 2
    assert [c["fused"] for c in confirms] == [2, 2]
    assert s["best"]["params"]["optimizer.learning_rate"] == 0.05
    assert 0 < s["result"]["test_accuracy"] <= 1
