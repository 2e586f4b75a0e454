"""Predicting, drawing the confusion matrix and the mistakes, and serving model.keras import
neither TensorFlow nor the worker in the API process (the rule of test_import_rule.py, here for
the routes that use a trained model). Checked in a fresh interpreter after serving them."""

import subprocess
import sys
from pathlib import Path

CODE = """
import base64, io, sys
import numpy as np
from PIL import Image, ImageDraw
from fastapi.testclient import TestClient
from core import evaluation
from core.dense_net import DenseLayer, DenseNet
from core.model_artifacts import ModelExport
from core.spec import ExperimentSpec
from db import model_artifacts, repo
from db.migrate import upgrade
from db.session import session_scope
upgrade()
rng = np.random.default_rng(0)
net = DenseNet((DenseLayer(rng.normal(size=(784, 10)).astype(np.float32),
                           np.zeros(10, np.float32), "softmax"),))
x = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
labels, probs = np.arange(40) % 10, net.probabilities(x)
export = ModelExport(b"keras", net.to_npz(), evaluation.mistakes(x, labels, probs).to_npz(),
                     {"test": evaluation.summary(labels, probs)}, False, None)
with session_scope() as s:
    exp = repo.create_experiment(s, ExperimentSpec())
    repo.update_experiment(s, exp.id, status="succeeded")
    model_artifacts.store(s, exp.id, export, 10**9)
from api.main import app
c = TestClient(app, base_url='http://127.0.0.1')
page = Image.new("L", (200, 200), 255)
ImageDraw.Draw(page).line([(100, 20), (100, 180)], fill=0, width=16)
buf = io.BytesIO(); page.save(buf, format="PNG")
assert c.post("/experiments/1/predict", json={"images": x[:3].tolist()}).status_code == 200
assert c.post("/experiments/1/predict",
              json={"png": base64.b64encode(buf.getvalue()).decode()}).status_code == 200
for path in ("confusion.png", "mistakes.png", "model.keras", "evaluation"):
    assert c.get(f"/experiments/1/{path}").status_code == 200, path
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'worker'))
print(bad)
"""


def test_model_routes_never_import_tensorflow_or_worker(tmp_path):
    env = {"LABQ_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(Path(__file__).parents[2]),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
