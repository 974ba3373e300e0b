# The training engine: an Engine owns its copy of the network description (a LAYER array and a
# NET record, fastnn/_engine/records.py) and one workspace (allocated once, for batches of up to
# `batch` rows). Parameters, optimizer slots, running statistics and counters are NumPy arrays
# owned by the model and passed in on every call, so the engine holds no model state and two
# engines can run at once from two threads (the GIL is released).
#
# Training calls take the optimizer as an OPTIM record and write their running totals into a
# RESULT record as each batch is applied (the C engine writes straight into the record's memory),
# so another thread can read the progress of a running epoch. They return (status, raised):
# status "ok", "interrupted", "nonfinite" (a loss or gradient was not finite: that batch was not
# applied) or "overflow" (that batch's update left a NaN or an infinity in the parameters or the
# optimizer state: it was applied, the counters were not advanced), and raised the
# KeyboardInterrupt or other exception a signal handler raised between two batches (None
# otherwise), for the caller to re-raise once it has tidied up.
#
# train_epoch's `shuffle` is the epoch's row order (csrc/fastnn.h fnn_order): 0 (False) rows in
# order, 1 (True) the engine's shuffle, both written into perm; 2 the caller's perm[0:n], read as
# given (the C engine refuses an entry outside [0, n) before anything changes: ValueError). perm
# must hold at least n entries in every case.
from cpython.exc cimport PyErr_CheckSignals
from libc.stdlib cimport malloc, free

cdef int _check_signals(void *ctx) noexcept nogil:
    # between two batches: run Python's signal handlers; an exception stops the epoch
    with gil:
        try:
            PyErr_CheckSignals()
        except BaseException as e:
            (<list>ctx).append(e)
            return 1
    return 0

cdef tuple _outcome(int st, list raised):
    if st == FNN_EINTR:
        status = "interrupted"
    elif st == FNN_ENONFINITE:
        status = "nonfinite"
    elif st == FNN_EOVERFLOW:
        status = "overflow"
    else:
        check_status(st)
        status = "ok"
    return status, raised[0] if raised else None

