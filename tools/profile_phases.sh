#!/bin/bash
# The training step's phases (benchmarks/phases.py) from a profiling build (FASTNN_PROFILE=1),
# made in a copy of the tree so the checkout's own build stays a normal one.
#   bash tools/profile_phases.sh OUT_DIR [THREADS]      (from the repository root)
#   VARIANTS="FNN_GEMM_GRID=0 FNN_PAR_MIN=32768" ...   (each a profiling-build switch, one run each)
set -e
OUT=$(mkdir -p "${1:-device-out}" && cd "${1:-device-out}" && pwd)
THREADS=${2:-1,2,4,8,$(nproc)}
PY=${PY:-python3}
COPY=$(mktemp -d /tmp/fastnn-prof.XXXX)
export FASTNN_DATA=${FASTNN_DATA:-$PWD/data}  # the MNIST files the repository carries
cp -r setup.py pyproject.toml README.md fastnn csrc benchmarks "$COPY"/
cd "$COPY"
rm -f fastnn/_engine/*.so
FASTNN_PROFILE=1 $PY setup.py build_ext --inplace -q --force --parallel "$(nproc)" > build.log 2>&1 || { tail -20 build.log; exit 1; }
export PYTHONPATH=$COPY
$PY benchmarks/phases.py --threads "$THREADS" --gemm --json "$OUT/phases128.json"
$PY benchmarks/phases.py --threads "1,${THREADS##*,}" --batch 16 --rows 20000 --gemm --json "$OUT/phases16.json"
# other choices of the team's splits (csrc/gemm.c: grid_mode, par_min), on the most threads
for v in ${VARIANTS-FNN_GEMM_GRID=0 FNN_GEMM_GRID=3}; do
    echo "== $v"
    env "$v" $PY benchmarks/phases.py --threads "${THREADS##*,}" --gemm
done
rm -rf "$COPY"
