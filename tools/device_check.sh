#!/bin/bash
# One pass on a lent many-core machine (the device tool): build, the kernel and engine tests on
# whatever ISA that CPU runs (AVX-512 never runs on the 2-core AVX2 development VM), thread
# scaling, then the benchmarks side by side, most important first, each bounded so the whole pass
# ends within BUDGET seconds. Logs and JSON go to $OUT (at most 8 files come back).
#   bash tools/device_check.sh        (from the repository root; OUT defaults to ./device-out)
#   STEPS="build kernel-tests phases" bash tools/device_check.sh   (only the steps named)
OUT=${OUT:-device-out}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
BUDGET=${BUDGET:-480}
START=$SECONDS
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} JAX_PLATFORMS=cpu
PY=${PY:-python3}

left() { echo $((BUDGET - (SECONDS - START))); }
step() {  # step NAME SECONDS_WANTED COMMAND...: runs it if that much time is left, else says so
    local name=$1 want=$2; shift 2
    if [ -n "$STEPS" ] && [[ " $STEPS " != *" $name "* ]]; then return; fi
    local have; have=$(left)
    if [ "$have" -lt "$want" ]; then echo "== $name: skipped ($have s left, wants $want)" | tee -a "$LOG"; return; fi
    echo "== $name (at $((SECONDS - START)) s)" | tee -a "$LOG"
    timeout "$have" "$@" 2>&1 | tee -a "$LOG" | tail -n 40
    echo "== $name: rc ${PIPESTATUS[0]} after $((SECONDS - START)) s" | tee -a "$LOG"
}

{ lscpu; nproc; free -g; $PY -m pip list 2>/dev/null | grep -i -E "^(numpy|torch|jax|jaxlib|scikit-learn|onnxruntime|cython|pytest|pytest-benchmark|hypothesis|threadpoolctl|dask|distributed) "; } > "$OUT/machine.txt" 2>&1
grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node\(|L2|L3" "$OUT/machine.txt"
grep -o -w -E "avx512f|avx512bw|avx512vl|avx512_bf16|amx_tile" "$OUT/machine.txt" | sort -u | tr '\n' ' '; echo

if [ -d .whl ]; then  # dask and distributed for the search benchmark, carried as wheels
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi

step build 60 $PY setup.py build_ext --inplace -q --parallel 16
$PY -c "import fastnn; fastnn.show_config()" 2>&1 | tee -a "$LOG"

step kernel-tests 60 $PY -m pytest -q -p no:cacheprovider -x tests/test_kernels.py tests/test_engine.py \
    tests/test_online_step.py tests/test_inference.py tests/test_engine_wide.py tests/test_threads.py \
    tests/test_cpus.py tests/test_neural_network.py

step phases 90 bash tools/profile_phases.sh "$OUT" "${PHASE_THREADS:-1,2,4,8,$(nproc)}"

step scaling 60 $PY benchmarks/scaling.py --rounds 3 --json "$OUT/scaling.json" ${SCALING_THREADS:+--threads $SCALING_THREADS}
step scaling-avx2 30 env FASTNN_ARCH=avx2 $PY benchmarks/scaling.py --rounds 3 --no-torch --threads 1,$(nproc)

B="-p no:cacheprovider --benchmark-only -q"
export FASTNN_BENCH_ROUNDS=3
step bench-gemm-infer 60 $PY -m pytest $B benchmarks/test_bench_gemm.py benchmarks/test_bench_inference.py \
    --benchmark-json="$OUT/infer.json"
step bench-train 110 $PY -m pytest $B benchmarks/test_bench_train.py --benchmark-json="$OUT/train.json"
step bench-online 60 $PY -m pytest $B benchmarks/test_bench_online.py --benchmark-json="$OUT/online.json"
step bench-sklearn 60 $PY -m pytest $B benchmarks/test_bench_sklearn.py --benchmark-json="$OUT/sklearn.json"
export FASTNN_BENCH_SEARCH_ROUNDS=2
step bench-dask 60 $PY -m pytest $B benchmarks/test_bench_dask.py --benchmark-json="$OUT/dask.json"
# ratio tables: python benchmarks/report.py $OUT/train.json (here or after fetching the files)
echo "== done after $((SECONDS - START)) s"
