"""The training engine: the compiled epoch equals the NumPy oracle's epoch step for step, the
network's gradient equals finite differences, and training survives Ctrl-C, threads and divergence.

Tolerances: float64 runs agree to ~1e-15 per step (same operations, different summation order in
GEMM), so 1e-9 relative after a few epochs leaves ample room; float32 runs agree to ~1e-7 per step
and a few epochs of chaotic training amplify that, hence 2e-4 relative to the weights' scale.
"""
import os
import signal
import threading
import time

import numpy as np
import pytest

import fastnn
from fastnn import _engine as _backend
from fastnn._engine import reference as _reference
from fastnn._engine.codes import CTR_SAMPLES, CTR_STEP

HAVE_C = "c" in _backend.available_backends()
needs_c = pytest.mark.skipif(not HAVE_C, reason="compiled extension not built")
TOL = {"float64": 1e-9, "float32": 2e-4}


@pytest.fixture(autouse=True)
def restore_backend():
    before = _backend.get_backend()
    yield
    fastnn.set_backend(before)


def data(loss, n=157, d=13, k=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_crossentropy":
        y = (rng.random((n, k)) < 0.4).astype(float)
    else:
        y = X[:, :k] @ rng.standard_normal((k, k)) + 0.1 * rng.standard_normal((n, k))
    return X, y


ARCHS = {
    "relu": lambda k: [fastnn.Dense(17, activation="relu"), fastnn.Dense(k)],
    "leaky-dropout": lambda k: [fastnn.Dense(19, activation="leaky_relu", alpha=0.1), fastnn.Dropout(0.3),
                                fastnn.Dense(11, activation="relu"), fastnn.Dense(k)],
    "sigmoid-batchnorm": lambda k: [fastnn.Dense(16, activation="sigmoid"), fastnn.BatchNorm(momentum=0.2),
                                    fastnn.Dense(k)],
    "tanh-bn-activation-softmax": lambda k: [fastnn.Dense(15), fastnn.BatchNorm(), fastnn.Activation("tanh"),
                                             fastnn.Dropout(0.1), fastnn.Dense(9, activation="softmax"),
                                             fastnn.Dense(k)],
    "deep-mixed": lambda k: [fastnn.Dropout(0.2), fastnn.Dense(23, activation="relu"), fastnn.BatchNorm(),
                             fastnn.Dense(14, activation="tanh"), fastnn.Dropout(0.25),
                             fastnn.Dense(12, activation="leaky_relu"), fastnn.Dense(k)],
}

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.05),
    "sgd-momentum": lambda: fastnn.SGD(lr=0.02, momentum=0.9, l2=1e-3),
    "sgd-nesterov": lambda: fastnn.SGD(lr=0.02, momentum=0.8, nesterov=True, l1=1e-4),
    "adam": lambda: fastnn.Adam(lr=3e-3, l2=1e-4),
    "adamw": lambda: fastnn.AdamW(lr=3e-3, weight_decay=0.05),
    "rmsprop": lambda: fastnn.RMSprop(lr=1e-3, weight_decay=1e-3),
    "adam-step": lambda: fastnn.Adam(lr=3e-3, schedule=fastnn.StepDecay(step_size=2, gamma=0.5)),
    "sgd-exponential": lambda: fastnn.SGD(lr=0.05, schedule=fastnn.ExponentialDecay(0.7)),
    "sgd-cosine": lambda: fastnn.SGD(lr=0.05, momentum=0.5, schedule=fastnn.CosineDecay(lr_min=1e-3)),
    "sgd-invscaling": lambda: fastnn.SGD(lr=0.5, schedule=fastnn.InvScaling(0.5)),
    "adam-adaptive": lambda: fastnn.Adam(lr=3e-3, schedule=fastnn.Adaptive(tol=10.0, patience=1)),
}


def train(backend, arch, opt, loss, dtype, epochs=3, batch=32, shuffle=True, sample_weight=False, seed=5):
    fastnn.set_backend(backend)
    X, y = data(loss)
    k = 4
    model = fastnn.Sequential(ARCHS[arch](k), dtype=dtype, seed=seed)
    model.compile(OPTIMIZERS[opt](), loss=loss)
    sw = np.random.default_rng(1).uniform(0.2, 2.0, len(X)) if sample_weight else None
    hist = model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=shuffle, sample_weight=sw)
    return model, hist


