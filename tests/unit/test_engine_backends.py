"""The engine on Keras's JAX backend beside TensorFlow: each trains in a child process (a
process's Keras backend is fixed at its first import), through tests/engine_child.py.

Same spec and seed on both backends: the same history shape and final accuracies within run-to-run
noise; on JAX: callbacks act, a checkpoint resumes, a stop request ends the run inside an epoch,
and TensorFlow is never imported."""

import json
import os
import subprocess
import sys

import pytest

from tests.stack import ROOT
from worker.engine.data import load_mnist

pytestmark = [pytest.mark.tf, pytest.mark.jax]  # trains (in children)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("engine-backends")
    load_mnist(d / "datasets")  # writes the cache the children read
    return d


def train_in_child(data_dir, backend: str, body: dict, *extra: str, env=None) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "tests.engine_child", backend, json.dumps(body), *extra],
        cwd=ROOT,
        env={**os.environ, "LABQ_DATA_DIR": str(data_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


SPEC = {
    "layers": [{"units": 64}],
    "epochs": 2,
    "batch_size": 128,
    "train_samples": 12000,
    "seed": 7,
}


def test_same_spec_and_seed_learn_the_same_on_both_backends(data_dir):
    tf_run = train_in_child(data_dir, "tensorflow", SPEC)
    jax_run = train_in_child(data_dir, "jax", SPEC)
    assert tf_run["backend"] == "tensorflow" and jax_run["backend"] == "jax"
    assert not jax_run["tensorflow_imported"]
    assert len(tf_run["epochs"]) == len(jax_run["epochs"]) == 2
    # Run-to-run noise of this spec over seeds is about +-0.5 %; a broken step is far off.
    for a, b in zip(tf_run["epochs"], jax_run["epochs"], strict=True):
        assert abs(a["val_accuracy"] - b["val_accuracy"]) < 0.015, (tf_run, jax_run)
        assert set(a["grad_norms"]) == set(b["grad_norms"]) == {"dense_1", "output"}
    # Initial weights differ (each backend's own random numbers), so epoch 1's mean loss may
    # differ by ~0.05; by the last epoch the two runs agree closely.
    assert abs(tf_run["epochs"][-1]["loss"] - jax_run["epochs"][-1]["loss"]) < 0.03
    assert abs(tf_run["test_accuracy"] - jax_run["test_accuracy"]) < 0.015
    assert jax_run["test_accuracy"] > 0.9 and jax_run["model_keras_bytes"] > 10_000


def test_jax_callbacks_act_and_a_checkpoint_resumes(data_dir):
    body = {
        **SPEC,
        "layers": [{"units": 32}, {"type": "dropout", "rate": 0.3}, {"units": 16, "l2": 1e-3}],
        "epochs": 5,
        "train_samples": 3000,
        "validation": {"holdout": 100},  # a small, noisy hold-out: val_loss does not fall each time
        "optimizer": {"name": "sgd", "learning_rate": 0.5},
        "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 0},
    }
    run = train_in_child(data_dir, "jax", body, env={"LABQ_TEST_RESUME_FROM": "1"})
    # Replay Keras's rule on the recorded val_loss: each epoch trained at the rate the callback
    # left after the one before (the engine reads the optimizer's rate at every epoch's start).
    lr, best, expect = 0.5, float("inf"), []
    for e in run["epochs"]:
        expect.append(lr)
        if e["val_loss"] < best:
            best = e["val_loss"]
        else:
            lr *= 0.5
    assert [e["learning_rate"] for e in run["epochs"]] == pytest.approx(expect)
    assert run["checkpoints"] == 5 and run["stopped"] is None
    # Resumed from epoch 1's checkpoint (weights + optimizer state): epochs 2..5 again.
    assert len(run["resumed"]) == 5 and all(v > 0.5 for v in run["resumed"])
    assert not run["tensorflow_imported"]


def test_jax_stop_request_ends_the_run_inside_an_epoch(data_dir):
    body = {**SPEC, "batch_size": 8, "epochs": 2, "train_samples": 2000}
    run = train_in_child(data_dir, "jax", body, "3", env={"LABQ_TEST_CHECK_EVERY": "10"})
    # 250 batches an epoch, asked every 10: stopped at the 3rd ask, inside epoch 1.
    assert run["stopped"] == "cancelled" and run["asks"] == 3 and run["epochs"] == []
