# Records (fastnn/_engine/records.py): NumPy structured arrays laid out like the C structs. The
# C side reads and writes them through their buffer, after a check that the dtype is exactly the
# record's and that the buffer holds whole structs of this build's size.
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE,
                             PyBUF_C_CONTIGUOUS, PyBUF_FORMAT)
from libc.stdint cimport uintptr_t
from libc.string cimport memcpy
from numpy import dtype as _np_dtype, ndarray as _ndarray
from fastnn._engine import records as _records
from fastnn._engine.validation import nonfinite_error as _nonfinite_error

cdef int _get_record(Py_buffer *view, object arr, object dtype, str name, int ndim, size_t size,
                     bint writable) except -1:
    # view: the record's bytes (C-contiguous), held until PyBuffer_Release
    if not (isinstance(arr, _ndarray) and arr.dtype == dtype and arr.ndim == ndim):
        _records.check_record(arr, dtype, name, ndim, writable)  # raises TypeError
    try:
        PyObject_GetBuffer(arr, view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
    except (BufferError, ValueError):  # not contiguous, or read-only
        _records.check_record(arr, dtype, name, ndim, writable)
        raise
    if view.len % size != 0 or (ndim == 0 and view.len != size) or (<uintptr_t>view.buf) % 8 != 0:
        PyBuffer_Release(view)
        raise TypeError(f"the {name} record ({dtype.itemsize} bytes) is not an aligned copy of this "
                        f"build's C struct ({size} bytes)")
    return 0

cdef int _read_optim(fnn_optim *out, object optim) except -1:
    cdef Py_buffer view
    _get_record(&view, optim, _records.OPTIM, "OPTIM", 0, sizeof(fnn_optim), False)
    memcpy(out, view.buf, sizeof(fnn_optim))
    PyBuffer_Release(&view)
    return 0
