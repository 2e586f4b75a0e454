"""Fused trials (worker/engine/fused.py) against the same specs trained alone, in one JAX child
process (tests/fused_child.py): members that differ in seed, learning rate, dropout rate, L2 factor
(0 among them), epochs and callbacks learn what each would alone (the same history within float
tolerance, the same early stop, the same test accuracy), a member cancelled inside its first epoch
stops there, reporting no epoch, while the others train to their own ends, and a member whose
build-time write fails ends alone."""

import json
import os
import subprocess
import sys

import pytest

from tests.stack import ROOT
from worker.engine.data import load_mnist

pytestmark = [pytest.mark.jax]

SHAPE = {"layers": [{"units": 32}, {"type": "dropout", "rate": 0.2}], "batch_size": 64}


def _layers(l2: float, rate: float) -> dict:
    return {"layers": [{"units": 32, "l2": l2}, {"type": "dropout", "rate": rate}]}


SPECS = [
    {**SHAPE, **_layers(0.002, 0.2), "epochs": 3, "train_samples": 3000, "seed": 1},
    {
        **SHAPE,
        **_layers(0.0, 0.1),
        "epochs": 2,
        "train_samples": 3000,
        "seed": 2,
        "optimizer": {"learning_rate": 0.01},
    },
    {
        **SHAPE,
        **_layers(0.0005, 0.4),
        "epochs": 8,
        "train_samples": 3000,
        "seed": 3,
        "optimizer": {"learning_rate": 0.05},
        "early_stopping": {"monitor": "val_loss", "patience": 0},
        "reduce_lr_on_plateau": {"monitor": "val_loss", "patience": 0, "factor": 0.5},
    },
    {**SHAPE, "epochs": 3, "train_samples": 3000, "seed": 4},  # cancelled in the fused run
    {**SHAPE, "epochs": 2, "train_samples": 3000, "seed": 5},  # its build's write fails
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("fused")
    load_mnist(d / "datasets")  # writes the cache the child reads
    out = subprocess.run(
        # member 3's stop check says "stop" at its 2nd ask: after 2 of its first epoch's 3 runs
        [sys.executable, "-m", "tests.fused_child", json.dumps(SPECS), "3:2"],
        cwd=ROOT,
        env={
            **os.environ,
            "LABQ_DATA_DIR": str(d),
            "LABQ_TEST_CHECK_EVERY": "20",
            "LABQ_TEST_FAIL_BUILD": "4",
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize("member", [0, 1, 2])
def test_a_fused_member_learns_what_it_would_alone(trained, member):
    solo, fused = trained["solo"][member], trained["fused"][member]
    assert len(fused["epochs"]) == len(solo["epochs"]) >= 2
    for a, b in zip(solo["epochs"], fused["epochs"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-4)
        assert b["val_accuracy"] == pytest.approx(a["val_accuracy"], abs=1e-3)
        assert b["learning_rate"] == pytest.approx(a["learning_rate"])
        assert b["grad_norms"].keys() == a["grad_norms"].keys()
        for name, norm in a["grad_norms"].items():
            assert b["grad_norms"][name] == pytest.approx(norm, rel=1e-3)
    assert fused["stopped"] == solo["stopped"]
    assert fused["test_accuracy"] == pytest.approx(solo["test_accuracy"], abs=1e-3)
    assert fused["exported"] and fused["layers"] == solo["layers"]


def test_dropout_rates_and_l2_factors_fuse_but_a_rate_of_0_does_not():
    from core.spec import ExperimentSpec
    from worker.engine.fused import fuse_key

    def key(l2: float, rate: float, units: int = 32) -> str:
        layers = [{"units": units, "l2": l2}, {"type": "dropout", "rate": rate}]
        return fuse_key(ExperimentSpec.model_validate({**SHAPE, "layers": layers}))

    assert key(0.0, 0.2) == key(0.01, 0.5) == key(0.001, 0.1)
    assert key(0.0, 0.2) != key(0.0, 0.0)  # Keras gives a layer of rate 0 no seed state
    assert key(0.0, 0.2) != key(0.0, 0.2, units=64)


def test_members_differ_as_their_specs_do(trained):
    finals = [m["epochs"][-1]["val_loss"] for m in trained["fused"][:3]]
    assert len(set(finals)) == 3  # not one model trained three times
    assert trained["fused"][2]["stopped"] == "early_stopping"
    assert len(trained["fused"][2]["epochs"]) < SPECS[2]["epochs"]


def test_a_cancelled_member_stops_inside_its_epoch_and_the_others_go_on(trained):
    cancelled = trained["fused"][3]
    assert cancelled["stopped"] == "cancelled" and cancelled["epochs"] == []
    assert len(trained["solo"][3]["epochs"]) == 3  # alone, it would have trained 3 epochs
    assert trained["order"][0] == 3  # it ended first, in epoch 1
    assert [len(m["epochs"]) for m in trained["fused"][:2]] == [3, 2]


def test_a_member_whose_build_fails_ends_alone(trained):
    assert trained["errors"] == {"4": "RuntimeError: the build's write was refused"}
    assert trained["fused"][4] is None and 4 not in trained["order"]
    assert [m["stopped"] for m in trained["fused"][:3]] == [None, None, "early_stopping"]
