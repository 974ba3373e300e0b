"""fastnn.MLPClassifier / MLPRegressor against scikit-learn's own estimators: on float64 data the
same parameters and random_state give the same fit (coefs_, intercepts_, loss_curve_, n_iter_,
best_loss_) to 1e-6 relative, the same predictions, warnings and messages."""
import inspect
import io
import pickle
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn import neural_network as skn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

import fastnn  # noqa: E402
from fastnn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn_versions import HAS_LOSS, make, need_string_early_stopping, weights  # noqa: E402

N, D = 150, 6
BASE = dict(hidden_layer_sizes=(7, 5), alpha=0.01, batch_size=32, max_iter=6, random_state=3,
            tol=0.0, n_iter_no_change=10**6)
SOLVERS = {
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=False),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    "sgd-invscaling": dict(solver="sgd", learning_rate_init=0.2, learning_rate="invscaling", power_t=0.4),
    "adam": dict(solver="adam", learning_rate_init=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-7),
}
PROBLEMS = ["multiclass", "binary", "multilabel", "squared_error", "poisson"]


def problem(kind, dtype=np.float64):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    if kind == "multiclass":
        y = np.array(["a", "b", "c"])[rng.integers(0, 3, N)]
    elif kind == "binary":
        y = np.where(X[:, 0] + 0.5 * rng.standard_normal(N) > 0, 7, -2)
    elif kind == "multilabel":
        y = (X[:, :3] + 0.5 * rng.standard_normal((N, 3)) > 0).astype(int)
    elif kind == "squared_error":
        y = np.c_[X[:, 0] - X[:, 1], 2 * X[:, 2]] + 0.1 * rng.standard_normal((N, 2))
    else:
        y = rng.poisson(np.exp(0.5 * X[:, 0])).astype(float)
    return X.astype(dtype), y, rng.uniform(0.5, 2.0, N)


def both(kind, weighted=False, **params):
    """(scikit-learn's fitted estimator, fastnn's, X, the warnings each raised)."""
    X, y, sw = problem(kind)
    classifier = kind in ("multiclass", "binary", "multilabel")
    if not classifier:
        params = {"loss": kind, **params}
    out = []
    for cls in ((skn.MLPClassifier, MLPClassifier) if classifier else (skn.MLPRegressor, MLPRegressor)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = make(cls, **{**BASE, **params})
            est.fit(X, y, **weights(cls, sw if weighted else None))
        out.append((est, [w.category for w in caught]))
    (sk, sk_w), (fn, fn_w) = out
    return sk, fn, X, sk_w, fn_w


def assert_same_fit(sk, fn):
    assert fn.n_iter_ == sk.n_iter_ and fn.t_ == sk.t_
    assert fn.n_layers_ == sk.n_layers_ and fn.n_outputs_ == sk.n_outputs_
    assert fn.out_activation_ == sk.out_activation_ and fn.n_features_in_ == sk.n_features_in_
    assert len(fn.coefs_) == len(sk.coefs_)
    for i, (got, want) in enumerate(zip(fn.coefs_, sk.coefs_)):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10, err_msg=f"coefs_[{i}]")
    for i, (got, want) in enumerate(zip(fn.intercepts_, sk.intercepts_)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10, err_msg=f"intercepts_[{i}]")
    np.testing.assert_allclose(fn.loss_curve_, sk.loss_curve_, rtol=1e-6, err_msg="loss_curve_")
    assert fn.loss_ == pytest.approx(sk.loss_, rel=1e-6)
    assert fn.best_loss_ == pytest.approx(sk.best_loss_, rel=1e-6)


def assert_same_predictions(sk, fn, X):
    if hasattr(sk, "predict_proba"):
        np.testing.assert_array_equal(fn.predict(X), sk.predict(X))
        np.testing.assert_allclose(fn.predict_proba(X), sk.predict_proba(X), rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fn.predict_log_proba(X), sk.predict_log_proba(X), rtol=1e-6, atol=1e-10)
        np.testing.assert_array_equal(fn.classes_, sk.classes_)
    else:
        np.testing.assert_allclose(fn.predict(X), sk.predict(X), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", PROBLEMS)
def test_fit_equals_scikit_learns(kind, solver, weighted):
    sk, fn, X, sk_w, fn_w = both(kind, weighted, **SOLVERS[solver])
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)
    assert ConvergenceWarning in sk_w and ConvergenceWarning in fn_w


