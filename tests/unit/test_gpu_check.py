"""`make gpu-check`'s two halves, where no GPU is: the device script says "no GPU" and exits 0
without touching anything; the wheelhouse check finds a requirement that would be missing there."""

import os
import subprocess
import sys
import zipfile

from tests.stack import ROOT


def test_gpu_check_without_a_gpu_says_so_and_passes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"  # as on a machine with the driver's tools and no GPU
    fake.write_text("#!/bin/sh\necho 'No devices were found' >&2\nexit 6\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out)}
    env.pop("LABQ_GPU_CHECK_ON_CPU", None)
    r = subprocess.run(
        ["bash", "scripts/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "no GPU\n"
    assert list(out.iterdir()) == []  # nothing installed, nothing measured


def _wheel(folder, name: str, requires: list[str], tag: str = "py3-none-any"):
    path = folder / f"{name}-1.0-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}-1.0.dist-info/METADATA", meta)
    return path


def check(folder) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "scripts/gpu_wheel_check.py", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def test_wheelhouse_check_accepts_carried_and_device_requirements(tmp_path):
    _wheel(tmp_path, "alpha", ["beta>=1", "numpy", 'pywin32; sys_platform == "win32"'])
    _wheel(
        tmp_path, "beta", ["rich[jupyter]; extra == 'notebook'"], "cp310-abi3-manylinux_2_17_x86_64"
    )
    r = check(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 wheels" in r.stdout


def test_wheelhouse_check_finds_what_the_device_lacks(tmp_path):
    _wheel(tmp_path, "alpha", ["gamma-not-there"])
    _wheel(tmp_path, "delta", [], "cp311-cp311-manylinux_2_17_x86_64")
    r = check(tmp_path)
    assert r.returncode == 1
    assert "alpha-1.0-py3-none-any.whl needs gamma-not-there" in r.stderr
    assert "delta-1.0-cp311-cp311" in r.stderr and "not for CPython 3.12" in r.stderr
