"""fastnn check: the compiled kernels against the NumPy oracle, and the configuration in use."""
import numpy as np

from . import _common as c

NAME = "check"
HELP = "check the compiled kernels against the NumPy oracle and show the configuration"
DESCRIPTION = """\
Show fastnn's configuration (backend, GEMM kernel, OpenMP, threads), then run every compiled
kernel family (gemm with each transpose, bias, activations, losses, dropout, batch norm, the
optimizers' updates) on random data in float32 and float64 beside the NumPy oracle, one line per
check. Exits with status 1 if any differs."""
EPILOG = """\
examples:
  fastnn check
  FASTNN_ARCH=generic fastnn check      # force the portable GEMM kernel"""


def add_arguments(p):
    c.add_common(p)


def _compare(C, R, call, *outs):
    """Run call(backend, *outputs) on the compiled kernels C and on the oracle R, each on its own
    copies of `outs` (the outputs, which may also be inputs: backward passes add into them). The
    largest difference over every output and the returned value, relative to max(1, |oracle|)."""
    got = []
    for be in (C, R):
        o = [x.copy() for x in outs]
        r = call(be, *o)
        got.append(o + ([np.float64(r)] if r is not None else []))
    err = 0.0
    for a, b in zip(*got):
        b64 = np.asarray(b, np.float64)
        if b64.size:
            d = np.abs(np.asarray(a, np.float64) - b64).max() / max(1.0, np.abs(b64).max())
            err = max(err, d if d == d else np.inf)  # NaN is a failure
    return err


