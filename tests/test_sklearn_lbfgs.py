"""solver='lbfgs' against scikit-learn's own: scipy's L-BFGS-B over the model's flat parameter
buffer, the loss and gradient from the engine. On float64 data a fit equals scikit-learn's to
rounding (coefs_, intercepts_, loss_, n_iter_, predictions), with its ConvergenceWarning; float32
data runs in float32 as scikit-learn's does; what has no deterministic full-batch meaning
(dropout, batch_norm, callbacks) is refused."""
import io
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as skn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastnn  # noqa: E402
import fastnn.nn._inference as _inference  # noqa: E402
from fastnn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn_versions import make, weights  # noqa: E402

N, D = 120, 5
BASE = dict(hidden_layer_sizes=(6, 4), solver="lbfgs", alpha=0.01, max_iter=25, random_state=2)
PROBLEMS = ["multiclass", "binary", "multilabel", "squared_error", "poisson"]
SK_ONLY_STOCHASTIC = ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_")


def problem(kind, dtype=np.float64):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, D))
    if kind == "multiclass":
        y = np.array(["x", "y", "z"])[np.argmax(X[:, :3] + 0.7 * rng.standard_normal((N, 3)), axis=1)]
    elif kind == "binary":
        y = np.where(X[:, 0] - X[:, 1] + 0.5 * rng.standard_normal(N) > 0, 3, -1)
    elif kind == "multilabel":
        y = (X[:, :3] + 0.5 * rng.standard_normal((N, 3)) > 0).astype(int)
    elif kind == "squared_error":
        y = np.c_[X[:, 0] * X[:, 1], X[:, 2] - X[:, 3]] + 0.1 * rng.standard_normal((N, 2))
    else:
        y = rng.poisson(np.exp(0.6 * X[:, 0])).astype(float)
    return X.astype(dtype), y, rng.uniform(0.2, 3.0, N)


def classes(kind):
    classifier = kind in ("multiclass", "binary", "multilabel")
    return (skn.MLPClassifier, MLPClassifier) if classifier else (skn.MLPRegressor, MLPRegressor)


def fit_both(kind, weighted=False, dtype=np.float64, fit_twice=False, **params):
    """(scikit-learn's fitted estimator, fastnn's, X, y, the warnings each raised)."""
    X, y, sw = problem(kind, dtype)
    params = {**BASE, **params}
    if kind in ("squared_error", "poisson"):
        params["loss"] = kind
    out = []
    for cls in classes(kind):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = make(cls, **params)
            for _ in range(2 if fit_twice else 1):
                est.fit(X, y, **weights(cls, sw if weighted else None))
        out.append((est, [w for w in caught if w.category is ConvergenceWarning]))
    (sk, sk_w), (fn, fn_w) = out
    return sk, fn, X, sk_w, fn_w


def assert_same_fit(sk, fn, rtol=1e-6, atol=1e-9):
    assert fn.n_iter_ == sk.n_iter_ and fn.t_ == sk.t_ == 0
    assert fn.n_layers_ == sk.n_layers_ and fn.n_outputs_ == sk.n_outputs_
    assert fn.out_activation_ == sk.out_activation_
    for name in ("coefs_", "intercepts_"):
        got, want = getattr(fn, name), getattr(sk, name)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"{name}[{i}]")
    assert fn.loss_ == pytest.approx(sk.loss_, rel=rtol)
    for name in SK_ONLY_STOCHASTIC:  # scikit-learn keeps no per-iteration books for lbfgs
        assert hasattr(fn, name) == hasattr(sk, name) == False, name  # noqa: E712


def assert_same_predictions(sk, fn, X, rtol=1e-6, atol=1e-9):
    if hasattr(sk, "predict_proba"):
        np.testing.assert_array_equal(fn.predict(X), sk.predict(X))
        np.testing.assert_allclose(fn.predict_proba(X), sk.predict_proba(X), rtol=rtol, atol=atol)
    else:
        np.testing.assert_allclose(fn.predict(X), sk.predict(X), rtol=rtol, atol=atol)


def messages(caught):
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", PROBLEMS)
def test_lbfgs_fit_equals_scikit_learns(kind, weighted):
    sk, fn, X, sk_w, fn_w = fit_both(kind, weighted)
    assert sk.n_iter_ == 25
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)
    assert fn.coefs_[0].dtype == sk.coefs_[0].dtype == np.float64
    assert messages(fn_w) == messages(sk_w) and len(sk_w) == 1


