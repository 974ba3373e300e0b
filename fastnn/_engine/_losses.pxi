# Losses on raw outputs Z: value (forward) and gradient dL/dZ (backward), by code
# (fastnn._codes.LOSSES). T: real targets m x n (sigmoid_bce, mse); labels: int64 m (softmax_xent);
# sw: sample weights m or None. The loss is sum_i w_i l_i / sum_i w_i.

def loss_forward(int loss,
                 const floating[:, ::1] Z,                 # IN m x n
                 const floating[:, ::1] T=None,            # IN m x n targets
                 const int64_t[::1] labels=None,           # IN m labels
                 const floating[::1] sw=None):             # IN m sample weights
    agree("loss_forward", _s2(Z), {"T": None if T is None else _s2(T)})
    agree("loss_forward", (Z.shape[0],), {"labels": None if labels is None else (labels.shape[0],),
                                          "sw": None if sw is None else _s1(sw)})
    cdef double value = 0
    cdef int st
    cdef const int64_t *lab = NULL if labels is None else &labels[0]
    cdef const floating *swp = NULL if sw is None else &sw[0]
    with nogil:
        st = fnn_loss_forward_backward(loss, &value, NULL, &Z[0, 0],
                                       NULL if T is None else &T[0, 0], lab, swp,
                                       Z.shape[0], Z.shape[1])
    check_status(st)
    return value

def loss_backward(int loss,
                  floating[:, ::1] dZ,                     # OUT m x n
                  const floating[:, ::1] Z,                # IN  m x n
                  const floating[:, ::1] T=None,
                  const int64_t[::1] labels=None,
                  const floating[::1] sw=None):
    agree("loss_backward", _s2(Z), {"dZ": _s2(dZ), "T": None if T is None else _s2(T)})
    agree("loss_backward", (Z.shape[0],), {"labels": None if labels is None else (labels.shape[0],),
                                           "sw": None if sw is None else _s1(sw)})
    cdef int st
    cdef const int64_t *lab = NULL if labels is None else &labels[0]
    cdef const floating *swp = NULL if sw is None else &sw[0]
    with nogil:
        st = fnn_loss_forward_backward(loss, NULL, &dZ[0, 0], &Z[0, 0],
                                       NULL if T is None else &T[0, 0], lab, swp,
                                       Z.shape[0], Z.shape[1])
    check_status(st)
