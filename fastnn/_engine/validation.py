"""Input validation, done once at the boundary: everything below trusts its arguments."""
import numbers
import weakref

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def pins(*arrays):
    """Weak references to each array given and to the ndarrays whose memory it views (its .base
    chain): while the caller holds the list, NumPy refuses to resize any of them in place, even
    with refcheck=False (another thread's X.resize((1, 50), refcheck=False) freed the memory that
    a running fit read without the GIL: a segfault). Non-arrays and None are skipped. A file
    behind a memory map truncated meanwhile is the operating system's SIGBUS, as for any reader.
    A memoryview in the chain is followed to the object it exports (np.frombuffer(memoryview(A))
    left A resizable: helper-60's segfault); another kind of owner ends the chain."""
    held = []
    for a in arrays:
        while a is not None:
            if isinstance(a, np.ndarray):
                held.append(weakref.ref(a))
                a = a.base
            elif isinstance(a, memoryview):
                a = a.obj
            else:
                break
    return held


def as_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, not {dt}")
    return dt


def reject_unsupported(X, name):
    """Sparse matrices and masked arrays would be silently densified or unmasked: refuse them."""
    mod = type(X).__module__ or ""
    if mod.startswith("scipy.sparse") or hasattr(X, "tocsr"):
        raise TypeError(f"{name} is a scipy.sparse matrix: sparse input is not supported; "
                        f"pass {name}.toarray() (dense) instead")
    if isinstance(X, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array: masks are not supported; fill or drop the masked "
                        f"values first ({name}.filled(value) or {name}.compressed())")


def check_matrix(X, name, dtype, min_rows=1, n_cols=None, finite=False):
    """Any array-like -> C-contiguous 2-D array of `dtype`, finite. finite=True: the caller checked
    X itself (the scikit-learn estimators' fit); the check is skipped where X is taken as it is,
    not converted."""
    if X is None:
        raise ValueError(f"{name} is None")
    reject_unsupported(X, name)
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} cannot be converted to an array: {exc}") from None
    if arr.dtype == object:
        raise TypeError(f"{name} must be numeric, got an array of Python objects")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric (int or float), not {arr.dtype}")
    if arr.ndim == 1:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got 1-D of shape {arr.shape}. "
                         f"Reshape with .reshape(-1, 1) for one feature or .reshape(1, -1) for one sample")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} is empty: {arr.shape[0]} samples (need at least {min_rows})")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the model expects {n_cols}")
    source = arr
    arr = narrow(arr, dtype)
    if not arr.flags.aligned:  # the compiled engine reads whole, aligned elements
        arr = arr.copy()
    if not (finite and arr is source) and not _all_finite(arr):
        refuse_overflow(source, arr, name)
        raise nonfinite_error(name, arr)
    return arr


def cast_finite(arr, dtype, name):
    """np.ascontiguousarray(arr, dtype) of a finite numeric array (scikit-learn's validate_data
    checked it), where a value beyond dtype's range (1e300 as float32) is refused by name, not
    made inf with NumPy's overflow warning (and then refused as "infinite")."""
    out = narrow(arr, dtype)
    if _narrowed(arr, out) and not _all_finite(out):
        refuse_overflow(arr, out, name)
    return out


def narrow(arr, dtype):
    """np.ascontiguousarray(arr, dtype) without NumPy's overflow warning: a finite value beyond
    dtype's range becomes inf, which the caller refuses by name (refuse_overflow)."""
    if type(arr) is np.ndarray and arr.ndim >= 1 and arr.dtype == dtype and arr.flags.c_contiguous:
        return arr  # as it is (np.errstate costs microseconds: a partial_fit of one row takes 500)
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


def _narrowed(source, out):
    return source.dtype.kind == "f" and out.dtype.kind == "f" and out.dtype.itemsize < source.dtype.itemsize


def refuse_overflow(source, out, name):
    """ValueError when a finite value of `source` became inf in `out` (its cast to a narrower float)."""
    if _narrowed(source, out) and bool(np.isinf(out[np.isfinite(np.asarray(source))]).any()):
        raise ValueError(f"{name} holds values beyond the range of {out.dtype} (at most "
                         f"{np.finfo(out.dtype).max:.4g} in magnitude), this model's dtype")


def nonfinite_error(name, arr):
    """The ValueError for an input array holding NaN or infinity, with their count (check_matrix's,
    and the engines' lean path's)."""
    return ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")


_SMALL = 1 << 16  # elements: below, one element-wise pass (faster than a sum: 2 us for one MNIST row, 13 us
                  # for 128, against 4.3 and 24); above, the backend's whole-array check


def _all_finite(arr):
    """The backend's check (the compiled one shares a large array among the threads: MNIST's 188 MB
    in 4 ms on the 2-core Zen 5 VM, where NumPy's sum takes 10), for a C-contiguous, aligned array
    of a float dtype in native byte order; the NumPy one otherwise."""
    if arr.size <= _SMALL:
        return bool(np.isfinite(arr).all())
    from . import current, reference
    if arr.dtype in FLOAT_DTYPES and arr.dtype.isnative and arr.flags.c_contiguous and arr.flags.aligned:
        return current().all_finite(arr.reshape(-1))
    return reference.all_finite(arr)


def _as_array(y, name):
    """Targets as an array; None, sparse, masked and ragged input get a clear error."""
    if y is None:
        raise ValueError(f"{name} is None")
    reject_unsupported(y, name)
    try:
        return np.asarray(y)
    except Exception as exc:
        raise ValueError(f"{name} cannot be converted to an array: {exc}") from None


def check_labels(y, n, n_classes, name="y"):
    """Integer class labels in [0, n_classes) -> int64 of length n."""
    arr = _as_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but X has {n} samples")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite labels")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name} must hold integer class labels; got non-integer values")
    elif arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class labels, not {arr.dtype}")
    if n:  # range check in the labels' own type: a cast first would wrap 1e20 or 2**63
        out = (arr < 0) | (arr >= n_classes)
        if out.any():
            bad = arr[out][0]
            bad = int(bad) if arr.dtype.kind != "f" else float(bad)
            raise ValueError(f"{name} has label {bad!r}, outside [0, {n_classes}) for a model with "
                             f"{n_classes} outputs")
    return np.ascontiguousarray(arr, dtype=np.int64)


def check_targets(y, n, n_outputs, dtype, name="y"):
    """Real targets -> (n, n_outputs) C-contiguous array of dtype."""
    arr = _as_array(y, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, not {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {n} samples")
    if arr.shape[1] != n_outputs:
        raise ValueError(f"{name} has {arr.shape[1]} outputs, but the model has {n_outputs}")
    source = arr
    arr = narrow(arr, dtype)
    if not np.isfinite(arr).all():
        refuse_overflow(source, arr, name)
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def check_sample_weight(sw, n, dtype):
    if sw is None:
        return None
    reject_unsupported(sw, "sample_weight")
    arr = np.asarray(sw)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric, not {arr.dtype}")
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    tiny = np.finfo(dtype).tiny
    if ((arr > 0) & (arr < tiny)).any():
        raise ValueError(f"sample_weight holds values below {tiny:.3g}, the smallest normal {np.dtype(dtype)}, "
                         f"which the engine flushes to zero: rescale the weights")
    arr = narrow(arr, dtype)
    if not np.isfinite(arr).all():
        raise ValueError(f"sample_weight overflows {np.dtype(dtype)}: rescale the weights")
    if arr.sum() <= 0:
        raise ValueError("sample_weight sums to zero")
    return arr


def check_positive_int(v, name):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return int(v)