def _kernel_checks(C, R, dt, rng):
    """{name: error} of every compiled kernel family against the oracle, in dtype dt."""
    def data(*shape):
        return rng.standard_normal(shape).astype(dt)

    def out(*shape):  # an output the kernel must write: NaN until it does
        return np.full(shape, np.nan, dt)

    checks = {}
    # gemm, each transpose: C = 0.7 op(A) op(B) - 1.3 C0
    C0 = data(37, 29)
    for name, ta, tb in (("gemm", 0, 0), ("gemm_tA", 1, 0), ("gemm_tB", 0, 1), ("gemm_tAB", 1, 1)):
        A = data(53, 37) if ta else data(37, 53)
        B = data(29, 53) if tb else data(53, 29)
        checks[name] = _compare(C, R, lambda be, c: be.gemm(c, A, B, bool(ta), bool(tb), 0.7, -1.3), C0)
    X, dY = data(17, 11), data(17, 11)
    checks["bias"] = _compare(C, R, lambda be, y: be.bias_forward(y, X[0]), dY)
    checks["bias_bwd"] = _compare(C, R, lambda be, db: be.bias_backward(db, dY), X[1])
    # activations, forward and backward (the backward from the oracle's output)
    for name, code in (("identity", 0), ("relu", 1), ("leaky_relu", 2), ("sigmoid", 3), ("tanh", 4),
                       ("softmax", 5)):
        Y = np.empty_like(X)
        R.activation_forward(code, Y, X, 0.1)
        checks[name] = _compare(C, R, lambda be, y: be.activation_forward(code, y, X, 0.1), out(*X.shape))
        checks[name + "_bwd"] = _compare(C, R, lambda be, dx: be.activation_backward(code, dx, dY, Y, 0.1),
                                         out(*X.shape))
    # losses: value and gradient, with sample weights
    labels = rng.integers(0, 11, 17)
    T = rng.uniform(0, 1, X.shape).astype(dt)
    sw = rng.uniform(0.5, 2, 17).astype(dt)
    for name, code in (("loss_xent", 0), ("loss_bce", 1), ("loss_mse", 2)):
        t, lab = (None, labels) if code == 0 else (T, None)
        checks[name] = _compare(C, R, lambda be: be.loss_forward(code, X, t, lab, sw))
        checks[name + "_bwd"] = _compare(C, R, lambda be, dz: be.loss_backward(code, dz, X, t, lab, sw),
                                         out(*X.shape))
    # dropout: the mask, the output and the backward pass
    key = R.rng_key(7, 16, 3)
    checks["dropout"] = _compare(C, R, lambda be, y, m: be.dropout_forward(y, m, X, 0.3, key),
                                 out(*X.shape), out(*X.shape))
    mask = np.empty_like(X)
    R.dropout_forward(np.empty_like(X), mask, X, 0.3, key)
    checks["dropout_bwd"] = _compare(C, R, lambda be, dx: be.dropout_backward(dx, dY, mask), out(*X.shape))
    # batch norm: training forward, running statistics, inference, backward
    n = X.shape[1]
    gamma, beta = rng.uniform(0.5, 2, n).astype(dt), data(n)
    Xb = X * 2 + 3
    checks["batchnorm"] = _compare(
        C, R, lambda be, *o: be.batchnorm_forward(*o, Xb, gamma, beta, 1e-5),
        out(17, n), out(17, n), out(n), out(n), out(n))
    xhat, mean, var, inv = np.empty_like(X), np.empty(n, dt), np.empty(n, dt), np.empty(n, dt)
    R.batchnorm_forward(np.empty_like(X), xhat, mean, var, inv, Xb, gamma, beta, 1e-5)
    run_var = rng.uniform(0.5, 2, n).astype(dt)
    checks["batchnorm_run"] = _compare(
        C, R, lambda be, rm, rv: be.batchnorm_running(rm, rv, mean, var, 17, 0.1), data(n), run_var)
    checks["batchnorm_inf"] = _compare(
        C, R, lambda be, y: be.batchnorm_inference(y, Xb, gamma, beta, mean, run_var, 1e-5), out(*X.shape))
    checks["batchnorm_bwd"] = _compare(
        C, R, lambda be, dx, dg, db: be.batchnorm_backward(dx, dg, db, dY, xhat, inv, gamma),
        out(*X.shape), data(n), data(n))
    # optimizers: two steps each, with every penalty, on 50 parameters of which 30 are decayed
    p0, s0, g1, g2 = data(50), np.abs(data(50)), data(50), data(50)
    pen = dict(l2=1e-2, l1=1e-3, weight_decay=0.05)

    def two_steps(update):
        def call(be, p, *slots):
            for t, g in ((1, g1), (2, g2)):
                update(be, p, slots, g, t)
        return call

    for name, mu, nest in (("sgd", 0.0, False), ("sgd_momentum", 0.9, False), ("sgd_nesterov", 0.9, True)):
        checks[name] = _compare(
            C, R, two_steps(lambda be, p, s, g, t: be.sgd_update(p, *s, g, 30, 0.1, mu, nest, **pen)), p0, s0)
    adam = two_steps(lambda be, p, s, g, t: be.adam_update(p, *s, g, 30, t, 0.01, 0.9, 0.999, 1e-8, **pen))
    checks["adam"] = _compare(C, R, adam, p0, s0, s0 * s0)
    rmsprop = two_steps(lambda be, p, s, g, t: be.rmsprop_update(p, *s, g, 30, 0.01, 0.9, 1e-8, **pen))
    checks["rmsprop"] = _compare(C, R, rmsprop, p0, s0)
    return checks


def self_check():
    """Compare every compiled kernel with the NumPy oracle on random data (gemm with each
    transpose, bias, activations and losses forward and backward, dropout, batch norm, the three
    optimizers' updates); print one line per check and return True if all agree."""
    from .. import _engine as _backend
    from .._engine import reference as R
    if "c" not in _backend.available_backends():
        print("compiled extension not available: nothing to check (NumPy backend in use)")
        return True
    from .._engine import _ext as C
    rng = np.random.default_rng(0)
    ok = True
    for dt, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        for name, err in _kernel_checks(C, R, dt, rng).items():
            good = bool(err <= tol)
            ok &= good
            print(f"  {np.dtype(dt).name:8s} {name:14s} max error {err:.2e}  {'ok' if good else 'FAIL'}")
    return ok


def warn_if_slow():
    from .. import _engine as _backend
    if "c" not in _backend.available_backends():
        print("*** fastnn's compiled extension is not importable, so this runs on the slow NumPy backend.\n"
              "*** From a source checkout, run the installed `fastnn` command (or run Python outside the\n"
              f"*** repository root); import error: {_backend._EXT_ERROR}", flush=True)


def run(args):
    import fastnn
    c.select_backend(args)
    warn_if_slow()
    fastnn.show_config()
    print("kernel self-check:", flush=True)
    if not self_check():
        print("self-check FAILED", flush=True)
        return 1
    return 0
