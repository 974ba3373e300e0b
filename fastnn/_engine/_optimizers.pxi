# Optimizer updates on flat buffers (params[0:n_decay] are the decayed weights) and the
# learning-rate schedule. Formulas: csrc/fastnn_api.h.

def sgd_update(floating[::1] p, floating[::1] vel,      # IN/OUT
               const floating[::1] g,                    # IN
               int64_t n_decay, double lr, double momentum=0.0, bint nesterov=False,
               double l2=0.0, double l1=0.0, double weight_decay=0.0):
    with nogil:
        fnn_sgd_update(&p[0], &vel[0], &g[0], p.shape[0], n_decay, lr, momentum, nesterov, l2, l1, weight_decay)

def adam_update(floating[::1] p, floating[::1] m, floating[::1] v,   # IN/OUT
                const floating[::1] g,                                # IN
                int64_t n_decay, int64_t t, double lr, double beta1=0.9, double beta2=0.999,
                double eps=1e-8, double l2=0.0, double l1=0.0, double weight_decay=0.0):
    with nogil:
        fnn_adam_update(&p[0], &m[0], &v[0], &g[0], p.shape[0], n_decay, t, lr, beta1, beta2, eps, l2, l1, weight_decay)

def rmsprop_update(floating[::1] p, floating[::1] s,   # IN/OUT
                   const floating[::1] g,               # IN
                   int64_t n_decay, double lr, double rho=0.99, double eps=1e-8,
                   double l2=0.0, double l1=0.0, double weight_decay=0.0):
    with nogil:
        fnn_rmsprop_update(&p[0], &s[0], &g[0], p.shape[0], n_decay, lr, rho, eps, l2, l1, weight_decay)

cdef fnn_optim _optim_struct(dict o) except *:
    cdef fnn_optim c
    c.kind = o["kind"]; c.nesterov = o["nesterov"]
    c.lr = o["lr"]; c.momentum = o["momentum"]; c.beta1 = o["beta1"]; c.beta2 = o["beta2"]
    c.eps = o["eps"]; c.rho = o["rho"]; c.l2 = o["l2"]; c.l1 = o["l1"]
    c.weight_decay = o["weight_decay"]; c.schedule = o["schedule"]; c.gamma = o["gamma"]
    c.power_t = o["power_t"]; c.lr_min = o["lr_min"]; c.lr_scale = o["lr_scale"]
    c.step_size = o["step_size"]; c.total_steps = o["total_steps"]
    return c

def lr_at(dict optim, int64_t epoch, int64_t step, int64_t samples_seen):
    cdef fnn_optim c = _optim_struct(optim)
    return fnn_lr_at(&c, epoch, step, samples_seen)
