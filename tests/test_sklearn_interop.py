"""fastnn's MLP estimators among scikit-learn's tools: fitted models converted both ways
(from_sklearn, to_sklearn), sparse and pandas input, Pipeline, GridSearchCV and RandomizedSearchCV
(also in loky worker processes), cross_val_score, clone and pickle."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
import scipy.sparse as sp  # noqa: E402
from sklearn import neural_network as skn  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnn.neural_network as fnn  # noqa: E402
from fastnn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn_versions import make, need_string_early_stopping  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N, D = 120, 5
# hidden layers as wide as the input: square weights, so a transposition or a swap shows in values
BASE = dict(hidden_layer_sizes=(5, 5), alpha=0.01, batch_size=32, max_iter=4, random_state=2,
            tol=0.0, n_iter_no_change=10**6)
SOLVERS = {
    "sgd": dict(solver="sgd", learning_rate_init=0.1, learning_rate="invscaling", power_t=0.3),
    "adam": dict(solver="adam", learning_rate_init=0.02),
}
KINDS = ["strings", "binary", "multilabel", "squared_error", "poisson"]
FITTED = ["n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_", "loss_",
          "loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"]


def data(kind, n=N, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D))
    if kind == "strings":
        y = np.array(["cat", "dog", "ant"])[rng.integers(0, 3, n)]
    elif kind == "binary":
        y = np.where(X[:, 0] + 0.5 * rng.standard_normal(n) > 0, 5, -1)
    elif kind == "multilabel":
        y = (X[:, :3] + 0.5 * rng.standard_normal((n, 3)) > 0).astype(int)
    elif kind == "squared_error":
        y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.standard_normal(n)
    else:
        y = rng.poisson(np.exp(0.5 * X[:, 0])).astype(float)
    return X.astype(dtype), y


def classes_of(kind):
    return (MLPClassifier, skn.MLPClassifier) if kind in ("strings", "binary", "multilabel") \
        else (MLPRegressor, skn.MLPRegressor)


def params_of(kind, **extra):
    return {**BASE, **({"loss": kind} if kind in ("squared_error", "poisson") else {}), **extra}


def assert_same_outputs(a, b, X, rtol=1e-12):
    np.testing.assert_array_equal(a.predict(X), b.predict(X)) if hasattr(a, "classes_") else \
        np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=rtol, atol=rtol)
    if hasattr(a, "predict_proba"):
        np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=rtol, atol=rtol)


def assert_same_fitted(a, b):
    for name in FITTED:
        assert getattr(a, name) == getattr(b, name), name
    assert [c.shape for c in a.coefs_] == [c.shape for c in b.coefs_]
    if hasattr(b, "classes_"):
        np.testing.assert_array_equal(a.classes_, b.classes_)
        assert a.classes_.dtype == b.classes_.dtype
        np.testing.assert_array_equal(a._label_binarizer.classes_, b._label_binarizer.classes_)
        assert a._label_binarizer.y_type_ == b._label_binarizer.y_type_


def assert_same_weights(a, b, rtol=0.0):
    for what in ("coefs_", "intercepts_"):
        for i, (got, want) in enumerate(zip(getattr(a, what), getattr(b, what))):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-4, err_msg=f"{what}[{i}]")


# -- from_sklearn / to_sklearn ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", KINDS)
def test_from_sklearn_predicts_scores_and_keeps_the_fitted_attributes(kind, solver, dtype):
    X, y = data(kind, dtype=dtype)
    ours, theirs = classes_of(kind)
    sk = make(theirs, **params_of(kind, **SOLVERS[solver])).fit(X, y)
    fn = ours.from_sklearn(sk)
    assert type(fn) is ours and fn.get_params() == {**ours().get_params(), **sk.get_params()}
    assert_same_fitted(fn, sk)
    assert_same_weights(fn, sk)
    assert all(c.dtype == dtype for c in fn.coefs_ + fn.intercepts_)
    assert_same_outputs(fn, sk, X, rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert fn.score(X, y) == pytest.approx(sk.score(X, y), rel=1e-6)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["strings", "multilabel", "poisson"])
def test_training_goes_on_after_from_sklearn_as_scikit_learns_own(kind, solver):
    """scikit-learn keeps its optimizer in the estimator (and in its pickle): partial_fit on the
    converted model continues with the same velocities / moments, step count and rate as a copy of
    scikit-learn's; a warm-started fit starts a new optimizer in both."""
    X, y = data(kind)
    ours, theirs = classes_of(kind)
    sk = make(theirs, **params_of(kind, **SOLVERS[solver])).fit(X, y)
    fn = ours.from_sklearn(sk)
    before = [c.copy() for c in fn.coefs_]
    sk.partial_fit(X[:70], y[:70])
    fn.partial_fit(X[:70], y[:70])
    assert not np.array_equal(before[0], fn.coefs_[0])
    assert_same_weights(fn, sk, rtol=1e-9)
    sk.set_params(warm_start=True, max_iter=2).fit(X, y)
    fn.set_params(warm_start=True, max_iter=2).fit(X, y)
    assert_same_weights(fn, sk, rtol=1e-9)
    np.testing.assert_allclose(fn.loss_curve_, sk.loss_curve_, rtol=1e-9)
    assert fn.n_iter_ == sk.n_iter_ and fn.t_ == sk.t_


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("kind", ["strings", "binary", "squared_error"])
def test_to_sklearn_predicts_the_same_and_trains_on_alike(kind, solver):
    X, y = data(kind)
    ours, _ = classes_of(kind)
    fn = ours(**params_of(kind, **SOLVERS[solver])).fit(X, y)
    sk = fn.to_sklearn()
    assert type(sk) is classes_of(kind)[1]
    assert sk.get_params() == {k: v for k, v in fn.get_params().items() if k in sk.get_params()}
    assert_same_fitted(sk, fn)
    assert_same_weights(sk, fn)
    assert_same_outputs(sk, fn, X)
    back = ours.from_sklearn(sk)
    assert_same_fitted(back, fn)
    for est in (sk, fn, back):
        est.partial_fit(X, y)
    assert_same_weights(sk, fn, rtol=1e-9)
    assert_same_weights(back, fn)


