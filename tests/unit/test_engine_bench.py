"""`labq bench --quick` end to end: both ways of training run for every case and the figures
it prints and writes are complete and plausible (no timing thresholds: speed lives in BENCHMARKS.md)."""

import json
import os
import subprocess
import sys

import pytest

from tests.stack import ROOT

pytestmark = pytest.mark.tf  # trains with TensorFlow in this process

pytest.importorskip("tensorflow")


def test_bench_quick_prints_and_writes_every_case(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "LABQ_DATA_DIR": str(tmp_path / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "speed-up" in proc.stdout and "labq/floor" in proc.stdout
    report = json.loads(out.read_text())
    assert report["matmul_gflops"] > 0 and report["device"] == "CPU"
    assert [r["case"] for r in report["rows"]] == ["b128", "lab12", "b1", "b10000"]
    for r in report["rows"]:
        assert r["notebook_seconds"] > 0 and r["engine_seconds"] > 0
        assert r["speedup"] == pytest.approx(r["notebook_seconds"] / r["engine_seconds"])
        assert 0.1 < r["engine_val_accuracy"] <= 1 and 0.1 < r["notebook_val_accuracy"] <= 1
        assert r["floor_seconds"] > 0 and r["engine_over_floor"] > 0


def test_bench_rejects_unknown_cases(tmp_path):
    env = {**os.environ, "LABQ_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", "--cases", "b7"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "unknown case" in proc.stdout