def assert_same_training(a, b, dtype):
    (ma, ha), (mb, hb) = a, b
    scale = max(1.0, np.abs(mb.params).max())
    np.testing.assert_allclose(ma.params, mb.params, rtol=0, atol=TOL[dtype] * scale)
    np.testing.assert_allclose(ma.slots, mb.slots, rtol=TOL[dtype], atol=TOL[dtype] * max(1.0, np.abs(mb.slots).max()))
    np.testing.assert_allclose(ma.state, mb.state, rtol=0, atol=TOL[dtype] * max(1.0, np.abs(mb.state).max()))
    np.testing.assert_array_equal(ma.counters, mb.counters)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=TOL[dtype] * 10)
    np.testing.assert_allclose(ha["lr"], hb["lr"], rtol=1e-12)


@needs_c
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_epoch_matches_oracle_for_every_optimizer(opt, dtype):
    a = train("c", "leaky-dropout", opt, "cross_entropy", dtype)
    b = train("python", "leaky-dropout", opt, "cross_entropy", dtype)
    assert_same_training(a, b, dtype)


@needs_c
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["cross_entropy", "binary_crossentropy", "mse"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_epoch_matches_oracle_for_every_layer_and_loss(arch, loss, dtype):
    # Adam divides a gradient by its own magnitude, so in float32 a gradient that is zero in exact
    # arithmetic (the bias of a Dense feeding BatchNorm) becomes +-lr of rounding noise that differs
    # between any two implementations; SGD keeps noise at noise size.
    opt = "adam" if dtype == "float64" else "sgd-momentum"
    a = train("c", arch, opt, loss, dtype, sample_weight=(arch == "relu"))
    b = train("python", arch, opt, loss, dtype, sample_weight=(arch == "relu"))
    assert_same_training(a, b, dtype)


@needs_c
@pytest.mark.parametrize("arch,batch", [("leaky-dropout", 1), ("deep-mixed", 5), ("deep-mixed", 7),
                                        ("deep-mixed", 157), ("deep-mixed", 500)])
def test_epoch_matches_oracle_for_odd_batches_without_shuffle(arch, batch):
    # (batch norm refuses one-row batches: 157 = 4 x 39 + 1, so batch 1, 2 and 4 go to a
    # network without it)
    a = train("c", arch, "sgd-momentum", "cross_entropy", "float64", epochs=2, batch=batch, shuffle=False)
    b = train("python", arch, "sgd-momentum", "cross_entropy", "float64", epochs=2, batch=batch, shuffle=False)
    assert_same_training(a, b, "float64")


def test_same_seed_gives_identical_training_and_another_seed_does_not(backend):
    m1, _ = train(backend, "leaky-dropout", "adam", "cross_entropy", "float32")
    m2, _ = train(backend, "leaky-dropout", "adam", "cross_entropy", "float32")
    m3, _ = train(backend, "leaky-dropout", "adam", "cross_entropy", "float32", seed=6)
    np.testing.assert_array_equal(m1.params, m2.params)
    assert not np.array_equal(m1.params, m3.params)


# -- gradients against finite differences (float64) ---------------------------------------------------
def numeric_gradient(model, X, y, sw, idx, eps=1e-6):
    """Central differences of the batch loss for the parameters at `idx` (same dropout masks:
    the step index is fixed)."""
    step = int(model.counters[CTR_STEP])
    out = []
    for i in idx:
        old = model.params[i]
        model.params[i] = old + eps
        lp, _ = model.gradient(X, y, sw, step=step)
        model.params[i] = old - eps
        lm, _ = model.gradient(X, y, sw, step=step)
        model.params[i] = old
        out.append((lp - lm) / (2 * eps))
    return np.array(out)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_crossentropy", "mse"])
@pytest.mark.parametrize("arch", ["leaky-dropout", "sigmoid-batchnorm", "tanh-bn-activation-softmax", "deep-mixed"])
def test_network_gradient_matches_finite_differences(arch, loss, backend):
    X, y = data(loss, n=24)
    model = fastnn.Sequential(ARCHS[arch](4), dtype="float64", seed=2)
    model.compile("adam", loss=loss)
    model.build(X.shape[1])
    sw = np.random.default_rng(3).uniform(0.5, 1.5, len(X))
    _, analytic = model.gradient(X, y, sw, step=0)
    rng = np.random.default_rng(0)
    idx = np.unique(np.concatenate([rng.choice(model.n_params, 40, replace=False),
                                    np.arange(model.n_decay, min(model.n_decay + 20, model.n_params))]))
    numeric = numeric_gradient(model, X, y, sw, idx)
    np.testing.assert_allclose(analytic[idx], numeric, rtol=1e-5, atol=1e-8)


@needs_c
def test_gradient_of_compiled_engine_equals_oracle():
    X, y = data("cross_entropy", n=50)
    grads = []
    for backend in ("c", "python"):
        fastnn.set_backend(backend)
        model = fastnn.Sequential(ARCHS["deep-mixed"](4), dtype="float64", seed=4)
        model.compile("adam", loss="cross_entropy")
        model.build(X.shape[1])
        grads.append(model.gradient(X, y, step=3))
    assert abs(grads[0][0] - grads[1][0]) < 1e-12
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-9, atol=1e-12)


