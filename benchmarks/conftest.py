"""fastnn's benchmarks against NumPy, PyTorch, JAX and scikit-learn, side by side in one run.

    PYTHONPATH=. python -m pytest benchmarks --benchmark-only -q

At the end a table gives, for every benchmark group, each entry's time over fastnn's from this same
run ("fastnn is 3.2x faster than torch"), with test accuracy (training) or GFLOP/s (GEMM). PyTorch,
JAX and scikit-learn are optional: the tests that need one skip when it is not installed.
FASTNN_BENCH_ROUNDS (default 2) and FASTNN_BENCH_WARMUP (default 1) set the timed and warm-up
epochs of the training benchmarks (whole fits, and small warm-up fits, in test_bench_sklearn.py);
raise them on a quiet machine for steadier numbers. Speed targets, where a benchmark has one,
are reported in the table ("met" / "MISSED"), never asserted.
"""
import collections
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the helpers beside this file (_baselines), whatever pytest's import mode
    sys.path.insert(0, HERE)

Rounds = collections.namedtuple("Rounds", "rounds warmup")
MNIST = collections.namedtuple("MNIST", "X y Xt yt")


def _env_int(name, default, minimum):
    value = int(os.environ.get(name, default))
    if value < minimum:
        raise pytest.UsageError(f"{name} must be >= {minimum}, got {value}")
    return value


@pytest.fixture(scope="session")
def epoch_rounds():
    """(rounds, warmup) for the one-epoch training benchmarks."""
    return Rounds(_env_int("FASTNN_BENCH_ROUNDS", 2, 1), _env_int("FASTNN_BENCH_WARMUP", 1, 0))


@pytest.fixture(scope="session")
def mnist():
    """MNIST, by fastnn.datasets.load_mnist (the repository's data/mnist when run from the clone):
    X (60000, 784) float32 in [0, 1], y int64; Xt, yt the test set."""
    from fastnn.datasets import load_mnist
    X, y = load_mnist("train")
    Xt, yt = load_mnist("test")
    return MNIST(X, y, Xt, yt)


class _NoBenchmarkPlugin:
    """Stands in for pytest-benchmark when it is not installed (or -p no:benchmark): every
    benchmark skips instead of erroring on a missing fixture."""

    @pytest.fixture
    def benchmark(self):
        pytest.skip("pytest-benchmark is not installed or not enabled")


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        config.addinivalue_line("markers", "benchmark(**options): pytest-benchmark's options")
        config.pluginmanager.register(_NoBenchmarkPlugin(), "fastnn-no-benchmark")


# -- optional libraries: a test that asks for one of these fixtures skips when it is missing --------
@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="session")
def jax():
    return pytest.importorskip("jax")


@pytest.fixture(scope="session")
def sklearn_mlp():
    """sklearn.neural_network (MLPClassifier)."""
    return pytest.importorskip("sklearn.neural_network")


# -- the ratio table ---------------------------------------------------------------------------
def _fmt_time(s):
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3f} {unit}"
    return f"{s * 1e9:.1f} ns"


def _ratio(other, ref):
    """How fastnn compares with `other` (times)."""
    r = other / ref
    return f"{r:.2f}x faster" if r >= 1 else f"{1 / r:.2f}x slower"


def _notes(bench):
    info, out = bench.extra_info, []
    if "test_acc" in info:
        out.append(f"acc {info['test_acc']:.4f}")
    if "flops" in info:
        out.append(f"{info['flops'] / bench.stats.min / 1e9:.1f} GFLOP/s")
    if "engine_s" in info:
        out.append(f"engine call {info['engine_s']:.3f} s")
    if "bar_share" in info:
        out.append(f"the bar's own work: {100 * info['bar_share']:.3f} % of the epoch, {info['redraws']} writes")
    if info.get("note"):
        out.append(str(info["note"]))
    if "target_speedup" in info:  # a goal, reported and never asserted (test_bench_sklearn.py)
        out.append(f"target: >= {info['target_speedup']:g}x faster than {info['target_peer']}, "
                   f"{'met' if info['target_met'] else 'MISSED'} ({info['speedup']:.2f}x on min)")
    for t in info.get("targets", ()):  # several peers' goals (test_bench_online.py)
        out.append(f"target: >= {t['target']:g}x faster than {t['peer']}, "
                   f"{'met' if t['met'] else 'MISSED'} ({t['speedup']:.2f}x on min)")
    return "; ".join(out)


