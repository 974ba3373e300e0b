"""Inference: forward, predict and predict_proba give the same answers on both backends, and the
answers the definitions give: dropout is the identity and batch norm uses its running statistics.

A model's weights do not depend on the backend, so one trained model is asked on each backend in
turn (fastnn.set_backend between calls), and also compared with a forward pass written here in
NumPy from its get_weights(). 1100 rows cross the inference chunk of 1024 rows.

Tolerances: float64 kernels agree to ~1e-15 per operation, so 1e-12; float32 ones to ~1e-7 per
operation over a few layers and sums of <= 16 terms, so 1e-5 relative (1e-6 absolute).
"""
import numpy as np
import pytest

import fastnn

HAVE_C = "c" in fastnn.available_backends()
needs_c = pytest.mark.skipif(not HAVE_C, reason="compiled extension not built")
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-6)}
N_ROWS, N_FEATURES, N_OUT = 1100, 9, 4

ARCHS = {
    "dense": lambda: [fastnn.Dense(16, activation="relu"), fastnn.Dense(12, activation="tanh"),
                      fastnn.Dense(N_OUT)],
    "dropout": lambda: [fastnn.Dense(16, activation="relu"), fastnn.Dropout(0.5),
                        fastnn.Dense(12, activation="leaky_relu", alpha=0.1), fastnn.Dropout(0.3),
                        fastnn.Dense(N_OUT)],
    "batchnorm": lambda: [fastnn.Dense(16), fastnn.BatchNorm(momentum=0.3), fastnn.Activation("sigmoid"),
                          fastnn.Dense(N_OUT)],
    "everything": lambda: [fastnn.Dropout(0.2), fastnn.Dense(16, activation="leaky_relu"),
                           fastnn.BatchNorm(momentum=0.5), fastnn.Dropout(0.25),
                           fastnn.Dense(12, activation="softmax"), fastnn.Dense(N_OUT)],
}
LOSSES = ["cross_entropy", "binary_crossentropy", "mse"]


@pytest.fixture(autouse=True)
def restore_backend():
    before = fastnn.get_backend()
    yield
    fastnn.set_backend(before)


def data(loss, n=N_ROWS, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES)) * 2 + 1  # batch norm has something to normalise
    if loss == "cross_entropy":
        y = rng.integers(0, N_OUT, n)
    elif loss == "binary_crossentropy":
        y = (rng.random((n, N_OUT)) < 0.4).astype(float)
    else:
        y = X[:, :N_OUT] @ rng.standard_normal((N_OUT, N_OUT))
    return X, y


def trained(arch, loss, dtype, layers=None):
    """A model trained for 2 epochs (on whichever backend is current), so that the running
    statistics of batch norm are far from their initial 0 and 1."""
    X, y = data(loss)
    model = fastnn.Sequential((layers or ARCHS[arch])(), dtype=dtype, seed=1)
    model.compile(fastnn.Adam(1e-2), loss=loss).fit(X, y, epochs=2, batch_size=128)
    return model, X


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


_ACT = {"identity": lambda x, a: x, None: lambda x, a: x, "relu": lambda x, a: np.maximum(x, 0),
        "leaky_relu": lambda x, a: np.where(x > 0, x, a * x), "sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
        "tanh": lambda x, a: np.tanh(x), "softmax": lambda x, a: _softmax(x)}


def numpy_forward(model, X, loss):
    """Raw outputs in float64 from the definitions: dense x W + b then its activation, dropout the
    identity, batch norm gamma (x - running_mean) / sqrt(running_var + eps) + beta. The last
    softmax (cross entropy) or sigmoid (binary cross entropy) belongs to the loss: not applied."""
    weights = iter(np.asarray(w, np.float64) for w in model.get_weights())
    x = np.asarray(X, np.float64)
    last = max(i for i, ly in enumerate(model.layers) if isinstance(ly, (fastnn.Dense, fastnn.Activation)))
    for i, ly in enumerate(model.layers):
        if isinstance(ly, fastnn.Dense):
            W, b = next(weights), next(weights)
            x = x @ W + b
        elif isinstance(ly, fastnn.BatchNorm):
            gamma, beta, rm, rv = (next(weights) for _ in range(4))
            x = gamma * (x - rm) / np.sqrt(rv + ly.eps) + beta
            continue
        elif isinstance(ly, fastnn.Dropout):
            continue
        act = ly.activation
        if i == last and {"cross_entropy": "softmax", "binary_crossentropy": "sigmoid"}.get(loss) == act:
            continue
        x = _ACT[act](x, ly.alpha)
    return x


def outputs(model, X, loss):
    out = {"forward": model.forward(X), "predict": model.predict(X)}
    if loss != "mse":
        out["predict_proba"] = model.predict_proba(X)
    return out


