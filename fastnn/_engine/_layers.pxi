# Random numbers, dropout and batch normalisation.

def rng_key(uint64_t seed, uint64_t kind, uint64_t index):
    return fnn_rng_key(seed, kind, index)

def rng_uniform(double[::1] out, uint64_t key, uint64_t ctr0=0):   # OUT n uniforms in [0, 1)
    with nogil:
        fnn_rng_uniform(&out[0], key, ctr0, out.shape[0])

def shuffle(int64_t[::1] perm, uint64_t key):                      # OUT a permutation of range(n)
    with nogil:
        fnn_shuffle(&perm[0], key, perm.shape[0])

def dropout_forward(floating[:, ::1] Y, floating[:, ::1] mask,    # OUT m x n
                    const floating[:, ::1] X,                      # IN  m x n
                    double rate, uint64_t key):
    agree("dropout_forward", _s2(X), {"Y": _s2(Y), "mask": _s2(mask)})
    with nogil:
        fnn_dropout_forward(&Y[0, 0], &mask[0, 0], &X[0, 0], X.shape[0] * X.shape[1], rate, key)

def dropout_backward(floating[:, ::1] dX,                          # OUT
                     const floating[:, ::1] dY, const floating[:, ::1] mask):
    agree("dropout_backward", _s2(dY), {"dX": _s2(dX), "mask": _s2(mask)})
    with nogil:
        fnn_dropout_backward(&dX[0, 0], &dY[0, 0], &mask[0, 0], dY.shape[0] * dY.shape[1])

def batchnorm_forward(floating[:, ::1] Y, floating[:, ::1] xhat,          # OUT m x n
                      floating[::1] mean, floating[::1] var, floating[::1] inv_std,  # OUT n
                      const floating[:, ::1] X,                            # IN  m x n
                      const floating[::1] gamma, const floating[::1] beta, double eps=1e-5):
    agree("batchnorm_forward", _s2(X), {"Y": _s2(Y), "xhat": _s2(xhat)})
    agree("batchnorm_forward", (X.shape[1],), {"mean": _s1(mean), "var": _s1(var), "inv_std": _s1(inv_std),
                                               "gamma": _s1(gamma), "beta": _s1(beta)})
    with nogil:
        fnn_batchnorm_forward(&Y[0, 0], &xhat[0, 0], &mean[0], &var[0], &inv_std[0], &X[0, 0],
                              &gamma[0], &beta[0], X.shape[0], X.shape[1], eps)

def batchnorm_running(floating[::1] run_mean, floating[::1] run_var,     # IN/OUT n
                      const floating[::1] mean, const floating[::1] var,  # IN n
                      int64_t m, double momentum=0.1):
    agree("batchnorm_running", _s1(mean), {"run_mean": _s1(run_mean), "run_var": _s1(run_var),
                                            "var": _s1(var)})
    with nogil:
        fnn_batchnorm_running(&run_mean[0], &run_var[0], &mean[0], &var[0], m, mean.shape[0], momentum)

def batchnorm_inference(floating[:, ::1] Y,                               # OUT m x n
                        const floating[:, ::1] X, const floating[::1] gamma, const floating[::1] beta,
                        const floating[::1] run_mean, const floating[::1] run_var, double eps=1e-5):
    agree("batchnorm_inference", _s2(X), {"Y": _s2(Y)})
    agree("batchnorm_inference", (X.shape[1],), {"gamma": _s1(gamma), "beta": _s1(beta),
                                                 "run_mean": _s1(run_mean), "run_var": _s1(run_var)})
    with nogil:
        fnn_batchnorm_inference(&Y[0, 0], &X[0, 0], &gamma[0], &beta[0], &run_mean[0], &run_var[0],
                                X.shape[0], X.shape[1], eps)

def batchnorm_backward(floating[:, ::1] dX,                                # OUT m x n
                       floating[::1] dgamma, floating[::1] dbeta,          # IN/OUT n (added into)
                       const floating[:, ::1] dY, const floating[:, ::1] xhat,
                       const floating[::1] inv_std, const floating[::1] gamma):
    agree("batchnorm_backward", _s2(dY), {"dX": _s2(dX), "xhat": _s2(xhat)})
    agree("batchnorm_backward", (dY.shape[1],), {"dgamma": _s1(dgamma), "dbeta": _s1(dbeta),
                                                 "inv_std": _s1(inv_std), "gamma": _s1(gamma)})
    with nogil:
        fnn_batchnorm_backward(&dX[0, 0], &dgamma[0], &dbeta[0], &dY[0, 0], &xhat[0, 0], &inv_std[0],
                               &gamma[0], dY.shape[0], dY.shape[1])
