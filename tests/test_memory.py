"""Peak memory of a MNIST fit: at most the data plus 50 MB (issue 12). Measured in a child
process on Linux: its peak resident size (VmHWM) is reset to the current one (clear_refs 5) just
before the fit, after the data is loaded and everything imported, and read after it."""
import json
import os
import subprocess
import sys

import pytest

import fastnn

# the fastnn this process imported (the installed one in CI, with its compiled extension)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
LIMIT_MIB = 50

CODE = r"""
import json, sys, numpy as np, fastnn
from fastnn.datasets import load_mnist
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
X, y = load_mnist("train")
m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                       fastnn.Dense(10)], seed=0)
m.compile(fastnn.Adam(1e-3), "cross_entropy")
m.fit(X[:256], y[:256], epochs=1, batch_size=128, verbose=0)  # imports and first-call set-up done
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS")
m.fit(X, y, epochs=1, batch_size=int(sys.argv[1]), verbose=0)
from fastnn import _engine
print(json.dumps({"before": before, "peak": status("VmHWM"), "data": X.nbytes / 2**20,
                  "backend": _engine.current().BACKEND}))
"""


def _clear_refs_works():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _clear_refs_works(),
                    reason="needs Linux's /proc/self/clear_refs to reset the peak")
@pytest.mark.parametrize("batch", [1000, 128])
def test_a_mnist_fit_needs_at_most_50_mb_beyond_its_data(batch, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # from tmp_path: `python -c` puts the working directory first on sys.path, where a source tree
    # without its compiled extension would shadow the installed package (conftest.py has set
    # FASTNN_DATA to the repository's data for the child to inherit)
    out = subprocess.run([sys.executable, "-c", CODE, str(batch)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["data"] > 170  # the whole training set, 179 MiB of float32
    assert got["backend"] == fastnn.get_backend()  # the engine the tests run, compiled where built
    extra = got["peak"] - got["before"]
    assert extra <= LIMIT_MIB, f"the fit took {extra:.1f} MiB beyond the {got['before']:.0f} MiB held before it"
