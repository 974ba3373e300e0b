"""Inference latency of a 784-256-128-10 ReLU MLP (float32, logits out): one sample, and a batch
of 10,000. fastnn's model.forward (argument checks included, as a user calls it) against the
same weights in plain NumPy and in PyTorch under no_grad. The three outputs are checked equal."""
import numpy as np
import pytest

import fastnn
from _baselines import he_normal, numpy_forward, torch_mlp

CASES = pytest.mark.parametrize("rows", [1, 10_000], ids=["1-sample", "10k-batch"])
# rounds of at least 5 ms (hundreds of calls each for one sample), about 0.5 s per benchmark
TIMING = pytest.mark.benchmark(min_time=0.005, max_time=0.5, min_rounds=5, warmup=True, warmup_iterations=20)


@pytest.fixture(scope="module")
def weights():
    return he_normal(seed=0)


def inputs(rows):
    return np.random.default_rng(1).random((rows, 784), dtype=np.float32)


def setup(benchmark, rows, impl):
    benchmark.group = "inference-" + ("1-sample" if rows == 1 else f"{rows // 1000}k-batch")
    benchmark.extra_info.update(impl=impl, rows=rows)


def check(out, weights, X):
    ref = numpy_forward(*weights, X.astype(np.float64))
    np.testing.assert_allclose(np.asarray(out, np.float64), ref, rtol=1e-4, atol=1e-4)


@TIMING
@CASES
def test_inference_fastnn(benchmark, weights, rows):
    setup(benchmark, rows, "fastnn")
    model = fastnn.Sequential([fastnn.Dense(256, activation="relu"), fastnn.Dense(128, activation="relu"),
                               fastnn.Dense(10)], seed=0)
    model.compile(fastnn.Adam(), loss="cross_entropy")
    model.build(784)
    model.set_weights([a for pair in zip(*weights) for a in pair])
    X = inputs(rows)
    check(benchmark(model.forward, X), weights, X)


@TIMING
@CASES
def test_inference_numpy(benchmark, weights, rows):
    setup(benchmark, rows, "numpy")
    X = inputs(rows)
    check(benchmark(numpy_forward, *weights, X), weights, X)


@TIMING
@CASES
def test_inference_torch(benchmark, weights, rows, torch):
    setup(benchmark, rows, "torch")
    model = torch_mlp(torch, weights=weights).eval()
    X = inputs(rows)
    with torch.no_grad():
        out = benchmark(model, torch.from_numpy(X))
    check(out.numpy(), weights, X)