cdef class Engine:
    "Engine(layers, net, dtype, batch)\n--\n\n" \
    "A network (LAYER array, NET record; both copied) and a workspace for batches of up to " \
    "`batch` rows of `dtype` (float32 or float64)."
    cdef fnn_net net
    cdef fnn_layer *layers
    cdef void *ws
    cdef readonly bint is_f64
    cdef readonly int64_t batch
    # one call at a time, since the workspace holds the call's activations: a call from another
    # thread waits (without the GIL) for the running one; one from the thread that runs it (a
    # signal handler or callback re-entering) raises
    cdef PyThread_type_lock lock
    cdef unsigned long owner

    def __cinit__(self, layers, net, dtype, int64_t batch):
        self.layers = NULL
        self.ws = NULL
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()
        cdef Py_buffer view
        cdef Py_ssize_t n
        cdef int st
        name = _np_dtype(dtype).name
        if name not in ("float32", "float64"):
            raise TypeError(f"an engine works in float32 or float64, not {name}")
        self.is_f64 = name == "float64"
        self.batch = batch
        _get_record(&view, net, _records.NET, "NET", 0, sizeof(fnn_net), False)
        memcpy(&self.net, view.buf, sizeof(fnn_net))  # n_layers and layers are set below
        PyBuffer_Release(&view)
        _get_record(&view, layers, _records.LAYER, "LAYER", 1, sizeof(fnn_layer), False)
        n = view.len // sizeof(fnn_layer)
        self.layers = <fnn_layer *>malloc(max(n, 1) * sizeof(fnn_layer))
        if self.layers != NULL:
            memcpy(self.layers, view.buf, n * sizeof(fnn_layer))
        PyBuffer_Release(&view)
        if self.layers == NULL:
            raise MemoryError()
        self.net.n_layers = <int32_t>n
        self.net.layers = self.layers
        if self.is_f64:
            st = fnn_workspace_new_f64(<fnn_workspace_f64 **>&self.ws, &self.net, batch)
        else:
            st = fnn_workspace_new_f32(<fnn_workspace_f32 **>&self.ws, &self.net, batch)
        check_status(st)

    def __dealloc__(self):
        if self.ws != NULL:
            if self.is_f64:
                fnn_workspace_free_f64(<fnn_workspace_f64 *>self.ws)
            else:
                fnn_workspace_free_f32(<fnn_workspace_f32 *>self.ws)
        free(self.layers)
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef int _dtype_check(self, bint f64) except -1:
        if f64 != self.is_f64:
            raise TypeError(f"this engine works in {'float64' if self.is_f64 else 'float32'}")
        return 0

    cdef int _enter(self) except -1:
        # the GIL is held here: the owner is this thread's only if this thread set it
        cdef unsigned long me = PyThread_get_thread_ident()
        cdef bint got = PyThread_acquire_lock(self.lock, NOWAIT_LOCK)
        if not got and self.owner == me:
            raise RuntimeError("this engine is already running a call in this thread (a call "
                               "from a signal handler or callback into it): an engine (its "
                               "workspace) serves one call at a time")
        while not got:  # another thread's call runs: wait for it, and honour Ctrl-C every 50 ms
            with nogil:
                got = PyThread_acquire_lock_timed(self.lock, 50000, 0) == PY_LOCK_ACQUIRED
            if not got:
                PyErr_CheckSignals()
        self.owner = me
        return 0

    cdef void _leave(self) noexcept:
        self.owner = 0
        PyThread_release_lock(self.lock)

    cdef int _check_sizes(self, Py_ssize_t params, Py_ssize_t slots, int32_t opt_kind,
                          Py_ssize_t state, Py_ssize_t counters, Py_ssize_t rows, Py_ssize_t cols,
                          t_shape, Py_ssize_t labels, Py_ssize_t sw, str t_name="T") except -1:
        # every buffer a call hands the C engine holds at least what the network reads from it
        # (pass -1 for a buffer the call does not take, -2 for an optional one that is None)
        cdef int64_t P = self.net.n_params
        cdef int64_t n_slots = 2 if opt_kind == FNN_OPT_ADAM else 1
        problems = []
        if params != -1 and params < P:
            problems.append(f"params holds {params} values, the network has {P}")
        if slots != -1 and slots < n_slots * P:
            problems.append(f"slots holds {slots} values, the optimizer needs {n_slots * P}")
        if state != -1 and state < max(self.net.n_state, 1):
            problems.append(f"state holds {state} values, the network needs {max(self.net.n_state, 1)}")
        if counters != -1 and counters < FNN_N_COUNTERS:
            problems.append(f"counters holds {counters} values, not {FNN_N_COUNTERS}")
        if cols != self.net.n_inputs:
            problems.append(f"X has {cols} columns, the network {self.net.n_inputs} inputs")
        if t_shape is not None and tuple(t_shape) != (rows, self.net.n_outputs):
            problems.append(f"{t_name} has shape {tuple(t_shape)}, not ({rows}, {self.net.n_outputs})")
        if labels >= 0 and labels < rows:
            problems.append(f"labels holds {labels} values for {rows} rows")
        if sw >= 0 and sw < rows:
            problems.append(f"sw holds {sw} values for {rows} rows")
        if problems:
            raise ValueError("fastnn engine: " + "; ".join(problems))
        return 0

    def train_epoch(self, result,                                                          # OUT RESULT
                    floating[::1] params not None, floating[::1] slots not None, floating[::1] state not None,  # IN/OUT
                    int64_t[::1] counters not None, int64_t[::1] perm not None,            # IN/OUT
                    optim,                                                                 # IN OPTIM
                    const floating[:, ::1] X not None, const floating[:, ::1] T, const int64_t[::1] labels,
                    const floating[::1] sw,                                                # IN
                    int64_t batch, int shuffle, int64_t epoch):
        self._dtype_check(floating is double)
        cdef fnn_optim opt
        _read_optim(&opt, optim)
        cdef Py_buffer res
        _get_record(&res, result, _records.RESULT, "RESULT", 0, sizeof(fnn_train_result), True)
        cdef list raised = []
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        if perm.shape[0] < X.shape[0]:
            PyBuffer_Release(&res)
            raise ValueError(f"perm holds {perm.shape[0]} entries for {X.shape[0]} rows")
        try:
            self._check_sizes(params.shape[0], slots.shape[0], opt.kind, state.shape[0],
                              counters.shape[0], X.shape[0], X.shape[1],
                              None if T is None else (T.shape[0], T.shape[1]),
                              -2 if labels is None else labels.shape[0], -2 if sw is None else sw.shape[0])
            self._enter()
        except (ValueError, RuntimeError):
            PyBuffer_Release(&res)
            raise
        try:
            with nogil:
                st = fnn_train_epoch(<fnn_train_result *>res.buf, &params[0], &slots[0], &state[0],
                                     &counters[0], &perm[0], self.ws, &self.net, &opt, &X[0, 0],
                                     NULL if T is None else &T[0, 0], lab, swp, X.shape[0], batch,
                                     shuffle, epoch, _check_signals, <void *>raised)
        finally:
            self._leave()
        PyBuffer_Release(&res)
        return _outcome(st, raised)

    def train_step(self, result,                                                           # OUT RESULT
                   floating[::1] params not None, floating[::1] slots not None, floating[::1] state not None,  # IN/OUT
                   int64_t[::1] counters not None,                                         # IN/OUT
                   optim,                                                                  # IN OPTIM
                   const floating[:, ::1] X not None, const floating[:, ::1] T, const int64_t[::1] labels,
                   const floating[::1] sw, int64_t epoch):
        self._dtype_check(floating is double)
        cdef fnn_optim opt
        _read_optim(&opt, optim)
        cdef Py_buffer res
        _get_record(&res, result, _records.RESULT, "RESULT", 0, sizeof(fnn_train_result), True)
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        try:
            self._check_sizes(params.shape[0], slots.shape[0], opt.kind, state.shape[0],
                              counters.shape[0], X.shape[0], X.shape[1],
                              None if T is None else (T.shape[0], T.shape[1]),
                              -2 if labels is None else labels.shape[0], -2 if sw is None else sw.shape[0])
            self._enter()
        except (ValueError, RuntimeError):
            PyBuffer_Release(&res)
            raise
        try:
            with nogil:
                st = fnn_train_step(<fnn_train_result *>res.buf, &params[0], &slots[0], &state[0],
                                    &counters[0], self.ws, &self.net, &opt, &X[0, 0],
                                    NULL if T is None else &T[0, 0], lab, swp, X.shape[0], epoch)
        finally:
            self._leave()
        PyBuffer_Release(&res)
        return _outcome(st, [])

    def gradient(self, floating[::1] grads not None,                                     # OUT
                 const floating[::1] params not None, const floating[:, ::1] X not None, const floating[:, ::1] T,
                 const int64_t[::1] labels, const floating[::1] sw, int64_t step):
        self._dtype_check(floating is double)
        cdef double loss = 0
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        if grads.shape[0] < self.net.n_params:
            raise ValueError(f"fastnn engine: grads holds {grads.shape[0]} values, the network has "
                             f"{self.net.n_params}")
        self._check_sizes(params.shape[0], -1, 0, -1, -1, X.shape[0], X.shape[1],
                          None if T is None else (T.shape[0], T.shape[1]),
                          -2 if labels is None else labels.shape[0], -2 if sw is None else sw.shape[0])
        self._enter()
        try:
            with nogil:
                st = fnn_gradient(&loss, &grads[0], &params[0], self.ws, &self.net, &X[0, 0],
                                  NULL if T is None else &T[0, 0], lab, swp, X.shape[0], step)
        finally:
            self._leave()
        if st == FNN_ENONFINITE:
            return float("nan")
        check_status(st)
        return loss

    def predict_lean(self, params, state, X, bint link=False):
        "predict_lean(params, state, X, link=False)\n--\n\n" \
        "The network's outputs for X as a new array, as predict(out, params, state, X, link, " \
        "check_x=True) writes them, when X is an ndarray that predict reads as it is (2-D, " \
        "C-contiguous, aligned, of the engine's dtype in native byte order, n_inputs wide, with " \
        "rows); None, having done nothing, for any other X. A NaN or infinity in X raises " \
        "ValueError. A single prediction's call: the arrays are read through NumPy's C API, " \
        "without taking their buffers, and the output is allocated here."
        cdef int typenum = cnp.NPY_DOUBLE if self.is_f64 else cnp.NPY_FLOAT
        cdef cnp.npy_intp dims[2]
        cdef int st
        dims[0] = _lean_x_rows(X, typenum, self.net.n_inputs)
        if dims[0] == 0:
            return None
        cdef void *px = cnp.PyArray_DATA(<cnp.ndarray>X)
        dims[1] = self.net.n_outputs
        out = cnp.PyArray_EMPTY(2, dims, typenum, 0)
        cdef void *po = cnp.PyArray_DATA(<cnp.ndarray>out)
        cdef void *pp = _plain_data(params, 1, typenum, self.net.n_params)
        cdef void *ps = _plain_data(state, 1, typenum, max(self.net.n_state, 1))
        if pp == NULL or ps == NULL:  # the general checks, which name the argument at fault
            st = self._predict_x(out, params, state, X, link, True)
        else:
            st = self._run_predict(po, pp, ps, px, dims[0], link, True)
        if st == FNN_ENONFINITE:
            raise _nonfinite_error("X", X)
        return out

    def predict(self, out, params, state, X, bint link=False, bint check_x=False):
        "predict(out, params, state, X, link=False, check_x=False)\n--\n\n" \
        "out (n x n_outputs, written) := the network's outputs for X (n x n_inputs), inference mode; " \
        "link: the loss's link applied. All C-contiguous arrays of the engine's dtype. check_x: a NaN " \
        "or infinity in X gives 'nonfinite' (out partly written) instead of 'ok'. Ctrl-C is honoured " \
        "between two chunks of `batch` rows."
        st = self._predict_x(out, params, state, X, link, check_x)
        return "nonfinite" if st == FNN_ENONFINITE else "ok"

    cdef int _predict_x(self, out, params, state, X, bint link, bint check_x) except -1:
        # predict: FNN_OK, or FNN_ENONFINITE when check_x found a NaN or infinity; any other
        # status raises. The buffers are taken in the order of the arguments, so the first bad
        # argument is the one named. One call for every row count, so no fused-type dispatch: the
        # buffers are taken directly and the sizes compared inline (the message comes from
        # _check_sizes only when they disagree).
        cdef Py_buffer bo, bp, bs, bx
        cdef int st
        cdef Py_ssize_t n
        _get_array(&bo, out, "out", 2, True, self.is_f64)
        try:
            _get_array(&bp, params, "params", 1, False, self.is_f64)
            try:
                _get_array(&bs, state, "state", 1, False, self.is_f64)
                try:
                    _get_array(&bx, X, "X", 2, False, self.is_f64)
                    try:
                        n = bx.shape[0]
                        if not (bp.shape[0] >= self.net.n_params and bs.shape[0] >= max(self.net.n_state, 1)
                                and bx.shape[1] == self.net.n_inputs and bo.shape[0] == n
                                and bo.shape[1] == self.net.n_outputs):
                            self._check_sizes(bp.shape[0], -1, 0, bs.shape[0], -1, n, bx.shape[1],
                                              (bo.shape[0], bo.shape[1]), -2, -2, "out")
                        st = self._run_predict(bo.buf, bp.buf, bs.buf, bx.buf, n, link, check_x)
                    finally:
                        PyBuffer_Release(&bx)
                finally:
                    PyBuffer_Release(&bs)
            finally:
                PyBuffer_Release(&bp)
        finally:
            PyBuffer_Release(&bo)
        return st

    cdef int _run_predict(self, void *out, const void *params, const void *state, const void *X, int64_t n,
                          bint link, bint check_x) except -1:
        # the engine call of predict and predict_lean, on arrays already checked: FNN_OK, or
        # FNN_ENONFINITE when check_x found a NaN or infinity; any other status raises
        cdef list raised = []
        cdef int st
        self._enter()
        try:
            with nogil:
                if self.is_f64:
                    st = _predict(<double *>out, params, state, X, n, self.ws, &self.net, link, check_x,
                                  <void *>raised)
                else:
                    st = _predict(<float *>out, params, state, X, n, self.ws, &self.net, link, check_x,
                                  <void *>raised)
        finally:
            self._leave()
        if st == FNN_EINTR and raised:
            raise raised[0]
        if st == FNN_ENONFINITE and check_x:
            return st
        check_status(st)
        return FNN_OK


