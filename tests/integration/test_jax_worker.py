"""A worker on Keras's JAX backend, in a live stack, with TensorFlow made unimportable in every
process (as on a machine that has JAX and no TensorFlow): it trains jobs to the end with their
history, callbacks, gradient norms, figures and model.keras, resumes a job whose worker was killed
mid-epoch from its checkpoint, and stops a cancelled job inside a long epoch. The same guarantees
test_faults.py proves for the TensorFlow worker (docs/guarantees.md), here for JAX."""

import os
import signal

import httpx
import pytest

from tests.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.jax]

# Put first on sys.meta_path by sitecustomize in every labq process of the stack: any import of
# tensorflow fails (as where it is not installed), and each attempt is noted in a file.
BLOCKER = """
import os, sys

class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            with open(os.environ["LABQ_TEST_TF_ATTEMPTS"], "a") as f:
                f.write(f"{os.getpid()} {name}\\n")
            raise ImportError(f"{name} is not installed here (blocked by the test)")
        return None

sys.meta_path.insert(0, _NoTensorFlow())
"""


@pytest.fixture(scope="module")
def jax_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("jax")
    blocker = root / "no-tensorflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    attempts = root / "tf-attempts.txt"
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH", "")) if p)
    s = Stack(
        root / "stack",
        extra_env={
            "LABQ_BACKEND": "jax",
            "PYTHONPATH": path,
            "LABQ_TEST_TF_ATTEMPTS": str(attempts),
            "LABQ_LEASE_SECONDS": "6",
            "LABQ_CANCEL_POLL_SECONDS": "0.5",
            "LABQ_CANCEL_CHECK_BATCHES": "20",
            "LABQ_TEST_HOLD_IN_EPOCH": "jax-killed:3,jax-long:2",
        },
    )
    s.attempts = attempts  # type: ignore[attr-defined]  # the blocker's log, for the tests
    s.start()
    yield s
    s.stop()


def logs(stack: Stack) -> str:
    return "".join(p.read_text(errors="replace") for p in (stack.data_dir / "logs").glob("*.log"))


def test_jax_worker_trains_a_job_without_tensorflow(jax_stack):
    spec = {
        "name": "jax-callbacks",
        "layers": [{"units": 64}, {"type": "dropout", "rate": 0.2}, {"units": 32, "l2": 1e-4}],
        "epochs": 4,
        "batch_size": 64,
        "train_samples": 3000,
        "seed": 5,
        "early_stopping": {"monitor": "val_loss", "patience": 3, "restore_best_weights": True},
        "reduce_lr_on_plateau": {"monitor": "val_loss", "factor": 0.5, "patience": 1},
    }
    exp_id = jax_stack.submit(spec)
    done = jax_stack.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", (done, logs(jax_stack))
    assert done["test"]["accuracy"] > 0.8
    hist = httpx.get(f"{jax_stack.url}/experiments/{exp_id}/history").json()
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert all(set(h["grad_norms"]) == {"dense_1", "dense_3", "output"} for h in hist)
    assert all(v > 0 for h in hist for v in h["grad_norms"].values())
    assert hist[-1]["val_accuracy"] > hist[0]["val_accuracy"] - 0.05
    for figure in ("history.png", "filters.png", "model.keras"):
        r = httpx.get(f"{jax_stack.url}/experiments/{exp_id}/{figure}", timeout=60)
        assert r.status_code == 200 and len(r.content) > 1000, figure
    assert "Keras on jax" in logs(jax_stack)
    assert not jax_stack.attempts.exists(), jax_stack.attempts.read_text()


def test_jax_worker_killed_mid_epoch_resumes_from_checkpoint(jax_stack):
    spec = {
        "name": "jax-killed",
        "layers": [{"units": 64}],
        "epochs": 6,
        "batch_size": 32,
        "train_samples": 6000,
        "seed": 1,
    }
    exp_id = jax_stack.submit(spec)
    pid = jax_stack.held(exp_id)
    running = jax_stack.get(exp_id)
    assert running["status"] == "running" and running["epochs_done"] == 2, running
    os.kill(pid, signal.SIGKILL)

    done = jax_stack.wait(exp_id, timeout=300)
    assert done["status"] == "succeeded", (done, logs(jax_stack))
    assert done["attempt"] == 2 and done["test"]["accuracy"] > 0.8
    rows = jax_stack.epoch_attempts(exp_id)
    assert [e for e, _ in rows] == [1, 2, 3, 4, 5, 6]  # every epoch exactly once
    first = [e for e, a in rows if a == 1]
    assert first and first == list(range(1, len(first) + 1)) and len(first) <= 2
    assert {a for e, a in rows if e > len(first)} == {2}
    assert "resumes after epoch" in logs(jax_stack)


def test_jax_worker_cancels_inside_a_long_epoch(jax_stack):
    exp_id = jax_stack.submit(
        {
            "name": "jax-long",
            "layers": [{"units": 64}],
            "epochs": 5,
            "batch_size": 1,
            "train_samples": 6000,
        }
    )
    try:
        jax_stack.held(exp_id)
        assert jax_stack.get(exp_id)["epochs_done"] == 1
        r = httpx.post(f"{jax_stack.url}/experiments/{exp_id}/cancel", json={})
        assert r.status_code == 202 and r.json()["cancel_requested"]
        done = jax_stack.wait(exp_id, timeout=120)
    finally:
        jax_stack.release(exp_id)
        httpx.post(f"{jax_stack.url}/experiments/{exp_id}/cancel", json={})
    assert done["status"] == "cancelled"
    assert done["epochs_done"] == 1  # stopped inside epoch 2, which is not recorded
    hist = httpx.get(f"{jax_stack.url}/experiments/{exp_id}/history").json()
    assert [h["epoch"] for h in hist] == [1]
    assert not jax_stack.attempts.exists(), jax_stack.attempts.read_text()
