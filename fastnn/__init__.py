"""fastnn: fast multi-layer perceptron training on the CPU.

Compiled C kernels (GEMM with run-time CPU dispatch, activations, losses, optimizers, a whole
training epoch in one call with the GIL released) under a small Keras/scikit-learn-like API, with a
NumPy implementation of the same maths as oracle and fallback backend.
"""
from . import ops
from ._engine import available_backends, get_backend, set_backend
from ._engine.errors import NonFiniteError
from .plots import plot_history
from .nn import (SGD, Activation, Adam, AdamW, Adaptive, BatchNorm, BatchNormalization, Callback,
                 Constant, CosineDecay, Dense, Dropout, EarlyStopping, EpochLogger,
                 ExponentialDecay, History, InvScaling, ModelCheckpoint, ProgressBar,
                 ReduceLROnPlateau, RMSprop, Sequential, StepDecay, TerminateOnNaN)
from .files import load, to_onnx
from ._version import __version__


_SKLEARN_ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def __getattr__(name):
    """MLPClassifier and MLPRegressor, imported on first use: they need scikit-learn, fastnn does not."""
    if name in _SKLEARN_ESTIMATORS:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise ImportError(f"fastnn.{name} needs scikit-learn: pip install fastnn[sklearn]") from None
        from . import neural_network
        return getattr(neural_network, name)
    raise AttributeError(f"module 'fastnn' has no attribute {name!r}")


def show_config(print_fn=print):
    """Report the backend, the GEMM kernel in use, OpenMP and the thread count."""
    from . import _engine as _backend
    be = _backend.current()
    info = {
        "fastnn": __version__,
        "backend": be.BACKEND,
        "compiled extension": "loaded" if _backend._ext is not None else
                              f"not available ({_backend._EXT_ERROR}); the NumPy backend is in use",
        "backends available": ", ".join(available_backends()),
        "gemm kernel": be.arch_name(),
        "kernels compiled": ", ".join(be.arch_list()),
        "kernels runnable": ", ".join(a for a in be.arch_list() if be.arch_available(a)),
        "openmp": "on" if be.openmp_enabled() else "off",
        "threads": be.get_num_threads(),
        "usable CPUs": be.get_cpu_cap(),
    }
    if _backend.ARCH_REQUEST:
        info["FASTNN_ARCH"] = _backend.ARCH_PROBLEM or f"{_backend.ARCH_REQUEST!r} (used)"
    if print_fn:
        print_fn("\n".join(f"{k:>18}: {v}" for k, v in info.items()))
    return info


def set_num_threads(n):
    """Threads used by the compiled kernels (OpenMP), process-wide. n <= 0: the default, all the
    CPUs this process may use (affinity mask and cgroup quota). An explicit n (an integer) is
    honoured up to the larger of the CPU count and OMP_NUM_THREADS at start-up (what the engine's
    workspaces are sized for, at most 256), also above the usable CPUs: oversubscribing is then
    the caller's choice."""
    import operator
    from . import _engine as _backend
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"set_num_threads takes an integer, got {n!r}") from None
    _backend.current().set_num_threads(max(-1, min(n, 1 << 20)))


def get_num_threads():
    """Threads the calling thread's next compiled call uses (the count, under any thread_limit)."""
    from . import _engine as _backend
    return _backend.current().get_num_threads()


def register_skl2onnx():
    """Register fastnn's MLPClassifier and MLPRegressor with skl2onnx, so that
    skl2onnx.convert_sklearn converts them, and pipelines holding them (needs skl2onnx; done
    automatically when skl2onnx is imported before fastnn's estimators)."""
    try:
        import skl2onnx  # noqa: F401
    except ImportError:
        raise ImportError("fastnn.register_skl2onnx needs skl2onnx: pip install skl2onnx") from None
    from .files import onnx_sklearn
    onnx_sklearn.register()


def thread_limit(n):
    """Context manager: at most n threads for this thread's compiled calls inside the block
    (fastnn.MLPClassifier(n_threads=...) uses it); other threads are unaffected."""
    from . import _engine as _backend
    return _backend.thread_limit(n)


__all__ = ["Sequential", "Dense", "Activation", "Dropout", "BatchNorm", "BatchNormalization",
           "Callback", "History", "EarlyStopping", "ReduceLROnPlateau", "TerminateOnNaN", "ModelCheckpoint",
           "ProgressBar", "EpochLogger", "SGD", "Adam", "AdamW", "RMSprop", "Constant",
           "StepDecay", "ExponentialDecay", "CosineDecay", "InvScaling", "Adaptive",
           "NonFiniteError", "ops", "set_backend", "get_backend", "available_backends",
           "show_config", "set_num_threads", "get_num_threads", "thread_limit", "load",
           "to_onnx", "plot_history", "register_skl2onnx"]  # + MLPClassifier, MLPRegressor (lazy: scikit-learn)
