"""Inference of a 784-256-128-10 ReLU MLP (float32, He-normal weights) through fastnn's public
predict_proba, argument checks included, as a user calls it: class probabilities of one row and
of 10,000 rows, against the same weights in plain NumPy, onnxruntime (a graph built with
onnx.helper: Gemm, Relu, Softmax) and PyTorch under no_grad (softmax of the logits). Every
implementation's probabilities are checked against NumPy's in float64.

Groups:
  inference-1-row        one MNIST test row (about 80% zeros, as a served digit is)
  inference-1-row-dense  one uniform random row (no zeros: every weight is read)
  inference-10k-rows     the first 10,000 MNIST test rows

Order: in every group fastnn runs first and the peers follow (NumPy last), and fastnn waits a
quarter of a second before its warm-up, so that it is never timed right after a library whose
threads keep spinning once their own work is done (OpenMP runtimes, onnxruntime's pool).
onnxruntime and PyTorch use their default thread counts; each skips when it is not installed."""
import time

import numpy as np
import pytest

import fastnn
from _baselines import he_normal, numpy_proba, onnx_mlp, torch_mlp

CASES = ("1-row", "1-row-dense", "10k-rows")
IMPLS = ("fastnn", "torch", "onnxruntime", "numpy")
FLOPS_PER_ROW = 2 * (784 * 256 + 256 * 128 + 128 * 10)
# rounds of at least 5 ms (hundreds of calls each for one row), about 0.5 s per benchmark
TIMING = pytest.mark.benchmark(min_time=0.005, max_time=0.5, min_rounds=5, warmup=True, warmup_iterations=20)


@pytest.fixture(scope="module")
def weights():
    return he_normal(seed=0)


@pytest.fixture(scope="module")
def inputs(mnist):
    return {"1-row": np.ascontiguousarray(mnist.Xt[:1]),
            "1-row-dense": np.random.default_rng(1).random((1, 784), dtype=np.float32),
            "10k-rows": np.ascontiguousarray(mnist.Xt[:10_000])}


def fastnn_model(weights):
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(), loss="cross_entropy")
    model.build(784)
    model.set_weights([a for pair in zip(*weights) for a in pair])
    return model


def predictor(request, impl, weights):
    """A function X -> probabilities (a NumPy array, or something np.asarray takes) for `impl`."""
    if impl == "fastnn":
        time.sleep(0.25)  # let threads a peer left spinning go to sleep before the warm-up
        return fastnn_model(weights).predict_proba
    if impl == "numpy":
        return lambda X: numpy_proba(*weights, X)
    if impl == "torch":
        torch = request.getfixturevalue("torch")
        model = torch_mlp(torch, weights=weights).eval()

        def predict(X):
            with torch.no_grad():
                return model(torch.from_numpy(X)).softmax(1)
        return predict
    if impl == "onnxruntime":
        onnx = pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(onnx_mlp(onnx, weights), providers=["CPUExecutionProvider"])
        return lambda X: session.run(None, {"x": X})[0]
    raise AssertionError(impl)


@TIMING
@pytest.mark.parametrize("case, impl", [(c, i) for c in CASES for i in IMPLS],
                         ids=[f"{c}-{i}" for c in CASES for i in IMPLS])
def test_inference(benchmark, request, weights, inputs, case, impl):
    X = inputs[case]
    benchmark.group = "inference-" + case
    benchmark.extra_info.update(impl=impl, rows=X.shape[0], flops=FLOPS_PER_ROW * X.shape[0])
    predict = predictor(request, impl, weights)
    out = benchmark(predict, X)
    want = numpy_proba(*weights, X.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=1e-4, atol=1e-5)
