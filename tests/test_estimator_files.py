"""Model files of the scikit-learn estimators (fastnn/files/estimator_file.py): round trips that
predict bit-identically and continue exactly, hostile edits refused with a ValueError naming the
file, and ONNX graphs equal to predict_proba / predict."""
import copy
import json
import os
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402

import fastnn  # noqa: E402
from fastnn import MLPClassifier, MLPRegressor  # noqa: E402
from fastnn.files import safetensors as sf  # noqa: E402

_RESERVED = ("format", "format_version", "fastnn_version", "kind")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def _data(kind, n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    if kind == "strings":
        y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    elif kind == "multiclass":
        y = np.digitize(X[:, 0], [-0.5, 0.5]) * 10  # 0, 10, 20
    elif kind == "multilabel":
        y = (X[:, :3] > 0).astype(int)
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0]))
    elif kind == "multioutput":
        y = X[:, :2] @ [[1.0, -1.0], [0.5, 2.0]]
    else:
        y = X[:, 0] - 2 * X[:, 1]
    return X, y


CASES = {
    "binary-strings": (lambda: MLPClassifier((6,), max_iter=4, random_state=0), "strings"),
    "multiclass-sgd": (lambda: MLPClassifier((6, 4), solver="sgd", learning_rate="adaptive",
                                             max_iter=4, random_state=1), "multiclass"),
    "multilabel": (lambda: MLPClassifier((5,), max_iter=4, random_state=2), "multilabel"),
    "early-stopping": (lambda: MLPClassifier((6,), early_stopping=True, max_iter=6, random_state=0),
                       "multiclass"),
    "float32-extras": (lambda: MLPClassifier((8, 6), dropout=0.1, batch_norm=True, dtype="float32",
                                             activation=["relu", "leaky_relu"], max_iter=3,
                                             random_state=0), "strings"),
    "regressor": (lambda: MLPRegressor(hidden_layer_sizes=(7,), solver="sgd", max_iter=4,
                                       random_state=0), "real"),
    "poisson": (lambda: MLPRegressor("poisson", (5,), max_iter=4, random_state=0), "poisson"),
    "multioutput-rmsprop": (lambda: MLPRegressor(hidden_layer_sizes=(5,), solver="rmsprop", max_iter=4,
                                                 random_state=0), "multioutput"),
}


def _fitted(case):
    make, kind = CASES[case]
    X, y = _data(kind)
    return make().fit(X, y), X, y


def _outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_predicts_bit_identically_and_keeps_every_fitted_attribute(case, tmp_path):
    est, X, y = _fitted(case)
    path = tmp_path / "est.safetensors"
    est.save(path)
    back = fastnn.load(path)
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
    np.testing.assert_array_equal(_outputs(back, X), _outputs(est, X))
    for name in ("n_iter_", "t_", "loss_", "best_loss_", "loss_curve_", "validation_scores_",
                 "best_validation_score_", "validation_loss_curve_", "n_layers_", "n_outputs_",
                 "out_activation_", "n_features_in_"):
        assert getattr(back, name) == getattr(est, name), name
    if hasattr(est, "classes_"):
        assert back.classes_.dtype == est.classes_.dtype
        np.testing.assert_array_equal(back.classes_, est.classes_)
    for a, b in zip(back.coefs_ + back.intercepts_, est.coefs_ + est.intercepts_):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert back.history_.history == est.history_.history
    assert back.score(X, y) == est.score(X, y)


@pytest.mark.parametrize("case", ["binary-strings", "multiclass-sgd", "regressor", "float32-extras"])
def test_loaded_estimator_continues_exactly_as_the_original(case, tmp_path):
    est, X, y = _fitted(case)
    est.save(tmp_path / "est.safetensors")
    back = fastnn.load(tmp_path / "est.safetensors")
    for e in (est, back):  # the same partial_fit epochs, then a warm-started fit
        e.partial_fit(X, y)
        e.partial_fit(X[::-1], y[::-1])
        e.set_params(warm_start=True, max_iter=2)
        e.fit(X, y)
    np.testing.assert_array_equal(back.model_.params, est.model_.params)
    np.testing.assert_array_equal(back.model_.slots, est.model_.slots)
    assert back.loss_curve_ == est.loss_curve_ and back.t_ == est.t_


