"""Shared fixtures. Keep this file small and generic; fixtures of the kernel tests are prefixed
`kernel_`."""
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import fastnn

# The tests read the repository's MNIST (data/mnist) wherever they run from (cibuildwheel runs
# them from elsewhere), never a download; a FASTNN_DATA of the caller's own wins.
_REPO_DATA = Path(__file__).resolve().parents[1] / "data"
if (_REPO_DATA / "mnist").is_dir():
    os.environ.setdefault("FASTNN_DATA", str(_REPO_DATA))

# The Ctrl-C tests send SIGINT to this process and to the processes it starts. A suite started
# in the background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, where
# Python installs no KeyboardInterrupt handler and its children inherit the same: Python's
# handler again, for this process and (as a handled signal is reset at exec) its children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

try:
    from fastnn._engine import _ext
except ImportError:  # pure-Python install: the compiled-only fixtures skip
    _ext = None

_ARCHES = _ext.arch_list() if _ext is not None else ["compiled-backend-missing"]


@pytest.fixture
def kernel_rng():
    """A fresh, fixed-seed generator per test: every test sees the same data on every run."""
    return np.random.default_rng(20240611)


@pytest.fixture(params=["c", "python"])
def backend(request):
    """Run the test under fastnn.set_backend(<param>) (skipped when that backend is not built),
    then restore the backend in use before."""
    if request.param not in fastnn.available_backends():
        pytest.skip(f"backend {request.param!r} is not built")
    before = fastnn.get_backend()
    fastnn.set_backend(request.param)
    yield request.param
    fastnn.set_backend(before)


@pytest.fixture(params=_ARCHES)
def kernel_arch(request):
    """Force one compiled GEMM kernel (each compiled ISA in turn), then restore the one in use."""
    if _ext is None:
        pytest.skip("the compiled backend is not built")
    name = request.param
    if not _ext.arch_available(name):
        pytest.skip(f"the {name} kernels cannot run on this CPU")
    before = _ext.arch_name()
    _ext.set_arch(name)
    yield name
    _ext.set_arch(before)


def outcome_in_thread(call):
    """call() run in another thread, waited for: "accepted", or the RuntimeError's message (a
    model or callback refusing a second user). Tests import it: `from conftest import ...`."""
    seen = []

    def run():
        try:
            call()
            seen.append("accepted")
        except RuntimeError as exc:
            seen.append(str(exc))
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return seen[0]
