"""ONNX export (fastnn/files/onnx_export.py): the exported graph, run by onnxruntime, gives
predict_proba (classification losses) or predict (mse) to 1e-5 for any batch size, in float32
and float64, with standard operators only, batch norm folded and dropout gone."""
import sys

import numpy as np
import pytest

import fastnn

onnx = pytest.importorskip("onnx")


def run(proto, X):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


MODELS = {  # name -> (layers, loss, expected operators)
    "bn-folded-softmax": (lambda: [fastnn.Dense(16), fastnn.BatchNorm(momentum=0.5), fastnn.Dropout(0.3),
                                   fastnn.Activation("relu"), fastnn.Dense(3, activation="softmax")],
                          "cross_entropy", ["Gemm", "Relu", "Gemm", "Softmax"]),
    "every-activation": (lambda: [fastnn.Dense(12, activation="leaky_relu", alpha=0.2),
                                  fastnn.Dense(8, activation="tanh"), fastnn.Dense(6, activation="sigmoid"),
                                  fastnn.Dense(5, activation="softmax"), fastnn.Dense(3)],
                         "cross_entropy", ["Gemm", "LeakyRelu", "Gemm", "Tanh", "Gemm", "Sigmoid", "Gemm",
                                           "Softmax", "Gemm", "Softmax"]),
    "bn-unfoldable-regression": (lambda: [fastnn.BatchNorm(), fastnn.Dense(8, activation="relu"),
                                          fastnn.BatchNorm(), fastnn.Dense(2)],
                                 "mse", ["Mul", "Add", "Gemm", "Relu", "Mul", "Add", "Gemm"]),
    "multilabel": (lambda: [fastnn.Dense(8, activation="relu"), fastnn.Dropout(0.5), fastnn.Dense(3)],
                   "binary_crossentropy", ["Gemm", "Relu", "Gemm", "Sigmoid"]),
    "leaky-after-bn": (lambda: [fastnn.Dense(10), fastnn.BatchNorm(),
                                fastnn.Activation("leaky_relu", alpha=1.5), fastnn.Dense(2)],
                       "mse", ["Gemm", "LeakyRelu", "Gemm"]),
}


def trained(name, dtype):
    layers, loss, _ = MODELS[name]
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 7)).astype(dtype) * 2 + 0.5
    if loss == "cross_entropy":
        y = (X[:, 0] > 0.5).astype(np.int64) + (X[:, 1] > 1.0)
    elif loss == "binary_crossentropy":
        y = (X[:, :3] > 0.5).astype(dtype)
    else:
        y = np.stack([X[:, 0] * 3 - X[:, 1], np.tanh(X[:, 2])], 1).astype(dtype) * 10
    m = fastnn.Sequential(layers(), dtype=dtype, seed=3).compile(fastnn.Adam(1e-2), loss)
    m.fit(X, y, epochs=3, batch_size=32)
    return m, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnxruntime_matches_predict_proba_or_predict(name, dtype):
    m, X = trained(name, dtype)
    proto = fastnn.to_onnx(m)
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == MODELS[name][2] + ["Identity"]  # BatchNorm folded where it can be, no Dropout
    want = m.predict_proba(X) if m.loss != "mse" else m.predict(X)
    for rows in (X[:1], X[:37], X):  # the batch dimension is dynamic
        got = run(proto, rows)
        assert got.dtype == np.dtype(dtype) and got.shape == (len(rows), m.n_outputs)
        np.testing.assert_allclose(got, want[:len(rows)], rtol=1e-5, atol=1e-5)
    out = proto.graph.output[0]
    assert out.name == ("values" if m.loss == "mse" else "probabilities")
    assert out.type.tensor_type.shape.dim[0].dim_param == "N"


def test_the_batch_norm_fold_is_not_trivial():
    # a fold that ignored the statistics would still pass if they were 0 and 1: they are not
    m, _ = trained("bn-folded-softmax", "float64")
    bn = m.layers[1]
    assert np.abs(bn.running_mean).max() > 0.1 and np.abs(bn.running_var - 1).max() > 0.1
    assert np.abs(bn.gamma - 1).max() > 1e-3


def test_an_unbuilt_model_or_another_object_is_refused():
    with pytest.raises(RuntimeError, match="not built"):
        fastnn.to_onnx(fastnn.Sequential([fastnn.Dense(2)]))
    with pytest.raises(TypeError, match="exports a built Sequential or a fitted fastnn MLPClassifier"):
        fastnn.to_onnx(object())

    class Pipelineish:  # what a scikit-learn Pipeline looks like to to_onnx
        steps = []

    with pytest.raises(TypeError, match=r"not a Pipelineish: convert a Pipeline with skl2onnx.convert_sklearn "
                                        r"after fastnn.register_skl2onnx\(\)"):
        fastnn.to_onnx(Pipelineish())


def test_without_onnx_the_error_is_one_line_that_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    m = fastnn.Sequential([fastnn.Dense(2)]).compile("sgd", "cross_entropy").build(3)
    with pytest.raises(ImportError) as info:
        fastnn.to_onnx(m)
    assert str(info.value) == "fastnn.to_onnx needs the onnx package: pip install fastnn[onnx]"
    assert info.value.__cause__ is None and info.value.__suppress_context__