def all_finite(const floating[::1] x):
    "all_finite(x)\n--\n\n" \
    "True when no element of the 1-D C-contiguous x is NaN or infinite: input validation's check " \
    "of a whole data set, shared by the threads for a large one (fnn_finite)."
    cdef int ok
    cdef int64_t n = x.shape[0]
    if n == 0:
        return True
    with nogil:
        ok = fnn_finite(&x[0], n)
    return ok != 0


def lean_rows(X, params, int64_t n_inputs):
    "lean_rows(X, params, n_inputs)\n--\n\n" \
    "X's row count when an engine of params' dtype reads X as it is in predict_lean (2-D, " \
    "C-contiguous, aligned, of params' dtype in native byte order, n_inputs wide), else 0: the " \
    "check alone, before an engine is chosen."
    if type(params) is not _ndarray or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>params):
        return 0
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>params)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        return 0
    return _lean_x_rows(X, typenum, n_inputs)


cdef cnp.npy_intp _lean_x_rows(object X, int typenum, int64_t n_inputs) noexcept:
    # X's row count when predict_lean reads X as it is (_plain_data, with rows, n_inputs wide), else 0
    if _plain_data(X, 2, typenum, 1) == NULL or cnp.PyArray_DIMS(<cnp.ndarray>X)[1] != n_inputs:
        return 0
    return cnp.PyArray_DIMS(<cnp.ndarray>X)[0]


