"""The online step (csrc/network.c, online_update): batches of at most 8 rows through Dense,
Activation and Dropout layers update each weight row from a gradient row computed just before,
without forming the flat gradient; plain SGD without penalties leaves rows whose inputs are all
zero untouched. Batches of 9 to 256 rows take its GEMM form (online_gemm_update): each layer's
weight gradient is one product whose blocks the optimizer updates as they are formed. Checked
against the NumPy oracle (which forms the whole gradient, then updates) for every optimizer,
batch sizes on both sides of each limit, zero-heavy inputs, sample weights; and the guarantee that
a failed step changes nothing."""
import numpy as np
import pytest

import fastnn
from fastnn import _engine
from fastnn._engine.codes import CTR_STEP

from test_engine import OPTIMIZERS, assert_same_on_1_2_3_threads, assert_same_training

needs_c = pytest.mark.skipif("c" not in _engine.available_backends(), reason="compiled extension not built")


@pytest.fixture(autouse=True)
def restore_backend():
    before = _engine.get_backend()
    yield
    fastnn.set_backend(before)


def sparse_data(n=61, d=13, k=4, seed=0):
    """Inputs with many exact zeros (whole columns in some rows, like MNIST's border pixels)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < 0.6] = 0.0
    X[:, :3] = 0.0  # three features never seen
    return X, rng.integers(0, k, n)


ARCHS = {
    "relu": lambda k: [fastnn.Dense(17, activation="relu"), fastnn.Dense(k)],
    "dropout-tanh": lambda k: [fastnn.Dense(19, activation="leaky_relu", alpha=0.1), fastnn.Dropout(0.3),
                               fastnn.Dense(11, activation="tanh"), fastnn.Activation("sigmoid"), fastnn.Dense(k)],
    # 11 dense layers: more than one job of the team holds (ONLINE_JOBS, 8), so a step runs two
    "deep": lambda k: [fastnn.Dense(n, activation="tanh") for n in (9, 7, 12, 5, 8, 6, 10, 7, 9, 6)] + [fastnn.Dense(k)],
}


def train(backend, arch, opt, dtype, batch, epochs=2, sample_weight=False, shuffle=True):
    fastnn.set_backend(backend)
    X, y = sparse_data()
    model = fastnn.Sequential(ARCHS[arch](4), dtype=dtype, seed=4)
    model.compile(OPTIMIZERS[opt](), loss="cross_entropy")
    sw = np.random.default_rng(1).uniform(0.2, 2.0, len(X)) if sample_weight else None
    hist = model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=shuffle, sample_weight=sw)
    return model, hist


@needs_c
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", [1, 3, 8, 9, 61])  # 9: the GEMM form, just past the outer products; 61: all rows
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_small_batches_match_the_oracle_for_every_optimizer(opt, batch, dtype):
    a = train("c", "relu", opt, dtype, batch)
    b = train("python", "relu", opt, dtype, batch)
    assert_same_training(a, b, dtype)


@needs_c
@pytest.mark.parametrize("batch", [1, 2, 7, 9, 24])
@pytest.mark.parametrize("opt", ["sgd", "adam", "rmsprop", "sgd-nesterov"])
def test_dropout_activations_and_sample_weights(opt, batch):
    a = train("c", "dropout-tanh", opt, "float64", batch, sample_weight=True)
    b = train("python", "dropout-tanh", opt, "float64", batch, sample_weight=True)
    assert_same_training(a, b, "float64")


@needs_c
@pytest.mark.parametrize("batch", [1, 5, 12])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_a_network_of_more_dense_layers_than_one_job_holds(opt, batch):
    a = train("c", "deep", opt, "float64", batch)
    b = train("python", "deep", opt, "float64", batch)
    assert_same_training(a, b, "float64")


@needs_c
@pytest.mark.parametrize("backend", ["c", "python"])
def test_plain_sgd_leaves_the_weights_of_never_seen_inputs_exactly_as_they_were(backend):
    """Independent of the oracle: with plain SGD the gradient of a weight whose input is always
    zero is exactly zero, so its value is the initial one, bit for bit; the others moved."""
    fastnn.set_backend(backend)
    X, y = sparse_data()
    model = fastnn.Sequential(ARCHS["relu"](4), seed=4, dtype="float32")
    model.compile(fastnn.SGD(lr=0.1), loss="cross_entropy").build(X.shape[1])
    W0 = model.layers[0].kernel.copy()
    model.fit(X, y, epochs=2, batch_size=1)
    W = model.layers[0].kernel
    np.testing.assert_array_equal(W[:3], W0[:3])
    assert (W[3:] != W0[3:]).mean() > 0.9
    # with a penalty a zero gradient still shrinks the weight: every row moves
    model = fastnn.Sequential(ARCHS["relu"](4), seed=4, dtype="float32")
    model.compile(fastnn.SGD(lr=0.1, l2=1e-2), loss="cross_entropy").build(X.shape[1])
    W0 = model.layers[0].kernel.copy()
    model.fit(X, y, epochs=1, batch_size=1)
    np.testing.assert_allclose(model.layers[0].kernel[:3], W0[:3] * (1 - 0.1 * 1e-2) ** len(X), rtol=1e-5)


@needs_c
def test_online_training_does_not_depend_on_the_thread_count():
    from fastnn.datasets import load_mnist
    X, y = load_mnist("train", limit=600)

    def train():
        m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=3)
        for opt in (fastnn.SGD(lr=0.01), fastnn.Adam(1e-3)):
            m.compile(opt, "cross_entropy").fit(X, y, epochs=1, batch_size=1)
            m.fit(X, y, epochs=1, batch_size=5)
            m.fit(X, y, epochs=1, batch_size=40)  # the GEMM form: the product's blocks split by the team
        return m

    assert_same_on_1_2_3_threads(train)


def _one_layer(dtype="float32"):
    m = fastnn.Sequential([fastnn.Dense(3)], seed=0, dtype=dtype).compile(fastnn.SGD(lr=0.1), "cross_entropy")
    return m.build(4)


@needs_c
@pytest.mark.parametrize("backend", ["c", "python"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_step_that_goes_non_finite_raises_and_changes_nothing(backend, dtype):
    fastnn.set_backend(backend)
    m = _one_layer(dtype)
    X = np.ones((1, 4), dtype)
    m.fit(X, np.array([1]), epochs=1, batch_size=1)
    m.layers[0].kernel[2] = np.finfo(dtype).max / 2  # finite weights, logits that overflow
    before, slots, steps = m.params.copy(), m.slots.copy(), int(m.counters[CTR_STEP])
    X[0, 2] = 10.0
    with pytest.raises(fastnn.NonFiniteError):
        m.fit(X, np.array([1]), epochs=1, batch_size=1)
    np.testing.assert_array_equal(m.params, before)
    np.testing.assert_array_equal(m.slots, slots)
    assert int(m.counters[CTR_STEP]) == steps


def _near_overflow(backend, nb, target):
    """One linear layer, MSE, float64, an input of 1e308: the weight gradient of that input is
    about 1e308 * (0 - target), finite or not depending on target."""
    fastnn.set_backend(backend)
    m = fastnn.Sequential([fastnn.Dense(2)], seed=0, dtype="float64").compile(fastnn.SGD(lr=1e-3), "mse")
    m.build(2)
    m.layers[0].kernel[0, :] = 0.0
    before = m.params.copy()
    X = np.tile([[1e308, 0.5]], (nb, 1))
    y = np.tile([[target, -0.7]], (nb, 1))
    try:
        m.fit(X, y, epochs=1, batch_size=nb)
        refused = False
    except fastnn.NonFiniteError:
        refused = True
        np.testing.assert_array_equal(m.params, before)
    return refused, m.params.copy()


@needs_c
@pytest.mark.parametrize("target, refused", [(0.6, False), (-1.5, False), (2.5, True), (-2.5, True)])
def test_one_row_near_overflow_is_refused_exactly_when_the_oracle_refuses(target, refused):
    """The online step never forms the gradient, so it checks max|a| max|dZ| first: for one row
    that is the largest gradient element itself, so it refuses what the general step refuses."""
    got, want = _near_overflow("c", 1, target), _near_overflow("python", 1, target)
    assert got[0] == want[0] == refused
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    assert np.isfinite(got[1]).all()


@needs_c
@pytest.mark.parametrize("nb", [9, 64])
def test_a_batch_past_the_online_step_near_overflow_is_refused_whole_and_changes_nothing(nb):
    """Batches past the online step: a batch whose weight gradient overflows is refused and
    changes nothing; one whose gradient is finite is taken as the oracle takes it."""
    refused, _ = _near_overflow("c", nb, 2.5)
    assert refused
    got, want = _near_overflow("c", nb, 1e-6), _near_overflow("python", nb, 1e-6)
    assert not got[0] and not want[0]
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    assert np.isfinite(got[1]).all()


@needs_c
def test_a_few_rows_near_overflow_are_refused_whole():
    """Several rows: the gradient is a sum of products, bounded before the update; a step whose
    gradient overflows is refused, unchanged."""
    refused, _ = _near_overflow("c", 3, 2.5)
    assert refused
    ok, params = _near_overflow("c", 3, 1e-3)
    assert not ok and np.isfinite(params).all()


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("nb", [6, 8, 9, 40])
def test_a_finite_step_whose_online_bound_overflows_is_taken_as_the_oracle_takes_it(dtype, opt, nb):
    """Row 5 holds an input of fmax/2 but is classified right with certainty, so its dZ is exactly
    0: every gradient element is finite though nb max|input| max|dZ| overflows. The online step's
    bound cannot prove the step finite, so the general step, which checks the gradient itself,
    takes it: as the NumPy backend does (Adam: every row through the blocked online kernel's path;
    plain SGD: the row-by-row one)."""
    from test_engine import _one_gradient_overflows

    got = {}
    for backend in ("c", "python"):
        fastnn.set_backend(backend)
        m, X, y = _one_gradient_overflows(dtype, "weight", col=7, nb=nb, hidden=40)
        y[5] = 0
        m.compile(fastnn.Adam(lr=1e-6) if opt == "adam" else fastnn.SGD(lr=1e-6), "cross_entropy")
        before = m.params.copy()
        m.fit(X, y, epochs=1, batch_size=nb, shuffle=False)
        assert list(m.counters) == [1, nb]
        assert np.isfinite(m.params).all() and (m.params != before).any()
        got[backend] = m.params.copy()
    np.testing.assert_allclose(got["c"], got["python"], rtol=1e-5, atol=1e-12)


@needs_c
@pytest.mark.parametrize("batch", [1, 3])
def test_plain_sgd_on_many_inputs_matches_the_oracle(batch):
    """600 inputs: the rows met by a nonzero input are listed 256 at a time (ONLINE_LIST), so the
    rows at 255/256 and 511/512 sit at the edges of those lists; every row must be updated as the
    oracle updates it."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 600))
    X[rng.random(X.shape) < 0.7] = 0.0
    X[:, [255, 256, 511, 512, 599]] = rng.standard_normal((40, 5))  # the edges always seen
    y = rng.integers(0, 3, 40)
    got = {}
    for backend in ("c", "python"):
        fastnn.set_backend(backend)
        model = fastnn.Sequential([fastnn.Dense(5, activation="relu"), fastnn.Dense(3)], seed=2, dtype="float64")
        model.compile(fastnn.SGD(lr=0.05), loss="cross_entropy")
        hist = model.fit(X, y, epochs=2, batch_size=batch)
        got[backend] = (model, hist)
    assert_same_training(got["c"], got["python"], "float64")


