"""Route rules of a run's trained model in process, on SQLite and PostgreSQL: download, evaluation
and figures, predictions (arrays and PNG) and every way a request can be refused (404, 409 while
unfinished or without a model, 422 naming the bad image), the size cap, and artifacts deleted
with their run. Nothing trains: the runs' results are written as the worker writes them
(db.model_artifacts.store) from a small network made here."""

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw
from sqlalchemy import delete, func, select

from core import evaluation
from core.constants import SUCCEEDED
from core.dense_net import DenseLayer, DenseNet
from core.model_artifacts import MODEL, WEIGHTS, ModelExport
from core.spec import ExperimentSpec
from db import model_artifacts, repo
from db.models import Artifact, EpochRow, Experiment
from db.session import session_scope

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}
KERAS = b"PK\x03\x04 a model.keras stand-in " * 64


def small_net(seed: int = 0) -> DenseNet:
    rng = np.random.default_rng(seed)
    return DenseNet(
        (
            DenseLayer(
                rng.normal(0, 0.05, (784, 16)).astype(np.float32), np.zeros(16, np.float32), "relu"
            ),
            DenseLayer(
                rng.normal(0, 0.5, (16, 10)).astype(np.float32),
                rng.normal(0, 0.1, 10).astype(np.float32),
                "softmax",
            ),
        )
    )


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28))


def make_export(net: DenseNet, holdout: bool = False, restored: bool = False) -> ModelExport:
    x = images(300).astype(np.uint8)
    labels = np.arange(300) % 10
    probs = net.probabilities(x)
    result = {"test": evaluation.summary(labels, probs)}
    if holdout:
        result["holdout"] = evaluation.summary(labels[:100], probs[:100])
    return ModelExport(
        keras=KERAS,
        weights=net.to_npz(),
        mistakes=evaluation.mistakes(x, labels, probs).to_npz(),
        evaluation=result,
        restored=restored,
        best_epoch=2 if restored else None,
    )


def stored_run(
    export: ModelExport | None, max_bytes: int = 10**9, status: str = SUCCEEDED, **spec
) -> int:
    """A run as the worker leaves it: finished, its model stored by db.model_artifacts.store."""
    with session_scope() as s:
        exp = repo.create_experiment(s, ExperimentSpec.model_validate({**TINY, **spec}))
        repo.update_experiment(s, exp.id, status=status)
        model_artifacts.store(s, exp.id, export, max_bytes, "training diverged")
        return exp.id


def png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_unknown_and_unfinished_runs(client: TestClient):
    for path in ("model.keras", "evaluation", "confusion.png", "mistakes.png"):
        r = client.get(f"/experiments/999/{path}")
        assert r.status_code == 404 and "999" in r.json()["detail"]
    assert (
        client.post("/experiments/999/predict", json={"images": images(1).tolist()}).status_code
        == 404
    )
    queued = client.post("/experiments", json=TINY).json()["id"]
    for path in ("model.keras", "evaluation", "confusion.png", "mistakes.png"):
        r = client.get(f"/experiments/{queued}/{path}")
        assert r.status_code == 409 and "queued" in r.json()["detail"], r.text
    r = client.post(f"/experiments/{queued}/predict", json={"images": images(1).tolist()})
    assert r.status_code == 409 and "no trained model yet" in r.json()["detail"]
    body = client.get(f"/experiments/{queued}").json()
    assert body["model"] is None and body["evaluation"] is None
    assert body["links"]["model"] == f"/experiments/{queued}/model.keras"


def test_model_download_evaluation_and_figures(client: TestClient):
    export = make_export(small_net(), holdout=True, restored=True)
    run = stored_run(export, validation={"holdout": 100})
    r = client.get(f"/experiments/{run}/model.keras")
    assert r.status_code == 200 and r.content == KERAS
    assert r.headers["content-disposition"] == f'attachment; filename="labq-{run}.keras"'
    body = client.get(f"/experiments/{run}").json()
    assert body["model"] == {
        "weights": "best",
        "best_epoch": 2,
        "bytes": len(KERAS),
        "stored": True,
        "predict": True,
        "note": None,
    }
    ev = client.get(f"/experiments/{run}/evaluation").json()
    assert ev == body["evaluation"]
    assert ev["test"]["images"] == 300 and sum(map(sum, ev["test"]["confusion"])) == 300
    assert ev["holdout"]["images"] == 100 and ev["test"]["support"] == [30] * 10
    for query in ({}, {"set": "holdout"}):
        png = client.get(f"/experiments/{run}/confusion.png", params=query)
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.headers["content-type"] == "image/png"
    assert (
        client.get(f"/experiments/{run}/confusion.png", params={"set": "train"}).status_code == 422
    )
    gallery = client.get(f"/experiments/{run}/mistakes.png", params={"n": 5})
    assert gallery.status_code == 200 and gallery.content[:4] == b"\x89PNG"
    for n in (0, evaluation.MISTAKES + 1):
        assert client.get(f"/experiments/{run}/mistakes.png", params={"n": n}).status_code == 422


