"""The NumPy oracle: every function of the compiled backend (fastnn._ext), same names, same
signatures, same in-place outputs, written as plainly as the maths allows. It is the definition the
C kernels are tested against and the backend fastnn falls back to when the extension is not built.

Conventions (as in csrc/fastnn.h): outputs first; `_forward` overwrites; `_backward` overwrites the
input gradient and adds into parameter gradients; derivatives are taken from activation outputs.
"""
import math
import signal
import threading

import numpy as np

from . import activations as _activations, losses as _losses, records as _records
from .codes import CTR_SAMPLES, CTR_STEP, FORMS, OPTIMIZERS, ORDERS, RNG_DROPOUT, RNG_SHUFFLE, SK_LOSSES, STATUSES
from .codes import c_constants as _c_constants
from .validation import FLOAT_DTYPES as _FLOATS, nonfinite_error as _nonfinite_error  # native byte order

BACKEND = "python"


# -- configuration (mirrors _ext) -----------------------------------------------------------------
def arch_name():
    return "numpy"


def arch_list():
    return ["numpy"]


def arch_available(name):
    return name == "numpy"


def arch_request():
    """FASTNN_ARCH chooses among compiled kernels only: nothing to report here."""
    return STATUSES["ok"]


def set_arch(name):
    if name != "numpy":
        raise ValueError(f"kernel {name!r} is not available in the Python backend")


def openmp_enabled():
    return False


def get_num_threads():
    return 1


def set_num_threads(n):
    pass


def get_cpu_cap():
    return 1


def set_cpu_cap(n):
    pass


def teams_started():
    """Calls that ran on several threads: none here (one thread)."""
    return 0


def phase_times(reset=True):
    """The compiled engine's phase clock (csrc/profile.h); the NumPy backend has none."""
    return None


_limit = __import__("threading").local()


def get_thread_limit():
    return getattr(_limit, "n", 0)


def set_thread_limit(n):
    _limit.n = max(int(n), 0)


def constants():
    """{C name: value} of the codes this backend uses: fastnn/_engine/codes.py's (the compiled
    backend reads the same names from csrc/fastnn.h)."""
    return _c_constants()


def struct_layout():
    """{C struct: {"sizeof": bytes, "offsetof": {field: offset}, "fieldsize": {field: bytes}}} of
    the records this backend reads (fastnn/_engine/records.py; the compiled backend reports its C
    compiler's layout)."""
    dtypes = {"fnn_layer": _records.LAYER, "fnn_optim": _records.OPTIM, "fnn_net": _records._NET_C,
              "fnn_train_result": _records.RESULT}
    return {name: {"sizeof": dt.itemsize,
                   "offsetof": {f: dt.fields[f][1] for f in dt.names},
                   "fieldsize": {f: dt.fields[f][0].itemsize for f in dt.names}}
            for name, dt in dtypes.items()}


