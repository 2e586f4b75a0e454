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


def last_line(code: str, tmp_path, **env: str) -> str:
    """Run `code` in a fresh interpreter at the project root; its last printed line."""
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"LABQ_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        cwd=str(__import__("pathlib").Path(__file__).parents[2]),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_api_never_imports_tensorflow_or_worker(tmp_path):
    assert last_line(CODE, tmp_path) == "[]"


TF_WORKER = """
import sys
from types import SimpleNamespace

class NoJax:  # as in the TensorFlow GPU image, which has no JAX
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('jax', 'jaxlib'):
            raise ImportError(name + ' is not installed here')

sys.meta_path.insert(0, NoJax())
from core.settings import get_settings
from worker import fusion
job = SimpleNamespace(settings=get_settings(), resume=None, spec=None)
print(fusion.partners(job, SimpleNamespace(first=True)))
"""


def test_a_tensorflow_worker_never_imports_jax_for_fused_trials(tmp_path):
    """Every job asks whether it has fused partners; on TensorFlow the answer must not need JAX."""
    out = last_line(TF_WORKER, tmp_path, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    assert out == "[]"