def test_a_loaded_sgd_estimator_keeps_its_optimizers_schedule_as_scikit_learn_does(tmp_path):
    """partial_fit keeps the schedule and power_t the SGD optimizer was made with, whatever
    set_params says since (scikit-learn's optimizer lives on): so does a loaded estimator. A file
    of an earlier version, without that record, loads, and follows the parameters as before."""
    X, y = _data("multiclass")
    est = MLPClassifier((6,), solver="sgd", learning_rate="invscaling", power_t=0.4, random_state=0)
    est.partial_fit(X, y, classes=[0, 10, 20])
    rate = est._learning_rate
    est.save(tmp_path / "est.safetensors")
    back = fastnn.load(tmp_path / "est.safetensors")
    _rewrite(tmp_path / "est.safetensors", lambda d, t: _fitted_doc(d).pop("sgd_policy"))
    old = fastnn.load(tmp_path / "est.safetensors")
    assert back._sgd_policy == ("invscaling", 0.4) and not hasattr(old, "_sgd_policy")
    for e in (est, back, old):
        e.set_params(learning_rate="constant")
        e.partial_fit(X, y)
        e.partial_fit(X, y)
    np.testing.assert_array_equal(back.model_.params, est.model_.params)
    assert back._learning_rate == est._learning_rate < rate  # invscaling went on
    assert old._learning_rate == rate  # constant, as the parameters now say


def test_early_stopping_warm_start_falls_back_to_the_saved_best_weights(tmp_path):
    est, X, y = _fitted("early-stopping")
    est.save(tmp_path / "est.safetensors")
    back = fastnn.load(tmp_path / "est.safetensors")
    for e in (est, back):  # a learning rate this large never beats the saved best score
        e.set_params(warm_start=True, max_iter=3, learning_rate_init=50.0)
        e.fit(X, y)
    assert back.best_validation_score_ == est.best_validation_score_
    np.testing.assert_array_equal(back.model_.params, est.model_.params)


def test_callbacks_and_random_state_objects_are_not_stored(tmp_path):
    X, y = _data("strings")
    est = MLPClassifier((4,), max_iter=2, random_state=np.random.RandomState(3),
                        callbacks=[fastnn.TerminateOnNaN()]).fit(X, y)
    est.save(tmp_path / "e.safetensors")
    back = fastnn.load(tmp_path / "e.safetensors")
    assert back.random_state is None and back.callbacks is None
    assert back.get_params()["hidden_layer_sizes"] == (4,)


def test_unfitted_estimator_cannot_be_saved_and_nothing_is_written(tmp_path):
    with pytest.raises(NotFittedError):
        MLPClassifier().save(tmp_path / "e.safetensors")
    assert not list(tmp_path.iterdir())


def test_labels_other_than_strings_and_numbers_cannot_be_stored():
    from fastnn.files import estimator_file
    for labels in (np.array([b"a", b"b"]), np.array([np.datetime64("2020-01-01")]),
                   np.array(["a", None], dtype=object)):
        with pytest.raises(TypeError, match="classes_"):
            estimator_file._labels(labels, "classes_")
    assert estimator_file._labels(np.array(["a", "b"], dtype=object), "x") == {
        "dtype": "object", "values": ["a", "b"]}


# -- hostile files ---------------------------------------------------------------------------
def _rewrite(path, edit):
    tensors, meta = sf.read_file(path)
    docs = {k: (v if k in _RESERVED else json.loads(v)) for k, v in meta.items()}
    edit(docs, tensors)
    sf.save_file(tensors, path, {k: (v if k in _RESERVED else json.dumps(v)) for k, v in docs.items()})


def _fitted_doc(docs):
    return docs["estimator"]["fitted"]