# -- gemm -----------------------------------------------------------------------------------------
SKINNY_M = 4  # csrc/internal.h FNN_SKINNY_M: products of at most this many rows take gemm_skinny
def gemm(C, A, B, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
    """C = alpha op(A) @ op(B) + beta C; beta == 0 never reads C, alpha == 0 never reads A or B."""
    a = A.T if trans_a else A
    b = B.T if trans_b else B
    if a.shape[1] != b.shape[0] or C.shape != (a.shape[0], b.shape[1]):
        raise ValueError("fastnn: invalid argument (sizes, labels or options)")
    if alpha == 0:  # BLAS's convention, as the compiled kernels: A and B are not read
        C[...] = 0 if beta == 0 else C.dtype.type(beta) * C
        return
    prod = (a @ b).astype(C.dtype, copy=False) * C.dtype.type(alpha)
    C[...] = prod if beta == 0 else prod + C.dtype.type(beta) * C


gemm_naive = gemm


def bias_forward(Y, b):
    Y += b


def bias_backward(db, dY):
    db += dY.sum(axis=0)


# -- activations: forward, and backward from the output y ------------------------------------------
def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_FORWARD = {
    0: lambda x, a: x.copy(),
    1: lambda x, a: np.maximum(x, 0),
    2: lambda x, a: np.where(x > 0, x, x.dtype.type(a) * x),
    3: lambda x, a: _sigmoid(x),
    4: lambda x, a: np.tanh(x),
    5: lambda x, a: _softmax(x),
}
_BACKWARD = {
    0: lambda dy, y, a: dy.copy(),
    1: lambda dy, y, a: np.where(y > 0, dy, 0),
    2: lambda dy, y, a: np.where(y > 0, dy, y.dtype.type(a) * dy),
    3: lambda dy, y, a: dy * y * (1 - y),
    4: lambda dy, y, a: dy * (1 - y * y),
    5: lambda dy, y, a: y * (dy - (dy * y).sum(axis=1, keepdims=True)),
}


def activation_forward(act, Y, X, alpha=0.0):
    if act not in _FORWARD:
        raise ValueError("fastnn: invalid argument (sizes, labels or options)")
    Y[...] = _FORWARD[act](X, alpha)


def activation_backward(act, dX, dY, Y, alpha=0.0):
    if act not in _BACKWARD:
        raise ValueError("fastnn: invalid argument (sizes, labels or options)")
    dX[...] = _BACKWARD[act](dY, Y, alpha)


# -- losses: value and gradient w.r.t. raw outputs ------------------------------------------------
def _weights(sw, m):
    """w_i / sum w (all zeros when the weights sum to zero)."""
    w = np.ones(m) if sw is None else sw.astype(np.float64)
    total = w.sum()
    return np.zeros(m) if total == 0 else w / total


def _loss(loss, Z, T, labels, sw):
    """(value, gradient) of one loss."""
    m, n = Z.shape
    w = _weights(sw, m)
    dt = Z.dtype.type
    if loss == 0:  # softmax cross-entropy
        if labels is None or np.any((labels < 0) | (labels >= n)):
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        mx = Z.max(axis=1, keepdims=True)
        e = np.exp(Z - mx)
        s = e.sum(axis=1, keepdims=True)
        per = mx[:, 0] + np.log(s[:, 0].astype(np.float64)) - Z[np.arange(m), labels]
        grad = e * (w[:, None].astype(Z.dtype) / s)
        grad[np.arange(m), labels] -= w.astype(Z.dtype)
        return float(np.dot(w, per)), grad
    if loss == 1:  # sigmoid binary cross-entropy on logits
        per = (np.maximum(Z, 0) - Z * T + np.log1p(np.exp(-np.abs(Z)))).astype(np.float64).sum(1) / n
        grad = (_sigmoid(Z) - T) * (w / n).astype(Z.dtype)[:, None]
        return float(np.dot(w, per)), grad
    if loss == 2:  # mean squared error
        per = ((Z - T) ** 2).astype(np.float64).sum(1) / n
        grad = (Z - T) * (2 * w / n).astype(Z.dtype)[:, None]
        return float(np.dot(w, per)), grad
    if loss in _SK_LOSS:
        return _sk_loss(_SK_LOSS[loss], Z, T, labels, w)
    raise ValueError("fastnn: invalid argument (sizes, labels or options)")


_SK_LOSS = {code: name for name, code in SK_LOSSES.items()}


def _clip(p):
    """scikit-learn's np.clip(p, eps, 1 - eps), eps of p's type."""
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


def _sk_loss(name, Z, T, labels, w):
    """scikit-learn's losses (sklearn/neural_network/_base.py): the value from the link's output
    p as scikit-learn computes it, the gradient (p - y) w_i / sum w as its backprop does."""
    m, n = Z.shape
    wz = w.astype(Z.dtype)[:, None]
    if name == "sk_log_loss":
        if labels is None or np.any((labels < 0) | (labels >= n)):
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        p = _softmax(Z)
        Y = np.zeros_like(Z)
        Y[np.arange(m), labels] = 1
        per = -np.log(_clip(p[np.arange(m), labels])).astype(np.float64)
    elif name == "sk_binary_log_loss":
        p, Y = _sigmoid(Z), T
        pc = _clip(p)
        per = -(T * np.log(pc) + (1 - T) * np.log(1 - pc)).astype(np.float64).sum(1)
    elif name == "sk_squared_error":
        p, Y = Z, T
        per = 0.5 * ((Z - T) ** 2).astype(np.float64).sum(1) / n
    else:  # sk_poisson
        p, Y = np.exp(Z), T
        with np.errstate(divide="ignore", invalid="ignore"):
            xlogy = np.where(T == 0, 0, T * np.log(T / p))
        per = (xlogy - T + p).astype(np.float64).sum(1)
    return float(np.dot(w, per)), (p - Y) * wz


def loss_forward(loss, Z, T=None, labels=None, sw=None):
    return _loss(loss, Z, T, labels, sw)[0]


def loss_backward(loss, dZ, Z, T=None, labels=None, sw=None):
    dZ[...] = _loss(loss, Z, T, labels, sw)[1]


# -- optimizers ------------------------------------------------------------------------------------
def _setting(dt, x):
    """A rate, momentum, penalty or decay rate (beta1, beta2, rho) in the dtype dt, 0 where it is
    below dt's smallest normal (the engine flushes subnormals: csrc/optimizers.c, setting). It
    decides the update's form and values."""
    v = dt(x)
    return v if abs(v) >= np.finfo(dt).tiny else dt(0)


def _penalised(p, g, n_decay, lr, l2, l1, weight_decay):
    """g' = g + l2 p + l1 sign(p) and p (1 - lr wd) on the decayed prefix. Without a penalty
    (l2 = l1 = 0 in the dtype) there is no penalty term at all, as in the compiled loops' plain
    and decay-only forms: g + 0 p would turn an infinite weight into NaN."""
    dt = p.dtype.type
    g = g.copy()
    d = slice(0, n_decay)
    l2, l1 = _setting(dt, l2), _setting(dt, l1)
    if l2 != 0 or l1 != 0:
        g[d] = g[d] + l2 * p[d] + l1 * np.sign(p[d])
    p[d] = p[d] * dt(1 - lr * weight_decay)
    return g


def sgd_update(p, vel, g, n_decay, lr, momentum=0.0, nesterov=False, l2=0.0, l1=0.0, weight_decay=0.0,
               form=0):
    dt = p.dtype.type
    g = _penalised(p, g, n_decay, lr, l2, l1, weight_decay)
    momentum, rate = _setting(dt, momentum), _setting(dt, lr)
    if form == FORMS["sklearn"] and momentum != 0:  # the velocity is the step (SGDOptimizer)
        vel[...] = momentum * vel - rate * g
        p += momentum * vel - rate * g if nesterov else vel
        return
    if momentum != 0:
        vel[...] = momentum * vel + g
        step = g + momentum * vel if nesterov else vel
    else:
        step = g
    p -= rate * step


def adam_update(p, m, v, g, n_decay, t, lr, beta1=0.9, beta2=0.999, eps=1e-8, l2=0.0, l1=0.0,
                weight_decay=0.0, form=0):
    dt = p.dtype.type
    g = _penalised(p, g, n_decay, lr, l2, l1, weight_decay)
    b1, b2 = _setting(dt, beta1), _setting(dt, beta2)
    m[...] = b1 * m + dt(1 - b1) * g
    v[...] = b2 * v + dt(1 - b2) * g * g
    if form == FORMS["sklearn"]:  # AdamOptimizer: the bias corrections go into the rate
        lr_t = _setting(dt, lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t))
        p -= lr_t * m / (np.sqrt(v) + dt(eps))
        return
    c1, c2 = dt(1 / (1 - beta1 ** t)), dt(1 / (1 - beta2 ** t))
    p -= _setting(dt, lr) * (m * c1) / (np.sqrt(v * c2) + dt(eps))


