#!/usr/bin/env bash
# `make gpu-check`, the half that runs on the machine with the GPU (see `make gpu-check` for the
# command and carry list): it installs the wheelhouse .whl/ (built here by
# scripts/gpu_wheelhouse.sh) into /tmp/site, puts MNIST (.gpu-data/) where labq finds it, checks
# that labq imports without TensorFlow, then with a JAX worker on the GPU: one job through a live
# stack, `labq bench --gpu` for the b128, b10000 and section-12 cases, the pickup latency, and a
# fused sweep against the same trials one by one (`labq bench --fused`).
# Writes gpu-check.md (a markdown table), gpu-check.log and the JSON figures to $OUT (or
# ./gpu-check-out) and prints the table. Without a GPU it prints "no GPU" and exits 0
# (LABQ_GPU_CHECK_ON_CPU=1 runs it anyway, on the CPU, as a rehearsal; LABQ_GPU_CHECK_QUICK=1
# with small cases). Each step prints its name and the seconds since the start; a failed install
# or import ends the run at once, a failed measurement is reported and the rest still runs; the
# exit status is 1 when anything failed.
set -uo pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-check-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
T0=$(date +%s)
step() { echo "+++ [$(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "gpu-check FAILED at: $*"; exit 1; }
FAILED=()
# A measuring step that fails is recorded and the next one still runs; the status says so.
measure() { local name=$1; shift; step "$name"; "$@"; local rc=$?; ((rc == 0)) || { echo "gpu-check: step '$name' failed (status $rc)"; FAILED+=("$name ($rc)"); }; }

if [[ -z ${LABQ_GPU_CHECK_ON_CPU:-} ]]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    echo "no GPU"
    exit 0
  fi
  GPU_FLAG=--gpu
  nvidia-smi -L
else
  GPU_FLAG=
  export CUDA_VISIBLE_DEVICES=-1 JAX_PLATFORMS=cpu
fi

exec > >(tee -a "$OUT/gpu-check.log") 2>&1
step "install .whl/ into /tmp/site"
ls .whl/*.whl >/dev/null 2>&1 || fail "no wheelhouse: run make gpu-check here first and carry .whl"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || fail "pip install of the wheelhouse"
export PYTHONPATH=/tmp/site:$PWD
export LABQ_BACKEND=jax KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false
export LABQ_DATA_DIR=/tmp/labq-gpu-data
# MNIST: labq's cache for the stack below; the Keras cache file for the bench's own stacks.
mkdir -p "$LABQ_DATA_DIR/datasets" ~/.keras/datasets
[[ -f .gpu-data/mnist-uint8.npz ]] || fail "no .gpu-data/mnist-uint8.npz: carry .gpu-data"
cp .gpu-data/mnist-uint8.npz "$LABQ_DATA_DIR/datasets/mnist-uint8.npz"
cp .gpu-data/mnist-uint8.npz ~/.keras/datasets/mnist.npz

step "versions"
$PY - <<'PY' || fail "versions"
import sys, jax, keras, numpy
print(sys.version.split()[0], "jax", jax.__version__, "keras", keras.__version__, "numpy", numpy.__version__)
print("devices:", jax.devices())
PY

step "labq imports without TensorFlow (API, worker, CLI, engine)"
$PY - <<'PY' || fail "imports"
import importlib, sys
class NoTF:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError("tensorflow must not be needed")
sys.meta_path.insert(0, NoTF())
for m in ["api.main", "worker.tasks", "worker.job", "cli.main", "bench.service", "bench.training",
          "worker.engine.train", "worker.engine.steps_jax", "db.repo", "lab.presets"]:
    importlib.import_module(m)
    print("ok", m)
from worker.engine.data import load_mnist
from core.settings import get_settings
d = load_mnist(get_settings().data_dir / "datasets")
print("MNIST", d.x_train.shape, d.x_test.shape)
PY

measure "a live stack with a JAX worker: one job (784-300-10, batch 128, 5 epochs)" \
  timeout 150 $PY scripts/gpu_stack_job.py "$OUT/stack-job.json"

CASES=${LABQ_GPU_CHECK_CASES:-b128,b10000,lab12}
QUICK=${LABQ_GPU_CHECK_QUICK:+--quick}  # a rehearsal on a CPU: the same cases on little data
measure "labq bench $GPU_FLAG --backend jax --cases $CASES $QUICK" \
  timeout 180 $PY -m cli.main bench $GPU_FLAG $QUICK --backend jax --cases "$CASES" \
  --json "$OUT/bench-train.json"

measure "labq bench --service: pickup latency through a stack with a JAX worker" \
  timeout 120 $PY -m cli.main bench --service --clients 0 --jobs 0 --pickups 10 \
  --json "$OUT/bench-service.json"

measure "labq bench --fused: 8 trials one by one and as one fused sweep, JAX worker" \
  timeout 200 $PY -m cli.main bench --fused --backend jax $GPU_FLAG --pairs 2 \
  --json "$OUT/bench-fused.json"

measure "the table ($OUT/gpu-check.md)" bash -c "$PY scripts/gpu_report.py '$OUT' > '$OUT/gpu-check.md'"
cat "$OUT/gpu-check.md"
step "done"
if ((${#FAILED[@]})); then
  echo "gpu-check FAILED: ${FAILED[*]}"
  exit 1
fi
echo "gpu-check passed"
