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