def rmsprop_update(p, s, g, n_decay, lr, rho=0.99, eps=1e-8, l2=0.0, l1=0.0, weight_decay=0.0):
    dt = p.dtype.type
    g = _penalised(p, g, n_decay, lr, l2, l1, weight_decay)
    r = _setting(dt, rho)
    s[...] = r * s + dt(1 - r) * g * g
    p -= _setting(dt, lr) * g / (np.sqrt(s) + dt(eps))


def _left_nonfinite(p, slots, g, n_decay, lr, optim):
    """Whether an update left a NaN or an infinity, as the compiled loops decide it
    (csrc/optimizers.c, sgd_range): in a parameter it changed, or in Adam's v or RMSprop's s. Plain
    SGD leaves an element with g = 0 and neither penalty nor decay on it as it was: unchecked."""
    dt, P, kind = p.dtype.type, p.shape[0], optim["kind"]
    checked = slice(None)
    if kind == OPTIMIZERS["sgd"] and _setting(dt, optim["momentum"]) == 0:
        plain = np.ones(P, bool)
        if (_setting(dt, optim["l2"]) != 0 or _setting(dt, optim["l1"]) != 0
                or dt(1 - lr * optim["weight_decay"]) != 1):
            plain[:max(n_decay, 0)] = False
        checked = ~plain | (g != 0)
    if not np.isfinite(p[checked]).all():
        return True
    if kind == OPTIMIZERS["adam"]:
        return not np.isfinite(slots[P:2 * P]).all()
    if kind == OPTIMIZERS["rmsprop"]:
        return not np.isfinite(slots[:P]).all()
    return False