def ratio_rows(benchmarks):
    """{group: [row, ...]} from pytest-benchmark's Metadata objects, each row a tuple of strings
    (impl, min, median, rounds, fastnn vs it on min, on median, notes), fastest first."""
    groups = {}
    for b in benchmarks:
        groups.setdefault(b.group or "(no group)", []).append(b)
    order = ("mnist", "online", "sklearn", "gemm", "inference")  # training first, then the kernels, then inference
    rank = {g: (next((i for i, p in enumerate(order) if g.startswith(p)), len(order)), n)
            for n, g in enumerate(groups)}
    table = {}
    for group, benches in sorted(groups.items(), key=lambda kv: rank[kv[0]]):
        benches.sort(key=lambda b: b.stats.min)
        # the reference: the entry marked so (a group of fastnn runs only), else fastnn's
        ref = next((b for b in benches if b.extra_info.get("reference")), None) or \
            next((b for b in benches if b.extra_info.get("impl") == "fastnn"), None)
        rows = []
        for b in benches:
            if ref is None:
                on_min = on_median = "-"
            elif b is ref:
                on_min = on_median = "(reference)"
            else:
                on_min, on_median = _ratio(b.stats.min, ref.stats.min), _ratio(b.stats.median, ref.stats.median)
            rows.append((b.extra_info.get("impl", b.name), _fmt_time(b.stats.min), _fmt_time(b.stats.median),
                         str(len(b.stats.data)), on_min, on_median, _notes(b)))
        table[group] = rows
    return table


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None:  # pytest-benchmark is not installed
        return
    tr = terminalreporter
    if session.disabled or session.skip:
        tr.write_line("fastnn ratios: benchmarks were disabled or skipped in this run; nothing to compare.")
        return
    table = ratio_rows([b for b in session.benchmarks if b and not b.has_error])
    if not table:
        return
    tr.write_sep("=", "fastnn against the others, all from this run")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    tr.write_line(f"'fastnn is Nx faster' = other's time / fastnn's time, on the min and on the median over "
                  f"rounds. Load average at the end: {load} on {os.cpu_count()} CPUs.")
    head = ("", "min", "median", "rounds", "fastnn (min)", "fastnn (median)", "")
    for group, rows in table.items():
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(6)]
        tr.write_line("")
        ref = next((r[0] for r in rows if r[4] == "(reference)"), None)
        note = "  (no fastnn entry in this group: no ratios)" if ref is None else \
            "" if ref == "fastnn" else f"  (reference: {ref}; 'fastnn' in the columns means it)"
        tr.write_line(group + note, bold=True)
        tr.write_line("  " + "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(head, widths))))
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:6], widths[1:])]
            tr.write_line("  " + "  ".join(cells) + "  " + r[6])


PEERS = ("numpy", "torch", "onnxruntime", "onnx", "jax", "jaxlib", "scikit-learn", "threadpoolctl")


def cpu_model():
    """The CPU's model name (and family/model numbers) from /proc/cpuinfo, or the platform's word."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model "
                f"{fields.get('model', '?')}), {os.cpu_count()} CPUs")
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"


def library_versions():
    """{distribution: version} of the peers that are installed (read from their metadata: nothing
    is imported)."""
    from importlib import metadata
    out = {}
    for name in PEERS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def pytest_benchmark_update_machine_info(config, machine_info):
    """What benchmarks/report.py prints above its table, stored in the JSON's machine_info (written
    when the run ends, so the load average is the end's: a busy machine explains a lot)."""
    import datetime
    info = {"cpu_model": cpu_model(), "libraries": library_versions(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    try:
        import fastnn
        from _baselines import blas_info, describe_blas
        info["fastnn_config"] = fastnn.show_config(print_fn=None)
        info["numpy_blas"] = describe_blas(blas_info())
    except Exception as exc:  # the run must not fail for a missing description
        info["fastnn_config"] = {"error": str(exc)}
    info["env"] = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "FASTNN_ARCH",
                                              "FASTNN_BACKEND", "MKL_NUM_THREADS") if k in os.environ}
    machine_info["fastnn"] = info


def pytest_report_header(config):
    try:
        import fastnn
        from _baselines import blas_info, describe_blas
        cfg = fastnn.show_config(print_fn=None)
        return (f"fastnn: backend {cfg['backend']}, gemm kernel {cfg['gemm kernel']}, openmp {cfg['openmp']}, "
                f"{cfg['threads']} threads; numpy BLAS: {describe_blas(blas_info())}")
    except Exception as exc:  # the header must never break the run
        return f"fastnn: not importable ({exc})"