cdef void *_plain_data(object a, int ndim, int typenum, cnp.npy_intp rows) noexcept:
    # a's data, when a is an ndarray the engine reads as it is (_native_array, C-contiguous, with
    # at least `rows` rows); else NULL
    if (not _native_array(a, ndim, typenum) or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)
            or cnp.PyArray_DIMS(<cnp.ndarray>a)[0] < rows):
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef int _predict(floating *out, const void *params, const void *state, const void *X, int64_t n, void *ws,
                  const fnn_net *net, int link, int check_x, void *raised) noexcept nogil:
    # Engine.predict's call, typed by `out` (the arrays' types were checked against it)
    return fnn_predict(out, <const floating *>params, <const floating *>state, ws, net, <const floating *>X,
                       n, link, check_x, _check_signals, raised)


cdef int _get_array(Py_buffer *view, object arr, str name, int ndim, bint writable, bint f64) except -1:
    # view: arr's memory, a C-contiguous ndim-D array of float64 (f64) or float32, held until
    # PyBuffer_Release; anything else raises TypeError or ValueError and holds nothing
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
    if writable:
        flags |= PyBUF_WRITABLE
    if arr is None:
        raise TypeError(f"fastnn engine: {name} is None, not an array")
    try:
        PyObject_GetBuffer(arr, view, flags)
    except (BufferError, ValueError, TypeError) as exc:
        raise ValueError(f"fastnn engine: {name} must be a {'writable ' if writable else ''}C-contiguous "
                         f"{'float64' if f64 else 'float32'} array ({exc})") from None
    cdef bytes fmt = view.format if view.format != NULL else b"B"
    cdef int got = view.ndim
    if got != ndim or fmt != (b"d" if f64 else b"f"):
        PyBuffer_Release(view)
        raise TypeError(f"fastnn engine: {name} must be a {ndim}-D {'float64' if f64 else 'float32'} "
                        f"array, not {got}-D of format {fmt.decode(errors='replace')!r}")
    return 0
