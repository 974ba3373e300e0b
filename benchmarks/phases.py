"""Where an epoch's time goes: the training step's phases (csrc/profile.h), per epoch, at several
thread counts, for the MNIST model of the benchmarks (784-256-128-10, relu, float32), trained with
Adam(1e-3) or, with --optimizer sgd, plain SGD(0.01) as the batch-1 benchmark trains it.

Needs a profiling build, which never ships:

    FASTNN_PROFILE=1 python setup.py build_ext --inplace --force
    PYTHONPATH=. python benchmarks/phases.py [--threads 1,2,16] [--batch 128] [--rounds 2] [--optimizer sgd]
    python setup.py build_ext --inplace --force        # back to the normal build

A profiling build also reads FNN_GEMM_GRID (csrc/gemm.c: 0 no grid of blocks, 1 the shared op(B)
first where both apply), to compare the team's splits of a product in one sitting.

Each phase is wall time on the calling thread, so a teamed phase includes its join: what the step
waits for. The GEMM rows give GFLOP/s per layer; "rest" is everything between the marks (the
learning rate, loop overhead). The last line compares the clocked total with the epoch's wall
time, the cost of clocking itself.
"""
import argparse
import json
import sys
import time

import numpy as np

import fastnn
from fastnn._engine import _ext
from fastnn._engine.codes import PHASES
from fastnn.datasets import load_mnist

SIZES = [784, 256, 128, 10]


def gemm_flop(phase, layer, rows):
    """FLOP of one epoch's GEMMs of this phase and layer."""
    n_in, n_out = SIZES[layer], SIZES[layer + 1]
    if phase == "dX GEMM" and layer == 0:
        return 0
    return 2.0 * rows * n_in * n_out


def gemm_alone(batch, counts):
    """GFLOP/s of each GEMM of a step, called alone: (name, m, n, k, trans_a, trans_b)."""
    shapes = []
    for l in range(3):
        n_in, n_out = SIZES[l], SIZES[l + 1]
        shapes.append((f"forward L{l}", batch, n_out, n_in, False, False))
        shapes.append((f"dW L{l}", n_in, n_out, batch, True, False))
        if l > 0:
            shapes.append((f"dX L{l}", batch, n_in, n_out, False, True))
    shapes.append(("square", 1024, 1024, 1024, False, False))
    rng = np.random.default_rng(0)
    print(f"\nGEMMs alone, GFLOP/s\n{'GEMM':<14}{'m x n x k':>16}" + "".join(f"{str(n) + ' thr':>10}" for n in counts))
    for name, m, n, k, ta, tb in shapes:
        A = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        rates = []
        for c in counts:
            with fastnn.thread_limit(c):
                fastnn.ops.gemm(A, B, trans_a=ta, trans_b=tb)
                best = min(_timed(lambda: fastnn.ops.gemm(A, B, trans_a=ta, trans_b=tb)) for _ in range(20))
            rates.append(2.0 * m * n * k / best / 1e9)
        print(f"{name:<14}{f'{m}x{n}x{k}':>16}" + "".join(f"{r:>10.0f}" for r in rates))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rows", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                    help="Adam(1e-3), or plain SGD(0.01) as the batch-1 benchmark runs it")
    ap.add_argument("--gemm", action="store_true",
                    help="also time each GEMM of the step alone (fastnn.ops.gemm, best of 20)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if _ext.phase_times() is None:
        sys.exit("phases.py needs a profiling build: FASTNN_PROFILE=1 python setup.py build_ext --inplace --force")

    X, y = load_mnist("train")
    X, y = X[:args.rows], y[:args.rows]
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3) if args.optimizer == "adam" else fastnn.SGD(lr=0.01), loss="cross_entropy")
    model.build(784)
    counts = [int(n) for n in args.threads.split(",")]
    table, walls = {}, {}
    for n in counts:
        with fastnn.thread_limit(n):
            model.fit(X, y, epochs=1, batch_size=args.batch)  # warm-up
            _ext.phase_times(reset=True)
            t = time.perf_counter()
            for _ in range(args.rounds):
                model.fit(X, y, epochs=1, batch_size=args.batch)
            walls[n] = (time.perf_counter() - t) / args.rounds
            table[n] = _ext.phase_times(reset=True) / args.rounds

    names = PHASES
    print(f"batch {args.batch}, {args.rows} rows, {args.optimizer}, ms per epoch (best of nothing: mean of {args.rounds})")
    print(f"{'phase':<24}" + "".join(f"{str(n) + ' thr':>10}" for n in counts) + "   GFLOP/s")
    out = []
    for p, name in enumerate(names):
        layers = [l for l in range(8) if any(table[n][p, l] > 0 for n in counts)]
        gemm = name.endswith("GEMM")
        for l in (layers if gemm else [None]):
            vals = [table[n][p, l] if l is not None else table[n][p].sum() for n in counts]
            if max(vals) < 1e-6:
                continue
            label = f"{name} L{l}" if l is not None else name
            rate = ""
            if gemm:
                flop = gemm_flop(name, l, args.rows)
                rate = "  ".join(f"{flop / v / 1e9:7.0f}" for v in vals)
            print(f"{label:<24}" + "".join(f"{1e3 * v:>10.2f}" for v in vals) + "   " + rate)
            out.append({"phase": label, **{str(n): v for n, v in zip(counts, vals)}})
    print(f"{'clocked total':<24}" + "".join(f"{1e3 * table[n].sum():>10.2f}" for n in counts))
    print(f"{'epoch wall':<24}" + "".join(f"{1e3 * walls[n]:>10.2f}" for n in counts))
    if args.gemm:
        gemm_alone(args.batch, counts)
    config = fastnn.show_config(print_fn=None)
    print(f"fastnn {config['fastnn']}, {config['gemm kernel']} kernel, {config['usable CPUs']} usable CPUs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "rows": args.rows, "phases": out,
                       "wall": {str(n): walls[n] for n in counts}}, f, indent=1)


if __name__ == "__main__":
    main()
