"""A trained run's model on a live stack (embedded SQLite and PostgreSQL legs): model.keras
downloads (over HTTP and with `labq pull`), loads with `keras.saving.load_model` and reproduces the
stored test accuracy on the 10,000 test images; the API's predictions agree with Keras's on all of
them; the evaluation adds up; the figures are PNGs; a run whose early stopping put back its best
weights says "best"."""

import subprocess
import sys

import httpx
import numpy as np
import pytest

from worker.engine.data import load_mnist

keras = pytest.importorskip("keras")

pytestmark = [pytest.mark.integration, pytest.mark.tf]  # Keras loads the model in this process

# Keras in this process in float32 even on a GPU (where TensorFlow would otherwise use TF32).
pytest.importorskip("tensorflow").config.experimental.enable_tensor_float_32_execution(False)

BATCH = 256  # LABQ_MAX_PREDICT_IMAGES's default
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return load_mnist(tmp_path_factory.mktemp("mnist"))


def download(stack, exp_id: int, tmp_path) -> keras.Model:
    r = httpx.get(f"{stack.url}/experiments/{exp_id}/model.keras", timeout=60)
    assert r.status_code == 200, r.text
    path = tmp_path / f"run-{exp_id}.keras"
    path.write_bytes(r.content)
    return keras.saving.load_model(path)


def test_model_loads_in_keras_scores_the_stored_accuracy_and_predict_agrees(stack, mnist, tmp_path):
    exp_id = stack.submit(
        {
            "name": "model-holdout",
            "layers": [
                {"units": 64, "activation": "relu", "l2": 0.0001},
                {"type": "dropout", "rate": 0.2},
                {"units": 32, "activation": "tanh"},
            ],
            "epochs": 2,
            "batch_size": 128,
            "train_samples": 6000,
            "validation": {"holdout": 1000},
            "seed": 11,
        }
    )
    exp = stack.wait(exp_id)
    assert exp["status"] == "succeeded", exp
    info = exp["model"]
    assert info["weights"] == "final" and info["best_epoch"] is None
    assert info["stored"] and info["predict"] and info["note"] is None

    model = download(stack, exp_id, tmp_path)
    assert info["bytes"] == (tmp_path / f"run-{exp_id}.keras").stat().st_size
    x = mnist.x_test.astype(np.float32) / 255.0
    _, accuracy = model.evaluate(x, mnist.y_test, batch_size=1000, verbose=0)
    assert abs(accuracy - exp["test"]["accuracy"]) < 1e-4

    ev = exp["evaluation"]
    assert ev == httpx.get(f"{stack.url}/experiments/{exp_id}/evaluation").json()
    test, holdout = ev["test"], ev["holdout"]
    assert test["images"] == 10_000 and np.asarray(test["confusion"]).sum() == 10_000
    assert abs(np.trace(test["confusion"]) / 10_000 - exp["test"]["accuracy"]) < 1e-4
    assert test["support"] == np.bincount(mnist.y_test, minlength=10).tolist()
    assert holdout["images"] == 1000 and np.asarray(holdout["confusion"]).sum() == 1000
    assert abs(holdout["accuracy"] - exp["val"]["accuracy"]) < 1e-4

    expected = model.predict(x, batch_size=1000, verbose=0)
    got = []
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        for a in range(0, 10_000, BATCH):
            r = client.post(
                f"/experiments/{exp_id}/predict",
                json={"images": mnist.x_test[a : a + BATCH].tolist()},
            )
            assert r.status_code == 200, r.text
            got += [p["probabilities"] for p in r.json()["predictions"]]
    got = np.asarray(got)
    assert np.array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.abs(got - expected).max() < 1e-5

    for path in ("confusion.png", "confusion.png?set=holdout", "mistakes.png"):
        r = httpx.get(f"{stack.url}/experiments/{exp_id}/{path}", timeout=60)
        assert r.status_code == 200 and r.content[:8] == PNG_MAGIC, path

    pulled = tmp_path / "pulled.keras"
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "pull", str(exp_id), "-o", str(pulled)],
        env={**stack.env, "LABQ_URL": stack.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert pulled.read_bytes() == (tmp_path / f"run-{exp_id}.keras").read_bytes()
    assert f"final weights of experiment {exp_id}" in out.stdout


def test_a_run_early_stopping_restored_reports_best_weights(stack, mnist, tmp_path):
    # min_delta 0.5: no epoch after the first can improve by that much, so with patience 1 the
    # run stops after epoch 2 and Keras puts back epoch 1's weights, whatever the machine.
    exp_id = stack.submit(
        {
            "name": "model-early-stopped",
            "layers": [{"units": 32}],
            "epochs": 6,
            "batch_size": 128,
            "train_samples": 3000,
            "validation": {"holdout": 500},
            "early_stopping": {
                "monitor": "val_accuracy",
                "patience": 1,
                "min_delta": 0.5,
                "restore_best_weights": True,
            },
            "seed": 5,
        }
    )
    exp = stack.wait(exp_id)
    assert exp["status"] == "succeeded" and exp["epochs_done"] == 2, exp
    assert exp["model"]["weights"] == "best" and exp["model"]["best_epoch"] == 1
    model = download(stack, exp_id, tmp_path)
    x = mnist.x_test.astype(np.float32) / 255.0
    _, accuracy = model.evaluate(x, mnist.y_test, batch_size=1000, verbose=0)
    assert abs(accuracy - exp["test"]["accuracy"]) < 1e-4  # the test read used the best weights
    # Epoch 1's weights, not epoch 2's: their hold-out accuracy is epoch 1's, as validated then.
    history = httpx.get(f"{stack.url}/experiments/{exp_id}/history").json()
    assert abs(exp["evaluation"]["holdout"]["accuracy"] - history[0]["val_accuracy"]) < 1e-4
    r = httpx.post(
        f"{stack.url}/experiments/{exp_id}/predict", json={"images": mnist.x_test[:3].tolist()}
    )
    assert r.status_code == 200 and r.json()["weights"] == "best"
