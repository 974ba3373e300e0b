"""The records the engine reads and writes: NumPy structured dtypes laid out byte for byte like the
C structs of csrc/fastnn.h (align=True gives C's padding), so the compiled backend copies them
with one memcpy and the NumPy oracle reads the same fields.

    LAYER   fnn_layer          one per layer, in a 1-D array
    NET     fnn_net            0-d; n_layers and the layers pointer are left out: the engine
                               sets them (their bytes stay in the record, unnamed)
    OPTIM   fnn_optim          0-d
    RESULT  fnn_train_result   0-d; the engine writes its running totals into it batch by batch

tests/test_records.py checks every itemsize and field offset against the C compiler's
(fastnn._engine._ext.struct_layout()). Build records with the helpers below, which fill the
fields a caller leaves out with the defaults listed here and reject unknown names.
"""
import struct

import numpy as np

_i4, _i8, _u8, _f8 = np.int32, np.int64, np.uint64, np.float64

LAYER = np.dtype([
    ("kind", _i4),        # fnn_layer_kind
    ("activation", _i4),  # fnn_activation: after a dense layer, or the activation layer's own
    ("n_in", _i8), ("n_out", _i8),
    ("w_off", _i8), ("b_off", _i8),  # dense: W, b; batchnorm: gamma, beta (in params)
    ("s_off", _i8),       # batchnorm: running mean then running var (in state)
    ("alpha", _f8),       # leaky relu slope
    ("rate", _f8),        # dropout probability
    ("momentum", _f8), ("eps", _f8),  # batchnorm
], align=True)

# fnn_net in full; NET keeps every field but the two the engine owns, at the same offsets.
_NET_C = np.dtype([
    ("n_layers", _i4), ("layers", np.uintp),
    ("loss", _i4),        # fnn_loss
    ("n_inputs", _i8), ("n_outputs", _i8),
    ("n_params", _i8),    # weights first: params[0:n_decay] are the decayed weights
    ("n_decay", _i8),
    ("n_state", _i8),     # running statistics
    ("seed", _u8),
], align=True)
NET_ENGINE_FIELDS = ("n_layers", "layers")
NET = _NET_C[[name for name in _NET_C.names if name not in NET_ENGINE_FIELDS]]

OPTIM = np.dtype([
    ("kind", _i4),        # fnn_optimizer
    ("nesterov", _i4),
    ("lr", _f8), ("momentum", _f8), ("beta1", _f8), ("beta2", _f8), ("eps", _f8), ("rho", _f8),
    ("l2", _f8), ("l1", _f8),  # coupled penalties on params[0:n_decay]
    ("weight_decay", _f8),     # decoupled
    ("schedule", _i4),    # fnn_schedule
    ("gamma", _f8), ("power_t", _f8), ("lr_min", _f8), ("lr_scale", _f8),
    ("step_size", _i8), ("total_steps", _i8),
    ("l2_loss", _f8),     # scikit-learn's alpha: + 0.5 l2_loss |W|^2 / S in the loss (S: batch weight sum)
    ("form", _i4),        # fnn_optim_form: 0 PyTorch's sgd / adam updates, 1 scikit-learn's
    ("overflow_check", _i4),  # 1: a step whose update leaves a NaN or inf ends the call ("overflow")
], align=True)

RESULT = np.dtype([
    ("batches", _i8),     # batches fully applied
    ("samples", _i8),     # samples in those batches
    ("loss_sum", _f8),    # sum of batch mean loss x batch weight sum
    ("weight_sum", _f8),  # sum of sample weights
    ("correct", _i8),     # classification hits
    ("bad_batch", _i8),   # the batch that was not finite, -1 when none
], align=True)
# (under scikit-learn's losses, codes.SK_LOSSES, a batch counts by its rows in loss_sum and
# weight_sum, as in scikit-learn's loss_curve_)

# Defaults of the fields a caller may leave out; the fields missing here must be given.
LAYER_DEFAULTS = {"activation": 0, "w_off": 0, "b_off": 0, "s_off": 0, "alpha": 0.0, "rate": 0.0,
                  "momentum": 0.0, "eps": 0.0}  # required: kind, n_in, n_out
NET_DEFAULTS = {"n_decay": 0, "n_state": 0, "seed": 0}  # required: loss, n_inputs, n_outputs, n_params
OPTIM_DEFAULTS = {"nesterov": 0, "momentum": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                  "rho": 0.99, "l2": 0.0, "l1": 0.0, "weight_decay": 0.0, "schedule": 0,
                  "gamma": 1.0, "power_t": 0.5, "lr_min": 0.0, "lr_scale": 1.0, "step_size": 1,
                  "total_steps": 0, "l2_loss": 0.0, "form": 0,
                  "overflow_check": 0}  # required: kind, lr


