"""skl2onnx converts pipelines that hold fastnn's estimators (fastnn/files/onnx_sklearn.py):
onnxruntime's labels and probabilities equal the pipeline's predict / predict_proba."""
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnn  # noqa: E402

fastnn.register_skl2onnx()


def _run(onx, X):
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"X": X})


def _data(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 6)).astype(np.float32)
    return X, {"strings": np.where(X[:, 0] > 0, "yes", "no"),
               "multiclass": np.digitize(X[:, 0], [-0.5, 0.5]) * 3 + 1,
               "multilabel": (X[:, :3] > 0).astype(int)}[kind]


@pytest.mark.parametrize("kind", ["strings", "multiclass", "multilabel"])
@pytest.mark.parametrize("extras", [{}, {"batch_norm": True, "dropout": 0.1, "activation": "leaky_relu"},
                                    {"dtype": "float64", "activation": ["tanh", "logistic"]}])
def test_pipeline_with_a_fastnn_classifier_converts(kind, extras):
    X, y = _data(kind)
    hidden = (8, 5) if isinstance(extras.get("activation"), list) else (8,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), fastnn.MLPClassifier(hidden, max_iter=20, random_state=0,
                                                                     **extras)).fit(X, y)
    onx = skl2onnx.convert_sklearn(pipe, initial_types=[("X", FloatTensorType([None, 6]))],
                                   options={id(pipe[-1]): {"zipmap": False}})
    labels, proba = _run(onx, X)
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=2e-6)
    np.testing.assert_array_equal(labels, pipe.predict(X))


def test_classifier_keeps_skl2onnx_zipmap_by_default():
    X, y = _data("strings")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = fastnn.MLPClassifier((6,), max_iter=10, random_state=0).fit(X, y)
    labels, maps = _run(skl2onnx.convert_sklearn(clf, initial_types=[("X", FloatTensorType([None, 6]))]), X[:3])
    proba = clf.predict_proba(X[:3])
    assert list(labels) == list(clf.predict(X[:3]))
    for row, p in zip(maps, proba):
        assert set(row) == {"no", "yes"}
        np.testing.assert_allclose([row["no"], row["yes"]], p, atol=2e-6)


@pytest.mark.parametrize("model_dtype", ["float32", "float64"])
def test_pipeline_with_a_fastnn_regressor_converts_across_dtypes(model_dtype):
    X, _ = _data("strings")
    X = X.astype(np.float64)
    y = np.stack([X[:, 0] - X[:, 1], np.abs(X[:, 2])], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), fastnn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=20,
                                                                    random_state=0, dtype=model_dtype)).fit(X, y)
    (values,) = _run(skl2onnx.convert_sklearn(pipe, initial_types=[("X", DoubleTensorType([None, 6]))]), X)
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, pipe.predict(X), atol=1e-5 if model_dtype == "float32" else 1e-12)


def test_importing_skl2onnx_first_registers_the_converters_without_a_call():
    code = ("import skl2onnx, numpy as np, fastnn, warnings; warnings.simplefilter('ignore');"
            "from skl2onnx.common.data_types import FloatTensorType;"
            "X = np.random.default_rng(0).normal(size=(40, 3)).astype('float32');"
            "m = fastnn.MLPClassifier((4,), max_iter=3).fit(X, X[:, 0] > 0);"
            "skl2onnx.convert_sklearn(m, initial_types=[('X', FloatTensorType([None, 3]))]); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
