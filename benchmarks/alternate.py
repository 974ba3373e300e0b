"""Peer ratios from alternating rounds: fastnn and its peers timed turn about in one process, so
that a machine whose speed drifts moves both sides of a ratio alike.

    PYTHONPATH=. python benchmarks/alternate.py [--rounds 7] [--cases gemm,inference,epoch,epoch64,threads] [--json out.json]

The pytest benchmarks time each implementation in a run of its own, one after the other. On the
2-core VM the speed changes from one minute to the next, and the lent 16-core Xeons swung 2x
within a minute (one thread of the 1024^3 SGEMM at 65 to 155 GFLOP/s in one sweep): there a peer
timed a minute after fastnn is measured on another machine, in effect. Here every round times
each implementation once, in an order that rotates from round to round (no implementation always
follows the same one). A case reports each implementation's best time and, per peer, the median
over rounds of peer time / fastnn time in the same round: the figure to read a target from.

On 2 cores the switch between libraries itself costs: the threads of the library timed before
may still spin (OpenBLAS's and OpenMP runtimes' do), or this library's may have gone to sleep,
and on the VM, whose idle vCPU is halted, waking them is slow. So each short timing is the best of
three windows, the first absorbing the switch. With one window, on the 2-core VM (2026-11-27),
NumPy's 128x256x128 came out at 0.10x fastnn's time in one run, and PyTorch's 128x784x256 at
3.4x with 0.05 s pauses against 0.8x without; with three, 1.09-1.39x and 1.09-1.16x. `--pause S`
also rests S seconds before each timing (default none).

Cases (each peer skips when its library is absent):
  gemm       fastnn.ops.gemm against NumPy's `@` and torch.matmul at 1024^3 and the six shapes of
             a batch-128 training step (benchmarks/test_bench_gemm.py's), each call allocating C
  inference  predict_proba of 1 MNIST row and of 10,000 rows against NumPy, onnxruntime, PyTorch
             (benchmarks/test_bench_inference.py's models and weights)
  epoch      the batch-128 MNIST epoch (784-256-128-10, Adam) against PyTorch's loop and JAX's
             lax.scan (benchmarks/_baselines.py's trainers)
  epoch64    the same epoch in float64 on the first 20,000 rows (test_bench_train.py's float64
             group) against PyTorch's in float64
  threads    the batch-128 epoch on 20,000 rows, fastnn on all its threads against fastnn on one
             (the ratio is the speed-up of the threads, round by round)
A script, not a pytest benchmark: it times the alternation itself, which pytest-benchmark's
one-benchmark-at-a-time model cannot express.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fastnn  # noqa: E402
from _baselines import JaxScanTrainer, TorchTrainer, he_normal, numpy_proba, onnx_mlp, torch_mlp  # noqa: E402

GEMM_SHAPES = [(1024, 1024, 1024, None), (128, 784, 256, None), (784, 128, 256, "A"), (128, 256, 784, "B"),
               (128, 256, 128, None), (256, 128, 128, "A"), (128, 128, 256, "B")]  # (M, K, N, transposed)


def optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def timer(fn, min_time, windows=3):
    """A function timing `fn`: the mean seconds per call over enough calls to last min_time
    (the count fixed on first use, after a warm-up), so that short calls are not clock noise; the
    best of `windows` such windows, so that the first can absorb the switch from the library timed
    before (its threads still spinning, or this library's own asleep)."""
    reps = []

    def run():
        if not reps:
            fn()
            n, t = 1, 0.0
            while True:
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                t = time.perf_counter() - t0
                if t >= min_time / 4 or n >= 1 << 20:
                    break
                n *= 2
            reps.append(max(1, int(n * min_time / max(t, 1e-9))))
        n, best = reps[0], float("inf")
        for _ in range(windows):  # the first window absorbs the switch from another library
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            best = min(best, (time.perf_counter() - t0) / n)
        return best
    return run


def alternate(impls, rounds, pause):
    """impls: {name: timing function}, fastnn first. Returns {name: [seconds per round]}."""
    names = list(impls)
    times = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if pause:
                time.sleep(pause)
            times[n].append(impls[n]())
    return times


def summarize(case, times, flops=None):
    base = times["fastnn"]
    row = {"case": case, "best": {n: min(t) for n, t in times.items()}}
    row["ratio"] = {n: statistics.median(p / f for p, f in zip(t, base)) for n, t in times.items() if n != "fastnn"}
    if flops:
        row["gflops"] = {n: flops / min(t) / 1e9 for n, t in times.items()}
    return row


def gemm_cases(torch):
    rng = np.random.default_rng(0)
    for m, k, n, t in GEMM_SHAPES:
        A = rng.standard_normal((k, m) if t == "A" else (m, k)).astype(np.float32)
        B = rng.standard_normal((n, k) if t == "B" else (k, n)).astype(np.float32)
        opA, opB = (A.T if t == "A" else A), (B.T if t == "B" else B)
        impls = {"fastnn": lambda A=A, B=B, t=t: fastnn.ops.gemm(A, B, trans_a=t == "A", trans_b=t == "B"),
                 "numpy": lambda a=opA, b=opB: a @ b}
        if torch is not None:
            ta, tb = torch.from_numpy(A), torch.from_numpy(B)
            ta, tb = (ta.T if t == "A" else ta), (tb.T if t == "B" else tb)
            impls["torch"] = lambda a=ta, b=tb: torch.matmul(a, b)
        name = f"gemm-{m}x{k}x{n}" + (f"-t{t}" if t else "")
        yield name, impls, 2.0 * m * k * n


def inference_cases(torch, Xt):
    W, b = he_normal(seed=0)
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(), loss="cross_entropy").build(784)
    model.set_weights([a for pair in zip(W, b) for a in pair])
    onnx, ort = optional("onnx"), optional("onnxruntime")
    session = (ort.InferenceSession(onnx_mlp(onnx, (W, b)), providers=["CPUExecutionProvider"])
               if onnx is not None and ort is not None else None)
    tmodel = torch_mlp(torch, weights=(W, b)).eval() if torch is not None else None
    for name, X in (("inference-1-row", np.ascontiguousarray(Xt[:1])),
                    ("inference-10k-rows", np.ascontiguousarray(Xt[:10_000]))):
        impls = {"fastnn": lambda X=X: model.predict_proba(X), "numpy": lambda X=X: numpy_proba(W, b, X)}
        if session is not None:
            impls["onnxruntime"] = lambda X=X: session.run(None, {"x": X})[0]
        if tmodel is not None:
            tX = torch.from_numpy(X)

            def tpredict(tX=tX):
                with torch.no_grad():
                    return tmodel(tX).softmax(1)
            impls["torch"] = tpredict
        want = numpy_proba(W, b, X.astype(np.float64))
        for f in impls.values():  # every implementation answers the same
            np.testing.assert_allclose(np.asarray(f(), np.float64), want, rtol=1e-4, atol=1e-5)
        yield name, impls, None


