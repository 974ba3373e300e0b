# Optimizer updates on flat buffers (params[0:n_decay] are the decayed weights) and the
# learning-rate schedule. Formulas: csrc/fastnn_api.h. form: fnn_optim_form (0 PyTorch's, 1
# scikit-learn's).

def sgd_update(floating[::1] p, floating[::1] vel,      # IN/OUT
               const floating[::1] g,                    # IN
               int64_t n_decay, double lr, double momentum=0.0, bint nesterov=False,
               double l2=0.0, double l1=0.0, double weight_decay=0.0, int form=0):
    agree("sgd_update", _s1(p), {"g": _s1(g)})
    if not 0 <= n_decay <= p.shape[0]:
        raise ValueError(f"sgd_update: n_decay {n_decay} is outside [0, {p.shape[0]}]")
    if momentum != 0:
        agree("sgd_update", _s1(p), {"vel": _s1(vel)})
    if form not in (0, 1):
        raise ValueError(f"sgd_update: form must be 0 or 1, not {form}")
    with nogil:
        fnn_sgd_update(&p[0], &vel[0], &g[0], p.shape[0], n_decay, lr, momentum, nesterov, l2, l1, weight_decay, form)

def adam_update(floating[::1] p, floating[::1] m, floating[::1] v,   # IN/OUT
                const floating[::1] g,                                # IN
                int64_t n_decay, int64_t t, double lr, double beta1=0.9, double beta2=0.999,
                double eps=1e-8, double l2=0.0, double l1=0.0, double weight_decay=0.0, int form=0):
    agree("adam_update", _s1(p), {"m": _s1(m), "v": _s1(v), "g": _s1(g)})
    if not 0 <= n_decay <= p.shape[0]:
        raise ValueError(f"adam_update: n_decay {n_decay} is outside [0, {p.shape[0]}]")
    if form not in (0, 1):
        raise ValueError(f"adam_update: form must be 0 or 1, not {form}")
    with nogil:
        fnn_adam_update(&p[0], &m[0], &v[0], &g[0], p.shape[0], n_decay, t, lr, beta1, beta2, eps, l2, l1, weight_decay, form)

def rmsprop_update(floating[::1] p, floating[::1] s,   # IN/OUT
                   const floating[::1] g,               # IN
                   int64_t n_decay, double lr, double rho=0.99, double eps=1e-8,
                   double l2=0.0, double l1=0.0, double weight_decay=0.0):
    agree("rmsprop_update", _s1(p), {"s": _s1(s), "g": _s1(g)})
    if not 0 <= n_decay <= p.shape[0]:
        raise ValueError(f"rmsprop_update: n_decay {n_decay} is outside [0, {p.shape[0]}]")
    with nogil:
        fnn_rmsprop_update(&p[0], &s[0], &g[0], p.shape[0], n_decay, lr, rho, eps, l2, l1, weight_decay)

def lr_at(optim, int64_t epoch, int64_t step, int64_t samples_seen):
    """Learning rate of the OPTIM record's schedule at that point (fnn_lr_at)."""
    cdef fnn_optim c
    _read_optim(&c, optim)
    return fnn_lr_at(&c, epoch, step, samples_seen)