@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("kind", ["multiclass", "squared_error"])
def test_lbfgs_every_activation(kind, activation):
    sk, fn, X, _, _ = fit_both(kind, True, activation=activation, alpha=0.3, max_iter=15)
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "poisson"])
def test_lbfgs_stops_at_tol_as_gtol_without_warning(kind):
    """tol is L-BFGS-B's gtol: these fits end (13 to 16 iterations) when the largest gradient
    component falls below it."""
    sk, fn, X, sk_w, fn_w = fit_both(kind, hidden_layer_sizes=(4,), alpha=1.0, tol=1e-2, max_iter=500)
    assert 0 < sk.n_iter_ < 500
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)
    assert sk_w == [] and fn_w == []


@pytest.mark.parametrize("limit", [dict(max_iter=3), dict(max_fun=5, max_iter=200)],
                         ids=["max_iter", "max_fun"])
def test_lbfgs_convergence_warning_equals_scikit_learns(limit):
    sk, fn, _, sk_w, fn_w = fit_both("multiclass", **limit)
    assert_same_fit(sk, fn)
    assert len(sk_w) == 1 and messages(fn_w) == messages(sk_w)
    if "max_iter=" in messages(sk_w)[0]:  # newer scikit-learn names the limit (1.9 does, 1.6 not)
        assert ("max_iter=3" in messages(fn_w)[0]) == ("max_iter" in limit and limit["max_iter"] == 3)
    assert "lbfgs failed to converge" in messages(fn_w)[0]