def test_a_run_named_like_mathtext_draws_as_plain_text(client: TestClient):
    run = stored_run(make_export(small_net()), name="$\\frac{1}{0$ ^_^ $$")
    assert client.get(f"/experiments/{run}/confusion.png").status_code == 200
    assert client.get(f"/experiments/{run}/mistakes.png").status_code == 200


def test_hold_out_confusion_of_a_run_validated_on_the_test_set_is_409(client: TestClient):
    run = stored_run(make_export(small_net()))
    r = client.get(f"/experiments/{run}/confusion.png", params={"set": "holdout"})
    assert r.status_code == 409 and "hold-out" in r.json()["detail"]
    assert client.get(f"/experiments/{run}").json()["model"]["weights"] == "final"


def test_over_the_size_cap_nothing_is_stored_and_the_run_says_why(client: TestClient):
    net = small_net()
    export = make_export(net)
    cap = len(KERAS) - 1  # model.keras over, the dense weights under (they are larger here)
    assert len(export.weights) > cap  # so both are over: nothing to download, nothing to predict
    run = stored_run(export, max_bytes=cap)
    info = client.get(f"/experiments/{run}").json()["model"]
    assert info["stored"] is False and info["predict"] is False
    assert "LABQ_MAX_MODEL_BYTES" in info["note"] and str(len(KERAS)) in info["note"]
    r = client.get(f"/experiments/{run}/model.keras")
    assert r.status_code == 409 and "LABQ_MAX_MODEL_BYTES" in r.json()["detail"]
    r = client.post(f"/experiments/{run}/predict", json={"images": images(1).tolist()})
    assert r.status_code == 409 and "LABQ_MAX_MODEL_BYTES" in r.json()["detail"]
    # The evaluation is kept whatever the model's size.
    assert client.get(f"/experiments/{run}/evaluation").status_code == 200
    big = ModelExport(**{**export.__dict__, "keras": KERAS * 100})
    run = stored_run(big, max_bytes=len(export.weights))
    info = client.get(f"/experiments/{run}").json()["model"]
    assert info["stored"] is False and info["predict"] is True
    assert client.get(f"/experiments/{run}/model.keras").status_code == 409
    assert (
        client.post(f"/experiments/{run}/predict", json={"images": images(1).tolist()}).status_code
        == 200
    )


def test_a_diverged_run_keeps_no_model_and_says_so(client: TestClient):
    run = stored_run(None)
    body = client.get(f"/experiments/{run}").json()
    assert body["model"]["stored"] is False and "training diverged" in body["model"]["note"]
    r = client.get(f"/experiments/{run}/model.keras")
    assert r.status_code == 409 and "training diverged" in r.json()["detail"]
    assert client.get(f"/experiments/{run}/evaluation").status_code == 409


def test_predict_arrays_is_the_numpy_forward_pass(client: TestClient):
    net = small_net()
    run = stored_run(make_export(net))
    x = images(256, seed=5)
    x[0] = 0  # all black
    x[1] = 255.0  # all white
    body = x.tolist()
    body[2][3][4] = 12.5  # a fraction is a grey level too
    r = client.post(f"/experiments/{run}/predict", json={"images": body})
    assert r.status_code == 200, r.text
    out = r.json()
    expected = net.probabilities(np.asarray(body, dtype=np.float64))
    got = np.asarray([p["probabilities"] for p in out["predictions"]])
    assert np.abs(got - expected).max() < 1e-12
    assert [p["digit"] for p in out["predictions"]] == expected.argmax(axis=1).tolist()
    assert out["weights"] == "final" and out["input"] is None and out["experiment_id"] == run


def test_predict_png_of_any_size_in_mnists_form(client: TestClient):
    net = small_net()
    run = stored_run(make_export(net))
    page = Image.new("RGB", (600, 400), "white")  # dark ink on light paper, off-centre
    ImageDraw.Draw(page).line([(420, 60), (440, 300)], fill=(20, 20, 60), width=24)
    r = client.post(f"/experiments/{run}/predict", json={"png": png_b64(page)})
    assert r.status_code == 200, r.text
    out = r.json()
    seen = np.asarray(out["input"])
    assert seen.shape == (28, 28) and seen.max() == 255 and seen[0].max() == 0  # light on dark
    rows = np.flatnonzero(seen.max(axis=1) > 50)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21)  # the long side fills the 20-pixel box
    expected = net.probabilities(seen[np.newaxis])[0]
    assert np.abs(np.asarray(out["predictions"][0]["probabilities"]) - expected).max() < 1e-12
    data_url = "data:image/png;base64," + png_b64(page)
    again = client.post(f"/experiments/{run}/predict", json={"png": data_url}).json()
    assert again["input"] == out["input"]