def _optim_fields(optim):
    """{field: value} of an OPTIM record."""
    _records.check_record(optim, _records.OPTIM, "OPTIM", 0)
    return _records.as_dict(optim)


def _check_optim(o):
    """The scalars an update can run with (csrc/network.c valid_optim)."""
    nonneg = ("lr", "l2", "l1", "weight_decay", "l2_loss", "lr_min", "power_t")
    unit = ("momentum", "beta1", "beta2", "rho")
    ok = (all(o[k] >= 0 and math.isfinite(o[k]) for k in nonneg) and all(0 <= o[k] < 1 for k in unit)
          and o["eps"] > 0 and math.isfinite(o["eps"]) and o["lr_scale"] > 0
          and math.isfinite(o["lr_scale"]) and math.isfinite(o["gamma"]) and o["gamma"] >= 0
          and o["overflow_check"] in (0, 1))
    if not ok:
        raise ValueError("fastnn: invalid argument (sizes, labels or options)")
    return o


def lr_at(optim, epoch, step, samples_seen):
    """Learning rate of the OPTIM record at that point: lr_scale times the schedule's rate."""
    return _lr_at(_optim_fields(optim), epoch, step, samples_seen)


def _lr_at(optim, epoch, step, samples_seen):
    return optim["lr_scale"] * _lr_schedule(optim, epoch, step, samples_seen)


def _lr_schedule(optim, epoch, step, samples_seen):
    lr, kind = optim["lr"], optim["schedule"]
    if kind == 1:
        return lr * optim["gamma"] ** (epoch // max(optim["step_size"], 1))
    if kind == 2:
        return lr * optim["gamma"] ** epoch
    if kind == 3:
        T = optim["total_steps"]
        if T <= 0:  # no horizon given: no decay
            return lr
        t = min(step, T)
        return optim["lr_min"] + (lr - optim["lr_min"]) * (1 + math.cos(math.pi * t / T)) / 2
    if kind == 4:
        return lr / (samples_seen + 1) ** optim["power_t"]
    return lr  # constant, adaptive


# -- random numbers (csrc/rng.c) ------------------------------------------------------------------
_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z):
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mix_int(z):
    z &= _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def rng_key(seed, kind, index):
    return _mix_int(_mix_int(seed + _GOLDEN * (kind + 1)) ^ ((index * 0xD1B54A32D192ED03) & _M64))


def _u64(key, ctr):
    """u64(key, ctr) for an array of counters."""
    with np.errstate(over="ignore"):
        return _mix(np.uint64(key) + np.uint64(_GOLDEN) * (np.asarray(ctr, dtype=np.uint64) + np.uint64(1)))


