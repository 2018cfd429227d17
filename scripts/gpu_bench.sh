#!/usr/bin/env bash
# The prepared device check, one short script (~7 minutes on one H100): the matrix bench on the
# 2-D Laplacian n = 10^6 and 10^7 (k = 10 LA; lanczos, lobpcg, torch.lobpcg; float32 and
# float64) and the top-10 Hessian eigenvalues of a generated ~100M-parameter transformer
# (lanczos, torch.lobpcg), then the CUDA tests. Figures are printed as they come and written
# under $OUT (matrix.csv, hessian.json, env.json, the logs).
#
#   OUT=/tmp/out scripts/gpu_bench.sh            # on the GPU machine
#   scripts/gpu_bench.sh --tiny                   # tiny sizes, ~1-2 min: the end-to-end check (CPU or GPU)
#
# Extra arguments go to scripts/gpu_bench.py (--budget, --cap-lanczos, --cap-peers, --cap-hessian, --model).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/gpu_bench_out}
mkdir -p "$OUT"
export OUT PYTHONPATH=$PWD PYTHONUNBUFFERED=1
# one BLAS thread for the host-side work (as the bench does on the CPU): several threads on a busy
# host made one small in-process LOBPCG run take 290 s instead of 0.6 s
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} \
    MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
if command -v nvidia-smi >/dev/null; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; fi
"$PY" scripts/gpu_bench.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_bench.log"
status=${PIPESTATUS[0]}
# the CUDA tests (they skip cleanly without CUDA)
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_gpu.py 2>&1 | tail -n 40 | tee "$OUT/pytest_gpu.log"
exit "$status"
