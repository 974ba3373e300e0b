"""Every command the README shows runs: its Python blocks in order, in one namespace (MNIST cut
to a few thousand rows so the suite stays fast), and every `fastnn ...` line of its shell blocks,
on small example files written here under the names the README uses. Shell lines that install
or run the test suite are CI's own (.ci/run runs the Quick start exactly); the others are listed
in EXEMPT with the test that covers them instead."""
import os
import re
import shlex
import subprocess
import sys
import warnings

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MNIST_ROWS = 3000

# shell lines that are not `fastnn ...` commands, and where they are exercised
EXEMPT = {
    "python3 -m venv": ".ci/run (the Quick start, exactly as written)",
    ".venv/bin/pip install": ".ci/run, or an optional install",
    ".venv/bin/pytest": ".ci/run (tests) and the benchmarks' own run",
    "pytest benchmarks": "the benchmarks' own run",
    "python benchmarks/report.py": "benchmarks/report.py on a benchmark run",
    ".venv/bin/python benchmarks/run.py": "the benchmarks' own run (its plan and report: tests/test_bench_tools.py)",
    "python tools/build_wheels.py": "the release script itself (its --dry-run: tests/test_release.py)",
    "dask ": "a real cluster (tests/test_dask.py runs a LocalCluster)",
    "FASTNN_": "build switches: tests/test_packaging.py and the release script",
    "pip install": "an install line",
}


def blocks(kind):
    """(line number, text) of each ```kind block of the README."""
    out, current, start = [], None, 0
    with open(README, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if current is None and line.rstrip() == "```" + kind:
                current, start = [], i
            elif current is not None and line.rstrip() == "```":
                out.append((start, "".join(current)))
                current = None
            elif current is not None:
                current.append(line)
    return out


def _shell_commands():
    cmds = []
    for start, text in blocks("sh"):
        for j, line in enumerate(text.splitlines()):
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                cmds.append((start + 1 + j, line))
    return cmds


def test_the_readme_has_blocks_to_check():
    assert len(blocks("python")) >= 4 and any(c.startswith("fastnn ") for _, c in _shell_commands())


def test_every_shell_line_is_a_fastnn_command_or_accounted_for():
    for line_no, cmd in _shell_commands():
        if not cmd.startswith("fastnn "):
            assert any(cmd.startswith(p) for p in EXEMPT), f"README line {line_no}: {cmd!r} is not tested"


@pytest.fixture
def example_files(tmp_path):
    """The files the README's command-line examples name."""
    rng = np.random.default_rng(0)

    def iris(n):
        species = rng.integers(0, 3, n)
        X = rng.normal(size=(n, 4)) + species[:, None] * 1.5
        names = np.array(["setosa", "versicolor", "virginica"])[species]
        return X, names

    header = "sepal_length,sepal_width,petal_length,petal_width"
    for name, n in (("iris.csv", 150), ("iris_test.csv", 60)):
        X, s = iris(n)
        rows = [header + ",species"] + [",".join(f"{v:.3f}" for v in x) + f",{c}" for x, c in zip(X, s)]
        (tmp_path / name).write_text("\n".join(rows) + "\n")
    X, _ = iris(10)
    (tmp_path / "new.csv").write_text("\n".join([header] + [",".join(f"{v:.3f}" for v in x) for x in X]) + "\n")
    X = rng.normal(size=(300, 8))
    np.savez(tmp_path / "houses.npz", X=X, y=X @ rng.normal(size=8) + 0.1 * rng.normal(size=300))
    return tmp_path


def test_every_fastnn_command_of_the_readme_runs(example_files):
    pytest.importorskip("matplotlib")  # --plot; the README's test command installs it
    import fastnn  # the commands run the fastnn these tests import (the installed one in CI)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env = dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ran = 0
    for line_no, cmd in _shell_commands():
        if not cmd.startswith("fastnn "):
            continue
        args = shlex.split(cmd)[1:]
        out = subprocess.run([sys.executable, "-m", "fastnn"] + args, cwd=example_files, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"README line {line_no}: {cmd}\n{out.stderr[-3000:]}"
        ran += 1
    assert ran >= 5


def test_the_python_blocks_run_in_order(tmp_path, monkeypatch):
    for extra in ("sklearn", "onnx"):  # fastnn.MLPClassifier, fastnn.to_onnx: no import line names them
        pytest.importorskip(extra)
    import fastnn.datasets
    full = fastnn.datasets.load_mnist

    def small(split="train", *args, **kwargs):
        kwargs.setdefault("limit", MNIST_ROWS)
        return full(split, *args, **kwargs)

    monkeypatch.setattr(fastnn.datasets, "load_mnist", small)
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    ran = 0
    with warnings.catch_warnings(), _LocalClusters() as clusters:
        warnings.simplefilter("ignore")
        for start, text in blocks("python"):
            missing = [m for m in _imports(text) if m != "fastnn" and not _importable(m)]
            if missing:  # e.g. torch: covered by tests/test_torch_interop.py where installed
                continue
            if CLUSTER_ADDRESS in text:  # Scaling out: the same code on a local cluster
                namespace["_readme_cluster"] = clusters.get()
                text = text.replace(f'Client("{CLUSTER_ADDRESS}")', "Client(_readme_cluster)")
                assert CLUSTER_ADDRESS not in text, "a cluster address the test cannot replace"
            try:
                exec(compile(text, f"README.md:{start}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"the README's Python block at line {start} failed: {exc!r}") from exc
            ran += 1
    assert ran >= 4
    if clusters.started:  # the scaling-out blocks did what they say
        assert namespace["search"].best_score_ > 0.5
        assert namespace["inc"].estimator_.n_iter_ > 0 and namespace["X"].numblocks[0] == 10


CLUSTER_ADDRESS = "tcp://A:8786"


class _LocalClusters:
    """A LocalCluster of 2 single-threaded worker processes on 127.0.0.1, started when a block
    first needs one, closed at the end; the process's environment is put back (starting a
    LocalCluster sets OMP_NUM_THREADS=1 in it for the workers to inherit)."""

    def __enter__(self):
        self.started, self._cluster, self._env = False, None, dict(os.environ)
        return self

    def get(self):
        if self._cluster is None:
            import distributed
            self._cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                                     host="127.0.0.1", dashboard_address=None)
            self.started = True
        return self._cluster

    def __exit__(self, *exc):
        try:
            if self._cluster is not None:
                self._cluster.close()
        finally:
            os.environ.clear()
            os.environ.update(self._env)


def _imports(text):
    """The top-level modules a block imports (import a, b.c / from d import e)."""
    import ast
    names = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names += [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module.split(".")[0])
    return names


def test_a_block_importing_a_missing_library_is_recognised():
    assert _imports("import json, math, torch\nfrom safetensors.torch import load_file") == [
        "json", "math", "torch", "safetensors"]


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None