def test_early_stopping_state_converts_both_ways():
    """The validation scores, the best score and the best epoch's weights convert: a warm-started
    fit with early stopping then runs as fastnn's own would (the same validation scores as
    scikit-learn's). Its final weights may differ from scikit-learn's: after an early-stopped fit
    scikit-learn's coefs_ *is* its _best_coefs list, so training on moves its "best" weights too,
    and a warm-started fit that never beats the best score ends on its last epoch's weights, where
    fastnn restores the best epoch's (as here)."""
    need_string_early_stopping()
    X, y = data("strings", n=200)
    params = params_of("strings", **SOLVERS["adam"], early_stopping=True, max_iter=6)
    sk = skn.MLPClassifier(**params).fit(X, y)
    native = MLPClassifier(**params).fit(X, y)
    fn = MLPClassifier.from_sklearn(sk)
    assert fn.validation_scores_ == sk.validation_scores_ == native.validation_scores_
    assert len(fn.validation_loss_curve_) == len(sk.validation_scores_)
    back = native.to_sklearn()
    for a, b in zip(back._best_coefs + back._best_intercepts, sk._best_coefs + sk._best_intercepts):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-13)
    for est in (sk, fn, native, back):  # sk first: its training on must not reach fn's copies
        est.set_params(warm_start=True, max_iter=3, n_iter_no_change=1).fit(X, y)
    assert_same_weights(fn, native, rtol=1e-9)
    assert_same_weights(back, native, rtol=1e-9)
    for est in (fn, native, back):
        np.testing.assert_allclose(est.validation_scores_, sk.validation_scores_, rtol=1e-9)
        assert est.best_validation_score_ == pytest.approx(sk.best_validation_score_, rel=1e-9)
        assert est._no_improvement_count == sk._no_improvement_count


def test_lbfgs_models_convert_for_inference():
    X, y = data("strings")
    sk = skn.MLPClassifier((5,), solver="lbfgs", max_iter=20, random_state=0).fit(X, y)
    fn = MLPClassifier.from_sklearn(sk)
    assert_same_outputs(fn, sk, X)
    assert not hasattr(fn, "partial_fit") and fn.loss_ == sk.loss_
    back = fn.to_sklearn()
    assert_same_outputs(back, sk, X)
    assert not hasattr(back, "_optimizer")