# -- random numbers ---------------------------------------------------------------------------------------
@needs_c
def test_shuffle_and_dropout_draws_are_identical_in_both_backends():
    from fastnn._engine import _ext
    for epoch in range(3):
        key = _ext.rng_key(123, 1, epoch)
        assert key == _reference.rng_key(123, 1, epoch)
        p1, p2 = np.empty(1000, np.int64), np.empty(1000, np.int64)
        _ext.shuffle(p1, key)
        _reference.shuffle(p2, key)
        np.testing.assert_array_equal(p1, p2)
        assert sorted(p1) == list(range(1000))
    u1, u2 = np.empty(4096), np.empty(4096)
    _ext.rng_uniform(u1, 99, 5)
    _reference.rng_uniform(u2, 99, 5)
    np.testing.assert_array_equal(u1, u2)
    assert 0 <= u1.min() and u1.max() < 1 and abs(u1.mean() - 0.5) < 0.02


# -- partial_fit, inference -------------------------------------------------------------------------------
def test_partial_fit_on_consecutive_batches_equals_one_unshuffled_epoch(backend):
    X, y = data("cross_entropy")
    a = fastnn.Sequential(ARCHS["deep-mixed"](4), dtype="float64", seed=1).compile(fastnn.Adam(1e-2), "cross_entropy")
    b = fastnn.Sequential(ARCHS["deep-mixed"](4), dtype="float64", seed=1).compile(fastnn.Adam(1e-2), "cross_entropy")
    a.fit(X, y, epochs=1, batch_size=40, shuffle=False)
    for s in range(0, len(X), 40):
        b.partial_fit(X[s:s + 40], y[s:s + 40])
    np.testing.assert_allclose(a.params, b.params, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a.counters, b.counters)


def test_predict_in_chunks_equals_row_by_row_inference(backend):
    chunk = max(1024, 256 * _backend.current().get_num_threads())  # 1024 rows, or 256 per thread
    X, y = data("cross_entropy", n=max(2600, chunk + 600))
    m = fastnn.Sequential(ARCHS["tanh-bn-activation-softmax"](4), dtype="float64", seed=0)
    m.compile("adam", "cross_entropy").fit(X, y, epochs=1, batch_size=64)
    whole = m.forward(X)
    assert max(m._built.pool.batches("infer")) == chunk < len(X)  # never sized to the input
    parts = np.vstack([m.forward(X[i:i + 37]) for i in range(0, len(X), 37)])
    np.testing.assert_allclose(whole, parts, rtol=1e-12, atol=1e-12)
    proba = m.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)
    np.testing.assert_array_equal(m.predict(X), whole.argmax(1))


def test_batchnorm_and_dropout_switch_between_training_and_inference():
    X, y = data("cross_entropy", n=300)
    X = X * 3 + 2
    m = fastnn.Sequential([fastnn.Dense(8), fastnn.BatchNorm(momentum=0.5), fastnn.Dropout(0.5), fastnn.Dense(4)],
                          dtype="float64", seed=0).compile("adam", "cross_entropy")
    m.fit(X, y, epochs=2, batch_size=300, shuffle=False)
    bn = m.layers[1]
    assert not np.allclose(bn.running_mean, 0) and not np.allclose(bn.running_var, 1)
    # inference is deterministic (no dropout) and uses running statistics, not the batch's
    np.testing.assert_array_equal(m.forward(X), m.forward(X))
    one = m.forward(X[:1])
    np.testing.assert_allclose(one, m.forward(X)[:1], rtol=1e-12)