HOSTILE = {
    "classes count": lambda d, t: _fitted_doc(d)["classes_"]["values"].append("maybe"),
    "duplicate classes": lambda d, t: _fitted_doc(d)["classes_"].update(values=["no", "no"]),
    "classes dtype": lambda d, t: _fitted_doc(d)["classes_"].update(dtype="<M8[ns]"),
    "classes not strings": lambda d, t: _fitted_doc(d)["classes_"].update(values=[1, [2]]),
    "y_type": lambda d, t: _fitted_doc(d).update(y_type_="continuous"),
    "y_type multiclass": lambda d, t: _fitted_doc(d).update(y_type_="multiclass"),
    "out_activation": lambda d, t: _fitted_doc(d).update(out_activation_="softmax"),
    "out_activation unknown": lambda d, t: _fitted_doc(d).update(out_activation_="__import__"),
    "n_features": lambda d, t: _fitted_doc(d).update(n_features_in_=4),
    "n_outputs": lambda d, t: _fitted_doc(d).update(n_outputs_=2),
    "n_layers": lambda d, t: _fitted_doc(d).update(n_layers_=7),
    "negative n_iter": lambda d, t: _fitted_doc(d).update(n_iter_=-1),
    "n_iter a string": lambda d, t: _fitted_doc(d).update(n_iter_="3"),
    "learning rate": lambda d, t: _fitted_doc(d).update(learning_rate=-1.0),
    "loss curve": lambda d, t: _fitted_doc(d).update(loss_curve_=[1.0, "x"]),
    "missing attribute": lambda d, t: _fitted_doc(d).pop("t_"),
    "extra attribute": lambda d, t: _fitted_doc(d).update(coefs_=[1]),
    "feature names": lambda d, t: _fitted_doc(d).update(feature_names_in_={"dtype": "object",
                                                                           "values": ["a"]}),
    "unknown parameter": lambda d, t: d["estimator"]["params"].update(evil=1),
    "tagged object": lambda d, t: d["estimator"]["params"].update(alpha={"__reduce__": 1}),
    "malformed dict": lambda d, t: d["estimator"]["params"].update(class_weight={"__dict__": [[1]]}),
    "no estimator document": lambda d, t: d.pop("estimator"),
    "estimator not a dict": lambda d, t: d.update(estimator=[1, 2]),
    "stray tensor": lambda d, t: t.update({"best_weights.0": np.zeros(3)}),
    "estimator keys": lambda d, t: d["estimator"].update(n_best_weights=9),
    "loss mismatch": lambda d, t: d["compile_config"].update(loss="sklearn_log_loss"),
    "model not compiled": lambda d, t: d["training"].update(compiled=False),
    # the parameters as fit checks them (the hostile tester's file loaded, then predict raised)
    "n_threads a string": lambda d, t: d["estimator"]["params"].update(n_threads="x"),
    "beta_2 a list": lambda d, t: d["estimator"]["params"].update(beta_2=[]),
    "batch_norm 1.5": lambda d, t: d["estimator"]["params"].update(batch_norm=1.5),
    "activation list unknown": lambda d, t: d["estimator"]["params"].update(activation=["swish"]),
    "dropout rate 2": lambda d, t: d["estimator"]["params"].update(dropout=[2.0]),
    "hidden size 0": lambda d, t: d["estimator"]["params"].update(hidden_layer_sizes={"__tuple__": [0]}),
    "sgd policy schedule": lambda d, t: _fitted_doc(d).update(sgd_policy={"learning_rate": "__import__",
                                                                          "power_t": 0.5}),
    "sgd policy power_t": lambda d, t: _fitted_doc(d).update(sgd_policy={"learning_rate": "invscaling",
                                                                         "power_t": -1.0}),
    "sgd policy keys": lambda d, t: _fitted_doc(d).update(sgd_policy={"learning_rate": "constant"}),
    "sgd policy a list": lambda d, t: _fitted_doc(d).update(sgd_policy=["constant", 0.5]),
}


def test_parameters_set_after_the_fit_save_and_load_as_they_pickle(tmp_path):
    """set_params after a fit changes the parameters, not the network: such an estimator saves and
    loads (valid values are not compared with the network), and predicts as before."""
    est, X, y = _fitted("binary-strings")
    est.set_params(hidden_layer_sizes=(50, 7), activation="tanh", n_threads=1)
    est.save(tmp_path / "est.safetensors")
    back = fastnn.load(tmp_path / "est.safetensors")
    assert back.get_params()["hidden_layer_sizes"] == (50, 7) and back.get_params()["activation"] == "tanh"
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))


@pytest.mark.parametrize("edit", sorted(HOSTILE))
def test_hostile_estimator_files_raise_a_value_error_naming_the_file(edit, tmp_path):
    est, X, y = _fitted("binary-strings")
    path = tmp_path / "est.safetensors"
    est.save(path)
    _rewrite(path, HOSTILE[edit])
    with pytest.raises(ValueError, match="est.safetensors"):
        fastnn.load(path)


def test_a_failed_save_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    est, X, y = _fitted("regressor")
    path = tmp_path / "est.safetensors"
    est.save(path)
    before = path.read_bytes()
    other = copy.deepcopy(est).partial_fit(X, y)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# -- ONNX --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["binary-strings", "multiclass-sgd", "multilabel", "regressor",
                                  "poisson", "multioutput-rmsprop", "float32-extras"])
def test_onnx_export_of_estimators_equals_their_predictions(case):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    est, X, y = _fitted(case)
    sess = ort.InferenceSession(fastnn.to_onnx(est).SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"X": X.astype(est.model_.dtype)})[0]
    want = _outputs(est, X)
    assert got.dtype == est.model_.dtype
    tol = 1e-5 if est.model_.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=tol, atol=tol)
    if case == "binary-strings":
        assert got.shape == (len(X), 2)


def test_an_lbfgs_fit_saves_and_loads(tmp_path, _quiet):
    """encode_estimator read the stochastic solvers' current rate, which an lbfgs fit never sets."""
    X, y = _data("strings")
    est = MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=3, random_state=0).fit(X, y)
    est.save(tmp_path / "lbfgs.safetensors")
    back = fastnn.load(tmp_path / "lbfgs.safetensors")
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    assert back.get_params() == est.get_params()