def test_to_sklearn_folds_batch_norm_and_drops_dropout_and_class_weight_with_a_warning():
    X, y = data("strings")
    fn = MLPClassifier(**params_of("strings", **SOLVERS["adam"]), batch_norm=True, dropout=0.3,
                       class_weight="balanced").fit(X, y)
    with pytest.warns(UserWarning, match="without dropout, batch_norm, class_weight"):
        sk = fn.to_sklearn()
    assert len(sk.coefs_) == 3 and not hasattr(sk, "_optimizer")  # batch norm's state is not sklearn's
    assert_same_outputs(sk, fn, X, rtol=1e-12)
    sk.partial_fit(X, y)  # trains on, as a plain scikit-learn model
    reg = MLPRegressor(**params_of("squared_error"), dropout=[0.1, 0.0]).fit(*data("squared_error"))
    with pytest.warns(UserWarning, match="without dropout"):
        assert_same_outputs(reg.to_sklearn(), reg, X)


def test_to_sklearn_refuses_what_scikit_learn_cannot_express():
    X, y = data("binary")
    cases = [({"activation": "leaky_relu"}, "activation='leaky_relu'"),
             ({"activation": ["tanh", "relu"]}, "one activation per hidden layer"),
             ({"solver": "adamw"}, "solver='adamw'"), ({"solver": "rmsprop"}, "solver='rmsprop'")]
    for extra, message in cases:
        fn = MLPClassifier(**{**BASE, **extra}).fit(X, y)
        with pytest.raises(ValueError, match=message):
            fn.to_sklearn()
    same = MLPClassifier(**{**BASE, "activation": ["tanh", "tanh"]}).fit(X, y)
    assert same.to_sklearn().activation == "tanh"
    assert_same_outputs(same.to_sklearn(), same, X)


def test_to_sklearn_of_a_poisson_model_needs_a_scikit_learn_with_loss(monkeypatch):
    """scikit-learn before 1.7 has no loss parameter (its MLPRegressor is always squared error):
    a poisson model is refused there, naming the version, and a squared-error one converts. The
    older class is played by 1.9's with loss taken out of its parameter names."""
    X, y = data("poisson")
    poisson = MLPRegressor(**params_of("poisson")).fit(X, y)
    squared = MLPRegressor(**params_of("squared_error")).fit(*data("squared_error"))
    names = [n for n in skn.MLPRegressor._get_param_names() if n != "loss"]
    monkeypatch.setattr(skn.MLPRegressor, "_get_param_names", classmethod(lambda cls: names))
    with pytest.raises(ValueError, match=r"cannot express loss='poisson' \(scikit-learn .* has no loss parameter"):
        poisson.to_sklearn()
    assert "loss" not in squared.to_sklearn().get_params()


def test_conversions_refuse_unfitted_models_and_other_classes():
    X, y = data("binary")
    with pytest.raises(NotFittedError):
        MLPClassifier.from_sklearn(skn.MLPClassifier())
    with pytest.raises(NotFittedError):
        MLPRegressor().to_sklearn()
    sk_reg = skn.MLPRegressor(max_iter=2).fit(X, y)
    for cls, other in ((MLPClassifier, sk_reg), (MLPRegressor, skn.MLPClassifier(max_iter=2).fit(X, y)),
                       (MLPClassifier, LogisticRegression().fit(X, y)),
                       (MLPClassifier, MLPClassifier(max_iter=2).fit(X, y)), (MLPRegressor, None)):
        with pytest.raises(TypeError, match="from_sklearn takes a fitted sklearn.neural_network"):
            cls.from_sklearn(other)
    broken = skn.MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, y)
    broken.hidden_layer_sizes = (5,)
    with pytest.raises(ValueError, match="hidden layers"):
        MLPRegressor.from_sklearn(broken)


