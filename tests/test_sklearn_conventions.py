"""scikit-learn's MLP conventions in the engine, opt-in (csrc/fastnn.h; the defaults are fastnn's):

    train_epoch(..., shuffle=ORDERS["given"])  the epoch's rows in the caller's order (perm)
    OPTIM.l2_loss   alpha: + 0.5 alpha |W|^2 / S in the loss, + alpha W / S in dL/dW (S: batch weight sum)
    OPTIM.form      FORMS["sklearn"]: SGDOptimizer's velocity, AdamOptimizer's rate
    NET.loss        SK_LOSSES: log_loss, binary_log_loss, squared_error, poisson as sklearn computes them

1. each formula against its closed form, written here in plain NumPy (a few steps);
2. compiled engine against the oracle, on a small and a wide (> 16,384 parameters) model;
3. the proof: 3 epochs of the engine from scikit-learn's initial weights, in its batches, equal
   scikit-learn's own MLPClassifier / MLPRegressor fit (coefs_, intercepts_, loss_curve_) to 1e-6.
"""
import math
import warnings

import numpy as np
import pytest

from fastnn._engine import reference
from fastnn._engine.codes import ACTIVATIONS, FORMS, N_COUNTERS, ORDERS, SK_LOSSES
from fastnn._engine.records import layer_records, net_record, optim_record, result_record
from fastnn.nn._training import epoch_order

try:
    from fastnn._engine import _ext
except ImportError:
    _ext = None

SK = FORMS["sklearn"]
GIVEN = ORDERS["given"]
DTYPES = [pytest.param(np.float64, id="float64"), pytest.param(np.float32, id="float32")]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


@pytest.fixture(params=["c", "python"])
def be(request):
    """The engine-level module of a backend (engines are called directly, no global switch)."""
    if request.param == "c" and _ext is None:
        pytest.skip("the compiled backend is not built")
    return _ext if request.param == "c" else reference


def _pairs(seq):
    """(s0, s1), (s1, s2), ...: itertools.pairwise, which Python 3.9 lacks."""
    seq = list(seq)
    return zip(seq[:-1], seq[1:])


def close(got, want, dtype, what=""):
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, err_msg=what)


def mlp(be, units, loss, hidden_act="relu", dtype=np.float64, batch=32, seed=0, scale=0.5):
    """Dense layers of `units` (hidden activation, identity output: the loss holds the link), weights
    first in the flat buffer, uniform in [-scale, scale]: (engine, params, n_weights, n_params)."""
    layers, n_w = [], sum(a * b for a, b in _pairs(units))
    w_off, b_off = 0, n_w
    for i, (a, b) in enumerate(_pairs(units)):
        last = i == len(units) - 2
        layers.append(dict(kind=0, activation=0 if last else ACTIVATIONS[hidden_act], n_in=a, n_out=b,
                           w_off=w_off, b_off=b_off))
        w_off, b_off = w_off + a * b, b_off + b
    net = net_record(loss=loss, n_inputs=units[0], n_outputs=units[-1], n_params=b_off, n_decay=n_w)
    params = (np.random.default_rng(seed).uniform(-scale, scale, b_off)).astype(dtype)
    return be.Engine(layer_records(layers), net, dtype, batch), params, n_w, b_off


# =================================================================================================
# 1. closed forms
# =================================================================================================
P0 = [0.5, -1.25, 0.0, 2.0, -0.75, 0.3]
GRADS = [[0.2, -0.4, 0.1, -0.3, 0.5, -0.05],
         [-0.1, 0.3, 0.25, 0.15, -0.2, 0.4],
         [0.05, -0.6, -0.2, 0.35, 0.1, -0.3],
         [0.3, 0.1, -0.15, -0.25, 0.45, 0.2]]
RATES = [0.1, 0.05, 0.02, 0.2]  # a rate that changes between steps (invscaling, adaptive)


@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_sgd_steps_equal_the_formula_when_the_rate_changes(be, dtype, nesterov):
    """SGDOptimizer: v = mu v - lr g; p += nesterov ? mu v - lr g : v. The velocity holds the
    rates of earlier steps, so this differs from PyTorch's v = mu v + g, p -= lr v once lr moves."""
    mu = 0.9
    p, vel = np.array(P0, dtype), np.zeros(len(P0), dtype)
    want_p, want_v = [float(x) for x in P0], [0.0] * len(P0)
    torch_p, torch_v = np.array(P0, dtype), np.zeros(len(P0), dtype)
    for lr, g in zip(RATES, GRADS):
        be.sgd_update(p, vel, np.array(g, dtype), 4, lr, mu, nesterov, form=SK)
        be.sgd_update(torch_p, torch_v, np.array(g, dtype), 4, lr, mu, nesterov)
        for i, gi in enumerate(g):
            want_v[i] = mu * want_v[i] - lr * gi
            want_p[i] += mu * want_v[i] - lr * gi if nesterov else want_v[i]
    close(p, want_p, dtype, "params")
    close(vel, want_v, dtype, "velocity")
    assert np.abs(torch_p - p).max() > 1e-3  # the forms differ: the test tells them apart


@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_adam_steps_equal_the_formula(be, dtype):
    """AdamOptimizer: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); p -= lr_t m / (sqrt(v) + eps); eps
    large enough that its place (outside the uncorrected sqrt(v)) matters."""
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 0.05
    p, m, v = np.array(P0, dtype), np.zeros(len(P0), dtype), np.zeros(len(P0), dtype)
    torch_p = np.array(P0, dtype)
    tm, tv = np.zeros(len(P0), dtype), np.zeros(len(P0), dtype)
    want, wm, wv = [float(x) for x in P0], [0.0] * len(P0), [0.0] * len(P0)
    for t, g in enumerate(GRADS, start=1):
        be.adam_update(p, m, v, np.array(g, dtype), 4, t, lr, b1, b2, eps, form=SK)
        be.adam_update(torch_p, tm, tv, np.array(g, dtype), 4, t, lr, b1, b2, eps)
        lr_t = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        for i, gi in enumerate(g):
            wm[i] = b1 * wm[i] + (1 - b1) * gi
            wv[i] = b2 * wv[i] + (1 - b2) * gi * gi
            want[i] -= lr_t * wm[i] / (math.sqrt(wv[i]) + eps)
    close(p, want, dtype, "params")
    close(m, wm, dtype, "m")
    close(v, wv, dtype, "v")
    assert np.abs(torch_p - p).max() > 1e-4


def sk_loss_data(loss, dtype, weighted):
    """Z (7 x 3, with rows whose probabilities scikit-learn clips), targets, weights."""
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((7, 3))
    Z[0] = [0.0, 60.0, -60.0]  # softmax / sigmoid probabilities below eps and above 1 - eps
    Z[1] = [-45.0, 45.0, 0.5]
    labels = rng.integers(0, 3, 7)
    labels[0], labels[1] = 2, 0  # the clipped probability is the label's
    if loss == "sk_binary_log_loss":
        T = rng.integers(0, 2, (7, 3)).astype(float)
        T[0], T[1] = [1, 0, 1], [1, 0, 0]
    elif loss == "sk_poisson":
        Z = Z / 30  # exp link
        T = rng.poisson(1.5, (7, 3)).astype(float)
        T[2, 0] = 0  # xlogy(0, .) = 0
    else:
        T = rng.standard_normal((7, 3))
    sw = rng.uniform(0.2, 3.0, 7) if weighted else None
    cast = lambda a: None if a is None else a.astype(dtype)  # noqa: E731
    return cast(Z), cast(T), labels.astype(np.int64), cast(sw)


def sk_loss_by_hand(loss, Z, T, labels, sw, eps):
    """(value, gradient) of sklearn/neural_network/_base.py's losses and _backprop's delta, row by
    row in float64."""
    Z, T = Z.astype(np.float64), T.astype(np.float64)
    m, n = Z.shape
    w = np.ones(m) if sw is None else sw.astype(np.float64)
    clip = lambda p: min(max(p, eps), 1 - eps)  # noqa: E731
    value, grad = 0.0, np.zeros((m, n))
    for i in range(m):
        z, t = Z[i], T[i]
        if loss == "sk_log_loss":
            e = [math.exp(zj - max(z)) for zj in z]
            p = [ej / sum(e) for ej in e]
            y = [1.0 if j == labels[i] else 0.0 for j in range(n)]
            li = -math.log(clip(p[labels[i]]))
        elif loss == "sk_binary_log_loss":
            p, y = [1 / (1 + math.exp(-zj)) for zj in z], t
            li = -sum(tj * math.log(clip(pj)) + (1 - tj) * math.log(1 - clip(pj)) for pj, tj in zip(p, t))
        elif loss == "sk_squared_error":
            p, y = z, t
            li = 0.5 * sum((zj - tj) ** 2 for zj, tj in zip(z, t)) / n  # 0.5 mean over outputs
        else:
            p, y = [math.exp(zj) for zj in z], t
            li = sum((tj * math.log(tj / pj) if tj else 0.0) - tj + pj for pj, tj in zip(p, t))
        value += w[i] * li / w.sum()
        grad[i] = [(pj - yj) * w[i] / w.sum() for pj, yj in zip(p, y)]  # (link(z) - y) w / S
    return value, grad


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss", sorted(SK_LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_sklearn_loss_values_and_gradients_equal_their_definition(be, dtype, loss, weighted):
    Z, T, labels, sw = sk_loss_data(loss, dtype, weighted)
    code = SK_LOSSES[loss]
    T_arg, lab_arg = (None, labels) if loss == "sk_log_loss" else (T, None)
    want_v, want_g = sk_loss_by_hand(loss, Z, T, labels, sw, float(np.finfo(dtype).eps))
    close(be.loss_forward(code, Z, T_arg, lab_arg, sw), want_v, dtype, "value")
    dZ = np.full_like(Z, np.nan)
    be.loss_backward(code, dZ, Z, T_arg, lab_arg, sw)
    close(dZ, want_g, dtype, "gradient")


def test_clipping_bounds_the_log_losses_at_minus_log_eps(be):
    """A probability below eps counts as eps: -log(eps) = 36.04 in float64, not 60 or 100."""
    eps = np.finfo(np.float64).eps
    Z = np.array([[0.0, 60.0, -60.0]])
    v = be.loss_forward(SK_LOSSES["sk_log_loss"], Z, None, np.array([2], np.int64), None)
    assert v == pytest.approx(-math.log(eps), rel=1e-12)
    v = be.loss_forward(SK_LOSSES["sk_binary_log_loss"], np.array([[-60.0]]), np.array([[1.0]]), None, None)
    assert v == pytest.approx(-math.log(eps), rel=1e-12)


def linear_engine(be, loss, n_in=3, n_out=2, batch=8, dtype=np.float64):
    """One dense layer, identity: z = x W + b; the loss is the only non-linearity."""
    layers = layer_records([dict(kind=0, n_in=n_in, n_out=n_out, w_off=0, b_off=n_in * n_out)])
    net = net_record(loss=loss, n_inputs=n_in, n_outputs=n_out, n_params=n_in * n_out + n_out,
                     n_decay=n_in * n_out)
    return be.Engine(layers, net, dtype, batch)


# rows of one step: 5, the general step (the online step leaves batches of up to 8 with this term to
# it); 20 and 256, the online step's GEMM form (the term's loss before the update, c W added by the
# update's epilogue); 300, the general step again
L2_ROWS = [5, 20, 256, 300]


@pytest.mark.parametrize("rows", L2_ROWS)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_l2_loss_adds_alpha_over_the_batch_weight_sum_to_loss_and_weight_gradient(be, weighted, rows):
    """loss = data loss + 0.5 alpha |W|^2 / S, dW = X^T delta + alpha W / S, db = sum delta (no
    penalty on biases), S = sum of the batch's sample weights (rows without weights); one plain
    SGD step p -= lr grad shows the gradient, the RESULT record the loss."""
    rng = np.random.default_rng(8)
    X, T = rng.standard_normal((rows, 3)), rng.standard_normal((rows, 2))
    sw = rng.uniform(0.5, 2.0, rows) if weighted else None
    W0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(2)
    alpha, lr = 0.3, 0.1
    S = float(rows) if sw is None else sw.sum()
    w = np.ones(rows) if sw is None else sw
    resid = X @ W0 + b0 - T
    data_loss = (w * 0.5 * (resid ** 2).mean(axis=1)).sum() / S
    delta = resid * w[:, None] / S
    gW, gb = X.T @ delta + alpha * W0 / S, delta.sum(axis=0)

    engine = linear_engine(be, SK_LOSSES["sk_squared_error"], batch=max(rows, 8))
    params = np.concatenate([W0.ravel(), b0])
    res = result_record()
    optim = optim_record(kind=0, lr=lr, l2_loss=alpha, form=SK)
    status = engine.train_step(res, params, np.zeros(8), np.zeros(1), np.zeros(N_COUNTERS, np.int64),
                               optim, X, T, None, sw, 0)
    assert status == ("ok", None)
    reported = res["loss_sum"] / res["weight_sum"]
    assert reported == pytest.approx(data_loss + 0.5 * alpha * (W0 ** 2).sum() / S, rel=1e-12)
    close(params, np.concatenate([(W0 - lr * gW).ravel(), b0 - lr * gb]), np.float64)
    # gradient() is the loss's alone: the penalty belongs to the optimizer record
    grads = np.empty(8)
    assert engine.gradient(grads, np.concatenate([W0.ravel(), b0]), X, T, None, sw, 0) == pytest.approx(data_loss, rel=1e-12)


@pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")
@pytest.mark.parametrize("rows", L2_ROWS)
def test_l2_loss_reaches_every_parameter_of_the_penalised_prefix(rows):
    """The engine takes any layout: with n_decay = n_params the biases are penalised too (fastnn's
    own layouts keep them out), at every batch size as in the oracle."""
    rng = np.random.default_rng(8)
    X, T = rng.standard_normal((rows, 3)), rng.standard_normal((rows, 2))
    layers = layer_records([dict(kind=0, n_in=3, n_out=2, w_off=0, b_off=6)])
    net = net_record(loss=SK_LOSSES["sk_squared_error"], n_inputs=3, n_outputs=2, n_params=8, n_decay=8)
    start = rng.standard_normal(8)
    out = []
    for be in (_ext, reference):
        params = start.copy()
        optim = optim_record(kind=0, lr=0.1, l2_loss=0.3, form=SK)
        assert be.Engine(layers, net, np.float64, max(rows, 8)).train_step(
            result_record(), params, np.zeros(8), np.zeros(1), np.zeros(N_COUNTERS, np.int64), optim, X, T,
            None, None, 0) == ("ok", None)
        out.append(params)
    close(out[0], out[1], np.float64)


@pytest.mark.parametrize("rows", L2_ROWS)
def test_l2_loss_is_left_out_of_a_batch_whose_weights_sum_to_zero(be, rows):
    """S = 0 (every sample weight 0): no penalty, no data gradient, so plain SGD leaves every
    parameter as it was, and the step counts with a loss of 0."""
    rng = np.random.default_rng(8)
    X, T = rng.standard_normal((rows, 3)), rng.standard_normal((rows, 2))
    engine = linear_engine(be, SK_LOSSES["sk_squared_error"], batch=max(rows, 8))
    params = rng.standard_normal(8)
    before = params.copy()
    res, counters = result_record(), np.zeros(N_COUNTERS, np.int64)
    optim = optim_record(kind=0, lr=0.1, l2_loss=0.3, form=SK)
    assert engine.train_step(res, params, np.zeros(8), np.zeros(1), counters, optim, X, T, None,
                             np.zeros(rows), 0) == ("ok", None)
    np.testing.assert_array_equal(params, before)
    assert res["loss_sum"] == 0 and counters[0] == 1


@pytest.mark.parametrize("case", ["overflows", "cancels"])
def test_l2_loss_near_float32s_overflow_refuses_or_takes_the_step_whole(be, case):
    """16 rows (the online step's GEMM form, which must prove every gradient element finite before
    its first update) of x = (1e38, -1e38), W's first column (2, 2) (z = 0, p = 1/2), alpha / S = c
    near float32's limit. "overflows": every label 0, dW[1, 0] = 5e37 + 2 c = 3.5e38 > FLT_MAX: the
    step is refused and nothing changes. "cancels": labels alternate, the data gradient is exactly
    0 but a bound on it (16 x 1e38 x 1/32) plus 2 c passes FLT_MAX: the step is taken, W -= 0.1 c W."""
    rows = 16
    X = np.tile(np.array([[1e38, -1e38]], np.float32), (rows, 1))
    labels = np.zeros(rows, np.int64) if case == "overflows" else np.arange(rows) % 2
    c = 1.5e38 if case == "overflows" else 1.6e38
    engine = linear_engine(be, SK_LOSSES["sk_log_loss"], 2, 2, batch=rows, dtype=np.float32)
    params = np.array([2, 0, 2, 0, 0, 0], np.float32)
    before = params.copy()
    res, counters = result_record(), np.zeros(N_COUNTERS, np.int64)
    optim = optim_record(kind=0, lr=0.1, l2_loss=c * rows, form=SK)
    status = engine.train_step(res, params, np.zeros(6, np.float32), np.zeros(1, np.float32), counters,
                               optim, X, None, labels, None, 0)
    if case == "overflows":
        assert status == ("nonfinite", None)
        np.testing.assert_array_equal(params, before)
        assert counters[0] == 0
    else:
        assert status == ("ok", None) and counters[0] == 1
        W = before[:4]
        close(params, np.concatenate([W - 0.1 * (np.float32(c) * W), before[4:]]), np.float32)
        assert res["loss_sum"] / res["weight_sum"] == pytest.approx(math.log(2) + 0.5 * c * 8, rel=1e-6)


@pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")
@pytest.mark.parametrize("batch", [5, 32, 300])
def test_l2_loss_does_not_depend_on_the_thread_count(batch):
    """|W|^2 over 19,200 weights (three of the term's chunks) is summed in the same order at any
    thread count: loss curves and parameters the same bits on 1, 2 and 3 threads."""
    before = _ext.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            _ext.set_num_threads(threads)
            engine, params, _, P = mlp(_ext, [64, 300, 3], SK_LOSSES["sk_log_loss"], "relu", np.float64, batch,
                                       seed=1, scale=0.06)
            rng = np.random.default_rng(3)
            X, labels = rng.standard_normal((600, 64)), rng.integers(0, 3, 600)
            slots, counters, curve = np.zeros(2 * P), np.zeros(N_COUNTERS, np.int64), []
            optim = optim_record(kind=1, lr=1e-3, l2_loss=0.05, form=SK)
            for epoch in range(2):
                res = result_record()
                assert engine.train_epoch(res, params, slots, np.zeros(1), counters, rng.permutation(600),
                                          optim, X, None, labels, None, batch, GIVEN, epoch) == ("ok", None)
                curve.append(res["loss_sum"])
            runs.append((params, curve))
    finally:
        _ext.set_num_threads(before)
    for params, curve in runs[1:]:
        np.testing.assert_array_equal(params, runs[0][0])
        assert curve == runs[0][1]


def test_sklearn_losses_count_a_batch_by_its_rows_in_the_epoch_loss(be):
    """loss_sum / weight_sum = sum_b L_b n_b / n (scikit-learn's loss_curve_), whatever the sample
    weights; fastnn's losses keep weighting a batch by its weight sum."""
    rng = np.random.default_rng(9)
    X, T = rng.standard_normal((11, 3)), rng.standard_normal((11, 2))
    sw = rng.uniform(0.1, 5.0, 11)
    params = rng.standard_normal(8)
    for loss, by_rows in ((SK_LOSSES["sk_squared_error"], True), (2, False)):
        engine = linear_engine(be, loss)
        grads, L, n_b, s_b = np.empty(8), [], [], []
        for rows in (slice(0, 8), slice(8, 11)):  # the epoch's two batches, in order
            L.append(engine.gradient(grads, params, X[rows], T[rows], None, sw[rows], 0))
            n_b.append(len(X[rows]))
            s_b.append(sw[rows].sum())
        res = result_record()
        status = engine.train_epoch(res, params.copy(), np.zeros(8), np.zeros(1), np.zeros(N_COUNTERS, np.int64),
                                    np.empty(11, np.int64), optim_record(kind=0, lr=0.0), X, T, None, sw, 8, 0, 0)
        assert status == ("ok", None)
        counts = n_b if by_rows else s_b
        assert res["loss_sum"] / res["weight_sum"] == pytest.approx(np.dot(L, counts) / sum(counts), rel=1e-12)


def test_invscaling_rate_changes_per_epoch_and_the_velocity_keeps_the_old_rates(be):
    """scikit-learn sets lr = lr0 / (t_ + 1)^power_t at the end of each epoch, t_ = samples seen
    so far: constant within an epoch, lr0 in the first. A linear model under sk_squared_error,
    sklearn-form Nesterov SGD, 3 epochs of 2 batches in a given order, against its trajectory."""
    rng = np.random.default_rng(10)
    n, batch, lr0, power_t, mu = 10, 6, 0.3, 0.5, 0.9
    X, T = rng.standard_normal((n, 3)), rng.standard_normal((n, 2))
    params = rng.standard_normal(8)
    engine = linear_engine(be, SK_LOSSES["sk_squared_error"])
    optim = optim_record(kind=0, lr=lr0, momentum=mu, nesterov=1, schedule=4, power_t=power_t, form=SK)
    slots, counters = np.zeros(8), np.zeros(N_COUNTERS, np.int64)
    p, v = params.copy(), np.zeros(8)
    for epoch in range(3):
        order = rng.permutation(n)
        status = engine.train_epoch(result_record(), params, slots, np.zeros(1), counters, order.copy(),
                                    optim, X, T, None, None, batch, GIVEN, epoch)
        assert status == ("ok", None)
        lr = lr0 / (epoch * n + 1) ** power_t
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            W, b = p[:6].reshape(3, 2), p[6:]
            delta = (X[rows] @ W + b - T[rows]) / len(rows)
            g = np.concatenate([(X[rows].T @ delta).ravel(), delta.sum(axis=0)])
            v = mu * v - lr * g
            p = p + mu * v - lr * g
        close(params, p, np.float64, f"epoch {epoch}")
        close(slots, v, np.float64, f"velocity, epoch {epoch}")


# -- the caller's order ----------------------------------------------------------------------------
def test_given_order_trains_on_the_callers_batches_and_leaves_perm_alone(be):
    engine, params, _, P = mlp(be, [4, 6, 3], SK_LOSSES["sk_log_loss"], batch=5)
    rng = np.random.default_rng(11)
    X, labels = rng.standard_normal((13, 4)), rng.integers(0, 3, 13)
    order = np.array([3, 3, 12, 0, 7, 1, 1, 5, 9, 2, 11, 4, 6], np.int64)  # repeats, one row left out
    optim = optim_record(kind=1, lr=0.05, l2_loss=0.01, form=SK)
    by_epoch, slots, counters = params.copy(), np.zeros(2 * P), np.zeros(N_COUNTERS, np.int64)
    perm = order.copy()
    assert engine.train_epoch(result_record(), by_epoch, slots, np.zeros(1), counters, perm, optim, X, None,
                              labels, None, 5, GIVEN, 0) == ("ok", None)
    np.testing.assert_array_equal(perm, order)
    by_step, slots2, counters2 = params.copy(), np.zeros(2 * P), np.zeros(N_COUNTERS, np.int64)
    for start in range(0, 13, 5):
        rows = order[start:start + 5]
        engine.train_step(result_record(), by_step, slots2, np.zeros(1), counters2, optim,
                          np.ascontiguousarray(X[rows]), None, labels[rows].astype(np.int64), None, 0)
    close(by_epoch, by_step, np.float64)
    np.testing.assert_array_equal(counters, counters2)


@pytest.mark.parametrize("bad", [-1, 13, 2**40], ids=["negative", "n", "huge"])
def test_an_order_with_a_row_outside_the_data_is_refused_before_anything_changes(be, bad):
    engine, params, _, P = mlp(be, [4, 6, 3], SK_LOSSES["sk_log_loss"], batch=5)
    rng = np.random.default_rng(12)
    X, labels = rng.standard_normal((13, 4)), rng.integers(0, 3, 13)
    perm = np.arange(13, dtype=np.int64)
    perm[11] = bad  # in the last batch: a lazy check would have trained the first two
    before, slots, counters = params.copy(), np.zeros(2 * P), np.zeros(N_COUNTERS, np.int64)
    res = result_record()
    with pytest.raises(ValueError):
        engine.train_epoch(res, params, slots, np.zeros(1), counters, perm, optim_record(kind=1, lr=0.1),
                           X, None, labels, None, 5, GIVEN, 0)
    np.testing.assert_array_equal(params, before)
    assert not slots.any() and not counters.any() and res["batches"] == 0


def test_a_short_perm_a_bad_order_code_or_a_bad_form_is_refused(be):
    engine, params, _, P = mlp(be, [4, 6, 3], SK_LOSSES["sk_log_loss"], batch=5)
    X, labels = np.zeros((13, 4)), np.zeros(13, np.int64)

    def epoch(perm, shuffle, **optim):
        return engine.train_epoch(result_record(), params, np.zeros(2 * P), np.zeros(1),
                                  np.zeros(N_COUNTERS, np.int64), perm, optim_record(kind=1, lr=0.1, **optim),
                                  X, None, labels, None, 5, shuffle, 0)

    with pytest.raises(ValueError):
        epoch(np.arange(12, dtype=np.int64), GIVEN)
    with pytest.raises(ValueError):
        epoch(np.arange(13, dtype=np.int64), 3)
    with pytest.raises(ValueError):
        epoch(np.arange(13, dtype=np.int64), GIVEN, form=2)


def test_epoch_order_of_the_model_layer_checks_and_copies():
    out = epoch_order([2, 0, 2], 3)
    assert out.dtype == np.int64 and out.flags.c_contiguous and out.tolist() == [2, 0, 2]
    src = np.array([1, 0], np.int32)
    assert epoch_order(src, 2) is not src
    for bad, match in (([0, 3, 1], r"holds 3 at position 1"), ([-1, 0, 1], r"holds -1 at position 0"),
                       ([0, 1], r"1-D array of 3"), ([[0, 1, 2]], r"1-D array of 3"),
                       ([0.0, 1.0, 2.0], "integers")):
        with pytest.raises(ValueError, match=match):
            epoch_order(bad, 3)


def test_poisson_predicts_through_the_exp_link(be):
    engine, params, _, _ = mlp(be, [4, 5, 2], SK_LOSSES["sk_poisson"])
    X = np.random.default_rng(13).standard_normal((9, 4))
    raw, mean = np.empty((9, 2)), np.empty((9, 2))
    engine.predict(raw, params, np.zeros(1), X, False)
    engine.predict(mean, params, np.zeros(1), X, True)
    close(mean, np.exp(raw), np.float64)


# =================================================================================================
# 2. compiled engine against the oracle, small and wide
# =================================================================================================
OPTIMS = {"sgd-momentum": dict(kind=0, lr=0.05, momentum=0.9),
          "sgd-nesterov-invscaling": dict(kind=0, lr=0.1, momentum=0.9, nesterov=1, schedule=4),
          "adam": dict(kind=1, lr=0.01)}


def train_both_ways(units, loss, opt, dtype, weighted, epochs=2, batch=16, n=45):
    rng = np.random.default_rng(14)
    X = rng.standard_normal((n, units[0])).astype(dtype)
    labels = T = None
    if loss == "sk_log_loss":
        labels = rng.integers(0, units[-1], n)
    elif loss == "sk_binary_log_loss":
        T = rng.integers(0, 2, (n, units[-1])).astype(dtype)
    elif loss == "sk_poisson":
        T = rng.poisson(1.0, (n, units[-1])).astype(dtype)
    else:
        T = rng.standard_normal((n, units[-1])).astype(dtype)
    sw = rng.uniform(0.5, 2.0, n).astype(dtype) if weighted else None
    orders = [rng.permutation(n) for _ in range(epochs)]
    out = []
    for be in (_ext, reference):
        engine, params, _, P = mlp(be, units, SK_LOSSES[loss], "sigmoid" if loss == "sk_poisson" else "relu",
                                   dtype, batch, seed=1, scale=0.1 if loss == "sk_poisson" else 1 / np.sqrt(max(units)))
        slots, counters, curve = np.zeros(2 * P, dtype), np.zeros(N_COUNTERS, np.int64), []
        optim = optim_record(**OPTIMS[opt], l2_loss=0.05, form=SK)
        for epoch, order in enumerate(orders):
            res = result_record()
            assert engine.train_epoch(res, params, slots, np.zeros(1, dtype), counters, order.astype(np.int64),
                                      optim, X, T, labels, sw, batch, GIVEN, epoch) == ("ok", None)
            curve.append(res["loss_sum"] / res["weight_sum"])
        out.append((params, slots, curve))
    return out


TOL = {np.float64: 1e-9, np.float32: 2e-4}


@pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("opt", sorted(OPTIMS))
@pytest.mark.parametrize("loss", sorted(SK_LOSSES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_small_model_matches_the_oracle(dtype, loss, opt, weighted):
    (p1, s1, c1), (p2, s2, c2) = train_both_ways([5, 7, 4, 3], loss, opt, dtype, weighted)
    np.testing.assert_allclose(p1, p2, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(s1, s2, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(c1, c2, rtol=TOL[dtype])


@pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("opt", sorted(OPTIMS))
@pytest.mark.parametrize("loss", ["sk_log_loss", "sk_squared_error"])
def test_wide_model_matches_the_oracle(loss, opt, threads):
    """64-300-3: 20,100 parameters, two optimizer chunks (16,384 each) with the weight/bias boundary
    inside the second; the l2_loss term runs over all 19,200 weights."""
    before = _ext.get_num_threads()
    _ext.set_num_threads(threads)
    try:
        (p1, s1, c1), (p2, s2, c2) = train_both_ways([64, 300, 3], loss, opt, np.float64, True, batch=32, n=100)
    finally:
        _ext.set_num_threads(before)
    assert p1.size > 16384
    np.testing.assert_allclose(p1, p2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s1, s2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(c1, c2, rtol=1e-9)


# =================================================================================================
# 3. scikit-learn's own fit, 3 epochs
# =================================================================================================
SK_SEED, SK_N, SK_D, SK_HIDDEN, SK_BATCH, SK_EPOCHS, SK_ALPHA = 3, 150, 6, (7, 5), 32, 3, 0.01
SOLVERS = {
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=False),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    "sgd-invscaling": dict(solver="sgd", learning_rate_init=0.2, momentum=0.9, nesterovs_momentum=True,
                           learning_rate="invscaling", power_t=0.5),
    "adam": dict(solver="adam", learning_rate_init=0.01, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
}
PROBLEMS = ["multiclass", "binary", "multilabel", "squared_error", "poisson"]


def sk_problem(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((SK_N, SK_D))
    if kind == "multiclass":
        y = rng.integers(0, 3, SK_N)
    elif kind == "binary":
        y = (X[:, 0] + 0.5 * rng.standard_normal(SK_N) > 0).astype(int)
    elif kind == "multilabel":
        y = (X[:, :3] + 0.5 * rng.standard_normal((SK_N, 3)) > 0).astype(int)
    elif kind == "squared_error":
        y = np.c_[X[:, 0] - X[:, 1], 2 * X[:, 2]] + 0.1 * rng.standard_normal((SK_N, 2))
    else:
        y = rng.poisson(np.exp(0.5 * X[:, 0])).astype(float)
    return X, y, rng.uniform(0.5, 2.0, SK_N)


def sklearn_fit(kind, solver, activation, sw):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn_versions import make, weights
    X, y, _ = sk_problem(kind)
    classifier = kind in ("multiclass", "binary", "multilabel")
    cls = MLPClassifier if classifier else MLPRegressor
    est = make(
        cls,
        hidden_layer_sizes=SK_HIDDEN, activation=activation, alpha=SK_ALPHA, batch_size=SK_BATCH,
        max_iter=SK_EPOCHS, tol=0.0, n_iter_no_change=10**6, early_stopping=False, shuffle=True,
        random_state=SK_SEED, **SOLVERS[solver], **({} if classifier else {"loss": kind}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 epochs on purpose
        est.fit(X, y, **weights(cls, sw))
    return est


def engine_fit(be, kind, solver, activation, sw):
    """What the estimator will do: scikit-learn's initialisation (_init_coef, layer by layer, from
    RandomState(random_state)), then per epoch its shuffle of the previous order with the same
    RandomState, passed as the epoch's order; the link lives in the loss."""
    from sklearn.utils import shuffle as sk_shuffle
    X, y, _ = sk_problem(kind)
    T = labels = None
    if kind == "multiclass":
        labels = np.unique(y, return_inverse=True)[1].astype(np.int64)
        n_out, loss = 3, "sk_log_loss"
    elif kind in ("binary", "multilabel"):
        T = np.ascontiguousarray(y.reshape(SK_N, -1), dtype=np.float64)
        n_out, loss = T.shape[1], "sk_binary_log_loss"
    else:
        T = np.ascontiguousarray(y.reshape(SK_N, -1))
        n_out, loss = T.shape[1], "sk_" + kind
    units = [SK_D, *SK_HIDDEN, n_out]
    engine, params, n_w, P = mlp(be, units, SK_LOSSES[loss], "sigmoid" if activation == "logistic" else activation,
                                 np.float64, SK_BATCH)
    rs = np.random.RandomState(SK_SEED)
    coefs, intercepts = [], []
    for a, b in _pairs(units):  # MLP._init_coef
        bound = np.sqrt((2.0 if activation == "logistic" else 6.0) / (a + b))
        coefs.append(rs.uniform(-bound, bound, (a, b)))
        intercepts.append(rs.uniform(-bound, bound, b))
    params[...] = np.concatenate([c.ravel() for c in coefs] + intercepts)
    o = SOLVERS[solver]
    if o["solver"] == "adam":
        optim = optim_record(kind=1, lr=o["learning_rate_init"], beta1=o["beta_1"], beta2=o["beta_2"],
                             eps=o["epsilon"], l2_loss=SK_ALPHA, form=SK)
    else:
        optim = optim_record(kind=0, lr=o["learning_rate_init"], momentum=o["momentum"],
                             nesterov=int(o["nesterovs_momentum"]),
                             schedule=4 if o.get("learning_rate") == "invscaling" else 0,
                             power_t=o.get("power_t", 0.5), l2_loss=SK_ALPHA, form=SK)
    slots, counters = np.zeros(2 * P), np.zeros(N_COUNTERS, np.int64)
    idx, curve = np.arange(SK_N), []
    for epoch in range(SK_EPOCHS):
        idx = sk_shuffle(idx, random_state=rs)
        res = result_record()
        status = engine.train_epoch(res, params, slots, np.zeros(1), counters, epoch_order(idx, SK_N), optim,
                                    X, T, labels, sw, SK_BATCH, GIVEN, epoch)
        assert status == ("ok", None)
        curve.append(res["loss_sum"] / res["weight_sum"])
    offsets = np.cumsum([0] + [a * b for a, b in _pairs(units)] + list(units[1:]))
    pieces = [params[lo:hi] for lo, hi in _pairs(offsets)]
    L = len(units) - 1
    return ([p.reshape(a, b) for p, (a, b) in zip(pieces[:L], _pairs(units))], pieces[L:], curve)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("activation", ["relu", "logistic"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", PROBLEMS)
def test_three_epochs_equal_scikit_learns_fit(be, kind, solver, activation, weighted):
    pytest.importorskip("sklearn")
    sw = sk_problem(kind)[2] if weighted else None
    est = sklearn_fit(kind, solver, activation, sw)
    coefs, intercepts, curve = engine_fit(be, kind, solver, activation, sw)
    for i, (got, want) in enumerate(zip(coefs, est.coefs_)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=f"coefs_[{i}]")
    for i, (got, want) in enumerate(zip(intercepts, est.intercepts_)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=f"intercepts_[{i}]")
    np.testing.assert_allclose(curve, est.loss_curve_, rtol=1e-6, err_msg="loss_curve_")
