"""Release engineering: the version in one place, the release script's cheapest step, the aarch64
compile check (skipped without a cross compiler), and the optional extension (slow: with
FASTNN_SLOW_TESTS=1, builds fastnn into venvs with a compiler that does not exist).

In CI (.ci/run) the slow tests and the aarch64 check skip; `python tools/build_wheels.py` runs all
of it, and more (every wheel, smoke-tested), before a release."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn
from fastnn import _version
from fastnn.datasets import _paths

ROOT = Path(__file__).resolve().parents[1]
in_checkout = pytest.mark.skipif(not _paths.is_checkout(ROOT), reason="the tests do not sit in a fastnn source tree")
slow = pytest.mark.skipif(os.environ.get("FASTNN_SLOW_TESTS") != "1",
                          reason="builds fastnn into venvs (a minute or two): set FASTNN_SLOW_TESTS=1")
BROKEN_CC = "/nonexistent/gcc"
WARNING = "WARNING: fastnn._engine._ext did not compile"


def test_version_is_written_once_and_fastnn_reads_it():
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", _version.__version__)
    assert fastnn.__version__ == _version.__version__


@in_checkout
def test_pyproject_takes_the_version_from_fastnn_version_py():
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project and not re.search(r"^version\s*=", project, re.M)
    assert 'version = { attr = "fastnn._version.__version__" }' in text
    others = [str(p.relative_to(ROOT)) for p in (ROOT / "fastnn").rglob("*.py")
              if p.name != "_version.py" and re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert others == []


@in_checkout
def test_release_script_dry_run_prints_its_plan():
    minor = "{}.{}".format(*sys.version_info[:2])
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "build_wheels.py"), "--dry-run", "--pythons", minor],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"fastnn {fastnn.__version__}, from" in out.stdout
    assert re.search(rf"CPython {re.escape(minor)}: /\S+python", out.stdout)
    assert "baseline: manylinux2014" in out.stdout and "FASTNN_ARCH=ref, avx2, avx512" in out.stdout


@in_checkout
def test_contradictory_build_switches_are_refused():
    env = dict(os.environ, FASTNN_NO_EXT="1", FASTNN_REQUIRE_EXT="1")
    out = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "contradict each other" in out.stderr


@in_checkout
def test_csrc_compiles_warning_free_for_aarch64():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "cross_check.py")], capture_output=True, text=True,
                         timeout=600)
    if out.returncode == 77:
        pytest.skip(out.stdout.strip())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "without OpenMP: " in out.stdout and "no warnings" in out.stdout


# -- the optional extension, built for real (slow) -------------------------------------------------
@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    src = tmp_path_factory.mktemp("fastnn-src")
    shutil.copytree(ROOT, src, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "wheelhouse", "*.egg-info", "__pycache__", "*.so", "*.pyd",
        ".pytest_cache", ".benchmarks"))
    return src


def fresh_venv(path):
    """A venv that sees this interpreter's setuptools and Cython (for --no-build-isolation), not fastnn."""
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(path)], check=True)
    return str(path / "bin" / "python")


def pip_install(python, src, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("FASTNN_")}
    full.update(env, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return subprocess.run([python, "-m", "pip", "install", "-v", "--no-build-isolation", "--no-deps",
                           "--no-cache-dir", str(src)], env=full, capture_output=True, text=True, timeout=900)


def installed_config(python, cwd):
    code = "import fastnn, json; print(json.dumps(fastnn.show_config(print_fn=None)))"
    out = subprocess.run([python, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@in_checkout
@slow
def test_without_a_compiler_the_build_warns_once_and_installs_the_numpy_backend(source_copy, tmp_path):
    pytest.importorskip("Cython")
    python = fresh_venv(tmp_path / "venv")
    out = pip_install(python, source_copy, CC=BROKEN_CC)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (out.stdout + out.stderr).count(WARNING) == 1
    info, stderr = installed_config(python, tmp_path)
    assert info["backend"] == "python" and info["gemm kernel"] == "numpy"
    assert info["compiled extension"].startswith("not available (it was not built")
    assert "the NumPy backend is in use" in info["compiled extension"]
    assert "using the (much slower) NumPy backend" in stderr
    main = subprocess.run([str(tmp_path / "venv" / "bin" / "fastnn"), "--check"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert main.returncode == 0 and "slow NumPy backend" in main.stdout and "NumPy backend in use" in main.stdout


@in_checkout
@slow
def test_require_ext_turns_the_fallback_into_a_failed_build(source_copy, tmp_path):
    pytest.importorskip("Cython")
    python = fresh_venv(tmp_path / "venv")
    out = pip_install(python, source_copy, CC=BROKEN_CC, FASTNN_REQUIRE_EXT="1")
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "FASTNN_REQUIRE_EXT=1 forbids installing fastnn without it" in text and WARNING not in text
    assert subprocess.run([python, "-c", "import fastnn"], cwd=tmp_path, capture_output=True).returncode != 0