# -- robustness: Ctrl-C, threads, divergence -------------------------------------------------------------
def test_ctrl_c_stops_between_batches_and_leaves_a_usable_model(backend):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4000, 64)).astype(np.float32)
    y = rng.integers(0, 10, 4000)
    m = fastnn.Sequential([fastnn.Dense(128, activation="relu"), fastnn.Dense(10)]).compile("adam", "cross_entropy")
    untrained = m.build(X.shape[1]).evaluate(X, y)["loss"]
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        m.fit(X, y, epochs=10_000, batch_size=32)
    elapsed = time.perf_counter() - t0
    timer.cancel()
    assert elapsed < 60, "fit did not stop on SIGINT"  # 10,000 epochs would take hours
    steps, samples = m.counters[CTR_STEP], m.counters[CTR_SAMPLES]
    assert steps > 0 and samples == steps * 32  # stopped on a batch boundary (4000 = 125 x 32)
    assert np.isfinite(m.params).all() and np.isfinite(m.slots).all()
    assert m.history.interrupted
    interrupted = m.evaluate(X, y)["loss"]
    assert interrupted < 0.9 * untrained  # the trained weights were kept, not the initial ones
    slots = m.slots.copy()
    m.fit(X, y, epochs=1, batch_size=32)  # the model and its optimizer state go on training
    assert m.counters[CTR_STEP] == steps + 125 and m.counters[CTR_SAMPLES] == samples + 4000
    assert np.isfinite(m.params).all() and not np.array_equal(m.slots, slots)
    # one more epoch of Adam on memorised random labels need not lower an already tiny loss: it
    # must stay in the trained model's range, far from the untrained one
    assert m.evaluate(X, y)["loss"] < 0.9 * untrained


def test_two_models_in_two_threads_train_as_they_do_one_after_the_other(backend):
    X, y = data("cross_entropy", n=800)

    def make(seed):
        return fastnn.Sequential(ARCHS["deep-mixed"](4), dtype="float32", seed=seed).compile(
            fastnn.Adam(1e-2), "cross_entropy")

    sequential = [make(s) for s in (1, 2)]
    for m in sequential:
        m.fit(X, y, epochs=3, batch_size=16)
    parallel = [make(s) for s in (1, 2)]
    threads = [threading.Thread(target=m.fit, args=(X, y), kwargs={"epochs": 3, "batch_size": 16})
               for m in parallel]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(sequential, parallel):
        np.testing.assert_array_equal(a.params, b.params)


def test_one_model_cannot_be_trained_from_two_threads_at_once():
    X, y = data("cross_entropy", n=2000)
    m = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(4)]).compile("adam", "cross_entropy")
    m.build(X.shape[1])
    errors, inside, leave = [], threading.Event(), threading.Event()

    def hold():  # as if another thread were inside fit (which marks the model busy once it holds the lock)
        with m._lock:
            m._busy = "fit"
            inside.set()
            leave.wait(10)
            m._busy = None

    t = threading.Thread(target=hold)
    t.start()
    inside.wait(10)
    try:
        for call in (lambda: m.fit(X, y), lambda: m.compile("sgd"), lambda: m.partial_fit(X, y),
                     lambda: m.set_weights(m.get_weights())):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))
    finally:
        leave.set()
        t.join()
    assert len(errors) == 4 and all("another thread" in e for e in errors)


def test_divergence_raises_naming_epoch_and_batch_and_keeps_finite_weights(backend):
    X, y = data("mse", n=400)
    X = X * 1e3
    m = fastnn.Sequential([fastnn.Dense(32, activation="relu"), fastnn.Dense(4)], dtype="float32").compile(
        fastnn.SGD(lr=10.0), "mse")
    with pytest.raises(fastnn.NonFiniteError, match=r"epoch \d+ batch \d+"):
        m.fit(X, y, epochs=50, batch_size=20)
    assert np.isfinite(m.params).all()
    steps = m.counters[CTR_STEP]
    assert steps >= 1


# -- learning (trend on a subset of MNIST; the full run lives in benchmarks) -------------------------------
@pytest.fixture(scope="module")
def mnist_subset():
    from fastnn.datasets import load_mnist
    X, y = load_mnist("train", limit=12000)
    Xt, yt = load_mnist("test", limit=3000)
    return X, y, Xt, yt