def epoch_cases(torch, jax, X, y):
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy").build(784)
    impls = {"fastnn": lambda: model.fit(X, y, epochs=1, batch_size=128, verbose=0)}
    if torch is not None:
        tt = TorchTrainer(torch, X, y)
        impls["torch"] = lambda: tt.epoch(128)
    if jax is not None:
        jt = JaxScanTrainer(jax, X, y, 128)
        impls["jax-scan"] = jt.epoch
    yield "epoch-batch-128", impls, None


F64_ROWS = THREAD_ROWS = 20000


def _mnist_mlp(dtype="float32"):
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0, dtype=dtype)
    return model.compile(fastnn.Adam(lr=1e-3), loss="cross_entropy").build(784)


def epoch64_cases(torch, X, y):
    X, y = X[:F64_ROWS].astype(np.float64), y[:F64_ROWS]
    model = _mnist_mlp("float64")
    impls = {"fastnn": lambda: model.fit(X, y, epochs=1, batch_size=128, verbose=0)}
    if torch is not None:
        tt = TorchTrainer(torch, X, y)
        tt.model = tt.model.double()
        tt.opt = torch.optim.Adam(tt.model.parameters(), lr=1e-3)
        impls["torch"] = lambda: tt.epoch(128)
    yield "epoch64-batch-128", impls, None


def thread_cases(X, y):
    X, y = X[:THREAD_ROWS], y[:THREAD_ROWS]
    many, one = _mnist_mlp(), _mnist_mlp()

    def on_one():
        with fastnn.thread_limit(1):
            one.fit(X, y, epochs=1, batch_size=128, verbose=0)
    impls = {"fastnn": lambda: many.fit(X, y, epochs=1, batch_size=128, verbose=0), "fastnn-1-thread": on_one}
    yield f"threads-{fastnn.get_num_threads()}-vs-1", impls, None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cases", default="gemm,inference,epoch")
    ap.add_argument("--pause", type=float, default=0.0, help="seconds of rest before each timing")
    ap.add_argument("--min-time", type=float, default=0.02, help="seconds each timing lasts at least")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    cases = set(args.cases.split(","))
    unknown = cases - {"gemm", "inference", "epoch", "epoch64", "threads"}
    if unknown:
        ap.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    torch = optional("torch")
    jax = optional("jax") if "epoch" in cases else None
    if torch is not None:
        torch.set_num_threads(fastnn.get_num_threads())

    groups = []
    if "gemm" in cases:
        groups += list(gemm_cases(torch))
    if cases & {"inference", "epoch", "epoch64", "threads"}:
        from fastnn.datasets import load_mnist
    if "inference" in cases:
        Xt, _ = load_mnist("test")
        groups += list(inference_cases(torch, Xt))
    if cases & {"epoch", "epoch64", "threads"}:
        X, y = load_mnist("train")
    if "epoch" in cases:
        groups += list(epoch_cases(torch, jax, X, y))
    if "epoch64" in cases:
        groups += list(epoch64_cases(torch, X, y))
    if "threads" in cases:
        groups += list(thread_cases(X, y))

    rows = []
    for name, impls, flops in groups:
        if name.startswith(("epoch", "threads")):  # one epoch a timing, after a first one each, untimed
            for f in impls.values():
                f()
            timers = {n: (lambda f=f: _once(f)) for n, f in impls.items()}
        else:
            timers = {n: timer(f, args.min_time) for n, f in impls.items()}
        row = summarize(name, alternate(timers, args.rounds, args.pause), flops)
        rows.append(row)
        peers = "  ".join(f"{n} {r:.2f}x" for n, r in row["ratio"].items())
        rate = f"  ({row['gflops']['fastnn']:.1f} GFLOP/s)" if flops else ""
        print(f"{name:24s} fastnn {_fmt(row['best']['fastnn'])}{rate}  peer/fastnn, median of rounds: {peers}",
              flush=True)
    cfg = fastnn.show_config(print_fn=None)
    print(f"\n{args.rounds} rounds; fastnn {cfg['fastnn']}, {cfg['gemm kernel']} kernel, {fastnn.get_num_threads()} "
          f"threads; torch {getattr(torch, '__version__', 'absent')}; jax {getattr(jax, '__version__', 'absent')}; "
          f"numpy {np.__version__}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def _once(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def _fmt(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


if __name__ == "__main__":
    main()
