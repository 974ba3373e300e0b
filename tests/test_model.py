"""The model API: construction, the flat parameter buffer and its views, fit/predict/evaluate,
History and callbacks, and clear errors for bad input."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastnn
from fastnn import _engine as _backend

# the directory holding the fastnn under test, for child processes started outside the repository
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))


def blobs(n=300, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3
    y = rng.integers(0, k, n)
    return centers[y] + rng.standard_normal((n, d)), y


def small_model(k=3, **kw):
    return fastnn.Sequential([fastnn.Dense(16, activation="relu"), fastnn.Dense(k)], **kw).compile(
        fastnn.Adam(1e-2), "cross_entropy")


def test_compiled_backend_is_built_unless_explicitly_skipped():
    if os.environ.get("FASTNN_NO_EXT") == "1":
        pytest.skip("pure-Python install requested")
    assert "c" in _backend.available_backends(), f"extension failed to import: {_backend._EXT_ERROR}"
    assert fastnn.get_backend() == "c"


def test_show_config_reports_kernel_openmp_and_threads(capsys):
    info = fastnn.show_config()
    out = capsys.readouterr().out
    for key in ("backend", "gemm kernel", "openmp", "threads"):
        assert key in info and key in out
    assert info["threads"] >= 1


def test_backend_switch_and_errors():
    before = fastnn.get_backend()
    fastnn.set_backend("python")
    assert fastnn.get_backend() == "python"
    with pytest.raises(ValueError, match="backend must be"):
        fastnn.set_backend("fortran")
    fastnn.set_backend(before)


def test_environment_variable_selects_the_backend():
    code = "import fastnn; print(fastnn.get_backend())"
    env = dict(os.environ, FASTNN_BACKEND="python", PYTHONPATH=PACKAGE_ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                         cwd=tempfile.gettempdir())
    assert out.stdout.strip() == "python"


def test_missing_extension_warns_once_and_falls_back_to_numpy():
    code = ("import sys; sys.modules['fastnn._engine._ext'] = None\n"
            "import warnings; warnings.simplefilter('always')\n"
            "import fastnn, numpy as np\n"
            "m = fastnn.Sequential([fastnn.Dense(4)]).compile('sgd', 'mse')\n"
            "m.fit(np.ones((8, 2)), np.ones((8, 4)), epochs=2)\n"
            "print(fastnn.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=PACKAGE_ROOT), cwd=tempfile.gettempdir())
    assert out.stdout.strip() == "python"
    assert out.stderr.count("compiled extension is not available") == 1


def test_fit_learns_blobs_and_history_records_every_epoch(backend):
    X, y = blobs()
    m = small_model(seed=1)
    seen = []

    class Record(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    h = m.fit(X, y, epochs=5, batch_size=32, validation_data=(X, y), callbacks=[Record()])
    assert seen == [0, 1, 2, 3, 4] and h.epoch == [0, 1, 2, 3, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"):
        assert len(h[key]) == 5
    assert h["loss"][-1] < h["loss"][0]
    assert m.evaluate(X, y)["accuracy"] > 0.95
    assert m.score(X, y) == m.evaluate(X, y)["accuracy"]
    assert m.epochs_trained == 5


def test_a_callback_setting_stop_training_stops_after_that_epoch(backend):
    X, y = blobs()
    m = small_model()

    class StopAt2(fastnn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = epoch == 2

    h = m.fit(X, y, epochs=50, callbacks=[StopAt2()])
    assert h.epoch == [0, 1, 2] and h.stopped_early


def test_weights_are_views_of_one_flat_buffer():
    X, y = blobs()
    m = small_model().build(X.shape[1])
    d0, d1 = m.layers
    assert d0.kernel.shape == (6, 16) and d1.kernel.shape == (16, 3)
    for arr in (d0.kernel, d0.bias, d1.kernel, d1.bias):
        assert np.shares_memory(arr, m.params)
    assert m.n_params == 6 * 16 + 16 + 16 * 3 + 3
    assert m.n_decay == 6 * 16 + 16 * 3  # weights first, then biases
    d1.bias[...] = 7
    assert np.all(m.params[m.n_decay + 16:] == 7)
    assert m.coefs_[0] is d0.kernel and m.intercepts_[1] is d1.bias


def test_get_and_set_weights_round_trip_and_validate():
    X, y = blobs()
    m = fastnn.Sequential([fastnn.Dense(8), fastnn.BatchNorm(), fastnn.Activation("relu"), fastnn.Dense(3)])
    m.compile("adam", "cross_entropy").fit(X, y, epochs=1)
    w = m.get_weights()
    assert [a.shape for a in w] == [(6, 8), (8,), (8,), (8,), (8,), (8,), (8, 3), (3,)]
    p = m.predict_proba(X)
    m2 = fastnn.Sequential([fastnn.Dense(8), fastnn.BatchNorm(), fastnn.Activation("relu"), fastnn.Dense(3)], seed=9)
    m2.compile("adam", "cross_entropy").build(6)
    m2.set_weights(w)
    np.testing.assert_allclose(m2.predict_proba(X), p, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        m2.set_weights([np.zeros((5, 8))] + w[1:])
    bad = [a.copy() for a in w]
    bad[0][0, 0] = np.nan
    before = m2.get_weights()
    with pytest.raises(ValueError, match="NaN"):
        m2.set_weights(bad)
    for a, b in zip(before, m2.get_weights()):  # all or nothing
        np.testing.assert_array_equal(a, b)


def test_summary_lists_layers_and_parameter_count():
    m = small_model().build(6)
    text = m.summary(print_fn=None)
    assert "Dense(units=16, activation='relu')" in text and str(m.n_params) in text


def test_initialisation_is_seeded_he_for_relu_and_glorot_for_tanh():
    a = fastnn.Sequential([fastnn.Dense(400, activation="relu"), fastnn.Dense(400, activation="tanh"),
                           fastnn.Dense(2)], seed=3).compile("sgd", "cross_entropy").build(1000)
    b = fastnn.Sequential([fastnn.Dense(400, activation="relu"), fastnn.Dense(400, activation="tanh"),
                           fastnn.Dense(2)], seed=3).compile("sgd", "cross_entropy").build(1000)
    np.testing.assert_array_equal(a.params, b.params)
    he_std = np.sqrt(2 / 1000)
    assert abs(a.layers[0].kernel.std() / he_std - 1) < 0.02
    glorot_lim = np.sqrt(6 / 800)
    k = a.layers[1].kernel
    assert k.max() <= glorot_lim and k.min() >= -glorot_lim and abs(k.std() / (glorot_lim / np.sqrt(3)) - 1) < 0.02
    assert np.all(a.layers[0].bias == 0)


def test_softmax_on_the_last_layer_is_fused_into_cross_entropy(backend):
    X, y = blobs()
    a = fastnn.Sequential([fastnn.Dense(8, activation="tanh"), fastnn.Dense(3, activation="softmax")], seed=0)
    a.compile(fastnn.SGD(0.1))  # loss inferred: cross entropy
    b = fastnn.Sequential([fastnn.Dense(8, activation="tanh"), fastnn.Dense(3)], seed=0)
    b.compile(fastnn.SGD(0.1), "cross_entropy")
    assert a.loss == "cross_entropy"
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    np.testing.assert_array_equal(a.params, b.params)


def test_binary_and_multilabel_and_regression(backend):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 5))
    Yml = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0], 1).astype(float)
    m = fastnn.Sequential([fastnn.Dense(16, activation="relu"), fastnn.Dense(2)], seed=0).compile(
        fastnn.Adam(1e-2), "binary_crossentropy")
    m.fit(X, Yml, epochs=30, batch_size=32)
    assert m.evaluate(X, Yml)["accuracy"] > 0.95
    assert m.predict(X).shape == (400, 2) and set(np.unique(m.predict(X))) <= {0, 1}
    p = m.predict_proba(X)
    assert np.all((p >= 0) & (p <= 1))
    Yr = X @ rng.standard_normal((5, 3))
    r = fastnn.Sequential([fastnn.Dense(32, activation="tanh"), fastnn.Dense(3)], seed=0).compile(fastnn.Adam(1e-2), "mse")
    r.fit(X, Yr, epochs=60, batch_size=32)
    assert r.score(X, Yr) > 0.95
    with pytest.raises(AttributeError):
        r.predict_proba(X)


def test_sample_weight_zero_equals_dropping_the_samples(backend):
    X, y = blobs(n=120)
    sw = np.ones(120)
    sw[60:] = 0
    a = small_model(seed=2)
    b = small_model(seed=2)
    a.fit(X, y, epochs=1, batch_size=120, sample_weight=sw, shuffle=False)
    b.fit(X[:60], y[:60], epochs=1, batch_size=60, shuffle=False)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-5, atol=1e-6)


def test_float64_models_keep_float64():
    X, y = blobs()
    mm = small_model(dtype="float64")
    mm.fit(X, y, epochs=1)
    assert mm.params.dtype == np.float64 and mm.predict_proba(X).dtype == np.float64


# -- bad input -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("X, y, err, match", [
    (np.zeros((0, 6)), np.zeros(0, int), ValueError, "empty"),
    (np.zeros(6), np.zeros(6, int), ValueError, "2-D"),
    (np.zeros((5, 6, 2)), np.zeros(5, int), ValueError, "2-D"),
    (np.full((5, 6), np.nan), np.zeros(5, int), ValueError, "NaN"),
    (np.full((5, 6), np.inf), np.zeros(5, int), ValueError, "infinite"),
    (np.zeros((5, 6)), np.zeros(4, int), ValueError, "4 labels but X has 5"),
    (np.zeros((5, 6)), np.array([0, 1, 2, 3, 0]), ValueError, "label 3, outside"),
    (np.zeros((5, 6)), np.array([0, 1, -1, 0, 0]), ValueError, "label -1"),
    (np.zeros((5, 6)), np.array([0, 1, 0.5, 0, 0]), ValueError, "integer"),
    (np.zeros((5, 6)), np.array(["a", "b", "a", "b", "a"]), TypeError, "integer class labels"),
    (np.array([["a"] * 6] * 5), np.zeros(5, int), TypeError, "numeric"),
    ([[1, 2], [3]], np.zeros(2, int), ValueError, "array"),
])
def test_fit_rejects_bad_input_with_a_clear_message(X, y, err, match):
    m = small_model()
    with pytest.raises(err, match=match):
        m.fit(X, y)


def test_wrong_feature_count_after_build_is_rejected():
    X, y = blobs()
    m = small_model()
    m.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match="expects 6"):
        m.predict(X[:, :5])
    with pytest.raises(RuntimeError, match="not built"):
        small_model().predict(X)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"batch_size": 2.5}, "batch_size"),
    ({"sample_weight": -np.ones(300)}, "sample_weight"), ({"sample_weight": np.ones(7)}, "sample_weight"),
    ({"validation_data": (np.zeros((3, 6)),)}, "validation_data"),
])
def test_fit_rejects_bad_options(kwargs, match):
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        small_model().fit(X, y, **kwargs)


@pytest.mark.parametrize("make, match", [
    (lambda: fastnn.Dense(0), "units"),
    (lambda: fastnn.Dense(3, activation="swish"), "activation.*swish"),
    (lambda: fastnn.Dropout(1.0), "rate"),
    (lambda: fastnn.BatchNorm(eps=0), "eps"),
    (lambda: fastnn.Adam(lr=-1), "lr"),
    (lambda: fastnn.SGD(nesterov=True), "nesterov"),
    (lambda: fastnn.Sequential([fastnn.Dense(2)]).compile("adagrad"), "unknown optimizer"),
    (lambda: fastnn.Sequential([fastnn.Dense(2)]).compile("sgd", loss="hinge"), "unknown loss"),
    (lambda: fastnn.Sequential([fastnn.Dense(2)], dtype="int32"), "dtype"),
    (lambda: fastnn.Sequential([fastnn.Dropout(0.1)]).compile("sgd", "mse").build(3), "Dense"),
    (lambda: fastnn.Sequential([fastnn.Dense(1)]).compile("sgd", "cross_entropy").build(3), "2 outputs"),
])
def test_bad_configuration_is_rejected(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_binary_crossentropy_targets_must_be_probabilities():
    m = fastnn.Sequential([fastnn.Dense(2)]).compile("sgd", "binary_crossentropy")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.fit(np.zeros((4, 3)), np.full((4, 2), 2.0))


def test_finite_inputs_whose_sum_overflows_are_accepted_and_nan_among_them_is_not():
    from fastnn._engine.validation import check_matrix
    X = np.full((4, 3), 3e38, np.float32)  # the sum overflows; every element is finite
    assert check_matrix(X, "X", np.float32) is not None
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        check_matrix(X, "X", np.float32)
    Y = np.array([[np.inf, -np.inf]])  # inf - inf: the sum is NaN, the message counts both
    with pytest.raises(ValueError, match="2 NaN"):
        check_matrix(Y, "X", np.float64)
