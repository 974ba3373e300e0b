"""The wheel carries no data set and stays under 3 MB (the MNIST files live in data/mnist, outside
the package; the sdist keeps them for its tests).

Building the real wheel compiles the extension (minutes), so the test builds the pure-Python
wheel (FASTNN_NO_EXT=1: the same packages and package data, no compiler) from a copy of the
checkout, and adds the deflated size of the compiled extension this suite runs on."""
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from fastnn.datasets import _paths

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 3 * 1024 * 1024


def _can_build_wheels():
    if importlib.util.find_spec("setuptools") is None or importlib.util.find_spec("pip") is None:
        return False
    from importlib.metadata import version  # not `import setuptools`: it fights an imported distutils
    try:
        major, minor = (int(x) for x in version("setuptools").split(".")[:2])
    except Exception:
        return False
    if (major, minor) < (64, 0):  # pyproject.toml's build requirement (setup.py imports setuptools.errors)
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.skipif(not _paths.is_checkout(ROOT), reason="the tests do not sit in a fastnn source tree")
@pytest.mark.skipif(not _can_build_wheels(), reason="needs setuptools and wheel to build offline")
def test_the_wheel_carries_no_dataset_and_is_under_3_mb(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", "*.pyd", ".pytest_cache",
        ".benchmarks"))
    assert (src / "data" / "mnist").is_dir() or not (ROOT / "data" / "mnist").is_dir()
    env = dict(os.environ, FASTNN_NO_EXT="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], cwd=src, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    wheel, = (tmp_path / "dist").glob("fastnn-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    data = [n for n in names if n.endswith((".gz", ".idx")) or "ubyte" in n or "/mnist/" in n]
    assert data == []
    assert "fastnn/datasets/__init__.py" in names and "fastnn/plots.py" in names
    try:
        from fastnn._engine import _ext
        ext = zlib.compress(Path(_ext.__file__).read_bytes(), 6)
    except ImportError:
        ext = b""
    assert wheel.stat().st_size + len(ext) < LIMIT, (wheel.stat().st_size, len(ext))