def test_mnist_relu_adam_learns(mnist_subset):
    X, y, Xt, yt = mnist_subset
    m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                           fastnn.Dense(10)], seed=0).compile(fastnn.Adam(1e-3), "cross_entropy")
    h = m.fit(X, y, epochs=3, batch_size=128, validation_data=(Xt, yt))
    assert h["loss"][0] > h["loss"][1] > h["loss"][2]
    assert h["val_accuracy"][-1] > 0.9


def test_mnist_teaching_network_sigmoid_mse_sgd_learns(mnist_subset):
    X, y, Xt, yt = mnist_subset
    m = fastnn.Sequential([fastnn.Dense(30, activation="sigmoid"), fastnn.Dense(10, activation="sigmoid")],
                          seed=0).compile(fastnn.SGD(lr=3.0), "mse")
    m.fit(X, np.eye(10)[y], epochs=3, batch_size=10)
    acc = (m.predict(Xt).argmax(1) == yt).mean()
    assert acc > 0.85


# -- regressions found in review ----------------------------------------------------------------------------
def test_predict_from_another_thread_does_not_disturb_a_running_fit():
    X, y = data("cross_entropy", n=1024)

    def make():
        return fastnn.Sequential(ARCHS["deep-mixed"](4), dtype="float64", seed=7).compile(
            fastnn.Adam(1e-2), "cross_entropy")

    alone = make()
    alone.fit(X, y, epochs=20, batch_size=512, shuffle=False)
    busy = make()
    busy.build(X.shape[1])
    stop = threading.Event()

    def predict_loop():
        while not stop.is_set():
            busy.predict(X[:512])

    t = threading.Thread(target=predict_loop)
    t.start()
    try:
        busy.fit(X, y, epochs=20, batch_size=512, shuffle=False)
    finally:
        stop.set()
        t.join()
    np.testing.assert_array_equal(alone.params, busy.params)


def test_compile_after_build_switches_the_loss_the_engine_uses(backend):
    X, y = data("binary_crossentropy", n=64)
    m = fastnn.Sequential([fastnn.Dense(8, activation="tanh"), fastnn.Dense(4)], dtype="float64", seed=0)
    m.compile("sgd", "mse").fit(X, y, epochs=1)
    m.compile("sgd", "binary_crossentropy")
    fresh = fastnn.Sequential([fastnn.Dense(8, activation="tanh"), fastnn.Dense(4)], dtype="float64", seed=0)
    fresh.compile("sgd", "binary_crossentropy").build(X.shape[1])
    fresh.set_weights(m.get_weights())
    assert m.gradient(X, y)[0] == pytest.approx(fresh.gradient(X, y)[0], rel=1e-12)
    np.testing.assert_allclose(m.gradient(X, y)[1], fresh.gradient(X, y)[1], rtol=1e-12)
    with pytest.raises(ValueError, match="2 outputs"):
        fastnn.Sequential([fastnn.Dense(1)]).compile("sgd", "mse").build(3).compile("sgd", "cross_entropy")


def test_batchnorm_statistics_that_overflow_stop_training_before_they_are_committed(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 3)) * 3e19  # float32 variance overflows, normalised values do not
    y = rng.integers(0, 2, 64)
    m = fastnn.Sequential([fastnn.BatchNorm(), fastnn.Dense(2)], dtype="float32").compile("sgd", "cross_entropy")
    with pytest.raises(fastnn.NonFiniteError):
        m.fit(X, y, epochs=1, batch_size=64)
    assert np.isfinite(m.state).all() and np.isfinite(m.params).all()


def test_cosine_schedule_spans_each_fit_and_partial_fit_needs_a_horizon():
    X, y = data("cross_entropy", n=100)
    m = fastnn.Sequential([fastnn.Dense(4)], seed=0).compile(fastnn.SGD(0.1, schedule=fastnn.CosineDecay()),
                                                              "cross_entropy")
    h1 = m.fit(X, y, epochs=2, batch_size=10)
    h2 = m.fit(X, y, epochs=2, batch_size=10)
    assert h1["lr"][0] == pytest.approx(0.1)
    assert 0 < h2["lr"][0] < 0.1 and h2["lr"][1] > 0  # the second fit still learns
    with pytest.raises(ValueError, match="total_steps"):
        m.partial_fit(X, y)
    p = fastnn.Sequential([fastnn.Dense(4)], seed=0).compile(
        fastnn.SGD(0.1, schedule=fastnn.CosineDecay(total_steps=3)), "cross_entropy")
    before = None
    for _ in range(3):
        p.partial_fit(X[:10], y[:10])
        assert before is None or not np.array_equal(before, p.params)
        before = p.params.copy()