def _png_too_large() -> str:
    return png_b64(Image.new("L", (3000, 3000), 255))


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({}, "body", "either images"),
        ({"images": images(1).tolist(), "png": "x"}, "body", "not both"),
        ({"images": []}, "images", "at least 1"),
        ({"images": images(257).tolist()}, "images", "at most 256"),
        ({"images": [images(1)[0].tolist()[:27]]}, "images.0", "27 rows"),
        ({"images": [images(1)[0].tolist(), [[0] * 27] * 28]}, "images.1", "row 0 is 27 values"),
        ({"images": [[[0] * 28] * 27 + [[0] * 27 + [300]]]}, "images.0", "row 27, column 27: 300"),
        (
            {"images": [[[0] * 28] * 5 + [[-1] + [0] * 27] + [[0] * 28] * 22]},
            "images.0",
            "row 5, column 0",
        ),
        ({"images": [[[0] * 28] * 27 + [["7"] + [0] * 27]]}, "images.0", "'7' is not a number"),
        ({"images": [[[0] * 28] * 27 + [[True] + [0] * 27]]}, "images.0", "True is not a number"),
        ({"images": [[[0] * 28] * 27 + [None]]}, "images.0", "row 27 is NoneType"),
        ({"images": [5]}, "images.0", "is int"),
        ({"images": 5}, "images", "valid list"),
        ({"png": "not base64!"}, "png", "not base64"),
        ({"png": base64.b64encode(b"GIF89a not a png").decode()}, "png", "not a PNG"),
        ({"png": png_b64(Image.new("L", (64, 64), 240))}, "png", "shows no digit"),
        ({"png": "data:image/png;base64," + _png_too_large()}, "png", "more than the"),
        ({"images": images(1).tolist(), "extra": 1}, "extra", "not permitted"),
    ],
)
def test_bad_images_are_422_naming_the_problem(client, body, field, words):
    run = stored_run(make_export(small_net()))
    r = client.post(f"/experiments/{run}/predict", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()
    assert any(d["field"] == field for d in detail["detail"]), detail
    assert words in detail["message"], detail["message"]


def test_predict_png_bounds_come_from_settings(make_client):
    client = make_client(LABQ_MAX_PREDICT_PIXELS="10000", LABQ_MAX_PREDICT_IMAGES="2")
    run = stored_run(make_export(small_net()))
    r = client.post(f"/experiments/{run}/predict", json={"images": images(3).tolist()})
    assert r.status_code == 422 and "at most 2 images" in r.json()["message"]
    page = Image.new("L", (101, 100), 255)
    r = client.post(f"/experiments/{run}/predict", json={"png": png_b64(page)})
    assert r.status_code == 422 and "101x100 pixels, more than the 10000" in r.json()["message"]


def test_predict_reads_weights_written_again(client: TestClient):
    """The API keeps recent weights in memory; weights written again (a retried run) are read
    afresh, never answered from the old ones."""
    run = stored_run(make_export(small_net(0)))
    x = {"images": images(4).tolist()}
    first = client.post(f"/experiments/{run}/predict", json=x).json()
    with session_scope() as s:
        repo.update_experiment(s, run, status="failed")
        assert repo.retry(s, run)
    assert client.post(f"/experiments/{run}/predict", json=x).status_code == 409
    with session_scope() as s:
        repo.update_experiment(s, run, status=SUCCEEDED)
        model_artifacts.store(s, run, make_export(small_net(1)), 10**9)
    second = client.post(f"/experiments/{run}/predict", json=x).json()
    expected = small_net(1).probabilities(np.asarray(x["images"]))
    got = np.asarray([p["probabilities"] for p in second["predictions"]])
    assert np.abs(got - expected).max() < 1e-12 and second != first


def test_retry_clears_the_model_and_its_evaluation(client: TestClient):
    run = stored_run(make_export(small_net()), status="cancelled")
    assert client.post(f"/experiments/{run}/retry", json={}).status_code == 202
    body = client.get(f"/experiments/{run}").json()
    assert body["model"] is None and body["evaluation"] is None
    assert client.get(f"/experiments/{run}/model.keras").status_code == 409


def test_artifacts_are_deleted_with_their_run(client: TestClient):
    """No route deletes a run yet; the schema makes sure that when one does, its model, weights,
    mistakes and epochs go with it (ON DELETE CASCADE, enforced on SQLite too)."""
    keep = stored_run(make_export(small_net()))
    run = stored_run(make_export(small_net()))
    with session_scope() as s:
        s.add(EpochRow(experiment_id=run, epoch=1, attempt=1))
    with session_scope() as s:
        names = set(s.scalars(select(Artifact.name).where(Artifact.experiment_id == run)))
        assert {MODEL, WEIGHTS, "mistakes.npz"} <= names
        s.execute(delete(Experiment).where(Experiment.id == run))
    with session_scope() as s:
        left = s.scalar(
            select(func.count()).select_from(Artifact).where(Artifact.experiment_id == run)
        )
        epochs = s.scalar(
            select(func.count()).select_from(EpochRow).where(EpochRow.experiment_id == run)
        )
        assert left == 0 and epochs == 0
        assert (
            s.scalar(
                select(func.count()).select_from(Artifact).where(Artifact.experiment_id == keep)
            )
            == 3
        )
    assert client.get(f"/experiments/{run}/model.keras").status_code == 404
