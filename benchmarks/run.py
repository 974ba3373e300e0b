"""Every benchmark file in a Python process of its own, a pause between them, then one report.

    PYTHONPATH=. python benchmarks/run.py [--out DIR] [--rounds N] [--pause S] [FILE ...]

A long run of all the files in one pytest process measured fastnn's online group about 2x slower
after the PyTorch epochs than alone (2-core VM, 2026-11-26: batch 16 770-812 ms against 343-433),
and JAX's too; a script training PyTorch and then fastnn did not. Run by this script, training
file then online file, batch 16 took 388 ms once and 901 ms the next time (the online file alone:
442 ms), so a process of its own does not remove that effect, which seems to be the shared
machine's. What this script does rule out: whatever a library leaves behind in a process
(threads spinning on, memory, the allocator's state) stays in that file's process, and the pause
lets a shared machine's clock and caches settle. Compare within one file's table, and rerun a
group that looks off. The GEMM and inference files
run together, so that the 10,000-row inference is compared with the SGEMM rate of the same run.

Writes DIR/<name>.json per process (pytest-benchmark's JSON; DIR defaults to bench-results) and
prints benchmarks/report.py's table of all of them. FILE: benchmark files to run, each its own
process (default: every benchmarks/test_bench_*.py, GEMM with inference). Other pytest options
after `--` (e.g. `-- -k fastnn`)."""
import argparse
import glob
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOGETHER = ("test_bench_gemm.py", "test_bench_inference.py")  # one process: SGEMM rate and inference


def default_runs():
    """[(name, [file, ...]), ...]: every benchmark file alone, GEMM and inference together."""
    files = sorted(glob.glob(os.path.join(HERE, "test_bench_*.py")))
    together = [f for f in files if os.path.basename(f) in TOGETHER]
    runs = [("gemm_inference", together)] if together else []
    for f in files:
        if f not in together:
            runs.append((os.path.splitext(os.path.basename(f))[0].replace("test_bench_", ""), [f]))
    return runs


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="benchmark files, each in its own process (default: all)")
    ap.add_argument("--out", default="bench-results", help="folder for the JSON files")
    ap.add_argument("--rounds", type=int, help="FASTNN_BENCH_ROUNDS for every process")
    ap.add_argument("--pause", type=float, default=10.0, help="seconds between processes (default 10)")
    args = ap.parse_args(argv)
    runs = [(os.path.splitext(os.path.basename(f))[0].replace("test_bench_", ""), [f]) for f in args.files] \
        if args.files else default_runs()
    if not runs:
        raise SystemExit("no benchmark files found")
    os.makedirs(args.out, exist_ok=True)
    env = dict(os.environ)
    if args.rounds is not None:
        env["FASTNN_BENCH_ROUNDS"] = str(args.rounds)
    written, failed = [], []
    for i, (name, files) in enumerate(runs):
        if i:
            time.sleep(args.pause)
        path = os.path.join(args.out, name + ".json")
        if os.path.exists(path):
            os.remove(path)  # never report an earlier run's file as this one's
        cmd = [sys.executable, "-m", "pytest", *files, "--benchmark-only", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={path}", *extra]
        print(f"== {name}: {' '.join(os.path.relpath(f) for f in files)}", flush=True)
        rc = subprocess.call(cmd, env=env)
        if os.path.exists(path):
            written.append(path)
        if rc not in (0, 5):  # 5: nothing collected (every test deselected)
            failed.append(f"{name} (pytest exit {rc})")
    if written:
        sys.path.insert(0, HERE)
        import report
        report.main(written)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