def _values(fields, dtype, defaults, name):
    """The record's values in field order: `fields` over `defaults`."""
    names = dtype.names
    values = fields if len(fields) == len(names) else {**defaults, **fields}
    if len(values) == len(names):  # every field once, nothing else (the common case)
        try:
            return tuple(map(values.__getitem__, names))
        except KeyError:
            values = {**defaults, **fields}
    unknown = sorted(set(fields) - set(dtype.names))
    if unknown:
        raise TypeError(f"{name} has no field {unknown[0]!r} (fields: {', '.join(dtype.names)})")
    missing = [f for f in dtype.names if f not in values]
    raise TypeError(f"{name} needs a value for {', '.join(missing)}")


def _packer(dtype):
    """struct.Struct writing a record's bytes: its fields at the dtype's offsets, padding zeroed
    (about 3x faster than assigning a tuple to a structured array: an OPTIM record is built for
    every training call)."""
    codes = {("i", 4): "i", ("i", 8): "q", ("u", 8): "Q", ("f", 8): "d"}
    fmt, pos = "=", 0
    for name in dtype.names:
        ftype, offset = dtype.fields[name][:2]
        fmt += "x" * (offset - pos) + codes[ftype.kind, ftype.itemsize]
        pos = offset + ftype.itemsize
    return struct.Struct(fmt + "x" * (dtype.itemsize - pos))


_PACKERS = {id(dt): (dt, _packer(dt)) for dt in (LAYER, NET, OPTIM, RESULT)}


def _whole(values, dtype):
    """A float given for an integer field must be a whole number: NumPy's conversion truncates
    (overflow_check=1.5 became 1)."""
    for name, v in zip(dtype.names, values):
        if (dtype.fields[name][0].kind in "iu" and isinstance(v, (float, np.floating))
                and not float(v).is_integer()):
            raise ValueError(f"the {name!r} field is an integer, not {v!r}")


def _record(values, dtype):
    """0-d record of `dtype` holding `values` (in field order)."""
    try:
        raw = bytearray(_PACKERS[id(dtype)][1].pack(*values))
    except struct.error:  # a float for an integer field, say: NumPy's conversions decide
        _whole(values, dtype)
        out = np.empty((), dtype)
        out[()] = values
        return out
    return np.frombuffer(raw, dtype).reshape(())


def layer_records(layers):
    """1-D LAYER array from a list of {field: value} dicts, one per layer."""
    out = np.zeros(len(layers), LAYER)
    for i, fields in enumerate(layers):
        values = _values(fields, LAYER, LAYER_DEFAULTS, "LAYER")
        _whole(values, LAYER)
        out[i] = values
    return out


def net_record(**fields):
    """0-d NET record."""
    return _record(_values(fields, NET, NET_DEFAULTS, "NET"), NET)


_OPTIMS = {}  # values -> read-only OPTIM record


def optim_record(**fields):
    """0-d OPTIM record, read-only: records are values, and equal ones are built once (a training
    call takes one, and building it costs more than a small batch's Python overhead)."""
    values = _values(fields, OPTIM, OPTIM_DEFAULTS, "OPTIM")
    rec = _OPTIMS.get(values)
    if rec is None:
        if len(_OPTIMS) >= 256:
            _OPTIMS.clear()
        rec = _record(values, OPTIM)
        rec.flags.writeable = False
        _OPTIMS[values] = rec
    return rec


def result_record():
    """0-d RESULT record of a call that has not run yet (bad_batch -1)."""
    out = np.zeros((), RESULT)  # NumPy's allocation: aligned, as the engine's live writes need
    out["bad_batch"] = -1
    return out


def as_dict(record):
    """{field: Python value} of a 0-d record."""
    return dict(zip(record.dtype.names, record.item()))


def check_record(arr, dtype, name, ndim, writable=False):
    """TypeError unless `arr` is a C-contiguous ndarray (writable if asked) of exactly that record
    dtype and dimension."""
    if isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.ndim == ndim:
        if not arr.flags.c_contiguous:
            raise TypeError(f"the {name} array must be C-contiguous")
        if writable and not arr.flags.writeable:
            raise TypeError(f"the {name} record must be writable")
        return
    got = f"ndarray of dtype {arr.dtype}, ndim {arr.ndim}" if isinstance(arr, np.ndarray) else type(arr).__name__
    shape = "a 0-d" if ndim == 0 else "a 1-D"
    raise TypeError(f"expected {shape} array of fastnn._engine.records.{name}, got {got}")