def _uniform(key, ctr):
    return (_u64(key, ctr) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def rng_uniform(out, key, ctr0=0):
    out[...] = _uniform(key, np.arange(len(out), dtype=np.uint64) + np.uint64(ctr0))


def shuffle(perm, key):
    """Fisher-Yates: for i = n-1 .. 1, j = u64(key, i) % (i + 1), swap."""
    n = len(perm)
    perm[...] = np.arange(n)
    if n < 2:
        return
    i = np.arange(1, n, dtype=np.uint64)
    js = (_u64(key, i) % (i + np.uint64(1))).astype(np.int64)
    p = perm.tolist()
    for ii in range(n - 1, 0, -1):
        j = int(js[ii - 1])
        p[ii], p[j] = p[j], p[ii]
    perm[...] = p


_shuffle = shuffle  # Engine.train_epoch has an argument of that name


# -- dropout and batch normalisation ----------------------------------------------------------------
def dropout_forward(Y, mask, X, rate, key):
    keep = _uniform(key, np.arange(X.size, dtype=np.uint64)).reshape(X.shape) >= rate
    scale = X.dtype.type(1 / (1 - rate)) if rate < 1 else X.dtype.type(0)
    mask[...] = np.where(keep, scale, X.dtype.type(0))
    Y[...] = X * mask


def dropout_backward(dX, dY, mask):
    dX[...] = dY * mask


def batchnorm_forward(Y, xhat, mean, var, inv_std, X, gamma, beta, eps=1e-5):
    x = X.astype(np.float64)
    mu = x.mean(axis=0)
    v = ((x - mu) ** 2).mean(axis=0)
    mean[...] = mu
    var[...] = v
    inv_std[...] = 1 / np.sqrt(v + eps)
    xhat[...] = (X - mean) * inv_std
    Y[...] = gamma * xhat + beta


def batchnorm_running(run_mean, run_var, mean, var, m, momentum=0.1):
    if m < 2:  # one row: its variance is 0 by construction, not an estimate
        return
    unbias = m / (m - 1)
    run_mean[...] = (1 - momentum) * run_mean.astype(np.float64) + momentum * mean.astype(np.float64)
    run_var[...] = (1 - momentum) * run_var.astype(np.float64) + momentum * var.astype(np.float64) * unbias


def batchnorm_inference(Y, X, gamma, beta, run_mean, run_var, eps=1e-5):
    inv = (1 / np.sqrt(run_var.astype(np.float64) + eps)).astype(X.dtype)
    Y[...] = gamma * (X - run_mean) * inv + beta


def batchnorm_backward(dX, dgamma, dbeta, dY, xhat, inv_std, gamma):
    m = dY.shape[0]
    dy = dY.astype(np.float64)
    sdy = dy.sum(axis=0)
    sdyx = (dy * xhat).sum(axis=0)
    dbeta += sdy.astype(dbeta.dtype)
    dgamma += sdyx.astype(dgamma.dtype)
    k = gamma.astype(np.float64) * inv_std / m
    dX[...] = k * (m * dy - sdy - xhat * sdyx)


# -- the training engine (csrc/network.c) ------------------------------------------------------------
class _DeferSigint:
    """Hold SIGINT while a batch runs, as the C engine does, and report it between batches."""

    def __init__(self):
        self.raised = []
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, lambda *a: self.raised.append(KeyboardInterrupt()))
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def all_finite(x):
    """True when no element of the 1-D x is NaN or infinite. NaN and inf propagate through a sum,
    so a finite sum proves every element finite (one pass, no temporary); only a sum that
    overflowed or met a NaN needs the element-wise check."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(x.sum()):
            return True
    return bool(np.isfinite(x).all())


def lean_rows(X, params, n_inputs):
    """X's row count when an engine of params' dtype reads X as it is in predict_lean (2-D,
    C-contiguous, aligned, of params' dtype in native byte order, n_inputs wide), else 0."""
    ok = type(params) is np.ndarray and params.dtype in _FLOATS and _lean_x(X, params.dtype, n_inputs)
    return X.shape[0] if ok else 0


def _lean_x(X, dtype, n_inputs):
    return (type(X) is np.ndarray and X.dtype == dtype and X.dtype.isnative and X.ndim == 2
            and X.shape[1] == n_inputs and X.shape[0] > 0 and X.flags.c_contiguous and X.flags.aligned)


class Engine:
    """Same interface and results as fastnn._ext.Engine (see fastnn/_engine/_network.pxi): a
    network (LAYER array, NET record; both copied) and batches of up to `batch` rows of `dtype`."""

    def __init__(self, layers, net, dtype, batch):
        _records.check_record(net, _records.NET, "NET", 0)
        _records.check_record(layers, _records.LAYER, "LAYER", 1)
        self._dtype = np.dtype(dtype)
        if self._dtype.name not in ("float32", "float64"):
            raise TypeError(f"an engine works in float32 or float64, not {self._dtype.name}")
        self._net = _records.as_dict(net)  # plain copies
        self._layers = [dict(zip(_records.LAYER.names, ly)) for ly in layers.tolist()]
        if batch < 1 or not self._layers or self._net["n_inputs"] < 1:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        self.is_f64 = self._dtype == np.float64
        self.batch = batch
        self._grads = np.zeros(self._net["n_params"], self._dtype)
        self._lowest = next((i for i, ly in enumerate(self._layers) if ly["kind"] in (0, 3)),
                            len(self._layers))

    def _check(self, arr):
        if arr.dtype != self._dtype:
            raise TypeError(f"this engine works in {self._dtype}")

    # forward: list of layer outputs plus what backward needs
    def _forward(self, params, state, x, training, step):
        acts, aux = [], []
        seed = self._net["seed"]
        for l, ly in enumerate(self._layers):
            n = ly["n_out"]
            extra = None
            if ly["kind"] == 0:
                W = params[ly["w_off"]:ly["w_off"] + ly["n_in"] * n].reshape(ly["n_in"], n)
                y = np.empty((x.shape[0], n), self._dtype)
                if x.shape[0] <= SKINNY_M:  # as the compiled forward (gemm.c, gemm_skinny's skip_zero):
                    for i in range(x.shape[0]):  # a weight row met by a zero input is not read
                        nz = x[i] != 0
                        y[i] = x[i, nz] @ W[nz]
                else:
                    gemm(y, x, W)
                bias_forward(y, params[ly["b_off"]:ly["b_off"] + n])
                activation_forward(ly["activation"], y, y, ly["alpha"])
            elif ly["kind"] == 1:
                y = np.empty_like(x)
                activation_forward(ly["activation"], y, x, ly["alpha"])
            elif ly["kind"] == 2:
                if training and ly["rate"] > 0:
                    y, extra = np.empty_like(x), np.empty_like(x)
                    dropout_forward(y, extra, x, ly["rate"], rng_key(seed, RNG_DROPOUT + l, step))
                else:
                    y = x
            elif ly["kind"] == 3:
                gamma = params[ly["w_off"]:ly["w_off"] + n]
                beta = params[ly["b_off"]:ly["b_off"] + n]
                y = np.empty_like(x)
                if training:
                    xhat = np.empty_like(x)
                    mean, var, inv = (np.empty(n, self._dtype) for _ in range(3))
                    batchnorm_forward(y, xhat, mean, var, inv, x, gamma, beta, ly["eps"])
                    extra = (xhat, mean, var, inv)
                else:
                    s = ly["s_off"]
                    batchnorm_inference(y, x, gamma, beta, state[s:s + n], state[s + n:s + 2 * n], ly["eps"])
            else:
                raise ValueError("fastnn: invalid argument (sizes, labels or options)")
            acts.append(y)
            aux.append(extra)
            x = y
        return acts, aux

    def _loss(self):
        rec = _losses.BY_CODE.get(int(self._net["loss"]))
        if rec is None:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        return rec

    def _correct(self, Z, T, labels):
        return self._loss().correct(Z, T, labels)  # the decision rules of fastnn/_engine/losses.py

    def _forward_backward(self, params, x, T, labels, sw, step, l2_loss=0.0):
        """(status, loss, correct, aux); the gradient goes to self._grads (with OPTIM's l2_loss
        term when given)."""
        acts, aux = self._forward(params, None, x, True, step)
        Z = acts[-1]
        loss, g = _loss(self._net["loss"], Z, T, labels, sw)
        g = g.astype(self._dtype, copy=False)
        correct = self._correct(Z, T, labels)
        if not math.isfinite(loss):
            return "nonfinite", loss, correct, aux
        grads = self._grads
        grads[...] = 0
        for l in range(len(self._layers) - 1, self._lowest - 1, -1):
            ly = self._layers[l]
            n = ly["n_out"]
            inp = acts[l - 1] if l > 0 else x
            if ly["kind"] == 0:
                activation_backward(ly["activation"], g, g, acts[l], ly["alpha"])
                wo, bo = ly["w_off"], ly["b_off"]
                dW = grads[wo:wo + ly["n_in"] * n].reshape(ly["n_in"], n)
                gemm(dW, inp, g, trans_a=True, beta=1.0)
                bias_backward(grads[bo:bo + n], g)
                if l > self._lowest:
                    W = params[wo:wo + ly["n_in"] * n].reshape(ly["n_in"], n)
                    nxt = np.empty((g.shape[0], ly["n_in"]), self._dtype)
                    gemm(nxt, g, W, trans_b=True)
                    g = nxt
            elif ly["kind"] == 1:
                activation_backward(ly["activation"], g, g, acts[l], ly["alpha"])
            elif ly["kind"] == 2:
                if ly["rate"] > 0:
                    dropout_backward(g, g, aux[l])
            elif ly["kind"] == 3:
                xhat, _, _, inv = aux[l]
                wo, bo = ly["w_off"], ly["b_off"]
                batchnorm_backward(g, grads[wo:wo + n], grads[bo:bo + n], g, xhat, inv,
                                   params[wo:wo + n])
        if l2_loss != 0:  # scikit-learn's alpha, per the batch's weight sum S
            S = float(x.shape[0]) if sw is None else float(sw.astype(np.float64).sum())
            if S != 0:
                l2, W = l2_loss, params[:self._net["n_decay"]]
                loss += 0.5 * l2 * float(np.dot(W.astype(np.float64), W.astype(np.float64))) / S
                grads[:self._net["n_decay"]] += self._dtype.type(l2 / S) * W
                if not math.isfinite(loss):
                    return "nonfinite", loss, correct, aux
        if not np.all(np.isfinite(grads)):
            return "nonfinite", loss, correct, aux
        for l, ly in enumerate(self._layers):  # batch statistics are committed next: finite too
            if ly["kind"] == 3 and not (np.isfinite(aux[l][1]).all() and np.isfinite(aux[l][2]).all()):
                return "nonfinite", loss, correct, aux
        return "ok", loss, correct, aux

    def _step(self, res, params, slots, state, counters, optim, x, T, labels, sw, epoch, samples0):
        """One optimizer step; its totals are added into the RESULT record res."""
        if optim["form"] not in FORMS.values():
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        step = int(counters[CTR_STEP])
        status, loss, correct, aux = self._forward_backward(params, x, T, labels, sw, step,
                                                            optim["l2_loss"])
        if status != "ok":
            return status
        lr = _lr_at(optim, epoch, step, samples0)
        if not np.isfinite(params.dtype.type(lr)):  # a rate the dtype cannot hold: no step
            return "nonfinite"
        for l, ly in enumerate(self._layers):
            if ly["kind"] == 3:
                s, n = ly["s_off"], ly["n_out"]
                _, mean, var, _ = aux[l]
                batchnorm_running(state[s:s + n], state[s + n:s + 2 * n], mean, var, x.shape[0],
                                  ly["momentum"])
        P, nd, g = self._net["n_params"], self._net["n_decay"], self._grads
        kind = optim["kind"]
        if kind == 0:
            sgd_update(params, slots[:P], g, nd, lr, optim["momentum"], optim["nesterov"],
                       optim["l2"], optim["l1"], optim["weight_decay"], optim["form"])
        elif kind == 1:
            adam_update(params, slots[:P], slots[P:2 * P], g, nd, step + 1, lr, optim["beta1"],
                        optim["beta2"], optim["eps"], optim["l2"], optim["l1"], optim["weight_decay"],
                        optim["form"])
        elif kind == 2:
            rmsprop_update(params, slots[:P], g, nd, lr, optim["rho"], optim["eps"], optim["l2"],
                           optim["l1"], optim["weight_decay"])
        else:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        if optim["overflow_check"] and _left_nonfinite(params, slots, g, nd, lr, optim):
            return "overflow"  # applied; the counters and totals stay as they were
        counters[CTR_STEP] = step + 1
        counters[CTR_SAMPLES] += x.shape[0]
        # scikit-learn's losses count a batch by its rows (its loss_curve_), the others by weight
        by_rows = sw is None or self._net["loss"] in SK_LOSSES.values()
        wsum = float(x.shape[0]) if by_rows else float(sw.astype(np.float64).sum())
        res["batches"] += 1
        res["samples"] += x.shape[0]
        res["loss_sum"] += loss * wsum
        res["weight_sum"] += wsum
        res["correct"] += correct
        return "ok"

    @staticmethod
    def _start(result):
        """Check the RESULT record and reset it, as the C engine does."""
        _records.check_record(result, _records.RESULT, "RESULT", 0, writable=True)
        result[()] = 0
        result["bad_batch"] = -1

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")  # divergence is reported, not warned
    def train_epoch(self, result, params, slots, state, counters, perm, optim, X, T, labels, sw,
                    batch, shuffle, epoch):
        optim = _check_optim(_optim_fields(optim))
        self._start(result)
        self._check(params)
        if batch < 1 or batch > self.batch:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        n = X.shape[0]
        if shuffle not in ORDERS.values():
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        if len(perm) < n:
            raise ValueError(f"perm holds {len(perm)} entries for {n} rows")
        if shuffle == ORDERS["given"]:  # the caller's order, read as given
            if n and (perm[:n].min() < 0 or perm[:n].max() >= n):
                raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        elif shuffle == ORDERS["shuffle"]:
            _shuffle(perm[:n], rng_key(self._net["seed"], RNG_SHUFFLE, epoch))
        else:
            perm[:n] = np.arange(n)
        samples0 = int(counters[CTR_SAMPLES])
        with _DeferSigint() as sig:
            for b, start in enumerate(range(0, n, batch)):
                rows = perm[start:min(start + batch, n)]
                status = self._step(result, params, slots, state, counters, optim, X[rows],
                                    None if T is None else T[rows],
                                    None if labels is None else labels[rows],
                                    None if sw is None else sw[rows], epoch, samples0)
                if status != "ok":
                    result["bad_batch"] = b
                    return status, None
                if sig.raised:
                    return "interrupted", sig.raised[0]
        return "ok", None

    @np.errstate(over="ignore", invalid="ignore", divide="ignore")
    def train_step(self, result, params, slots, state, counters, optim, X, T, labels, sw, epoch):
        optim = _check_optim(_optim_fields(optim))
        self._start(result)
        self._check(params)
        if not 1 <= X.shape[0] <= self.batch:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        status = self._step(result, params, slots, state, counters, optim, X, T, labels, sw, epoch,
                            int(counters[CTR_SAMPLES]))
        if status != "ok":
            result["bad_batch"] = 0
        return status, None

    def gradient(self, grads, params, X, T, labels, sw, step):
        self._check(params)
        if not 1 <= X.shape[0] <= self.batch:
            raise ValueError("fastnn: invalid argument (sizes, labels or options)")
        status, loss, _, _ = self._forward_backward(params, X, T, labels, sw, step)
        grads[...] = self._grads
        return float("nan") if status != "ok" else loss

    def predict_lean(self, params, state, X, link=False):
        if not _lean_x(X, self._dtype, self._net["n_inputs"]):
            return None
        out = np.empty((X.shape[0], self._net["n_outputs"]), self._dtype)
        if self.predict(out, params, state, X, link, True) != "ok":
            raise _nonfinite_error("X", X)
        return out

    def predict(self, out, params, state, X, link=False, check_x=False):
        self._check(params)
        link_name = self._loss().link if link else None
        link_code = None if link_name in (None, "exp") else _activations.get(link_name).code
        for start in range(0, X.shape[0], self.batch):
            if check_x and not np.isfinite(X[start:start + self.batch]).all():
                return "nonfinite"
            acts, _ = self._forward(params, state, X[start:start + self.batch], False, 0)
            z = acts[-1]
            o = out[start:start + self.batch]
            if link_code is not None:  # the loss's output link (softmax, sigmoid or identity)
                activation_forward(link_code, o, z)
            elif link_name == "exp":  # scikit-learn's poisson
                o[...] = np.exp(z)
            else:
                o[...] = z
        return "ok"
