"""The `labq` client commands against a live embedded stack, as a user types them."""

import json
import subprocess
import sys

import pytest

from tests.conftest import make_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    s = make_stack("sqlite", tmp_path_factory, None, None).start()
    yield s
    s.stop()


def labq(stack, *args, check=True) -> subprocess.CompletedProcess:
    env = {**stack.env, "LABQ_URL": stack.url, "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_submit_watch_status_ls_cancel(live, tiny, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**tiny, "name": "cli-run"}))
    out = labq(live, "submit", str(spec)).stdout
    exp_id = int(out.split()[1])
    assert "queued" in out

    watched = labq(live, "watch", str(exp_id)).stdout
    assert f"#{exp_id} succeeded: val_accuracy 0." in watched

    status = labq(live, "status", str(exp_id)).stdout
    assert "[784, 32]" in status and "succeeded" in status and "epochs 2/2" in status

    listing = labq(live, "ls", "--name", "cli-run").stdout
    assert "cli-run" in listing and "784-32-10 relu" in listing and "1 of 1" in listing

    # Held in its epoch 2 by the stack's hold hook (tests/conftest.py HELD): running until the
    # cancel stops it, however fast the worker.
    held_id = live.submit({**tiny, "name": "held-in-epoch-2"})
    live.held(held_id)
    assert live.get(held_id)["status"] == "running"
    assert "cancel requested" in labq(live, "cancel", str(held_id)).stdout
    cancelled = live.wait(held_id)
    assert cancelled["status"] == "cancelled" and cancelled["epochs_done"] == 1


def test_bad_input_and_errors_are_reported(live, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layers": [{"units": 0}]}))
    out = labq(live, "submit", str(bad), check=False)
    assert out.returncode == 1 and "layers.0.units" in out.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    assert labq(live, "submit", str(broken), check=False).returncode == 1
    missing = labq(live, "status", "424242", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr
