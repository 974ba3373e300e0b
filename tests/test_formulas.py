"""Closed forms and known answers that BOTH backends must meet.

The compiled-versus-oracle tests cannot see a formula that is wrong the same way in both backends,
nor Python code the backends share (the model's learning-rate policy). Every expectation here is
computed independently, in the test: plain Python floats from the formulas of csrc/fastnn_api.h
and csrc/fastnn.h, a hand-written learning-rate sequence, or a literal pinned below.

Tolerances: an optimizer expectation in Python floats (double) differs from the float64 kernels
by the order of a few operations, so 1e-12 relative; the float32 kernels round every operation
(and every hyper-parameter) to float, ~1e-7 per operation over a few steps, so 1e-5 relative.
Learning rates are compared to 1e-12 relative (one pow / cos in double).
"""
import math

import numpy as np
import pytest

import fastnn
from fastnn._engine import reference

try:
    from fastnn._engine import _ext
except ImportError:
    _ext = None


def kernels(backend):
    """The engine-level module of the backend under test (see conftest's `backend` fixture)."""
    return _ext if backend == "c" else reference


DTYPES = [pytest.param(np.float64, id="float64"), pytest.param(np.float32, id="float32")]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}


# =================================================================================================
# 1. optimizer updates, several steps, against the formulas in plain Python
# =================================================================================================
P0 = [0.5, -1.25, 0.0, 2.0, -0.75, 0.3]  # params[0:N_DECAY] are weights; p = 0 has sign 0
N_DECAY = 4
GRADS = [[0.2, -0.4, 0.1, -0.3, 0.5, -0.05],
         [-0.1, 0.3, 0.25, 0.15, -0.2, 0.4],
         [0.05, -0.6, -0.2, 0.35, 0.1, -0.3],
         [0.3, 0.1, -0.15, -0.25, 0.45, 0.2]]
PENALTIES = {"bare": {}, "l2-l1-decay": dict(l2=0.02, l1=0.01, weight_decay=0.1)}


def sign(x):
    return (x > 0) - (x < 0)


def penalised(i, p, g, lr, l2=0.0, l1=0.0, weight_decay=0.0):
    """(g', p after decoupled decay) of element i: g + l2 p + l1 sign(p) and p (1 - lr wd) on the
    weights, g and p unchanged elsewhere."""
    if i < N_DECAY:
        return g + l2 * p + l1 * sign(p), p * (1 - lr * weight_decay)
    return g, p


def expected_sgd(lr, momentum, nesterov, pen):
    p, v = list(P0), [0.0] * len(P0)
    for g in GRADS:
        for i in range(len(p)):
            gi, pi = penalised(i, p[i], g[i], lr, **pen)
            if momentum == 0:
                p[i] = pi - lr * gi
            else:
                v[i] = momentum * v[i] + gi
                p[i] = pi - lr * (gi + momentum * v[i] if nesterov else v[i])
    return p, [v]


def expected_adam(lr, b1, b2, eps, pen):
    p, m, v = list(P0), [0.0] * len(P0), [0.0] * len(P0)
    for t, g in enumerate(GRADS, start=1):
        for i in range(len(p)):
            gi, pi = penalised(i, p[i], g[i], lr, **pen)
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            m_hat, v_hat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            p[i] = pi - lr * m_hat / (math.sqrt(v_hat) + eps)
    return p, [m, v]


def expected_rmsprop(lr, rho, eps, pen):
    p, s = list(P0), [0.0] * len(P0)
    for g in GRADS:
        for i in range(len(p)):
            gi, pi = penalised(i, p[i], g[i], lr, **pen)
            s[i] = rho * s[i] + (1 - rho) * gi * gi
            p[i] = pi - lr * gi / (math.sqrt(s[i]) + eps)
    return p, [s]


def run_steps(be, update, dtype, n_slots, **hyper):
    p = np.array(P0, dtype)
    slots = [np.zeros(len(P0), dtype) for _ in range(n_slots)]
    for t, g in enumerate(GRADS, start=1):
        g = np.array(g, dtype)
        if update == "adam_update":
            be.adam_update(p, *slots, g, N_DECAY, t, **hyper)
        else:
            getattr(be, update)(p, *slots, g, N_DECAY, **hyper)
    return p, slots


def assert_close(got, want, dtype):
    got_p, got_slots = got
    want_p, want_slots = want
    np.testing.assert_allclose(got_p, want_p, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, err_msg="params")
    for a, b in zip(got_slots, want_slots):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3, err_msg="state")


@pytest.mark.parametrize("pen", PENALTIES.values(), ids=PENALTIES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_rmsprop_four_steps_equal_the_formula(backend, dtype, pen):
    """s = rho s + (1-rho) g'^2; p -= lr g' / (sqrt(s) + eps), rho and eps away from defaults."""
    lr, rho, eps = 0.01, 0.8, 1e-3
    got = run_steps(kernels(backend), "rmsprop_update", dtype, 1, lr=lr, rho=rho, eps=eps, **pen)
    assert_close(got, expected_rmsprop(lr, rho, eps, pen), dtype)


@pytest.mark.parametrize("pen", PENALTIES.values(), ids=PENALTIES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_four_steps_with_bias_correction_equal_the_formula(backend, dtype, pen):
    """m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2; p -= lr m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)
    for t = 1..4: after step 1 the bias correction no longer cancels."""
    lr, b1, b2, eps = 0.01, 0.8, 0.95, 1e-3
    got = run_steps(kernels(backend), "adam_update", dtype, 2, lr=lr, beta1=b1, beta2=b2, eps=eps, **pen)
    assert_close(got, expected_adam(lr, b1, b2, eps, pen), dtype)


SGD_KINDS = {"plain": (0.0, False), "momentum": (0.9, False), "nesterov": (0.7, True)}


@pytest.mark.parametrize("pen", PENALTIES.values(), ids=PENALTIES.keys())
@pytest.mark.parametrize("kind", SGD_KINDS.values(), ids=SGD_KINDS.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_four_steps_equal_the_formula(backend, dtype, kind, pen):
    """v = mu v + g'; p -= lr (nesterov ? g' + mu v : v); momentum 0: p -= lr g', v untouched."""
    momentum, nesterov = kind
    lr = 0.1
    got = run_steps(kernels(backend), "sgd_update", dtype, 1, lr=lr, momentum=momentum,
                    nesterov=nesterov, **pen)
    assert_close(got, expected_sgd(lr, momentum, nesterov, pen), dtype)


# =================================================================================================
# 2. learning-rate schedules: the rate fit records and the rate the engine applies
# =================================================================================================
# A linear model under mse trains by a gradient written in one line, so the whole trajectory of
# plain SGD can be computed here from the learning rate of every step: the weights then tell the
# rate the engine really used, and History('lr') the one it recorded at each epoch's start.
N, BATCH, EPOCHS = 40, 10, 5  # 4 steps per epoch, in order (shuffle=False)
LR = 0.1


def linear_data():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((N, 3))
    y = X @ np.array([[1.5], [-2.0], [0.5]]) + 0.3 + 0.1 * rng.standard_normal((N, 1))
    return X, y


W0, B0 = np.array([[0.2], [0.1], [-0.3]]), np.array([0.05])


def fit_linear(schedule, epochs=EPOCHS, lr=LR):
    X, y = linear_data()
    model = fastnn.Sequential([fastnn.Dense(1)], dtype="float64", seed=0)
    model.compile(fastnn.SGD(lr=lr, schedule=schedule), loss="mse").build(3)
    model.set_weights([W0, B0])
    hist = model.fit(X, y, epochs=epochs, batch_size=BATCH, shuffle=False)
    return model, hist.history


def sgd_trajectory(lr_of_step, epochs=EPOCHS):
    """Weights after plain SGD on mean squared error: dL/dz = 2 (z - y) / m per batch of m rows."""
    X, y = linear_data()
    W, b = W0.copy(), B0.copy()
    step = 0
    for epoch in range(epochs):
        for s in range(0, N, BATCH):
            x, t = X[s:s + BATCH], y[s:s + BATCH]
            dz = 2 * (x @ W + b - t) / len(x)
            lr = lr_of_step(epoch, step)
            W, b = W - lr * (x.T @ dz), b - lr * dz.sum(axis=0)
            step += 1
    return W, b


def assert_trajectory(model, lr_of_step, epochs=EPOCHS):
    W, b = sgd_trajectory(lr_of_step, epochs)
    got_W, got_b = model.get_weights()
    np.testing.assert_allclose(got_W, W, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_b, b, rtol=1e-10, atol=1e-12)


S2 = math.sqrt(2) / 2
SCHEDULES = {
    # name: (schedule, rate per epoch as recorded, rate of (epoch, step))
    "step": (lambda: fastnn.StepDecay(step_size=2, gamma=0.5),
             [0.1, 0.1, 0.05, 0.05, 0.025],
             lambda e, t: 0.1 * 0.5 ** (e // 2)),
    "exponential": (lambda: fastnn.ExponentialDecay(gamma=0.7),
                    [0.1, 0.07, 0.049, 0.0343, 0.02401],
                    lambda e, t: 0.1 * 0.7 ** e),
    # samples seen at each epoch's start: 0, 40, 80, 120, 160
    "invscaling": (lambda: fastnn.InvScaling(power_t=0.5),
                   [0.1, 0.1 / math.sqrt(41), 0.1 / 9, 0.1 / 11, 0.1 / math.sqrt(161)],
                   lambda e, t: 0.1 / math.sqrt(40 * e + 1)),
    # per step t of T = 5 epochs x 4 steps = 20: lr_min + (lr - lr_min) (1 + cos(pi t / T)) / 2
    "cosine": (lambda: fastnn.CosineDecay(lr_min=0.01),
               [0.1,  # epochs start at steps 0, 4, 8, 12, 16
                0.01 + 0.09 * (1 + math.cos(math.pi / 5)) / 2,
                0.01 + 0.09 * (1 + math.cos(2 * math.pi / 5)) / 2,
                0.01 + 0.09 * (1 + math.cos(3 * math.pi / 5)) / 2,
                0.01 + 0.09 * (1 + math.cos(4 * math.pi / 5)) / 2],
               lambda e, t: 0.01 + 0.09 * (1 + math.cos(math.pi * t / 20)) / 2),
    # a horizon of 6 steps: from step 6 on, lr stays at lr_min = 0 and the weights stop
    "cosine-horizon": (lambda: fastnn.CosineDecay(lr_min=0.0, total_steps=6),
                       [0.1, 0.1 * (1 + math.cos(4 * math.pi / 6)) / 2, 0.0, 0.0, 0.0],
                       lambda e, t: 0.1 * (1 + math.cos(math.pi * min(t, 6) / 6)) / 2),
}


@pytest.mark.parametrize("case", SCHEDULES.values(), ids=SCHEDULES.keys())
def test_schedule_rate_per_epoch_and_per_step_equals_its_closed_form(backend, case):
    schedule, per_epoch, per_step = case
    model, hist = fit_linear(schedule())
    np.testing.assert_allclose(hist["lr"], per_epoch, rtol=1e-12, atol=1e-15)
    assert_trajectory(model, per_step)


def test_constant_rate_is_recorded_and_applied_unchanged(backend):
    model, hist = fit_linear(None)
    assert hist["lr"] == [LR] * EPOCHS
    assert_trajectory(model, lambda e, t: LR)


# -- Adaptive: scikit-learn's plateau rule, in fastnn/nn/optimizers.py ---------------------------------
# After each epoch, a loss that fails to go below (best loss so far - tol) counts one epoch of no
# improvement (the first epoch always improves on +inf); any improvement resets the count; when
# the count reaches `patience`, lr is divided by `factor` and the count restarts. The lr of an
# epoch is recorded at its start.
ADAPTIVE_FLAT = {
    # tol far above any change of the loss: every epoch but the first is "no improvement"
    "patience-1": (1, 5.0, [0.1, 0.1, 0.02, 0.004, 0.0008, 0.00016, 3.2e-05, 6.4e-06]),
    "patience-2": (2, 5.0, [0.1, 0.1, 0.1, 0.02, 0.02, 0.004, 0.004, 0.0008]),
    "patience-3-factor-2": (3, 2.0, [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025]),
}


@pytest.mark.parametrize("case", ADAPTIVE_FLAT.values(), ids=ADAPTIVE_FLAT.keys())
def test_adaptive_divides_lr_by_factor_after_patience_flat_epochs(backend, case):
    patience, factor, want = case
    model, hist = fit_linear(fastnn.Adaptive(factor=factor, tol=1e3, patience=patience), epochs=8)
    np.testing.assert_allclose(hist["lr"], want, rtol=1e-12)
    assert_trajectory(model, lambda e, t: want[e], epochs=8)  # and the engine applies it


def test_adaptive_keeps_lr_while_the_loss_improves_by_more_than_tol(backend):
    model, hist = fit_linear(fastnn.Adaptive(factor=5, tol=1e-6, patience=1), epochs=8, lr=0.02)
    losses = hist["loss"]
    assert all(b < a - 1e-6 for a, b in zip(losses, losses[1:])), losses  # the premise
    assert hist["lr"] == [0.02] * 8
    assert_trajectory(model, lambda e, t: 0.02, epochs=8)


def test_adaptive_reacts_to_the_first_plateau_only(backend):
    """The loss falls fast, then by less than tol = 0.05: lr holds while it falls by more."""
    model, hist = fit_linear(fastnn.Adaptive(factor=5, tol=0.05, patience=2), epochs=10)
    losses, lrs = hist["loss"], hist["lr"]
    want, best, flat, lr = [], math.inf, 0, 0.1
    for loss in losses:  # the rule above, applied to the recorded losses
        want.append(lr)
        if loss > best - 0.05:
            flat += 1
            if flat == 2:
                lr, flat = lr / 5, 0
        else:
            flat = 0
        best = min(best, loss)
    assert want[1] == 0.1 and want[-1] < 0.1, (losses, want)  # both regimes occur
    np.testing.assert_allclose(lrs, want, rtol=1e-12)


# =================================================================================================
# 3. the counter-based generator (csrc/fastnn.h): known answers
# =================================================================================================
M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z):
    """splitmix64's finaliser, in Python ints, as fastnn.h writes it."""
    z &= M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def key_of(seed, kind, index):
    return mix(mix(seed + GOLDEN * (kind + 1)) ^ ((index * 0xD1B54A32D192ED03) & M64))


def u64_of(key, ctr):
    return mix(key + GOLDEN * (ctr + 1))


def uniform_of(key, ctr):
    return (u64_of(key, ctr) >> 11) * 2.0 ** -53


# Pinned from the definition (and, for key 0, splitmix64's published first outputs from state 0:
# u64(0, c) = mix((c + 1) G) is exactly splitmix64's c-th output).
KNOWN_KEYS = {(0, 0, 0): 0x48218226FF3CD4BF, (42, 1, 0): 0x6A829AA58CBB5BE2,
              (42, 1, 1): 0xFA6B21FE72BBC9E6, (42, 16, 7): 0x6B0D23866BB1FCAF,
              (2**64 - 1, 17, 2**40): 0xD55A2973C59D305B}
SPLITMIX64_FROM_0 = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
KNOWN_U64 = {0x6A829AA58CBB5BE2: [0x6471F70293F908CE, 0xD8B2177EE8130EA0, 0x846B97BC070ADB19,
                                  0x500E54F7EB7A8624]}
SHUFFLE_10 = [7, 3, 6, 4, 8, 2, 5, 1, 9, 0]  # shuffle(range(10), key(42, 1, 0))


def test_the_python_definition_reproduces_the_pinned_values():
    """The test's own splitmix64 is right: it gives splitmix64's published outputs."""
    assert [u64_of(0, c) for c in range(3)] == SPLITMIX64_FROM_0
    assert {k: key_of(*k) for k in KNOWN_KEYS} == KNOWN_KEYS
    assert [u64_of(0x6A829AA58CBB5BE2, c) for c in range(4)] == KNOWN_U64[0x6A829AA58CBB5BE2]


@pytest.mark.parametrize("args", KNOWN_KEYS, ids=[f"seed{s}-kind{k}-index{i}" for s, k, i in KNOWN_KEYS])
def test_rng_key_known_answers(backend, args):
    assert kernels(backend).rng_key(*args) == KNOWN_KEYS[args]


def test_rng_uniform_known_answers(backend):
    """uniform = (u64 >> 11) 2^-53: the top 53 bits of the pinned 64-bit values, exactly."""
    be = kernels(backend)
    out = np.empty(3)
    be.rng_uniform(out, 0, 0)
    assert out.tolist() == [(u >> 11) * 2.0 ** -53 for u in SPLITMIX64_FROM_0]
    key = KNOWN_KEYS[(42, 1, 0)]
    out = np.empty(4)
    be.rng_uniform(out, key, 0)
    assert out.tolist() == [(u >> 11) * 2.0 ** -53 for u in KNOWN_U64[key]]
    out = np.empty(5)  # a counter offset, and one that wraps around 2^64
    be.rng_uniform(out, key, 2**64 - 2)
    assert out.tolist() == [uniform_of(key, (2**64 - 2 + i) & M64) for i in range(5)]


def test_shuffle_known_answer(backend):
    """Fisher-Yates with j = u64(key, i) % (i + 1): this uses all 64 bits of u64."""
    key = KNOWN_KEYS[(42, 1, 0)]
    perm = np.full(10, -1, np.int64)
    kernels(backend).shuffle(perm, key)
    assert perm.tolist() == SHUFFLE_10
    want = list(range(10))
    for i in range(9, 0, -1):
        j = u64_of(key, i) % (i + 1)
        want[i], want[j] = want[j], want[i]
    assert want == SHUFFLE_10


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_is_uniform_at_least_rate_scaled(backend, dtype):
    """mask[i] = (uniform(key, i) >= rate) / (1 - rate), element i of the row-major batch."""
    key, rate = key_of(7, 16 + 1, 3), 0.4  # layer 1, optimizer step 3
    X = np.arange(1, 25, dtype=dtype).reshape(4, 6)
    Y, mask = np.empty_like(X), np.empty_like(X)
    kernels(backend).dropout_forward(Y, mask, X, rate, key)
    keep = np.array([uniform_of(key, i) >= rate for i in range(X.size)]).reshape(X.shape)
    assert 0 < keep.sum() < X.size
    np.testing.assert_array_equal(mask, np.where(keep, dtype(1 / (1 - rate)), dtype(0)))
    np.testing.assert_array_equal(Y, X * mask)
