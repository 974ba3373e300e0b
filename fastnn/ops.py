"""The kernels as validated NumPy functions: each checks its arguments once (dtype, shapes,
contiguity), allocates its output and calls the current backend (compiled or NumPy). Bad input
raises TypeError / ValueError naming the problem; NaN passes through as data.

    C = ops.gemm(A, B, trans_a=True)                   # alpha op(A) @ op(B) + beta C
    Y = ops.activation("relu", X); dX = ops.activation_grad("relu", dY, Y)
    loss, dZ = ops.loss("cross_entropy", Z, y)
"""
import numpy as np

from . import _engine as _backend
from ._engine import activations as _activations, losses as _losses
from ._engine.validation import FLOAT_DTYPES


def _array(a, name, ndim=None, dtype=None, contiguous=True, written=False):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, not {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, not {a.dtype}")
    if dtype is not None and a.dtype != dtype:
        raise TypeError(f"{name} is {a.dtype} but the other arguments are {dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if contiguous and not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use numpy.ascontiguousarray)")
    if written and not a.flags.writeable:
        raise ValueError(f"{name} is written in place but is read-only")
    return a


def _rows_ok(a, name):
    """GEMM operands may have strided rows but contiguous elements within a row."""
    if a.flags.c_contiguous:  # the common case, one test: rows contiguous and one after the other
        return a
    if a.size == 0:  # nothing is read: NumPy's strides of empty arrays do not matter
        return a
    if a.ndim == 2 and a.shape[1] > 1 and a.strides[1] != a.itemsize:
        raise ValueError(f"{name} must have contiguous rows (strides[1] == itemsize); "
                         f"use numpy.ascontiguousarray")
    if a.ndim == 2 and a.shape[0] > 1 and (a.strides[0] <= 0 or a.strides[0] % a.itemsize
                                            or a.strides[0] < a.shape[1] * a.itemsize):
        raise ValueError(f"{name} has an unsupported row stride {a.strides[0]}")
    return a


def gemm(A, B, C=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """Return alpha * op(A) @ op(B) + beta * C (C is updated in place when given).
    op(A) = A.T when trans_a. With beta == 0, C's contents are ignored (NaN included); with
    alpha == 0, A's and B's are (BLAS's convention: C = beta * C)."""
    A = _rows_ok(_array(A, "A", 2, contiguous=False), "A")
    B = _rows_ok(_array(B, "B", 2, A.dtype, contiguous=False), "B")
    m, k = (A.shape[1], A.shape[0]) if trans_a else A.shape
    kb, n = (B.shape[1], B.shape[0]) if trans_b else B.shape
    if k != kb:
        raise ValueError(f"inner dimensions differ: op(A) is {m}x{k}, op(B) is {kb}x{n}")
    if type(alpha) is not float or type(beta) is not float:  # the defaults' type passes at once
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not isinstance(v, (int, float, np.floating, np.integer)) or isinstance(v, bool):
                raise TypeError(f"{name} must be a number")
    if C is None:
        if beta != 0:
            raise ValueError("beta != 0 needs a C to scale")
        C = np.empty((m, n), A.dtype)
    else:
        C = _rows_ok(_array(C, "C", 2, A.dtype, contiguous=False, written=True), "C")
        if C.shape != (m, n):
            raise ValueError(f"C must have shape {(m, n)}, got {C.shape}")
        # three plain ndarrays that each allocated their memory (owndata) are three allocations:
        # one test, where shares_memory costs about 0.6 us a pair. A view, a subclass (which may
        # say anything about itself), an array over memory it does not own, or the same array
        # twice is checked
        owners = (type(C) is np.ndarray and type(A) is np.ndarray and type(B) is np.ndarray
                  and C.flags.owndata and A.flags.owndata and B.flags.owndata and C is not A and C is not B)
        if not owners and (np.shares_memory(C, A) or np.shares_memory(C, B)):
            raise ValueError("C must not overlap A or B")
    _backend.current().gemm(C, A, B, bool(trans_a), bool(trans_b), float(alpha), float(beta))
    return C


def bias_add(Y, b):
    """Y += b on every row (in place); returns Y."""
    Y = _array(Y, "Y", 2, written=True)
    b = _array(b, "b", 1, Y.dtype)
    if b.shape[0] != Y.shape[1]:
        raise ValueError(f"b has {b.shape[0]} entries, Y has {Y.shape[1]} columns")
    if Y.size:
        _backend.current().bias_forward(Y, b)
    return Y


def bias_grad(dY):
    """Column sums of dY: the gradient of a bias."""
    dY = _array(dY, "dY", 2)
    db = np.zeros(dY.shape[1], dY.dtype)
    if dY.size:
        _backend.current().bias_backward(db, dY)
    return db


def _act_code(name):
    return _activations.get(name).code


def _as2d(a):
    """Element-wise kernels see any array as rows: (..., n) -> (-1, n); 0-d and 1-d -> (1, -1)."""
    return a.reshape(-1, a.shape[-1]) if a.ndim >= 2 else a.reshape(1, -1)


def activation(name, X, alpha=0.01):
    """f(X) for 'identity', 'relu', 'leaky_relu', 'sigmoid', 'tanh', 'softmax' (row-wise; 2-D)."""
    code = _act_code(name)
    X = _array(X, "X")
    if code == _activations.ACTIVATIONS["softmax"].code and X.ndim != 2:
        raise ValueError(f"softmax works on rows of a 2-D array, got shape {X.shape}")
    Y = np.empty_like(X)
    if X.size:
        x2 = _as2d(X)
        _backend.current().activation_forward(code, Y.reshape(x2.shape), x2, float(alpha))
    return Y


def activation_grad(name, dY, Y, alpha=0.01):
    """dX = dY * f'(x), from the upstream gradient dY and the forward output Y."""
    code = _act_code(name)
    dY = _array(dY, "dY")
    Y = _array(Y, "Y", dtype=dY.dtype)
    if dY.shape != Y.shape:
        raise ValueError(f"dY has shape {dY.shape} but Y has {Y.shape}")
    if code == _activations.ACTIVATIONS["softmax"].code and Y.ndim != 2:
        raise ValueError(f"softmax works on rows of a 2-D array, got shape {Y.shape}")
    dX = np.empty_like(dY)
    if dY.size:
        _backend.current().activation_backward(code, _as2d(dX), _as2d(dY), _as2d(Y), float(alpha))
    return dX


def loss(name, Z, y, sample_weight=None):
    """(value, dL/dZ) of 'cross_entropy' (integer labels y), 'binary_crossentropy' (targets in
    [0, 1], same shape as Z) or 'mse' (targets, same shape as Z), or one of their aliases, on raw
    outputs Z."""
    record = _losses.get(name)
    code = record.code
    Z = _array(Z, "Z", 2)
    m, n = Z.shape
    if m == 0 or n == 0:
        raise ValueError(f"Z is empty (shape {Z.shape})")
    T = labels = None
    if record.targets == "labels":
        labels = np.asarray(y)
        if labels.dtype.kind not in "iu":
            raise TypeError(f"cross_entropy needs integer labels, not {labels.dtype}")
        if labels.shape != (m,):
            raise ValueError(f"labels must have shape ({m},), got {labels.shape}")
        if labels.min() < 0 or labels.max() >= n:
            raise ValueError(f"labels must lie in [0, {n})")
        labels = np.ascontiguousarray(labels, dtype=np.int64)
    else:
        T = _array(np.ascontiguousarray(y), "y", 2, Z.dtype)
        if T.shape != Z.shape:
            raise ValueError(f"targets have shape {T.shape}, outputs {Z.shape}")
    sw = None
    if sample_weight is not None:
        sw = _array(np.ascontiguousarray(sample_weight), "sample_weight", 1, Z.dtype)
        if sw.shape != (m,):
            raise ValueError(f"sample_weight must have shape ({m},), got {sw.shape}")
    be = _backend.current()
    value = be.loss_forward(code, Z, T, labels, sw)
    dZ = np.empty_like(Z)
    be.loss_backward(code, dZ, Z, T, labels, sw)
    return value, dZ