# -- sparse input ---------------------------------------------------------------------------------
def sparse_data(kind, n=N):
    X, y = data(kind, n)
    X[np.abs(X) < 0.8] = 0.0  # about half zeros
    return X, y


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("kind", ["strings", "multilabel", "poisson"])
def test_sparse_input_gives_the_dense_results(kind, fmt):
    X, y = sparse_data(kind)
    Xs = sp.csr_matrix(X).asformat(fmt)
    ours, _ = classes_of(kind)
    params = params_of(kind, **SOLVERS["sgd"])
    dense, sparse = ours(**params).fit(X, y), ours(**params).fit(Xs, y)
    assert_same_weights(sparse, dense)
    assert sparse.loss_curve_ == dense.loss_curve_
    for a, b in ((sparse, dense), (dense, sparse)):  # each predicts the other's input alike
        np.testing.assert_array_equal(a.predict(Xs), b.predict(X))
        if hasattr(a, "predict_proba"):
            np.testing.assert_array_equal(a.predict_proba(Xs), b.predict_proba(X))
    assert sparse.score(Xs, y) == dense.score(X, y)
    dense.partial_fit(X, y)
    sparse.partial_fit(Xs, y)
    assert_same_weights(sparse, dense)


@pytest.mark.parametrize("budget_rows, n, sizes", [
    (2500, 5000, [2500, 2500]),
    (1500, 5000, [1250, 1250, 1250, 1250]),
    # _MIN_CHUNK_ROWS = 16 rows: near-equal chunks, none a sliver
    (1, 200, [15, 15, 16, 15, 15, 16, 15, 16, 15, 15, 16, 15, 16]),
    (30, 200, [28, 29, 28, 29, 28, 29, 29]),
])
def test_sparse_predictions_run_in_bounded_chunks(monkeypatch, budget_rows, n, sizes):
    """Each row predicted once, in its place, in near-equal chunks: bit-identical to the dense
    input's, which the engine predicts in chunks of its own size."""
    X, y = sparse_data("strings", n=n)
    fn = MLPClassifier(**BASE).fit(X[:N], y[:N])
    want, want_labels = fn.predict_proba(X), fn.predict(X)
    seen = []
    run = fn.model_.predict_proba

    def spy(chunk):
        seen.append(chunk.shape[0])
        return run(chunk)

    monkeypatch.setattr(fnn, "_SPARSE_CHUNK_BYTES", budget_rows * D * 8)
    got = fnn._chunked(spy, sp.csr_matrix(X))
    assert seen == sizes
    check = np.testing.assert_array_equal
    check(got, want)
    check(fn.predict_proba(sp.csc_matrix(X)), want)
    np.testing.assert_array_equal(fn.predict(sp.coo_matrix(X)), want_labels)
    reg = MLPRegressor(**BASE).fit(X[:N], X[:N, 0])
    check(reg.predict(sp.csr_array(X)), reg.predict(X))


def test_sparse_fit_with_float32_and_from_sklearn():
    X, y = sparse_data("strings")
    Xs = sp.csr_matrix(X)
    fn32 = MLPClassifier(**BASE, dtype="float32").fit(Xs, y)
    assert fn32.coefs_[0].dtype == np.float32
    np.testing.assert_array_equal(fn32.predict_proba(Xs), fn32.predict_proba(X))
    sk = skn.MLPClassifier(**BASE).fit(Xs, y)
    fn = MLPClassifier.from_sklearn(sk)
    np.testing.assert_allclose(fn.predict_proba(Xs), sk.predict_proba(Xs), rtol=1e-12, atol=1e-14)


# -- pandas -----------------------------------------------------------------------------------------
@pytest.fixture
def pd():
    return pytest.importorskip("pandas")


