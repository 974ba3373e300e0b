# The training engine: an Engine owns the C network description and one workspace (allocated
# once, for batches of up to `batch` rows). Parameters, optimizer slots, running statistics and
# counters are NumPy arrays owned by the model and passed in on every call, so the engine holds no
# model state and two engines can run at once from two threads (the GIL is released).
#
# Training calls return a dict: status ("ok", "interrupted", "nonfinite"), batches, samples,
# loss_sum, weight_sum, correct, bad_batch, exception (the KeyboardInterrupt or other exception
# raised by a signal handler between two batches, for the caller to re-raise once it has tidied up).
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

cdef dict _result(int st, fnn_train_result *r, list raised):
    if st == FNN_EINTR:
        status = "interrupted"
    elif st == FNN_ENONFINITE:
        status = "nonfinite"
    else:
        check_status(st)
        status = "ok"
    return {"status": status, "batches": r.batches, "samples": r.samples, "loss_sum": r.loss_sum,
            "weight_sum": r.weight_sum, "correct": r.correct, "bad_batch": r.bad_batch,
            "exception": raised[0] if raised else None}

cdef class Engine:
    cdef fnn_net net
    cdef fnn_layer *layers
    cdef void *ws
    cdef readonly bint is_f64
    cdef readonly int64_t batch

    def __cinit__(self, dict spec, dtype, int64_t batch):
        self.layers = NULL
        self.ws = NULL
        layers = spec["layers"]
        cdef int i, st
        self.is_f64 = str(dtype) == "float64"
        self.batch = batch
        self.layers = <fnn_layer *>malloc(max(len(layers), 1) * sizeof(fnn_layer))
        if self.layers == NULL:
            raise MemoryError()
        for i, ly in enumerate(layers):
            self.layers[i].kind = ly["kind"]
            self.layers[i].activation = ly["activation"]
            self.layers[i].n_in = ly["n_in"]
            self.layers[i].n_out = ly["n_out"]
            self.layers[i].w_off = ly["w_off"]
            self.layers[i].b_off = ly["b_off"]
            self.layers[i].s_off = ly["s_off"]
            self.layers[i].alpha = ly["alpha"]
            self.layers[i].rate = ly["rate"]
            self.layers[i].momentum = ly["momentum"]
            self.layers[i].eps = ly["eps"]
        self.net.n_layers = len(layers)
        self.net.layers = self.layers
        self.net.loss = spec["loss"]
        self.net.n_inputs = spec["n_inputs"]
        self.net.n_outputs = spec["n_outputs"]
        self.net.n_params = spec["n_params"]
        self.net.n_decay = spec["n_decay"]
        self.net.n_state = spec["n_state"]
        self.net.seed = spec["seed"]
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

    cdef int _dtype_check(self, bint f64) except -1:
        if f64 != self.is_f64:
            raise TypeError(f"this engine works in {'float64' if self.is_f64 else 'float32'}")
        return 0

    def train_epoch(self, floating[::1] params, floating[::1] slots, floating[::1] state,  # IN/OUT
                    int64_t[::1] counters, int64_t[::1] perm,                              # IN/OUT
                    dict optim,
                    const floating[:, ::1] X, const floating[:, ::1] T, const int64_t[::1] labels,
                    const floating[::1] sw,                                                # IN
                    int64_t batch, bint shuffle, int64_t epoch):
        self._dtype_check(floating is double)
        cdef fnn_optim opt = _optim_struct(optim)
        cdef fnn_train_result r
        cdef list raised = []
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        with nogil:
            st = fnn_train_epoch(&r, &params[0], &slots[0], &state[0], &counters[0], &perm[0],
                                 self.ws, &self.net, &opt, &X[0, 0],
                                 NULL if T is None else &T[0, 0], lab, swp, X.shape[0],
                                 batch, shuffle, epoch, _check_signals, <void *>raised)
        return _result(st, &r, raised)

    def train_step(self, floating[::1] params, floating[::1] slots, floating[::1] state,
                   int64_t[::1] counters, dict optim,
                   const floating[:, ::1] X, const floating[:, ::1] T, const int64_t[::1] labels,
                   const floating[::1] sw, int64_t epoch):
        self._dtype_check(floating is double)
        cdef fnn_optim opt = _optim_struct(optim)
        cdef fnn_train_result r
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        with nogil:
            st = fnn_train_step(&r, &params[0], &slots[0], &state[0], &counters[0],
                                self.ws, &self.net, &opt, &X[0, 0],
                                NULL if T is None else &T[0, 0], lab, swp, X.shape[0], epoch)
        return _result(st, &r, [])

    def gradient(self, floating[::1] grads,                                     # OUT
                 const floating[::1] params, const floating[:, ::1] X, const floating[:, ::1] T,
                 const int64_t[::1] labels, const floating[::1] sw, int64_t step):
        self._dtype_check(floating is double)
        cdef double loss = 0
        cdef int st
        cdef const int64_t *lab = NULL if labels is None else &labels[0]
        cdef const floating *swp = NULL if sw is None else &sw[0]
        with nogil:
            st = fnn_gradient(&loss, &grads[0], &params[0], self.ws, &self.net,
                              &X[0, 0], NULL if T is None else &T[0, 0], lab, swp, X.shape[0], step)
        if st == FNN_ENONFINITE:
            return float("nan")
        check_status(st)
        return loss

    def predict(self, floating[:, ::1] out,                                     # OUT n x n_outputs
                const floating[::1] params, const floating[::1] state, const floating[:, ::1] X,
                bint link=False):
        self._dtype_check(floating is double)
        cdef int st
        with nogil:
            st = fnn_predict(&out[0, 0], &params[0], &state[0], self.ws, &self.net,
                             &X[0, 0], X.shape[0], link)
        check_status(st)