def assert_same_on_1_2_3_threads(train):
    """train() -> a trained model; its parameters must be the same bits on 1, 2 and 3 threads."""
    fastnn.set_backend("c")
    before = fastnn.get_num_threads()
    params = []
    try:
        for threads in (1, 2, 3):
            fastnn.set_num_threads(threads)
            params.append(train().params.copy())
    finally:
        fastnn.set_num_threads(before)
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])


@needs_c
def test_training_result_does_not_depend_on_the_thread_count():
    from fastnn.datasets import load_mnist
    X, y = load_mnist("train", limit=2048)

    def train():
        m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dropout(0.1),
                               fastnn.Dense(128, activation="relu"), fastnn.Dense(10)], seed=3)
        m.compile(fastnn.Adam(1e-3), "cross_entropy").fit(X, y, epochs=2, batch_size=128)
        return m

    assert_same_on_1_2_3_threads(train)


MANY_THREADS_CHILD = """
import json, numpy as np, fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((1027, 400))  # 8 batches of 128, then 3 rows (the few-row product); k > KC
y = rng.integers(0, 10, len(X))
mixed = lambda: [fastnn.Dense(96, activation="relu"), fastnn.Dense(80, activation="tanh"),
                 fastnn.Dense(64, activation="sigmoid"), fastnn.Dropout(0.1),
                 fastnn.Dense(48, activation="leaky_relu", alpha=0.1), fastnn.Dense(40, activation="relu"),
                 fastnn.BatchNorm(), fastnn.Dense(40, activation="softmax"), fastnn.Dense(10)]
dense = lambda: [fastnn.Dense(96, activation="relu"), fastnn.Dense(80, activation="tanh"),
                 fastnn.Dense(64, activation="sigmoid"), fastnn.Dense(48, activation="leaky_relu", alpha=0.1),
                 fastnn.Dense(40, activation="softmax"), fastnn.Dense(10)]
worst = {}
for dtype, layers in (("float32", mixed), ("float64", mixed), ("float32-dense", dense), ("float64-dense", dense)):
    dtype, _, kind = dtype.partition("-")
    runs = []
    for backend, threads in (("python", 1), ("c", 1), ("c", 3), ("c", 4), ("c", 5), ("c", 8)):
        fastnn.set_backend(backend)
        fastnn.set_num_threads(threads)
        assert fastnn.get_num_threads() == threads
        m = fastnn.Sequential(layers(), seed=2, dtype=dtype)
        m.compile(fastnn.Adam(1e-3), "cross_entropy").fit(X.astype(dtype), y, epochs=2, batch_size=128)
        runs.append((m.params.copy(), m.predict_proba(X[:700].astype(dtype)), m.predict_proba(X[:1].astype(dtype))))
    for params, out, one in runs[2:]:
        assert (params == runs[1][0]).all() and (out == runs[1][1]).all() and (one == runs[1][2]).all(), dtype
    worst[dtype + kind] = [float(np.abs(runs[1][i] - runs[0][i]).max() / max(1.0, np.abs(runs[0][i]).max()))
                           for i in range(3)]
print(json.dumps(worst))
"""


@needs_c
def test_training_on_many_threads_equals_one_thread_and_the_oracle():
    """In a child allowed 8 threads (OMP_NUM_THREADS, whatever the CPUs): layers wide enough for
    the team's splits (the shared op(B) on 3 threads, the grid of blocks from 4), every elementwise activation done in
    the GEMMs' epilogues (forward, and the derivative in the product of the layer above) beside
    the layers that are not (softmax, dropout, batch norm below a dense layer), and a last batch
    of 3 rows; then dense layers only, where every derivative is in an epilogue. Parameters and predictions are the same bits on 1, 3, 4, 5 and 8 threads, and match
    the NumPy oracle."""
    from test_cpus import _child
    worst = _child(MANY_THREADS_CHILD, env={"OMP_NUM_THREADS": "8"})
    assert len(worst) == 4
    for name, errs in worst.items():
        assert max(errs) <= TOL[name[:7]] * 10, (name, errs)