def test_dataframes_give_feature_names_and_their_checks(pd):
    X, y = data("strings")
    cols = [f"f{i}" for i in range(D)]
    df, ys = pd.DataFrame(X, columns=cols), pd.Series(y, name="animal")
    fn = MLPClassifier(**BASE).fit(df, ys)
    sk = skn.MLPClassifier(**BASE).fit(df, ys)
    np.testing.assert_array_equal(fn.feature_names_in_, cols)
    np.testing.assert_array_equal(fn.classes_, sk.classes_)
    np.testing.assert_array_equal(fn.predict(df), sk.predict(df))
    np.testing.assert_allclose(fn.predict_proba(df), sk.predict_proba(df), rtol=1e-6, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn.predict(df)  # the fitted names: no warning
    renamed = df.rename(columns={"f0": "zero"})
    for est in (fn, sk):  # scikit-learn's error, and its warnings, alike
        with pytest.raises(ValueError, match="feature names should match"):
            est.predict(renamed)
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            est.predict(X)
    plain = MLPClassifier(**BASE).fit(X, y)
    with pytest.warns(UserWarning, match="X has feature names, but MLPClassifier was fitted without"):
        plain.predict(df)
    for conv in (MLPClassifier.from_sklearn(sk), fn.to_sklearn()):
        np.testing.assert_array_equal(conv.feature_names_in_, cols)
        with pytest.raises(ValueError, match="feature names should match"):
            conv.predict(renamed)


def test_pandas_series_targets(pd):
    X, y = data("squared_error")
    df = pd.DataFrame(X, columns=list("abcde"))
    fn = MLPRegressor(**BASE).fit(df, pd.Series(y))
    sk = skn.MLPRegressor(**BASE).fit(df, pd.Series(y))
    np.testing.assert_allclose(fn.predict(df), sk.predict(df), rtol=1e-6, atol=1e-12)
    assert fn.score(df, pd.Series(y)) == pytest.approx(sk.score(df, pd.Series(y)), rel=1e-6)
    labels = pd.Series(data("strings")[1], dtype="category")
    clf = MLPClassifier(**BASE).partial_fit(df, labels, classes=np.unique(labels))
    assert set(clf.predict(df)) <= {"ant", "cat", "dog"}


# -- scikit-learn's tools -------------------------------------------------------------------------
def test_pipeline_with_a_scaler_equals_scikit_learns():
    X, y = data("strings")
    X = X * [1, 10, 100, 0.1, 5] + 3
    ours = make_pipeline(StandardScaler(), MLPClassifier(**BASE, **SOLVERS["adam"])).fit(X, y)
    theirs = make_pipeline(StandardScaler(), skn.MLPClassifier(**BASE, **SOLVERS["adam"])).fit(X, y)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6, atol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)


@pytest.mark.parametrize("search", ["grid", "randomized"])
def test_searches_in_worker_processes_equal_the_serial_ones(search):
    X, y = data("strings", n=90)
    grid = {"alpha": [1e-4, 0.1], "hidden_layer_sizes": [(4,), (6,)]}
    make = {"grid": lambda n_jobs: GridSearchCV(MLPClassifier(**{**BASE, "max_iter": 3}), grid, cv=3,
                                                n_jobs=n_jobs),
            "randomized": lambda n_jobs: RandomizedSearchCV(MLPClassifier(**{**BASE, "max_iter": 3}), grid,
                                                            n_iter=3, cv=3, random_state=0, n_jobs=n_jobs)}
    serial, parallel = make[search](1).fit(X, y), make[search](2).fit(X, y)
    np.testing.assert_array_equal(parallel.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert parallel.best_params_ == serial.best_params_
    np.testing.assert_array_equal(parallel.predict(X), serial.predict(X))


def test_cross_val_score_equals_scikit_learns():
    X, y = data("squared_error")
    ours = cross_val_score(MLPRegressor(**BASE, **SOLVERS["sgd"]), X, y, cv=3)
    theirs = cross_val_score(skn.MLPRegressor(**BASE, **SOLVERS["sgd"]), X, y, cv=3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_clone_keeps_parameters_and_drops_the_fit():
    X, y = data("binary")
    est = MLPClassifier(**BASE, dropout=0.1, class_weight={5: 2.0, -1: 1.0}).fit(X, y)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and not hasattr(twin, "model_")
    with pytest.raises(NotFittedError):
        twin.predict(X)
    np.testing.assert_array_equal(twin.fit(X, y).predict_proba(X), est.predict_proba(X))


@pytest.mark.parametrize("kind", ["strings", "multilabel", "poisson"])
def test_pickles_predict_bit_identically_and_train_on_alike(kind):
    X, y = data(kind)
    ours, theirs = classes_of(kind)
    for est in (ours(**params_of(kind, **SOLVERS["sgd"])).fit(X, y),
                ours.from_sklearn(make(theirs, **params_of(kind, **SOLVERS["adam"])).fit(X, y))):
        back = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        if hasattr(est, "predict_proba"):
            np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
        assert_same_fitted(back, est)
        for model in (est, back):
            model.partial_fit(X[:50], y[:50])
            model.partial_fit(X[50:], y[50:])
        assert_same_weights(back, est)
        assert back.loss_curve_ == est.loss_curve_