@needs_c
@pytest.mark.parametrize("opt", ["adam", "sgd-momentum", "rmsprop"])
@pytest.mark.parametrize("batch", [255, 256, 257])
def test_the_gemm_form_at_its_limit_matches_the_oracle(opt, batch):
    """256 rows: the last batch size the GEMM form takes (DEFER_MAX_ROWS), 257 the first the general
    step takes; 600 rows, so that each epoch also ends with a short batch (88, 88 and 86 rows)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((600, 30))
    X[rng.random(X.shape) < 0.5] = 0.0
    y = rng.integers(0, 3, 600)
    got = {}
    for backend in ("c", "python"):
        fastnn.set_backend(backend)
        model = fastnn.Sequential([fastnn.Dense(21, activation="relu"), fastnn.Dropout(0.2),
                                   fastnn.Dense(13, activation="tanh"), fastnn.Dense(3)], seed=6, dtype="float64")
        model.compile(OPTIMIZERS[opt](), loss="cross_entropy")
        got[backend] = (model, model.fit(X, y, epochs=2, batch_size=batch))
    assert_same_training(got["c"], got["python"], "float64")


@needs_c
@pytest.mark.parametrize("opt", ["adam", "sgd-nesterov"])
def test_the_gemm_form_updates_a_layer_wider_than_a_cache_block(opt):
    """2,100 outputs in float64: wider than the NC block of columns of every kernel (2,048 at most),
    so blocks of the weight gradient hold parts of rows, each updated at its own offset."""
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((36, 6)), rng.integers(0, 3, 36)
    got = {}
    for backend in ("c", "python"):
        fastnn.set_backend(backend)
        model = fastnn.Sequential([fastnn.Dense(2100, activation="relu"), fastnn.Dense(3)], seed=9, dtype="float64")
        model.compile(OPTIMIZERS[opt](), loss="cross_entropy")
        got[backend] = (model, model.fit(X, y, epochs=2, batch_size=12))
    assert_same_training(got["c"], got["python"], "float64")


@pytest.mark.parametrize("backend", ["c", "python"])
@pytest.mark.parametrize("nb", [1, 3])
def test_plain_sgd_reports_a_weight_update_that_overflows(backend, nb):
    """Plain SGD's online step updates the listed weight rows in one pass (sgd_listed_rows): a
    finite gradient of about 1e9 times a rate of 1e30 overflows float32 there, and only there (the
    biases' gradients are at most 1 in magnitude: 1e30 stays finite). The call says so, as the
    oracle does: the update was applied, the counters were not advanced."""
    if backend not in _engine.available_backends():
        pytest.skip("compiled extension not built")
    fastnn.set_backend(backend)
    X, y = sparse_data(n=nb, d=13, k=4, seed=3)
    X = (X * 1e9).astype(np.float32)
    m = fastnn.Sequential([fastnn.Dense(6, activation="relu"), fastnn.Dense(4)], seed=2)
    m.compile(fastnn.SGD(1e30), "cross_entropy").build(13)
    biases = m.n_params - 10
    counters = m._built.counters.copy()
    with pytest.raises(fastnn.NonFiniteError, match="batch 0 of this partial_fit .* left NaN or infinite"):
        m.partial_fit(X, y, batch_size=nb)
    assert not np.isfinite(m._built.params[:biases]).all() and np.isfinite(m._built.params[biases:]).all()
    np.testing.assert_array_equal(m._built.counters, counters)