@needs_c
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", ARCHS)
def test_compiled_inference_equals_oracle_inference(arch, loss, dtype):
    fastnn.set_backend("c")
    model, X = trained(arch, loss, dtype)
    got = outputs(model, X, loss)
    fastnn.set_backend("python")
    want = outputs(model, X, loss)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape, name
        if name == "predict" and loss != "mse":  # labels: equal wherever the scores are not tied
            z = np.sort(want["forward"] if loss == "cross_entropy" else np.abs(want["forward"]), axis=1)
            clear = (z[:, -1] - z[:, -2] > 1e-4) if loss == "cross_entropy" else (z[:, 0] > 1e-4)
            assert clear.mean() > 0.95
            np.testing.assert_array_equal(got[name][clear], want[name][clear])
        else:
            np.testing.assert_allclose(got[name], want[name], **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("arch", ARCHS)
def test_inference_equals_the_forward_pass_written_in_numpy(backend, arch, loss):
    model, X = trained(arch, loss, "float64")
    z = numpy_forward(model, X, loss)
    np.testing.assert_allclose(model.forward(X), z, **TOL["float64"])
    if loss == "cross_entropy":
        np.testing.assert_allclose(model.predict_proba(X), _softmax(z), **TOL["float64"])
        np.testing.assert_array_equal(model.predict(X), z.argmax(1))
    elif loss == "binary_crossentropy":
        np.testing.assert_allclose(model.predict_proba(X), 1 / (1 + np.exp(-z)), **TOL["float64"])
        np.testing.assert_array_equal(model.predict(X), (z >= 0).astype(np.int64))
    else:
        np.testing.assert_allclose(model.predict(X), z, **TOL["float64"])
        with pytest.raises(AttributeError):
            model.predict_proba(X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dropout_is_off_at_inference(backend, dtype):
    """Predicting twice gives identical results, equal to those of the same network without its
    Dropout layers, given the same weights (set on a model trained on the other backend)."""
    if len(fastnn.available_backends()) > 1:  # train on the other backend than the one asked
        fastnn.set_backend("python" if backend == "c" else "c")
    model, X = trained("dropout", "cross_entropy", dtype)
    fastnn.set_backend(backend)
    plain = fastnn.Sequential([ly for ly in ARCHS["dropout"]() if not isinstance(ly, fastnn.Dropout)],
                              dtype=dtype, seed=2).compile("sgd", "cross_entropy").build(N_FEATURES)
    plain.set_weights(model.get_weights())
    first = model.forward(X)
    np.testing.assert_array_equal(model.forward(X), first)
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X))
    np.testing.assert_allclose(first, plain.forward(X), **TOL[dtype])
    np.testing.assert_allclose(model.predict_proba(X), plain.predict_proba(X), **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_batchnorm_uses_running_statistics_at_inference(backend, dtype):
    """Each row's output is that of the running statistics: the same alone as in any batch, and
    a batch far from the training data is not re-centred by its own mean."""
    model, X = trained("batchnorm", "mse", dtype)
    bn = model.layers[1]
    assert not np.allclose(bn.running_mean, 0, atol=0.1) and not np.allclose(bn.running_var, 1, atol=0.1)
    whole = model.forward(X)
    for rows in (slice(0, 1), slice(5, 8), slice(1000, 1100)):
        np.testing.assert_allclose(model.forward(X[rows]), whole[rows], **TOL[dtype])
    shifted = X + 50  # batch statistics would map this batch onto the same normalised values
    z = numpy_forward(model, shifted, "mse")
    atol = 1e-4 if dtype == "float32" else 1e-12  # inputs of ~50: absolute rounding of ~50 eps
    np.testing.assert_allclose(model.forward(shifted), z, rtol=TOL[dtype]["rtol"], atol=atol)
    assert np.abs(model.forward(shifted) - whole).max() > 1e-2


# -- the lean path: a C-contiguous array of the model's dtype and width goes to the engine as it is ----
def lean_model(dtype, n_in=23, widths=(16, 12), loss="cross_entropy", seed=3):
    """A built model with random (not trained) weights: dense relu layers, then N_OUT outputs."""
    layers = [fastnn.Dense(w, activation="relu") for w in widths] + [fastnn.Dense(N_OUT)]
    model = fastnn.Sequential(layers, dtype=dtype, seed=seed).compile("sgd", loss).build(n_in)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.standard_normal(np.shape(w)) * 0.5 for w in model.get_weights()])
    return model


class _Sub(np.ndarray):
    pass


def as_given(X, kind):
    """X (float64, C order) in the layout `kind`, same values."""
    if kind == "fortran":
        return np.asfortranarray(X.astype(np.float32))
    if kind == "strided":  # every other column of a wider array
        wide = np.zeros((X.shape[0], 2 * X.shape[1]), np.float32)
        wide[:, ::2] = X
        return wide[:, ::2]
    if kind == "offset-view":  # a C-contiguous view that starts inside its buffer
        buf = np.zeros((X.shape[0] + 3, X.shape[1]), np.float32)
        buf[3:] = X
        return buf[3:]
    if kind == "float64":
        return X
    if kind == "big-endian":  # float32 values, not in the machine's byte order
        return X.astype(">f4")
    if kind == "subclass":  # an ndarray subclass (the engine takes exact ndarrays only)
        return X.astype(np.float32).view(_Sub)
    if kind == "read-only":  # lean: the engine only reads X
        ro = X.astype(np.float32)
        ro.flags.writeable = False
        return ro
    if kind == "int-list":
        return np.rint(X).astype(int).tolist()
    if kind == "unaligned":  # float32 values starting one byte into their buffer
        return _unaligned(X.astype(np.float32))
    raise AssertionError(kind)


