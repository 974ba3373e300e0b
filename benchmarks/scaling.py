"""Thread scaling on a machine with more cores: the batch-128 MNIST epoch (784-256-128-10, Adam,
float32) and a 1024^3 SGEMM at 1, 2, 4, ... threads, up to the CPUs this process may use, with
PyTorch's epoch beside fastnn's at each count when torch is installed.

    PYTHONPATH=. python benchmarks/scaling.py [--rounds 3] [--json out.json]

Each time is the best of `rounds` after one warm-up. Speed-up is against fastnn's own 1-thread
time; the epoch's GFLOP/s count 60.4 GFLOP (forward and weight gradients of all three layers,
input gradients of the upper two). A script, not a pytest benchmark: the thread counts depend on
the machine, and the table is what one reads off it.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastnn  # noqa: E402
from fastnn.datasets import load_mnist  # noqa: E402

EPOCH_GFLOP = 60000 * 2 * (784 * 256 * 2 + (256 * 128 + 128 * 10) * 3) / 1e9


def best(fn, rounds):
    fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def thread_counts():
    top = fastnn.get_num_threads()
    counts, n = [], 1
    while n < top:
        counts.append(n)
        n *= 2
    return counts + [top]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", help="comma-separated thread counts (default 1, 2, 4, ... up to all usable CPUs)")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch's epochs")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    X, y = load_mnist("train")
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy")
    model.build(784)
    rng = np.random.default_rng(0)
    A, B = (rng.standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    try:
        if args.no_torch:
            raise ImportError
        import torch
        from _baselines import TorchTrainer
        trainer = TorchTrainer(torch, X, y)
        torch_threads0 = torch.get_num_threads()
    except ImportError:
        torch = None

    rows = []
    counts = [int(n) for n in args.threads.split(",")] if args.threads else thread_counts()
    for n in counts:
        with fastnn.thread_limit(n):
            epoch = best(lambda: model.fit(X, y, epochs=1, batch_size=128), args.rounds)
            gemm = best(lambda: fastnn.ops.gemm(A, B), max(args.rounds, 5))
        row = {"threads": n, "epoch_s": epoch, "epoch_gflops": EPOCH_GFLOP / epoch,
               "sgemm_1024_gflops": 2 * 1024 ** 3 / gemm / 1e9}
        if torch is not None:
            torch.set_num_threads(n)
            row["torch_epoch_s"] = best(lambda: trainer.epoch(128), args.rounds)
            torch.set_num_threads(torch_threads0)
        rows.append(row)
        print(json.dumps(row), flush=True)

    one = rows[0]["epoch_s"]  # speed-up against the first count asked for
    print(f"\n{'threads':>7} {'epoch s':>8} {'speed-up':>8} {'GFLOP/s':>8} {'% of SGEMM':>10} "
          f"{'SGEMM GFLOP/s':>13} {'torch s':>8} {'torch/fastnn':>12}")
    for r in rows:
        t = r.get("torch_epoch_s")
        print(f"{r['threads']:>7} {r['epoch_s']:>8.3f} {one / r['epoch_s']:>7.2f}x {r['epoch_gflops']:>8.1f} "
              f"{100 * r['epoch_gflops'] / r['sgemm_1024_gflops']:>9.0f}% {r['sgemm_1024_gflops']:>13.1f} "
              + (f"{t:>8.3f} {t / r['epoch_s']:>11.2f}x" if t else f"{'-':>8} {'-':>12}"))
    config = fastnn.show_config(print_fn=None)
    print(f"\nfastnn {config['fastnn']}, {config['gemm kernel']} kernel, {config['usable CPUs']} usable CPUs; "
          f"torch {torch.__version__ if torch else 'absent'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
