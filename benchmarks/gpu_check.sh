#!/usr/bin/env bash
# The GPU check of the CUDA backend, end to end and unattended (docs/cuda.md):
#   1. builds the Python extension with -DSHAPED_TRANSFORMER_CUDA=ON for this GPU;
#   2. runs tests/test_cuda.py against it: the GPU's normals bit for bit, CPU vs GPU
#      agreement for every method (explicit float32/float64, exact chain, SDE
#      euler / tamed_euler / exact_chain) and the CPU-side tests;
#   3. benchmarks/bench_gpu.py: the attention block against PyTorch CUDA brute force
#      (m = 8, n = 4096 .. 262144, and 1048576 in float32) and the SDE against a
#      batched PyTorch Euler (1e4 .. 1e6 paths, and 1e7 paths as a smoke test),
#      printing one table.
# Needs: an NVIDIA GPU, nvcc, cmake >= 3.24, python3 with numpy, scipy, pytest,
# pybind11 and Eigen (cmeel-eigen or a system Eigen), PyTorch with CUDA for the
# baselines (without it those columns say "-").  No network access.
# Budget: about 8 minutes (build 2-3 min on 16 cores, tests ~1 min, benchmark ~3 min).
# Usage: bash benchmarks/gpu_check.sh [build-dir]    (log: <build-dir>/gpu_check.log)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${1:-build/gpu}
mkdir -p "$BUILD"
LOG=$ROOT/$BUILD/gpu_check.log
exec > >(tee "$LOG") 2>&1
T0=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*"; }
PY=${PYTHON:-python3}

stamp "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || stamp "nvidia-smi not found"
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then stamp "FAIL: nvcc not found"; exit 2; fi
"$NVCC" --version | tail -1
PYBIND=$($PY -c "import pybind11; print(pybind11.get_cmake_dir())" 2>/dev/null) || { stamp "FAIL: pybind11 missing"; exit 2; }
GEN="Unix Makefiles"; command -v ninja >/dev/null && GEN=Ninja
JOBS=$(nproc 2>/dev/null || echo 4)
ARCH=${CUDA_ARCH:-native}

stamp "1. build (CUDA architectures: $ARCH, $JOBS jobs)"
cmake -S . -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DSHAPED_TRANSFORMER_PYTHON=ON \
  -DSHAPED_TRANSFORMER_CUDA=ON -DSHAPED_TRANSFORMER_INSTALL=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCH" \
  -DCMAKE_CUDA_COMPILER="$NVCC" -Dpybind11_DIR="$PYBIND" -DPython_EXECUTABLE="$(command -v $PY)" >/dev/null \
  || { stamp "FAIL: cmake configure"; exit 3; }
cmake --build "$BUILD" -j"$JOBS" --target _core 2>&1 | tail -5
[ "${PIPESTATUS[0]}" -eq 0 ] || { stamp "FAIL: build"; exit 3; }
export SHAPED_TRANSFORMER_BUILD_DIR=$ROOT/$BUILD PYTHONPATH=$ROOT/python
$PY - <<'PYEOF' || { stamp "FAIL: the CUDA backend does not see a GPU"; exit 4; }
from shaped_transformer._core_loader import core
print("module:", core.__file__)
print("cuda_built:", core.cuda_built(), " cuda_available:", core.cuda_available(), core.cuda_reason())
assert core.cuda_available(), core.cuda_reason()
print(core.cuda_device_info())
PYEOF

stamp "2. tests (tests/test_cuda.py)"
timeout 300 $PY -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider -k "not nvcc_compiles"
TESTS=$?
[ $TESTS -eq 0 ] && stamp "tests: PASS" || stamp "tests: FAIL (exit $TESTS)"

stamp "3. benchmark (benchmarks/bench_gpu.py)"
timeout 330 $PY benchmarks/bench_gpu.py ${BENCH_ARGS:-}
BENCH=$?
[ $BENCH -eq 0 ] || stamp "benchmark: FAIL (exit $BENCH)"

stamp "done: tests exit $TESTS, benchmark exit $BENCH; log in $LOG"
[ $TESTS -eq 0 ] && [ $BENCH -eq 0 ]
