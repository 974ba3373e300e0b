# Activations and their derivatives, by code (fastnn._codes.ACTIVATIONS), on m x n matrices.
# Backward writes dX = dY * f'(.) from the output Y; dX may be dY itself.

def activation_forward(int act,
                       floating[:, ::1] Y,         # OUT m x n
                       const floating[:, ::1] X,   # IN  m x n
                       double alpha=0.0):          # leaky relu slope
    agree("activation_forward", _s2(X), {"Y": _s2(Y)})
    cdef int st
    with nogil:
        st = fnn_activation_forward(act, &Y[0, 0], &X[0, 0], X.shape[0], X.shape[1], alpha)
    check_status(st)

def activation_backward(int act,
                        floating[:, ::1] dX,        # OUT m x n
                        const floating[:, ::1] dY,  # IN  m x n upstream gradient
                        const floating[:, ::1] Y,   # IN  m x n forward output
                        double alpha=0.0):
    agree("activation_backward", _s2(Y), {"dX": _s2(dX), "dY": _s2(dY)})
    cdef int st
    with nogil:
        st = fnn_activation_backward(act, &dX[0, 0], &dY[0, 0], &Y[0, 0], Y.shape[0], Y.shape[1], alpha)
    check_status(st)
