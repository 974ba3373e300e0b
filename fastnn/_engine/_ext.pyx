# _ext.pyx — the compiled backend: a one-to-one map of csrc/fastnn.h onto Python.
#
# Every function takes C-contiguous memoryviews (float32 or float64 through the fused type
# `floating`), releases the GIL and calls the C kernel of that type through its type-generic name
# (fnn_gemm(...) for fnn_gemm_f32 / _f64: see _fastnn.pxd.tp). Outputs come first, as in C.
# Descriptions of the network and the optimizer, and training results, travel as records
# (fastnn/_engine/records.py) that mirror the C structs. No validation happens here
# (fastnn/ops.py and fastnn/nn/model.py validate once, above); a C status code becomes a Python
# exception. fastnn/_engine/reference.py implements the same names and signatures in NumPy. One
# file per concern, included below.
from cython cimport floating
from libc.stdint cimport int32_t, int64_t, uint64_t
from fastnn._engine._fastnn cimport *
cimport numpy as cnp
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, PyThread_get_thread_ident,
                               NOWAIT_LOCK, PyLockStatus, PY_LOCK_ACQUIRED)
from cpython.exc cimport PyErr_CheckSignals

cdef extern from "pythread.h":
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds,
                                             int intr_flag) nogil

cnp.import_array()  # NumPy's C API: predict_lean reads arrays and makes its output through it

include "_status.pxi"
include "_records.pxi"
include "_gemm.pxi"
include "_activations.pxi"
include "_losses.pxi"
include "_optimizers.pxi"
include "_layers.pxi"
include "_network.pxi"
include "_files.pxi"