KINDS = ["fortran", "strided", "offset-view", "float64", "int-list", "big-endian", "subclass", "read-only",
         "unaligned"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rows", [1, 3, 1030])
def test_every_layout_gives_the_bits_of_the_lean_path(backend, kind, rows):
    """Any array-like is converted (check_matrix) and then predicted exactly as its C-contiguous
    float32 copy is on the lean path: the same bits, whatever the layout."""
    model = lean_model("float32")
    X = np.random.default_rng(rows).standard_normal((rows, 23)) * 3
    given = as_given(X, kind)
    lean = np.ascontiguousarray(given, np.float32)
    assert lean.flags.c_contiguous and lean.dtype == np.float32
    for method in ("forward", "predict_proba", "predict"):
        got, want = getattr(model, method)(given), getattr(model, method)(lean)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{method} of a {kind} X")


@pytest.mark.parametrize("kind", KINDS)
def test_engine_predict_lean_takes_exactly_the_arrays_it_reads_as_they_are(backend, kind):
    """Engine.predict_lean answers None, having written nothing, for any X but a C-contiguous,
    native-order ndarray (not a subclass) of the engine's dtype and width with rows; for those it
    returns what predict writes, in a new array each call."""
    model = lean_model("float32")
    b = model._built
    engine, _ = b.pool.get(3, "infer")
    X = np.random.default_rng(1).standard_normal((3, 23))
    given = as_given(X, kind)
    got = engine.predict_lean(b.params, b.state, given, True)
    lean_rows = fastnn._engine.current().lean_rows  # the same check, before an engine is chosen
    assert lean_rows(given, b.params, 23) == (3 if kind in ("offset-view", "read-only") else 0)
    if kind in ("offset-view", "read-only"):
        want = np.empty((3, N_OUT), np.float32)
        engine.predict(want, b.params, b.state, np.ascontiguousarray(given), True, True)
        assert type(got) is np.ndarray and got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
        assert engine.predict_lean(b.params, b.state, given, True) is not got
    else:
        assert got is None
    for other in (np.zeros((0, 23), np.float32), np.zeros((2, 22), np.float32), np.zeros(23, np.float32),
                  np.zeros((1, 1, 23), np.float32), np.zeros((2, 23), np.float64), [[0.0] * 23], None):
        assert engine.predict_lean(b.params, b.state, other, True) is None
        assert lean_rows(other, b.params, 23) == 0
    C = np.zeros((5, 23), np.float32)
    assert lean_rows(C, b.params, 23) == 5 and lean_rows(C, b.params, 22) == 0
    assert lean_rows(C, b.params.astype(np.float64), 23) == 0 and lean_rows(C, list(b.params), 23) == 0
    assert lean_rows(C.astype(np.float64), b.params.astype(np.float64), 23) == 5
    assert lean_rows(C, b.params.astype(">f4"), 23) == 0  # params of another byte order or kind
    assert lean_rows(C.view([("a", "<f4")]), np.zeros(3, "V4"), 23) == 0
    assert lean_rows(C.view(np.int32), np.zeros(3, np.int32), 23) == 0


@needs_c
def test_engine_predict_lean_checks_params_and_state_as_predict_does():
    """The compiled predict_lean reads params and state directly when they are plain arrays of the
    engine's dtype and size; anything else gets predict's checks: a buffer of the right values is
    read (the same answer), a wrong dtype or size is refused naming the argument."""
    fastnn.set_backend("c")
    model = lean_model("float32")
    b = model._built
    engine, _ = b.pool.get(3, "infer")
    X = np.random.default_rng(2).standard_normal((3, 23)).astype(np.float32)
    want = engine.predict_lean(b.params, b.state, X, True)
    np.testing.assert_array_equal(want, model.predict_proba(X))
    np.testing.assert_array_equal(engine.predict_lean(memoryview(b.params), b.state, X, True), want)
    np.testing.assert_array_equal(engine.predict_lean(b.params, memoryview(b.state), X, True), want)
    for params, state, name in ((b.params.astype(np.float64), b.state, "params"), (b.params[:-1], b.state, "params"),
                                (b.params[::2], b.state, "params"), (None, b.state, "params"),
                                (b.params, None, "state"), (b.params, b.state.astype(np.float64), "state")):
        with pytest.raises((TypeError, ValueError), match=name):
            engine.predict_lean(params, state, X, True)
    np.testing.assert_array_equal(engine.predict_lean(b.params, b.state, X, True), want)


def _nonfinite_message(model, X):
    with pytest.raises(ValueError) as info:
        model.predict_proba(X)
    return str(info.value)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("where", ["first", "last", "middle", "second-chunk-last", "three"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_x_is_refused_with_its_count_on_both_paths(backend, dtype, where, bad):
    """A NaN or infinity anywhere in X (the very last value included, and in a later chunk) is
    refused with check_matrix's message naming how many there are, on the lean path (the engine
    checks) as on the converting path (check_matrix checks)."""
    model = lean_model(dtype)
    rows = 1030 if where.startswith("second") else 5
    X = np.random.default_rng(0).standard_normal((rows, 23)).astype(dtype)
    cells = {"first": [(0, 0)], "last": [(rows - 1, 22)], "middle": [(2, 11)],
             "second-chunk-last": [(rows - 1, 22)], "three": [(0, 0), (1, 5), (rows - 1, 22)]}[where]
    for r, c in cells:
        X[r, c] = bad
    want = f"X contains {len(cells)} NaN or infinite value(s)"
    assert _nonfinite_message(model, X) == want  # lean
    assert _nonfinite_message(model, np.asfortranarray(X)) == want  # converted
    if where in ("last", "three"):  # the last value of a single row
        assert _nonfinite_message(model, X[-1:]) == "X contains 1 NaN or infinite value(s)"
    ok = X.copy()
    ok[~np.isfinite(ok)] = 0
    assert np.isfinite(model.predict_proba(ok)).all()  # and the model still predicts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nonfinite_x_is_found_in_every_slice_of_a_threaded_check(dtype):
    """Chunks of many values are checked by the team in slices (csrc/network.c finite_rows): a
    single NaN or infinity at any slice's first or last value, or a chunk's, is found."""
    if not HAVE_C:
        pytest.skip("compiled extension not built")
    fastnn.set_backend("c")
    model = lean_model(dtype, n_in=64, widths=(256, 128))
    X = np.random.default_rng(0).standard_normal((2100, 64)).astype(dtype)
    chunk = 1024 * 64
    edges = sorted({0, 1, 16383, 16384, 16385, 32767, 32768, chunk - 1, chunk, chunk + 16384,
                    2 * chunk - 1, 2 * chunk, X.size - 1})
    for flat in edges:
        bad = X.copy()
        bad.flat[flat] = np.inf if flat % 2 else np.nan
        assert _nonfinite_message(model, bad) == "X contains 1 NaN or infinite value(s)", flat


@pytest.mark.parametrize("X, message", [
    (np.zeros((0, 23), np.float32), "X is empty: 0 samples"),
    (np.zeros((2, 22), np.float32), "X has 22 features, but the model expects 23"),
    (np.zeros((2, 24), np.float32), "X has 24 features, but the model expects 23"),
    (np.zeros(23, np.float32), "X must be 2-D"),
    (np.zeros((1, 1, 23), np.float32), "X must be 2-D"),
])
def test_lean_path_refuses_what_check_matrix_refuses(backend, X, message):
    model = lean_model("float32")
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        model.predict_proba(X)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_engine_check_x_reports_nonfinite_without_raising(backend, dtype):
    """Engine.predict(..., check_x=True) answers 'nonfinite' for a NaN in X and 'ok' otherwise, the
    same on both backends; without check_x the NaN passes through to the outputs it reaches."""
    model = lean_model(dtype)
    b = model._built
    engine, _ = b.pool.get(4, "infer")
    X = np.ones((4, 23), dtype)
    out = np.empty((4, N_OUT), dtype)
    assert engine.predict(out, b.params, b.state, X, False, True) == "ok"
    X[3, 22] = np.nan
    assert engine.predict(out, b.params, b.state, X, False, True) == "nonfinite"
    assert engine.predict(out, b.params, b.state, X, False, False) == "ok"
    assert np.isnan(out[3]).all() and np.isfinite(out[:3]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NumPy backend's overflow
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [3, 1030])
def test_check_x_answers_for_x_alone(backend, dtype, rows):
    """The compiled engine checks X through the first layer's output (csrc/network.c,
    predict_body): a nonfinite output with a finite X (the layer overflowing, a weight or bias
    set to NaN or infinity by hand) is not X's fault, so check_x answers 'ok' and the outputs are
    those of the same call without the check; an infinity in X met only by zero weights (inf * 0
    is NaN), is still X's."""
    model = lean_model(dtype)
    b = model._built
    engine, _ = b.pool.get(rows, "infer")
    X = np.random.default_rng(4).standard_normal((rows, 23)).astype(dtype)
    out, out2 = np.empty((rows, N_OUT), dtype), np.empty((rows, N_OUT), dtype)
    w0 = model.get_weights()
    big = np.finfo(dtype).max / 4
    for name, change in (("overflow", lambda p: p[0].__setitem__(slice(None), p[0] * big)),
                         ("NaN weight", lambda p: p[0].__setitem__((5, 3), np.nan)),
                         ("infinite bias", lambda p: p[1].__setitem__(7, -np.inf))):
        weights = [w.copy() for w in w0]
        change(weights)
        b.params[:] = np.concatenate([w.ravel() for w in weights])  # as set by hand, unchecked
        assert engine.predict(out, b.params, b.state, X, False, True) == "ok", name
        assert engine.predict(out2, b.params, b.state, X, False, False) == "ok", name
        with np.errstate(all="ignore"):  # the first layer's output before its ReLU: nonfinite
            assert not np.isfinite(X @ weights[0] + weights[1]).all(), name
        np.testing.assert_array_equal(out, out2, err_msg=name)
    weights = [w.copy() for w in w0]
    weights[0][9] = 0  # input 9 meets only zero weights
    b.params[:] = np.concatenate([w.ravel() for w in weights])
    for bad in (np.inf, -np.inf, np.nan):
        Xb = X.copy()
        Xb[rows - 1, 9] = bad
        assert engine.predict(out, b.params, b.state, Xb, False, True) == "nonfinite", bad
        assert engine.predict(out, b.params, b.state, X, False, True) == "ok", bad


@pytest.mark.parametrize("first", ["dense-softmax", "dense-identity", "dense-sigmoid", "batchnorm",
                                   "dropout", "activation"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_x_is_refused_whatever_the_first_layer(backend, first, bad):
    """The check of X through the first layer's output (a dense layer whose activation is done in
    the GEMM's epilogue) and the check of X itself (any other first layer) refuse the same X:
    a NaN or infinity in a later chunk's last value, and one in a single row."""
    head = {"dense-softmax": [fastnn.Dense(8, activation="softmax")],
            "dense-identity": [fastnn.Dense(8)], "dense-sigmoid": [fastnn.Dense(8, activation="sigmoid")],
            "batchnorm": [fastnn.BatchNormalization()], "dropout": [fastnn.Dropout(0.5)],
            "activation": [fastnn.Activation("relu")]}[first]
    model = fastnn.Sequential(head + [fastnn.Dense(12, activation="relu"), fastnn.Dense(N_OUT)],
                              seed=1).compile("sgd", "cross_entropy").build(23)
    X = np.random.default_rng(5).standard_normal((1030, 23)).astype(np.float32)
    for rows in (1030, 1):
        Xb = X[:rows].copy()
        Xb[rows - 1, 22] = bad
        assert _nonfinite_message(model, Xb) == "X contains 1 NaN or infinite value(s)", rows
    assert np.isfinite(model.predict_proba(X)).all()


def reading_every_row(model, X):
    """The model's forward for 1 to 4 rows, each layer's product computed by fastnn.ops.gemm (the
    same compiled row kernel, given every row of W: ops.gemm never skips), the bias and ReLU
    added in NumPy as the engine adds them (in the model's dtype)."""
    dt = np.dtype(model.dtype)
    weights = iter(model.get_weights())
    x = np.asarray(X, dt)
    for ly in model.layers:
        W, b = next(weights).astype(dt), next(weights).astype(dt)
        c = fastnn.ops.gemm(x, W) + b
        x = np.where(c < 0, dt.type(0), c) if ly.activation == "relu" else c
    return x


def sparse_rows(rng, rows, k, dtype):
    """Rows like MNIST's: runs of zeros that cover whole chunks of 8 inputs, chunks holding one
    value at their first or their last position, zeros across a chunk edge, and a tail."""
    X = rng.random((rows, k)).astype(dtype) + dtype(0.5)
    X[rng.random((rows, k)) < 0.3] = 0
    X[:, [31, 32, 43, 52]] = 1       # the values the chunks below keep
    X[:, 0:8] = 0                    # the first chunk
    X[:, 16:24] = 0                  # a middle chunk ...
    X[:, 24:31] = 0                  # ... and the next one but its last value
    X[:, 33:41] = 0                  # a chunk with only its first value (and the next chunk's
                                     # first value zero)
    X[:, 44:52] = 0                  # zeros across a chunk edge (no chunk all zero)
    last = k // 8 * 8
    X[:, last - 8:last] = 0          # the last whole chunk
    if rows > 1:
        X[1:, 56:64] = rng.random((rows - 1, 8)).astype(dtype)  # zero in row 0 only: not skipped
        X[0, 56:64] = 0
    return X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rows", [1, 2, 4])
@pytest.mark.parametrize("k", [75, 80, 784])
def test_skipping_zero_inputs_changes_no_value(kernel_arch, dtype, rows, k):
    """Inference on 1-4 rows does not read the weight rows whose input is zero: the outputs are
    the values of the product that reads every row (reading_every_row), on every kernel; only the
    sign of a zero may differ. Checked against float64 too."""
    fastnn.set_backend("c")
    model = lean_model(dtype, n_in=k, widths=(40, 24), seed=k)
    rng = np.random.default_rng(k + rows)
    for X in (sparse_rows(rng, rows, k, np.dtype(dtype).type), np.zeros((rows, k), dtype),
              rng.standard_normal((rows, k)).astype(dtype)):
        want = reading_every_row(model, X)
        got = model.forward(X)
        np.testing.assert_array_equal(got, want)
        exact = X.astype(np.float64)
        for (W, b), ly in zip(zip(*[iter(model.get_weights())] * 2), model.layers):
            exact = exact @ W.astype(np.float64) + b
            exact = np.maximum(exact, 0) if ly.activation == "relu" else exact
        tol = 1e-5 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(got, exact, rtol=tol, atol=tol * max(1.0, np.abs(exact).max()))


def test_ctrl_c_stops_inference_between_chunks(backend):
    """SIGINT during a long predict raises KeyboardInterrupt at the next chunk boundary, and the
    model (its inference engine included) predicts normally afterwards."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    model = fastnn.Sequential([fastnn.Dense(1024, activation="relu"), fastnn.Dense(1024, activation="relu"),
                               fastnn.Dense(10)], seed=0).compile("sgd", "cross_entropy").build(8)
    X = np.random.default_rng(0).random((2_000_000, 8), dtype=np.float32)  # 4.2 TFLOP: a minute or more
    assert _seconds_to_interrupt(0.5, lambda: model.predict_proba(X)) < 15, "predict did not stop on SIGINT"
    small = X[:2000]
    np.testing.assert_array_equal(model.predict_proba(small), model.predict_proba(small.copy()))


def _seconds_to_interrupt(delay, call):
    """Seconds from the start of call() to the KeyboardInterrupt it raises when SIGINT arrives
    `delay` seconds in (main thread only)."""
    import os
    import signal
    import threading
    import time
    timer = threading.Timer(delay, lambda: os.kill(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
        return time.perf_counter() - t0
    finally:
        timer.cancel()


def _unaligned(X):
    """X's values (float32) in a C-contiguous array that starts one byte into its buffer."""
    raw = np.zeros(X.size * 4 + 1, np.uint8)
    out = np.frombuffer(raw.data, np.float32, count=X.size, offset=1).reshape(X.shape)
    out[...] = X
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def test_unaligned_x_is_predicted_as_its_aligned_copy(backend):
    """A C-contiguous float32 X that is not aligned is copied (check_matrix) and predicted like
    any other layout; with a NaN in it, refused with the count, as an aligned one is."""
    model = lean_model("float32")
    X = np.random.default_rng(5).standard_normal((3, 23)).astype(np.float32)
    np.testing.assert_array_equal(model.predict_proba(_unaligned(X)), model.predict_proba(X))
    X[1, 4] = np.nan
    assert _nonfinite_message(model, _unaligned(X)) == "X contains 1 NaN or infinite value(s)"


def test_a_refused_x_takes_no_inference_engine(backend):
    """Inputs the model refuses build no workspace and push no cached engine out of the pool."""
    model = lean_model("float32")
    for n in (1, 10, 100):
        model.forward(np.zeros((n, 23), np.float32))
    before = model._built.pool.batches("infer")
    for bad in (np.zeros((700, 22), np.float32), np.zeros((900, 24), np.float32),
                np.zeros((1000, 23), np.complex64), np.zeros((800, 23), object)):
        with pytest.raises((ValueError, TypeError)):
            model.forward(bad)
    assert model._built.pool.batches("infer") == before


@needs_c
def test_engine_predict_names_the_first_bad_argument():
    """The compiled Engine.predict checks out, params, state, then X: with out and X both wrong,
    out is named."""
    fastnn.set_backend("c")
    model = lean_model("float32")
    b = model._built
    engine, _ = b.pool.get(2, "infer")
    with pytest.raises((TypeError, ValueError), match="out"):
        engine.predict(np.empty((2, N_OUT)), b.params, b.state, np.ones((2, 23)))


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_a_few_rows_get_the_same_bits_when_their_large_products_are_split_across_threads(dtype, threads):
    """A prediction of 1-4 rows that reads many weights is computed by a team: each larger product
    is split into column slabs, one per thread, each with its share of the bias and activation.
    The bits are those of one thread (each output summed over the same rows of the weights in the
    same order), for every row count, slab edge (widths not a multiple of the slab) and input
    (dense, sparse: fewer rows read, all zero), and close to the float64 forward pass."""
    fastnn.set_backend("c")
    layers = [fastnn.Dense(301, activation="relu"), fastnn.BatchNorm(), fastnn.Dense(97, activation="tanh"),
              fastnn.Dense(250, activation="relu"), fastnn.Dense(5)]
    model = fastnn.Sequential(layers, dtype=dtype, seed=2).compile("sgd", "cross_entropy").build(700)
    rng = np.random.default_rng(threads)
    for ly in model.layers:
        if isinstance(ly, fastnn.Dense):
            ly.kernel[...] = rng.standard_normal(ly.kernel.shape) * 0.1
            ly.bias[...] = rng.standard_normal(ly.bias.shape) * 0.1
    before = fastnn.get_num_threads()
    try:
        for rows in (1, 2, 3, 4):
            dense = rng.standard_normal((rows, 700)).astype(dtype)
            sparse = dense * (rng.random((rows, 700)) < 0.2)
            for X in (dense, sparse, np.zeros_like(dense)):
                fastnn.set_num_threads(1)
                want = model.predict_proba(X)
                fastnn.set_num_threads(threads)
                np.testing.assert_array_equal(model.predict_proba(X), want)
                np.testing.assert_array_equal(model.predict(X), want.argmax(1))
        got = model.predict_proba(dense)
        fastnn.set_backend("python")
        np.testing.assert_allclose(got, model.predict_proba(dense), rtol=1e-4 if dtype == "float32" else 1e-10,
                                   atol=1e-6 if dtype == "float32" else 1e-12)
    finally:
        fastnn.set_num_threads(before)
        fastnn.set_backend("c")


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n", [1025, 1027, 1028, 1029, 2052, 3000])
def test_a_rows_result_does_not_depend_on_the_inference_chunk(monkeypatch, dtype, n):
    """The compiled GEMM sums a product of 4 rows or fewer another way (bits differ in the last
    place), so the engine never leaves such a last chunk after a full one: every row gets the
    bits it gets in any chunking into pieces of 5 rows or more, whatever the chunk size (which
    follows the thread count) and wherever the row lies."""
    fastnn.set_backend("c")
    model = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(32, activation="tanh"),
                               fastnn.Dense(3)], seed=1, dtype=dtype).compile("sgd", "cross_entropy").build(300)
    X = np.random.default_rng(n).standard_normal((n, 300)).astype(dtype)
    X[X < 0] = 0  # zeros, which the few-row path skips
    from fastnn.nn import _inference
    got = model.predict_proba(X)  # chunks of 1024 rows on up to 4 threads
    monkeypatch.setattr(_inference, "PREDICT_CHUNK", 4096)
    np.testing.assert_array_equal(model.predict_proba(X), got)
    bounds = list(range(0, n, 7)) + [n]
    if bounds[-1] - bounds[-2] < 5:
        del bounds[-2]
    pieces = [model.predict_proba(X[a:b]) for a, b in zip(bounds, bounds[1:])]
    np.testing.assert_array_equal(np.concatenate(pieces), got)


def test_many_rows_are_predicted_in_chunks_of_256_rows_per_thread_or_1024(monkeypatch, backend):
    """The engine's batch for n rows: n up to 1024; else the larger of 1024 and 256 per thread,
    at most n (here per-thread rows raised, so that this machine's threads cross 1024)."""
    from fastnn.nn import _inference
    model = lean_model("float32")
    sizes = []
    real_get = model._built.pool.get
    monkeypatch.setattr(model._built.pool, "get", lambda n, kind, *module: sizes.append(n) or real_get(n, kind, *module))
    from fastnn import _engine
    threads = _engine.current().get_num_threads()
    per_team = max(1024, 256 * threads)  # 1024 on up to 4 threads, 4096 on 16
    for n in (1, 1024, 1025, 5000):
        model.predict_proba(np.zeros((n, 23), np.float32))
    assert sizes == [1, 1024, min(1025, per_team), min(5000, per_team)]
    monkeypatch.setattr(_inference, "PREDICT_ROWS_PER_THREAD", 1100)
    sizes.clear()
    for n in (1024, 1025, 1101 * threads, 5000 * threads):
        model.predict_proba(np.zeros((n, 23), np.float32))
    assert sizes == [1024, 1025, 1100 * threads, 1100 * threads]


@needs_c
def test_one_model_predicts_from_many_threads_at_once():
    """Threads predicting on one model share its inference engine (one per row count): the engine
    makes each call wait for the running one, so every answer is the one the call gives alone,
    whether it takes the lean path (a float32 C array) or the general one (a list, a float64
    array, Fortran order)."""
    import threading
    fastnn.set_backend("c")
    model = lean_model("float32", n_in=64, widths=(512, 512))
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((40, 64)).astype(np.float32) for _ in range(8)]
    forms = [lambda X: X, lambda X: X.tolist(), lambda X: X.astype(np.float64), np.asfortranarray]
    alone = [model.predict_proba(X) for X in inputs]
    errors, barrier = [], threading.Barrier(4)

    def work(t):
        try:
            barrier.wait()
            for i in range(60):
                k = (t + i) % len(inputs)
                got = model.predict_proba(forms[(t + i) % len(forms)](inputs[k]))
                if not np.array_equal(got, alone[k]):
                    errors.append(f"thread {t}, call {i}: input {k} answered wrongly")
                    return
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"thread {t}: {exc!r}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    assert model._built.pool.batches("infer") == [40]  # one engine served every call


@needs_c
def test_a_predict_from_a_signal_handler_into_the_running_predict_raises():
    """A signal handler runs between two chunks of a long predict, in the predicting thread. When
    it predicts on the same model with the same engine (the same chunk size), the engine refuses
    with a RuntimeError instead of waiting for itself; the model predicts normally afterwards."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    fastnn.set_backend("c")
    model = lean_model("float32", n_in=64, widths=(256, 256))
    X = np.random.default_rng(6).random((200_000, 64), dtype=np.float32)
    seen = []

    def handler(signum, frame):
        seen.append(signum)
        model.predict_proba(X)  # the same rows: the same engine as the running call's

    before = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.05, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(RuntimeError, match="already running a call in this thread"):
            for _ in range(3):  # the signal lands inside one (a call takes about a second)
                model.predict_proba(X)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, before)
    assert seen == [signal.SIGUSR1]
    small = X[:1500]
    np.testing.assert_array_equal(model.predict_proba(small), model.predict_proba(small.copy()))


def run_child(script, tmp_path, hang):
    """(return code, stdout + stderr) of `script` in a Python child on the fastnn under test (not
    the cwd's) and the compiled backend; the test fails with `hang` if the child runs past 60 s."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(fastnn.__file__))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), FASTNN_BACKEND="c")
    try:
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail(hang)
    return out.returncode, out.stdout, out.stderr


SIGNAL_PREDICT_SCRIPT = """
import signal, time, numpy as np, fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((6000, 20)).astype(np.float32)
m = fastnn.Sequential([fastnn.Dense(64, activation="relu"), fastnn.Dense(3)], seed=0)
m.compile("adam", "cross_entropy").build(20)
with m._built.pool._lock:  # what a handler that lands inside the pool's lookup finds
    m.predict(X[:37])  # a row count not seen yet: the lookup takes the pool's lock
sizes = iter(rng.integers(1, 6000, 10**7))
busy, done = [False], [0, 0]
def handler(signum, frame):
    if busy[0]:
        return
    busy[0] = True
    try:
        m.predict(X[:next(sizes)])
        done[0] += 1
    except RuntimeError:  # landed inside the same engine's call: refused, documented
        done[1] += 1
    finally:
        busy[0] = False
signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
t0, calls = time.time(), 0
while time.time() - t0 < 3:
    m.predict(X[:next(sizes)])  # row counts it has not seen: the pool's lock is taken
    calls += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(calls, done[0], done[1])
"""


@needs_c
@pytest.mark.skipif(not hasattr(__import__("signal"), "setitimer"), reason="no setitimer")
def test_predicts_from_a_signal_handler_never_wait_for_their_own_thread(tmp_path):
    """A SIGALRM handler predicts every 2 ms while the main thread predicts row counts it has not
    seen. A handler that lands inside the engine pool's lookup (the main thread holding its lock)
    goes on, as one landing inside the same engine's call is refused; with a plain lock it waited
    for ever (the hostile tester's finding). In a child, so that a hang fails instead of stalling."""
    code, out, err = run_child(SIGNAL_PREDICT_SCRIPT, tmp_path,
                               "a predict from a signal handler waited for its own thread")
    assert code == 0, out + err
    calls, handled, refused = map(int, out.split())
    assert calls > 10 and handled > 10, out


@needs_c
def test_an_engine_held_by_this_thread_is_refused_and_another_thread_waits_for_it():
    """The lock of an engine pair is held across calls (a fit's epochs, a gradient in chunks). Its
    holder's own thread coming back to it (a signal handler or callback inside that work) gets
    RuntimeError instead of waiting for ever; another thread waits, then runs."""
    import threading
    fastnn.set_backend("c")
    model = lean_model("float32", n_in=12, widths=(8,))
    rng = np.random.default_rng(3)
    X, y = rng.random((50, 12), dtype=np.float32), rng.integers(0, 3, 50)
    want = model.gradient(X, y)
    _, lock = model._built.pool.get(50, "gradient")
    got, errors = [], []
    other = threading.Thread(target=lambda: got.append(model.gradient(X, y)))
    with lock:
        with pytest.raises(RuntimeError, match="in use by the call that this signal handler or callback"):
            model.gradient(X, y)
        other.start()
        other.join(0.3)
        assert other.is_alive() and not got  # waiting for the lock
    other.join(30)
    assert not other.is_alive() and len(got) == 1
    assert got[0][0] == want[0]
    np.testing.assert_array_equal(got[0][1], want[1])
    np.testing.assert_array_equal(model.gradient(X, y)[1], want[1])  # usable afterwards


@needs_c
def test_ctrl_c_reaches_a_predict_that_waits_for_another_threads_call():
    """The main thread's predict waits for another thread's call on the same engine; SIGINT then
    raises KeyboardInterrupt at once, not after the other call ends, and both calls' engine
    predicts normally afterwards."""
    import threading
    import time
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    fastnn.set_backend("c")
    model = lean_model("float32", n_in=64, widths=(512, 512))
    X = np.random.default_rng(7).random((1024, 64), dtype=np.float32)
    model.predict_proba(X)
    t0 = time.perf_counter()
    model.predict_proba(X)
    one = time.perf_counter() - t0  # one engine call of 1024 rows: one chunk, no Ctrl-C check inside
    big = np.repeat(X, max(2, int(1.5 / max(one, 1e-4))), axis=0)  # about 1.5 s in 1024-row chunks
    started = threading.Event()
    runner = threading.Thread(target=lambda: (started.set(), model.predict_proba(big)))
    runner.start()
    started.wait()
    time.sleep(0.1)  # the other call holds the engine (the same 1024-row one)
    try:
        waited = _seconds_to_interrupt(0.2, lambda: model.predict_proba(big))
    finally:
        runner.join()
    assert waited < 0.2 + 0.6 + 2 * one, f"the interrupt took {waited:.2f} s"
    np.testing.assert_array_equal(model.predict_proba(X), model.predict_proba(X.copy()))


FORK_SCRIPT = """
import os, threading, time, numpy as np, fastnn
assert fastnn.get_backend() == "c", fastnn.get_backend()
m = fastnn.Sequential([fastnn.Dense(512, activation="relu"), fastnn.Dense(512, activation="relu"),
                       fastnn.Dense(4)], seed=0).compile("adam", "cross_entropy").build(64)
X = np.random.default_rng(0).random((20000, 64), dtype=np.float32)
stop = False
def loop():
    while not stop:
        m.predict_proba(X)
t = threading.Thread(target=loop)
t.start()
time.sleep(0.3)
pid = os.fork()
if pid == 0:  # the only engine is the 1024-row one another thread of the parent was using
    got = m.predict_proba(X[:3])
    fastnn.set_backend("python")
    os._exit(0 if np.allclose(got, m.predict_proba(X[:3]), rtol=1e-5, atol=1e-6) else 3)
stop = True
_, status = os.waitpid(pid, 0)
t.join()
print("child", os.waitstatus_to_exitcode(status))
"""


FORK_WHILE_FITTING_SCRIPT = """
import os, threading, time, numpy as np, fastnn
from fastnn import neural_network
from fastnn.neural_network import MLPClassifier
rng = np.random.default_rng(0)
X, y = rng.random((4000, 32), dtype=np.float32), rng.integers(0, 3, 4000)
m = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(3)], seed=0).compile("adam", "cross_entropy")
stop = threading.Event()
class Stop(fastnn.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = stop.is_set()
est = MLPClassifier(hidden_layer_sizes=(256,), max_iter=10**6, tol=0, n_iter_no_change=10**6, random_state=0,
                    callbacks=[Stop()])
t1 = threading.Thread(target=lambda: m.fit(X, y, epochs=10**6, callbacks=[Stop()]))
t2 = threading.Thread(target=lambda: est.fit(X, y))
t1.start(); t2.start()
deadline = time.monotonic() + 30
while m._busy is None or id(est) not in neural_network._FITTING:  # both fits are running
    assert time.monotonic() < deadline, "the fits did not start"
    time.sleep(0.01)
held, release = threading.Event(), threading.Event()
def hold():  # a thread inside the estimators' registry of running fits at the fork
    with neural_network._FITTING_LOCK:
        held.set()
        release.wait()
t3 = threading.Thread(target=hold)
t3.start()
held.wait()
pid = os.fork()
if pid == 0:  # the threads that hold the model's lock and the estimator's fit do not exist here
    try:
        m.fit(X[:100], y[:100], epochs=1)
        m.compile("sgd", "cross_entropy")
        est.set_params(max_iter=2).fit(X[:100], y[:100])
        os._exit(0)
    except BaseException as exc:
        print(type(exc).__name__, exc, flush=True)
        os._exit(3)
stop.set()
release.set()
_, status = os.waitpid(pid, 0)
t1.join(); t2.join(); t3.join()
print("child", os.waitstatus_to_exitcode(status))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork")
def test_a_child_forked_while_other_threads_fit_can_fit(tmp_path):
    """The hostile tester's finding: forked while another thread ran fit, the child could never
    fit, compile or save that model ("being trained in another thread"), nor fit that estimator:
    the thread holding their locks does not exist there."""
    pytest.importorskip("sklearn")  # the child fits the drop-in estimator too
    code, out, err = run_child(FORK_WHILE_FITTING_SCRIPT, tmp_path, "the forked child hung")
    assert code == 0 and out.split() == ["child", "0"], out + err


FORK_AFTER_TEAM_SCRIPT = """
import os, numpy as np, fastnn
fastnn.set_num_threads(2)
rng = np.random.default_rng(0)
A = rng.standard_normal((300, 300)).astype(np.float32)
want = fastnn.ops.gemm(A, A)  # 300^3 >= 2^21: a team of 2 threads runs
model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(3)], seed=0)
model.compile("adam", "cross_entropy").build(300)
p_want = model.predict_proba(A)
pid = os.fork()
if pid == 0:  # the child's teams would wait for the parent's threads for ever
    ok = (fastnn.ops.gemm(A, A) == want).all() and (model.predict_proba(A) == p_want).all()
    model.fit(A, rng.integers(0, 3, 300), epochs=1, batch_size=100)
    fastnn.set_num_threads(2)
    ok = ok and (fastnn.ops.gemm(A, A) == want).all()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@needs_c
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork")
def test_a_child_forked_after_a_team_ran_computes_on_one_thread(tmp_path):
    """The hostile tester's finding: after the parent ran a team (2 threads), a forked child's first
    team waited for ever inside GNU OpenMP (a multiprocessing "fork" pool that predicts hung). Such a
    child now runs its products, predictions and fits on its calling thread, with the same bits,
    even after set_num_threads(2)."""
    code, out, err = run_child(FORK_AFTER_TEAM_SCRIPT, tmp_path,
                               "a child forked after a team ran hung in its first team")
    assert code == 0 and out.split() == ["0"], out + err


@needs_c
@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no os.fork")
def test_a_child_forked_while_another_thread_predicts_predicts(tmp_path):
    """os.fork while another thread is inside an engine call: the child forgets the parent's
    engines (their locks stay held there for good) and predicts with new ones."""
    code, out, err = run_child(FORK_SCRIPT, tmp_path, "the forked child hung on the engine another thread held")
    assert code == 0 and out.split() == ["child", "0"], out + err