def _one_gradient_overflows(dtype, where, n_in=300, hidden=40, nb=64, col=299):
    """A 2-layer softmax classifier whose loss is finite while one part of its gradient overflows
    (fastnn's step must then refuse the whole step), by construction:
    "weight": one input of fmax/2 in row 5, column `col`; its first-layer weights 1e8/big give a
    hidden value of 1e8, the output weights +-100 a confident wrong class, so dZ0 ~ 200/nb and
    that input's weight gradient ~ fmax/2 * 200/nb: inf;
    "bias": tiny inputs, output weights +-0.6 fmax (logits still finite), every row wrong the same
    way: each dZ0 ~ 1.2 fmax/nb, finite, but the bias gradient sums nb of them: inf."""
    fmax = float(np.finfo(dtype).max)
    m = fastnn.Sequential([fastnn.Dense(hidden), fastnn.Dense(2)], seed=0, dtype=dtype).compile(
        fastnn.SGD(lr=1e-6), "cross_entropy")
    m.build(n_in)
    W0, b0 = m.layers[0].kernel, m.layers[0].bias
    W1, b1 = m.layers[1].kernel, m.layers[1].bias
    b0[:] = 0
    b1[:] = 0
    X = np.full((nb, n_in), 1e-3, dtype)
    W0[:] = 1e-3
    if where == "weight":
        big = fmax / 2
        X[5, col] = big
        W0[col, :] = 1e8 / big
        W1[:, 0], W1[:, 1] = 100.0, -100.0
    else:
        W1[:, 0], W1[:, 1] = 0.6 * fmax, -0.6 * fmax
    y = np.ones(nb, np.int64)  # every row predicts class 0 (or none is confident: "weight", rows != 5)
    return m, X, y