@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffle", "no-shuffle"])
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("kind", ["multiclass", "squared_error"])
def test_every_activation_with_and_without_shuffling(kind, activation, shuffle):
    sk, fn, X, _, _ = both(kind, activation=activation, shuffle=shuffle, **SOLVERS["sgd-nesterov"])
    assert_same_fit(sk, fn)
    assert_same_predictions(sk, fn, X)


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
def test_stopping_by_tol_before_max_iter(solver):
    sk, fn, _, sk_w, fn_w = both("multiclass", **{**SOLVERS[solver], "max_iter": 200, "tol": 1e-2,
                                                   "n_iter_no_change": 2})
    assert sk.n_iter_ < 200
    assert_same_fit(sk, fn)
    assert ConvergenceWarning not in sk_w and ConvergenceWarning not in fn_w


def test_adaptive_rate_divides_by_five_then_stops_when_too_small():
    """tol so large that no epoch after the first improves: the rate drops by 5 at epochs 3, 5, ...,
    15 (0.05 / 5^7 = 6.4e-7) and the fit stops at epoch 17, where it would drop an 8th time."""
    sk, fn, _, sk_w, fn_w = both("squared_error", solver="sgd", learning_rate="adaptive",
                                 learning_rate_init=0.05, max_iter=100, tol=10.0, n_iter_no_change=1)
    assert sk.n_iter_ == 17
    assert_same_fit(sk, fn)
    assert ConvergenceWarning not in fn_w


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "poisson"])
def test_partial_fit_and_warm_start_equal_scikit_learns(kind, solver):
    """fit, then partial_fit on two halves (the optimizer carries on), then a warm-started fit
    (weights kept, a new optimizer); a fresh estimator fed by partial_fit alone (classes given)."""
    X, y, sw = problem(kind)
    classifier = kind != "poisson"
    params = {**BASE, **SOLVERS[solver], **({} if classifier else {"loss": kind})}
    extra = {"multiclass": {"classes": np.unique(y)}, "multilabel": {"classes": np.arange(3)}}.get(kind, {})
    fits = []
    for cls in ((skn.MLPClassifier, MLPClassifier) if classifier else (skn.MLPRegressor, MLPRegressor)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            a = make(cls, **params).fit(X, y, **weights(cls, sw))
            a.partial_fit(X[:70], y[:70], **weights(cls, sw[:70]))
            a.partial_fit(X[70:], y[70:])
            snap = ([c.copy() for c in a.coefs_], list(a.loss_curve_), a.n_iter_, a.t_)
            a.set_params(warm_start=True, max_iter=3).fit(X, y)
            b = make(cls, **params)
            for _ in range(3):
                b.partial_fit(X, y, **extra)
        fits.append((a, snap, b))
    (ska, sksnap, skb), (fna, fnsnap, fnb) = fits
    for got, want in zip(fnsnap[0], sksnap[0]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(fnsnap[1], sksnap[1], rtol=1e-6)
    assert fnsnap[2:] == sksnap[2:] == (1, 6 * N + N)
    assert_same_fit(ska, fna)
    assert_same_fit(skb, fnb)
    assert_same_predictions(skb, fnb, X)


def test_partial_fit_refuses_unseen_classes_and_lbfgs_has_none():
    X, y, _ = problem("multiclass")
    est = MLPClassifier(**BASE).partial_fit(X, y, classes=["a", "b", "c"])
    with pytest.raises(ValueError, match="classes not in"):
        est.partial_fit(X[:3], ["a", "b", "z"])
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", PROBLEMS)
def test_early_stopping_equals_scikit_learns(kind, weighted):
    """The validation split (stratified for one output), the validation score per epoch, stopping
    on it and the best epoch's weights restored."""
    if kind == "multiclass":  # string labels
        need_string_early_stopping()
    sk, fn, X, sk_w, fn_w = both(kind, weighted, **SOLVERS["adam"], early_stopping=True,
                                 validation_fraction=0.2, max_iter=60, tol=1e-3, n_iter_no_change=3)
    assert_same_fit_early(sk, fn)
    assert_same_predictions(sk, fn, X)


def assert_same_fit_early(sk, fn):
    assert fn.best_loss_ is None and sk.best_loss_ is None
    np.testing.assert_allclose(fn.validation_scores_, sk.validation_scores_, rtol=1e-6, atol=1e-12)
    assert fn.best_validation_score_ == pytest.approx(sk.best_validation_score_, rel=1e-6)
    fn.best_loss_ = sk.best_loss_ = 0.0  # the rest as without early stopping
    assert_same_fit(sk, fn)


def test_early_stopping_stops_and_restores_the_best_epoch():
    sk, fn, X, sk_w, fn_w = both("squared_error", solver="sgd", learning_rate_init=0.3, early_stopping=True,
                                 max_iter=200, tol=0.0, n_iter_no_change=2)
    assert fn.n_iter_ < 200 and ConvergenceWarning not in fn_w
    best = int(np.argmax(fn.validation_scores_))
    assert best < fn.n_iter_ - 1  # the last epoch is not the best: the restored weights are older
    assert_same_fit_early(sk, fn)


def test_early_stopping_counts_a_gain_below_tol_as_none():
    """Validation R^2 still rising, by less than tol: the fit stops although it improves."""
    sk, fn, X, sk_w, fn_w = both("squared_error", **SOLVERS["adam"], early_stopping=True, max_iter=200,
                                 tol=0.02, n_iter_no_change=2)
    assert fn.n_iter_ < 200 and np.diff(fn.validation_scores_)[-3:].min() > 0
    assert_same_fit_early(sk, fn)


def test_verbose_lines_equal_scikit_learns():
    outs = []
    for early in (False, True):
        for cls in (skn.MLPClassifier, MLPClassifier):
            buf = io.StringIO()
            with redirect_stdout(buf):
                cls(**{**BASE, **SOLVERS["adam"], "max_iter": 50, "tol": 1e-2, "n_iter_no_change": 2,
                       "verbose": True, "early_stopping": early}).fit(*problem("binary")[:2])
            outs.append(buf.getvalue())
    assert outs[0] == outs[1] and outs[2] == outs[3]
    assert "Iteration 1, loss = " in outs[1] and "Stopping." in outs[1]
    assert "Validation score: " in outs[3]


def test_float32_stays_float32():
    X, y, _ = problem("multiclass", np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fn = MLPClassifier(**BASE).fit(X, y)
        sk = skn.MLPClassifier(**BASE).fit(X, y)
    assert all(c.dtype == np.float32 for c in fn.coefs_ + fn.intercepts_)
    assert fn.predict_proba(X).dtype == np.float32
    np.testing.assert_allclose(fn.loss_curve_, sk.loss_curve_, rtol=1e-3)
    assert (fn.predict(X) == sk.predict(X)).mean() > 0.95


def test_params_clone_and_pickle_round_trip():
    est = MLPRegressor("poisson", (4,), "tanh", solver="sgd", max_iter=3, random_state=0)
    extras = {"dropout": 0.0, "batch_norm": False, "dtype": None, "n_threads": None, "callbacks": None}
    assert est.get_params() == {**skn.MLPRegressor().get_params(), **extras, "loss": "poisson",
                                "hidden_layer_sizes": (4,), "activation": "tanh", "solver": "sgd",
                                "max_iter": 3, "random_state": 0}
    assert MLPClassifier().get_params() == {**skn.MLPClassifier().get_params(), **extras, "class_weight": None}
    # scikit-learn's parameters first, in scikit-learn's order (positional calls work alike)
    for ours, theirs in ((MLPRegressor, skn.MLPRegressor), (MLPClassifier, skn.MLPClassifier)):
        names = [n for n in inspect.signature(ours).parameters if HAS_LOSS or n != "loss"]  # loss: 1.7
        sk_names = list(inspect.signature(theirs).parameters)
        assert names[:len(sk_names)] == sk_names
    est.set_params(alpha=0.5, batch_size=16)
    twin = clone(est)
    assert twin is not est and twin.get_params() == est.get_params()
    X, y, _ = problem("poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
        twin.fit(X, y)
    np.testing.assert_array_equal(twin.predict(X), est.predict(X))
    back = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    assert back.loss_curve_ == est.loss_curve_ and est.score(X, y) == back.score(X, y)


def test_score_is_scikit_learns():
    for kind in ("multiclass", "squared_error"):
        sk, fn, X, _, _ = both(kind, **SOLVERS["adam"])
        y = problem(kind)[1]
        assert fn.score(X, y) == pytest.approx(sk.score(X, y), rel=1e-9)


def test_parameters_are_validated_and_the_unsupported_refused():
    X, y, _ = problem("binary")
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="softplus").fit(X, y)
    with pytest.raises(ValueError, match="learning_rate_init"):
        MLPRegressor(learning_rate_init=0.0).fit(X, y)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPRegressor(early_stopping=True, validation_fraction=0.005).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(max_iter=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="6 features"):
        est.predict(X[:, :4])


def test_lazy_export_from_the_package(monkeypatch):
    assert fastnn.MLPClassifier is MLPClassifier and fastnn.MLPRegressor is MLPRegressor
    with pytest.raises(AttributeError):
        fastnn.NoSuchThing  # noqa: B018
    import sys
    monkeypatch.setitem(sys.modules, "sklearn", None)  # scikit-learn missing
    with pytest.raises(ImportError, match=r"fastnn.MLPClassifier needs scikit-learn: pip install fastnn\[sklearn\]"):
        fastnn.__getattr__("MLPClassifier")


@pytest.mark.parametrize("bad", ["'absolute_error'", "None", "(7,)"])
def test_loss_is_validated_where_scikit_learns_table_has_no_loss(bad):
    """scikit-learn 1.6's MLPRegressor has no loss, so its parameter table (which the drop-in
    widens) has no entry for it: the drop-in adds its own. Played in a fresh interpreter by
    taking loss out of the installed table before fastnn reads it (a no-op on 1.6 itself); (7,) is
    hidden_layer_sizes passed first as in 1.6, where the drop-in's first parameter is loss."""
    import subprocess
    import sys
    code = ("import numpy as np, sklearn.neural_network as skn\n"
            "skn.MLPRegressor._parameter_constraints.pop('loss', None)\n"
            "from sklearn.utils._param_validation import InvalidParameterError\n"
            "import fastnn\n"
            "X = np.random.default_rng(0).standard_normal((30, 3))\n"
            "try:\n"
            f"    fastnn.MLPRegressor({bad}, max_iter=2).fit(X, X[:, 0])\n"
            "except InvalidParameterError as e:\n"
            "    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("REFUSED The 'loss' parameter of MLPRegressor must be a str among"), out.stdout
    assert "poisson" in out.stdout and "squared_error" in out.stdout


def test_a_scikit_learn_older_than_1_6_is_refused_in_one_line():
    """In a fresh interpreter whose scikit-learn says 1.5.2: the first use raises ImportError naming
    the version found and the one needed (1.6: sklearn.utils.validation.validate_data)."""
    import subprocess
    import sys
    code = ("import sklearn; sklearn.__version__ = '1.5.2'\n"
            "import fastnn\n"
            "try:\n    fastnn.MLPRegressor\nexcept ImportError as e:\n    print('REFUSED', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("REFUSED fastnn's MLPClassifier and MLPRegressor need scikit-learn >= 1.6, "
                                  "found 1.5.2: pip install -U 'scikit-learn>=1.6'")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_scikit_learns_estimator_checks_pass():
    from sklearn.utils.estimator_checks import check_estimator
    for est in (MLPClassifier(max_iter=50, random_state=0), MLPRegressor(max_iter=50, random_state=0)):
        results = check_estimator(est, on_fail=None)
        failed = [(r["check_name"], repr(r["exception"])[:200]) for r in results if r["status"] == "failed"]
        assert not failed
        assert sum(r["status"] == "passed" for r in results) > 50