@pytest.mark.parametrize("kind", ["multiclass", "poisson"])
def test_lbfgs_warm_start_continues_from_the_fitted_weights(kind):
    sk, fn, X, _, _ = fit_both(kind, True, warm_start=True, max_iter=8, fit_twice=True)
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)
    cold = classes(kind)[1](**{**BASE, "max_iter": 8, **({} if kind == "multiclass" else {"loss": kind})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold.fit(X, problem(kind)[1], sample_weight=problem(kind)[2])
    assert fn.loss_ < cold.loss_  # the second fit started where the first ended


def test_lbfgs_warm_start_after_adam():
    X, y, _ = problem("binary")
    ests = []
    for cls in classes("binary"):
        est = cls(**{**BASE, "solver": "adam", "max_iter": 3, "warm_start": True})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
            est.set_params(solver="lbfgs", max_iter=10).fit(X, y)
        ests.append(est)
    sk, fn = ests
    np.testing.assert_allclose(fn.loss_curve_, sk.loss_curve_, rtol=1e-6)  # the adam fit's, kept
    for g, w in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-9)
    assert fn.loss_ == pytest.approx(sk.loss_, rel=1e-6) and fn.n_iter_ == sk.n_iter_


@pytest.mark.parametrize("kind", ["multiclass", "squared_error"])
def test_lbfgs_float32_input_runs_in_float32_as_scikit_learns(kind):
    """scipy evaluates the objective in x0's dtype: scikit-learn's float32 fit sees each iterate
    rounded to float32 and computes in float32; fastnn's float32 model does the same on the
    engine, so the fits agree to float32 rounding. scikit-learn's coefs_ come back float64 (scipy's
    iterate); fastnn's model keeps them in float32."""
    sk, fn, X, _, _ = fit_both(kind, dtype=np.float32, max_iter=6)
    assert fn.model_.dtype == np.float32 and fn.coefs_[0].dtype == np.float32
    assert sk.coefs_[0].dtype == np.float64
    assert_same_fit(sk, fn, rtol=1e-4, atol=1e-5)
    assert_same_predictions(sk, fn, X, rtol=1e-4, atol=1e-5)
    sk64, _, _, _, _ = fit_both(kind, dtype=np.float64, max_iter=6)
    assert sk.loss_ != sk64.loss_  # float32 is not float64 in disguise: the check above means it


def test_lbfgs_dtype_float64_on_float32_input_is_the_float64_fit():
    X, y, _ = problem("binary")
    X32 = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fn = MLPClassifier(**BASE, dtype="float64").fit(X32, y)
        sk = skn.MLPClassifier(**BASE).fit(X32.astype(np.float64), y)
    assert fn.model_.dtype == np.float64
    assert_same_fit(sk, fn)


def test_lbfgs_ignores_early_stopping_as_scikit_learn_does():
    sk, fn, X, _, _ = fit_both("binary", early_stopping=True, validation_fraction=0.3)
    assert_same_fit(sk, fn)  # all rows trained, no validation scores
    assert getattr(fn, "validation_loss_curve_", None) is None


def test_lbfgs_class_weight_is_the_matching_sample_weight():
    X, y, _ = problem("binary")
    cw = {3: 2.5, -1: 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(**BASE, class_weight=cw).fit(X, y)
        b = MLPClassifier(**BASE).fit(X, y, sample_weight=np.where(y == 3, 2.5, 0.5))
    assert_same_fit(a, b, rtol=1e-12, atol=0)


def test_lbfgs_verbose_prints_what_scikit_learn_prints(capfd, monkeypatch):
    """verbose=True: L-BFGS-B gets scikit-learn's options (iprint=1 below scipy 1.15, whose Fortran
    code then prints each iteration through its own buffered stdout; 1.15 on takes no iprint and
    prints nothing), and Python prints what scikit-learn's prints."""
    import scipy.optimize
    from sklearn.utils.fixes import parse_version, sp_version
    minimize, calls = scipy.optimize.minimize, []

    def spy(*args, **kwargs):
        calls.append((kwargs.get("method"), dict(kwargs.get("options", {}))))
        return minimize(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", spy)
    out = []
    for cls in classes("multiclass"):
        buf = io.StringIO()
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            cls(**BASE, verbose=True).fit(*problem("multiclass")[:2])
        out.append(buf.getvalue())
    assert out[0] == out[1]
    assert len(calls) == 2 and calls[0] == calls[1] and calls[0][0] == "L-BFGS-B"
    if sp_version >= parse_version("1.15"):
        assert "iprint" not in calls[0][1] and capfd.readouterr().out == ""
    else:
        assert calls[0][1]["iprint"] == 1


def test_lbfgs_on_overflowing_data_ends_as_scikit_learns():
    """A NaN objective at the start: scipy gives up at once, keeping the initial weights."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)) * 1e150, rng.standard_normal(40) * 1e150
    out = []
    for cls in classes("squared_error"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = cls(**BASE).fit(X, y)
        out.append((est, messages(caught)))
    (sk, sk_w), (fn, fn_w) = out
    assert np.isnan(sk.loss_) and np.isnan(fn.loss_) and fn.n_iter_ == sk.n_iter_ == 0
    assert fn_w == sk_w and len(sk_w) == 1
    for g, w in zip(fn.coefs_ + fn.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_array_equal(g, w)


def test_lbfgs_refuses_dropout_batch_norm_and_callbacks():
    X, y, _ = problem("binary")
    with pytest.raises(ValueError, match=r"solver='lbfgs' cannot train with dropout=0\.2"):
        MLPClassifier(**BASE, dropout=0.2).fit(X, y)
    with pytest.raises(ValueError, match=r"solver='lbfgs' cannot train with dropout=\[0\.0, 0\.5\]"):
        MLPRegressor(**BASE, dropout=[0.0, 0.5]).fit(X, X[:, 0])
    with pytest.raises(ValueError, match=r"solver='lbfgs' cannot train with batch_norm=True"):
        MLPClassifier(**BASE, batch_norm=True).fit(X, y)
    with pytest.raises(ValueError, match=r"solver='lbfgs' has no epochs"):
        MLPClassifier(**BASE, callbacks=[fastnn.nn.callbacks.History()]).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(**BASE, dropout=[0.0, 0.0]).fit(X, y)  # no dropout at all: fine
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


# -- the model layer: Sequential.whole_gradient ---------------------------------------------------
def _model(layers, dtype="float64"):
    m = fastnn.Sequential(layers, dtype=dtype)
    m.compile("sgd", loss="sklearn_log_loss")
    return m.build(D)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_whole_gradient_in_chunks_is_the_one_batch_gradient(monkeypatch, weighted):
    X, _, sw = problem("multiclass")
    y = np.argmax(X[:, :3], axis=1)
    if weighted:
        sw[14:21] = 0.0  # one chunk of 7 weighs nothing
    sw = sw if weighted else None
    m = _model([fastnn.Dense(6, activation="tanh"), fastnn.Dense(3)])
    want_loss, want = m.gradient(X, y, sw)
    monkeypatch.setattr(_inference, "GRADIENT_CHUNK", 7)
    monkeypatch.setattr(_inference.whole_gradient, "__defaults__", (7,))
    got = np.full(m.n_params, np.nan)
    got_loss = m.whole_gradient(X, y, sw)(got)
    assert got_loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


def test_whole_gradient_refuses_dropout_and_batch_norm():
    X = problem("multiclass")[0]
    y = np.zeros(N, dtype=np.int64)
    for extra in (fastnn.Dropout(0.3), fastnn.BatchNorm()):
        m = _model([fastnn.Dense(6), extra, fastnn.Dense(3)])
        with pytest.raises(ValueError, match="deterministic objective"):
            m.whole_gradient(X, y)