# (batch, hidden units): the compiled step first takes the online step (6 and 8 rows its outer
# products, 16 and 64 its GEMM form), whose bound on inputs and dZ fails here and hands the step to
# the general one; there 64 x 40 checks the whole gradient, 16 x 128 takes the general step's own
# bound (nb (n_in + n_out) summed over the layers, 8,928 values, is at most a quarter of the 38,786
# parameters), which fails too and falls back to the gradient itself
SHAPES = [(64, 40), (16, 128), (8, 40), (6, 40)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("where,col", [("weight", 0), ("weight", 150), ("weight", 299), ("bias", 0)])
@pytest.mark.parametrize("nb,hidden", SHAPES)
def test_a_step_whose_weight_or_bias_gradient_overflows_is_refused_whole(backend, dtype, where, col, nb,
                                                                         hidden):
    m, X, y = _one_gradient_overflows(dtype, where, col=col, nb=nb, hidden=hidden)
    before = m.params.copy()
    # the construction, by hand in the model's dtype: a finite loss; the overflow only where planted
    W0, b0, W1, b1 = (np.asarray(w) for w in m.get_weights())
    with np.errstate(over="ignore", invalid="ignore"):
        z0 = X @ W0 + b0
        z1 = z0 @ W1 + b1
        z1 = z1 - z1.max(1, keepdims=True)
        p = np.exp(z1) / np.exp(z1).sum(1, keepdims=True)
        loss = (np.log(np.exp(z1).sum(1)) - z1[np.arange(len(y)), y]).mean()
        d1 = (p - np.eye(2, dtype=X.dtype)[y]) / X.dtype.type(len(y))
        d0 = d1 @ W1.T
        dW0, db0 = X.T @ d0, d0.sum(0)
    assert np.isfinite(loss) and np.isfinite(d0).all() and np.isfinite(z1).all()
    if where == "weight":
        assert not np.isfinite(dW0[col]).any() and np.isfinite(np.delete(dW0, col, 0)).all()
        assert np.isfinite(db0).all()
    else:
        assert not np.isfinite(db0).any() and np.isfinite(dW0).all()
    # the step itself is refused, before its update: not an update that overflowed, undone with the
    # epoch's copy (fit), or left in place (partial_fit keeps no copy)
    with pytest.raises(fastnn.NonFiniteError, match="batch 0; .*that batch was not applied"):
        m.fit(X, y, epochs=1, batch_size=nb, shuffle=False)
    np.testing.assert_array_equal(m.params, before)
    with pytest.raises(fastnn.NonFiniteError, match="NaN or infinite in batch 0 "):
        m.partial_fit(X, y)
    np.testing.assert_array_equal(m.params, before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nb,hidden", SHAPES)
def test_a_step_whose_gradient_is_finite_is_taken_though_its_bound_overflows(backend, dtype, nb, hidden):
    """Row 5 holds an input of fmax/2 but is classified right with certainty (p exactly one-hot),
    so its dZ is exactly 0 and the input's weight gradient sums only the other rows' small terms:
    finite, though max|input| * max|dZ| * nb overflows. The step is taken, as computed by hand."""
    fmax, col = float(np.finfo(dtype).max), 7
    m, X, y = _one_gradient_overflows(dtype, "weight", col=col, nb=nb, hidden=hidden)
    y[5] = 0  # row 5's confident class
    W0, b0, W1, b1 = (np.asarray(w, np.float64) for w in m.get_weights())
    Xd = X.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        z0 = Xd @ W0 + b0
        z1 = z0 @ W1 + b1
        e = np.exp(z1 - z1.max(1, keepdims=True))
        d1 = (e / e.sum(1, keepdims=True) - np.eye(2)[y]) / len(y)
        d0 = d1 @ W1.T
    assert (d0[5] == 0).all() and np.isfinite(d0).all()
    assert np.abs(Xd).max() > fmax / nb / np.abs(d0).max()  # the bound overflows
    grads = [Xd.T @ d0, d0.sum(0), z0.T @ d1, d1.sum(0)]
    assert all(np.isfinite(g).all() for g in grads)  # the gradient does not
    lr = 1e-6
    m.fit(X, y, epochs=1, batch_size=nb, shuffle=False)
    for got, w, g in zip(m.get_weights(), (W0, b0, W1, b1), grads):
        np.testing.assert_allclose(got, w - lr * g, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_step_whose_batchnorm_scale_gradient_overflows_is_refused_whole(backend, dtype):
    """BatchNorm (1 feature, rows of -1 and +1: normalised +-1) with scale 1e-3, then output weights
    +-0.6 fmax: logits of +-6e-4 fmax (a finite loss), every row confidently wrong, so each row's
    dY = +-1.2 fmax / nb with the sign of its normalised value, and the scale's gradient, their
    sum times it, is 1.2 fmax: inf. The shift's gradient sums to 0."""
    fmax, nb = float(np.finfo(dtype).max), 64
    m = fastnn.Sequential([fastnn.BatchNorm(), fastnn.Dense(2)], dtype=dtype).compile(
        fastnn.SGD(lr=1e-6), "cross_entropy")
    m.build(1)
    bn, out = m.layers
    bn.gamma[:] = 1e-3
    out.bias[:] = 0
    out.kernel[0] = [0.6 * fmax, -0.6 * fmax]
    X = np.where(np.arange(nb) % 2 == 0, 1.0, -1.0).astype(dtype)[:, None]
    y = np.where(X[:, 0] > 0, 1, 0)
    before, state = m.params.copy(), m.state.copy()
    with np.errstate(over="ignore"):  # the construction, by hand: a finite loss, dgamma overflows
        xhat = (X - X.mean()) / np.sqrt(X.var() + 1e-3)
        z = (1e-3 * xhat) @ out.kernel
        loss = (np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(nb), y]).mean()
        d1 = (np.eye(2, dtype=dtype)[1 - y] - np.eye(2, dtype=dtype)[y]) / np.dtype(dtype).type(nb)
        dY = d1 @ out.kernel.T
        dgamma = (dY * xhat).sum()
    assert np.isfinite(loss) and np.isfinite(dY).all() and not np.isfinite(dgamma)
    with pytest.raises(fastnn.NonFiniteError, match="batch 0; .*that batch was not applied"):
        m.fit(X, y, epochs=1, batch_size=nb, shuffle=False)
    np.testing.assert_array_equal(m.params, before)
    np.testing.assert_array_equal(m.state, state)
    with pytest.raises(fastnn.NonFiniteError, match="NaN or infinite in batch 0 "):  # refused, not undone
        m.partial_fit(X, y)
    np.testing.assert_array_equal(m.params, before)
    np.testing.assert_array_equal(m.state, state)
