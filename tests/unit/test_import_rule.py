"""The API process never imports TensorFlow or the worker package (TF is not fork-safe, and the
API must stay light). Checked in a fresh interpreter after serving real requests."""

import subprocess
import sys

CODE = """
import sys
from fastapi.testclient import TestClient
from db.migrate import upgrade
upgrade()
from api.main import app
c = TestClient(app, base_url='http://127.0.0.1')
c.get('/openapi.json'); c.get('/experiments'); c.post('/experiments', json={'epochs': 0})
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'worker'))
print(bad)
"""


def test_api_never_imports_tensorflow_or_worker(tmp_path):
    env = {"LABQ_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", CODE],
        env=env,
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
