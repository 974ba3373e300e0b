"""The default thread count is capped at the CPUs this process may use: its affinity mask and its
cgroup CPU quota (fastnn/_engine/cpus.py reads them; csrc/dispatch.c caps the count), never a
larger OMP_NUM_THREADS. Quotas are read from fake cgroup trees here; the cap itself is checked
in child processes started with OMP_NUM_THREADS=64 and with a one-CPU affinity mask."""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastnn
from fastnn import _engine
from fastnn._engine.cpus import cgroup_cpu_quota, usable_cpus

# the fastnn this process imported (the installed one in CI, with its compiled extension)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
needs_ext = pytest.mark.skipif(_engine._ext is None or not _engine._ext.openmp_enabled(),
                               reason="needs the compiled extension with OpenMP")
needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no affinity masks here")


def tree(tmp_path, cgroup, files):
    """A fake root: proc/self/cgroup with `cgroup`, and {relative path: text} files."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text(cgroup)
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


@pytest.mark.parametrize("cgroup, files, want", [
    ("0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000\n"}, 1.5),
    ("0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n"}, None),
    ("0::/a/b\n", {"sys/fs/cgroup/a/b/cpu.max": "300000 100000\n",
                   "sys/fs/cgroup/a/cpu.max": "50000 100000\n"}, 0.5),   # a parent's smaller quota binds
    ("0::/a/b\n", {"sys/fs/cgroup/a/b/cpu.max": "max 100000\n",
                   "sys/fs/cgroup/cpu.max": "400000 100000\n"}, 4.0),     # a container's own root
    ("0::/gone\n", {}, None),                                                # nothing readable
    ("0::/\n", {"sys/fs/cgroup/cpu.max": "lots\n"}, None),                 # garbage: no quota
    ("0::/\n", {"sys/fs/cgroup/cpu.max": "0 100000\n"}, None),
    ("4:cpu,cpuacct:/k8s/pod\n", {"sys/fs/cgroup/cpu,cpuacct/k8s/pod/cpu.cfs_quota_us": "250000\n",
                                  "sys/fs/cgroup/cpu,cpuacct/k8s/pod/cpu.cfs_period_us": "100000\n"}, 2.5),
    ("4:cpu,cpuacct:/\n", {"sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                           "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("3:cpu:/x\n", {"sys/fs/cgroup/cpu/x/cpu.cfs_quota_us": "100000\n",
                    "sys/fs/cgroup/cpu/x/cpu.cfs_period_us": "100000\n"}, 1.0),
    ("2:memory:/x\n", {"sys/fs/cgroup/memory/x/cpu.cfs_quota_us": "100000\n"}, None),  # not the cpu controller
], ids=["v2-root", "v2-max", "v2-parent", "v2-container-root", "v2-missing", "v2-garbage", "v2-zero",
        "v1-k8s", "v1-unlimited", "v1-cpu-only", "v1-other-controller"])
def test_cgroup_cpu_quota_reads_v1_and_v2(tmp_path, cgroup, files, want):
    got = cgroup_cpu_quota(tree(tmp_path, cgroup, files))
    assert got == (pytest.approx(want) if want is not None else None)


def test_no_proc_file_means_no_quota(tmp_path):
    assert cgroup_cpu_quota(str(tmp_path)) is None


@needs_affinity
@pytest.mark.parametrize("quota, cap", [("150000 100000", 2), ("100000 100000", 1), ("1 100000", 1),
                                        ("max 100000", None), ("6400000 100000", None)])
def test_usable_cpus_is_the_affinity_mask_under_the_quota_rounded_up(tmp_path, quota, cap):
    mask = len(os.sched_getaffinity(0))
    root = tree(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": quota + "\n"})
    assert usable_cpus(root) == (min(mask, cap) if cap else mask)


def _child(code, env=None, affinity=None):
    """Run `code` in a fresh interpreter (the fastnn this process uses); its last stdout line as JSON."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    pre = None
    if affinity is not None:
        pre = lambda: os.sched_setaffinity(0, affinity)  # noqa: E731 (runs in the child, before exec)
    # run from elsewhere: `python -c` puts the working directory first on sys.path, and a source
    # tree there (without its compiled extension) would shadow the installed package
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, preexec_fn=pre, cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


COUNTS = ("import json, fastnn, os; from fastnn import _engine as e; c = fastnn.get_num_threads(); "
          "fastnn.set_num_threads(0); z = fastnn.get_num_threads(); fastnn.set_num_threads(3); "
          "print(json.dumps([c, z, fastnn.get_num_threads(), e._ext.get_cpu_cap(), "
          "fastnn.show_config(print_fn=None)['usable CPUs']]))")


def _expected_cpus():
    mask = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    q = cgroup_cpu_quota()
    return min(mask, math.ceil(q)) if q else mask


@needs_ext
def test_a_larger_omp_num_threads_is_capped_at_the_usable_cpus():
    cpus = _expected_cpus()
    if cpus >= 64:
        pytest.skip("this machine may use 64 CPUs or more")
    default, zero, explicit, cap, shown = _child(COUNTS, env={"OMP_NUM_THREADS": "64"})
    assert default == cpus and zero == cpus and cap == cpus and shown == cpus
    assert explicit == 3  # an explicit count is the caller's choice, up to the workspace bound (64 here)


@needs_ext
def test_a_smaller_omp_num_threads_is_kept():
    default, zero, _, cap, _ = _child(COUNTS, env={"OMP_NUM_THREADS": "1"})
    assert default == 1 and zero == _expected_cpus() and cap == _expected_cpus()


@needs_ext
@needs_affinity
def test_a_one_cpu_affinity_mask_gives_one_thread_and_the_engine_still_trains():
    code = ("import json, numpy as np, fastnn\n"
            "X = np.random.default_rng(0).normal(size=(300, 20)).astype('float32'); y = (X[:, 0] > 0).astype(int)\n"
            "m = fastnn.Sequential([fastnn.Dense(64, activation='relu'), fastnn.Dense(2)], seed=0)\n"
            "m.compile('adam', loss='cross_entropy'); m.fit(X, y, epochs=30, batch_size=32, verbose=0)\n"
            "print(json.dumps([fastnn.get_num_threads(), m.evaluate(X, y)['accuracy']]))")
    cpu = sorted(os.sched_getaffinity(0))[0]
    threads, accuracy = _child(code, env={"OMP_NUM_THREADS": "64"}, affinity={cpu})
    assert threads == 1 and accuracy > 0.9


def test_the_python_backend_has_the_same_calls():
    ref = _engine._BACKENDS["python"]
    ref.set_cpu_cap(4)
    assert ref.get_cpu_cap() == 1 and ref.get_num_threads() == 1
    if "c" in _engine._BACKENDS:
        assert _engine._BACKENDS["c"].get_cpu_cap() >= 1
    assert fastnn.show_config(print_fn=None)["usable CPUs"] >= 1


@pytest.mark.parametrize("bad", [2.7, "3", None])
def test_set_num_threads_takes_an_integer(bad):
    before = fastnn.get_num_threads()
    with pytest.raises(TypeError, match="integer"):
        fastnn.set_num_threads(bad)
    assert fastnn.get_num_threads() == before


@needs_ext
def test_a_huge_count_is_held_to_the_workspace_bound():
    before = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(2**40)
        assert 1 <= fastnn.get_num_threads() <= 256  # fnn_max_threads(): CPUs or OMP_NUM_THREADS, <= 256
        fastnn.set_num_threads(np.int64(1))
        assert fastnn.get_num_threads() == 1
    finally:
        fastnn.set_num_threads(before)
