"""The backend switch: "c" (the compiled extension fastnn._ext) or "python" (the NumPy oracle
fastnn._reference). Both expose the same functions; everything above this module calls
`current()` and never knows which one runs.

Chosen by fastnn.set_backend(), else the FASTNN_BACKEND environment variable, else "c" when the
extension imports, with one warning and the Python backend when it does not.

FASTNN_ARCH picks the compiled GEMM kernel when the extension loads; csrc/dispatch.c ignores a
value it cannot use, and this module then warns once, saying why (ARCH_PROBLEM keeps the sentence
for show_config)."""
import importlib.util
import numbers
import os
import warnings

import numpy as np

from . import reference as _reference
from .codes import STATUSES

try:
    from . import _ext
    _EXT_ERROR = None
except ImportError as exc:  # not built (pure-Python install) or broken build
    _ext = None
    _EXT_ERROR = exc
    if importlib.util.find_spec(__name__ + "._ext") is None:
        _EXT_ERROR = ImportError("it was not built: no working C compiler at install time, FASTNN_NO_EXT=1, "
                                 "or a source tree without `python setup.py build_ext --inplace`")

_BACKENDS = {"python": _reference}
if _ext is not None:
    _BACKENDS["c"] = _ext
    from .cpus import usable_cpus
    _ext.set_cpu_cap(usable_cpus())  # the default thread count: no more than the CPUs we may use


def _arch_request_problem(want):
    """Why the compiled backend ignored FASTNN_ARCH=want (a sentence), or None when unset or used."""
    if _ext is None or not want:
        return None
    status, used, kernels = _ext.arch_request(), _ext.arch_name(), _ext.arch_list()
    if status == STATUSES["einval"]:
        near = want.strip().lower()
        hint = f" Did you mean {near!r}?" if near in kernels else ""
        return (f"FASTNN_ARCH={want!r} names no GEMM kernel and is ignored: the {used} kernel is used. "
                f"Kernels (names are lower case): {', '.join(kernels)}.{hint}")
    if status == STATUSES["eunsupported"]:
        runnable = [a for a in kernels if _ext.arch_available(a)]
        return (f"FASTNN_ARCH={want!r} is ignored: this CPU cannot run the {want} kernel "
                f"(it runs {', '.join(runnable)}); the {used} kernel is used.")
    return None


ARCH_REQUEST = os.environ.get("FASTNN_ARCH", "")  # read now, as csrc/dispatch.c did when _ext loaded
ARCH_PROBLEM = _arch_request_problem(ARCH_REQUEST)
if ARCH_PROBLEM:
    warnings.warn(ARCH_PROBLEM, RuntimeWarning)

_current = None


def _default():
    name = os.environ.get("FASTNN_BACKEND", "").strip().lower() or "c"
    if name not in ("c", "python"):
        warnings.warn(f"FASTNN_BACKEND={name!r} is not 'c' or 'python'; using the default", RuntimeWarning)
        name = "c"
    if name == "c" and _ext is None:
        warnings.warn(f"fastnn's compiled extension is not available ({_EXT_ERROR}); "
                      "using the (much slower) NumPy backend", RuntimeWarning, stacklevel=3)
        name = "python"
    return _BACKENDS[name]


def current():
    global _current
    if _current is None:
        _current = _default()
    return _current


def set_backend(name):
    """Use the compiled ("c") or the NumPy ("python") implementation from now on."""
    global _current
    if name not in ("c", "python"):
        raise ValueError(f"backend must be 'c' or 'python', not {name!r}")
    if name == "c" and _ext is None:
        raise ImportError(f"the compiled backend is not available: {_EXT_ERROR}")
    _current = _BACKENDS[name]


def get_backend():
    """'c' or 'python'."""
    return current().BACKEND


def available_backends():
    return sorted(_BACKENDS)


class thread_limit:
    """Within the block, the compiled calls made by the calling thread use at most `n` threads
    (None: no cap); other threads and the process-wide count (set_num_threads) are unaffected.
    Blocks nest; leaving one restores the cap it found."""

    def __init__(self, n):
        if n is not None and (isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1):
            raise ValueError(f"a thread limit must be a positive int or None, not {n!r}")
        self.n = n if n is None else min(int(n), 1 << 20)  # any larger cap is none (the C int's range)

    def __enter__(self):
        self._saved = [(b, b.get_thread_limit()) for b in _BACKENDS.values()]
        if self.n is not None:
            for b, _ in self._saved:
                b.set_thread_limit(self.n)
        return self

    def __exit__(self, *exc):
        for b, n in self._saved:
            b.set_thread_limit(n)


from . import threadpool as _threadpool  # noqa: E402 (needs _BACKENDS)

_threadpool.register()  # threadpoolctl's limits reach fastnn's threads (see threadpool.py)
