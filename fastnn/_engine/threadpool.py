"""fastnn under threadpoolctl: `threadpool_limits(n)` and `ThreadpoolController().limit(...)` cap
fastnn's compiled threads, as they cap OpenBLAS's or an OpenMP runtime's.

Why a controller of fastnn's own rather than reading the OpenMP runtime's setting. threadpoolctl
limits an OpenMP library by calling omp_set_num_threads in the calling thread; fastnn could obey
that by capping each call at that thread's omp_get_max_threads(). But fastnn keeps its own
process-wide count (fastnn.set_num_threads, which omp_set_num_threads cannot express: it is per
thread), so the OpenMP setting would be a second, hidden cap beside it: either
fastnn.set_num_threads(4) would stop working under OMP_NUM_THREADS=2, or the runtime's value would
only count when it differed from start-up's, and a limit equal to that value would be ignored.
fastnn also runs without OpenMP (FASTNN_NO_OPENMP=1, or the NumPy backend). A controller has none
of that ambiguity: threadpoolctl lists fastnn by name with the count it will use
(threadpool_info()), and its limits go through the same per-thread cap as fastnn.thread_limit and
the estimators' n_threads, so the three agree and nest.

Semantics, those threadpoolctl expects of OpenMP: a limit applies to the calling thread only
(thread_limit_scope "current_thread"); setting n at or above the process-wide count removes the
calling thread's cap, so restoring the count threadpoolctl read before a block leaves no cap behind.
fastnn registers the controller when it is imported, if threadpoolctl 3.4 or newer is installed
(3.2 brought `register`, 3.4 the check of `check_symbols`, without which the controller would
also claim other packages' `_ext.*` libraries); fastnn itself does not need threadpoolctl.
"""


def _backends():
    from . import _BACKENDS
    return list(_BACKENDS.values())


def _compiled():
    from . import _ext
    return _ext


def process_num_threads():
    """The process-wide count of the compiled backend (fastnn.set_num_threads), without the
    calling thread's cap."""
    ext = _compiled()
    saved = ext.get_thread_limit()
    ext.set_thread_limit(0)  # thread-local: no other thread can see this moment
    try:
        return ext.get_num_threads()
    finally:
        ext.set_thread_limit(saved)


def set_calling_thread_threads(n):
    """threadpoolctl's set_num_threads: cap the calling thread at n (n < 1 counts as 1, as
    omp_set_num_threads does); n at or above the process-wide count removes the cap."""
    n = max(int(n), 1)
    cap = 0 if n >= process_num_threads() else n
    for be in _backends():
        be.set_thread_limit(cap)


def _make_controller_class():
    from threadpoolctl import LibController

    class FastnnController(LibController):
        """fastnn's compiled library, as threadpoolctl sees it (see the module docstring)."""

        user_api = "openmp"  # threadpool_limits(n, user_api="openmp") limits fastnn too
        internal_api = "fastnn"
        filename_prefixes = ("_ext.",)  # fastnn/_engine/_ext.<platform tag>.so
        # not any other "_ext": the C symbols must be there (so not on Windows, where a .pyd
        # exports only its module init function)
        check_symbols = ("fnn_set_thread_limit", "fnn_get_num_threads")

        def get_num_threads(self):
            return _compiled().get_num_threads()

        def set_num_threads(self, num_threads):
            set_calling_thread_threads(num_threads)

        def get_version(self):
            import fastnn
            return getattr(fastnn, "__version__", None)  # None while fastnn is still importing

    return FastnnController


_registered = None


def register():
    """Register the controller with threadpoolctl once; a no-op without threadpoolctl (or one too
    old to take third-party controllers) or without the compiled backend."""
    global _registered
    if _registered is not None:
        return _registered
    from . import _ext
    if _ext is None:
        return None
    try:
        import threadpoolctl
        version = tuple(int(p) for p in threadpoolctl.__version__.split(".")[:2])
        if version < (3, 4) or not hasattr(threadpoolctl, "register"):
            return None
        controller = _make_controller_class()
        threadpoolctl.register(controller)
    except Exception:  # absent or broken: fastnn works without it, and must import
        return None
    _registered = controller
    return _registered
