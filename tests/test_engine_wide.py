"""Wide models: the compiled optimizer splits the flat parameter buffer into chunks of 16,384
elements (OPT_CHUNK in csrc/optimizers.c), one task per chunk, shared between threads. A model of
784-64-10 has 50,890 parameters, i.e. three full chunks and a partial fourth, so every chunk
boundary (and the boundary between penalised weights and unpenalised biases, at 50,816) lies
inside it; a chunk that stops one element short leaves every 16,384th parameter untouched.

Each test trains the same model on both backends, in 1 and 2 threads, and compares the weights.
Tolerances (as in test_engine.py): float64 runs agree to ~1e-15 per step, so 1e-9 relative to
the weights' scale after 8 steps is ample; float32 runs agree to ~1e-7 per step, so 2e-5, and
2e-4 for Adam, which divides a near-zero gradient by its own magnitude and so turns rounding noise
into steps of size lr. Every weight of this model moves by more than 8e-9 in training (the least
mover measured), so in float64 a parameter that misses its updates cannot pass; float32 catches
the typical weight, which moves by ~2e-3.
"""
import functools

import numpy as np
import pytest

import fastnn
from fastnn._engine import reference as oracle

try:
    from fastnn._engine import _ext
except ImportError:
    _ext = None

needs_ext = pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")

OPT_CHUNK = 16384
TOL = {"float64": 1e-9, "float32": 2e-5}
N_ROWS, N_FEATURES, N_CLASSES = 256, 784, 10

OPTIMIZERS = {
    "sgd": lambda: fastnn.SGD(lr=0.05),
    "sgd-weight-decay": lambda: fastnn.SGD(lr=0.05, weight_decay=0.02),
    "sgd-momentum-l2": lambda: fastnn.SGD(lr=0.02, momentum=0.9, l2=1e-3),
    "sgd-nesterov-l1": lambda: fastnn.SGD(lr=0.02, momentum=0.8, nesterov=True, l1=1e-4),
    "adam-l2": lambda: fastnn.Adam(lr=3e-3, l2=1e-4),
    "adamw": lambda: fastnn.AdamW(lr=3e-3, weight_decay=0.05),
    "rmsprop-l1-decay": lambda: fastnn.RMSprop(lr=1e-3, l1=1e-5, weight_decay=1e-3),
}


@pytest.fixture(autouse=True)
def restore_backend_and_threads():
    before = fastnn.get_backend()
    threads = _ext.get_num_threads() if _ext is not None else None
    yield
    if _ext is not None:
        _ext.set_num_threads(threads)
    fastnn.set_backend(before)


def wide_data():
    rng = np.random.default_rng(11)
    return rng.standard_normal((N_ROWS, N_FEATURES)), rng.integers(0, N_CLASSES, N_ROWS)


@functools.lru_cache(maxsize=None)
def train(backend, opt, dtype, threads=1):
    """(weights, history) of a 784-64-10 relu network after 2 epochs of 4 shuffled batches."""
    fastnn.set_backend(backend)
    if backend == "c":
        fastnn.set_num_threads(threads)
    X, y = wide_data()
    model = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(N_CLASSES)],
                              dtype=dtype, seed=3)
    model.compile(OPTIMIZERS[opt](), loss="cross_entropy")
    hist = model.fit(X, y, epochs=2, batch_size=64, shuffle=True)
    return model.get_weights(), hist.history


@needs_ext
def test_the_wide_model_spans_several_optimizer_chunks():
    weights, _ = train("python", "sgd", "float64")
    n = sum(w.size for w in weights)
    assert n == 784 * 64 + 64 + 64 * 10 + 10 == 50890
    assert n > 3 * OPT_CHUNK


@needs_ext
@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_wide_model_training_matches_oracle(opt, dtype, threads):
    got_w, got_h = train("c", opt, dtype, threads)
    want_w, want_h = train("python", opt, dtype)
    initial = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(N_CLASSES)],
                                dtype=dtype, seed=3).compile("sgd", "cross_entropy").build(N_FEATURES)
    scale = max(1.0, max(np.abs(w).max() for w in want_w))
    tol = TOL[dtype] * (10 if dtype == "float32" and opt.startswith("adam") else 1)
    for name, got, want, w0 in zip(["W1", "b1", "W2", "b2"], got_w, want_w, initial.get_weights()):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale, err_msg=name)
        # the oracle moved every weight: a stuck compiled parameter cannot hide as "unchanged"
        assert name[0] != "W" or (want != w0).all(), name
    np.testing.assert_allclose(got_h["loss"], want_h["loss"], rtol=10 * tol)


# -- the update kernels alone, on flat buffers several chunks long --------------------------------------
KERNEL_CASES = {
    "sgd-plain": ("sgd_update", 1, dict(lr=0.1, momentum=0.0, nesterov=False)),
    "sgd-momentum": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, nesterov=False)),
    "sgd-nesterov": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": ("adam_update", 2, dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)),
    "rmsprop": ("rmsprop_update", 1, dict(lr=1e-2, rho=0.9, eps=1e-8)),
}
PENALTIES = dict(l2=1e-2, l1=3e-3, weight_decay=0.05)
# 3 chunks + 5 runs on the calling thread; 16 chunks + 3 is large enough for a standalone call to
# share the update between threads. n_decay falls inside the second chunk.
SIZES = {"3-chunks+5": 3 * OPT_CHUNK + 5, "16-chunks+3": 16 * OPT_CHUNK + 3}


@needs_ext
@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("penalties", [{}, PENALTIES], ids=["bare", "l2-l1-decay"])
@pytest.mark.parametrize("case", KERNEL_CASES.values(), ids=KERNEL_CASES.keys())
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
def test_update_of_a_buffer_several_chunks_long_matches_oracle(dtype, case, penalties, size, threads):
    fname, n_slots, hyper = case
    _ext.set_num_threads(threads)
    n_decay = OPT_CHUNK + 100
    rng = np.random.default_rng(size)
    p = rng.standard_normal(size).astype(dtype)
    slots = [np.abs(rng.standard_normal(size)).astype(dtype) for _ in range(n_slots)]
    states = {be: (p.copy(), [s.copy() for s in slots]) for be in (_ext, oracle)}
    for t in (1, 2, 3):
        g = rng.standard_normal(size).astype(dtype)
        for be, (pp, ss) in states.items():
            if fname == "adam_update":
                be.adam_update(pp, *ss, g, n_decay, t, **hyper, **penalties)
            else:
                getattr(be, fname)(pp, *ss, g, n_decay, **hyper, **penalties)
    (p1, s1), (p2, s2) = states[_ext], states[oracle]
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    boundaries = np.arange(OPT_CHUNK - 1, size, OPT_CHUNK)  # last element of every chunk
    np.testing.assert_allclose(p1[boundaries], p2[boundaries], **tol, err_msg="chunk ends")
    np.testing.assert_allclose(p1, p2, **tol)
    for a, b in zip(s1, s2):
        np.testing.assert_allclose(a, b, **tol)
