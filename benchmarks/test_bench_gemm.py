"""Single-precision GEMM at the shapes a 784-256-128-10 MLP trains with (batch 128), plus a large
square one: fastnn.ops.gemm against NumPy's `@` (its BLAS) and torch.matmul. One group per shape,
named gemm-MxKxN (C is M x N, the inner dimension K); -tA / -tB mark a transposed operand, passed
as a flag (fastnn), a transposed view (NumPy, torch): no copy anywhere. Every call allocates C."""
import numpy as np
import pytest

import fastnn

# (M, K, N, transposed operand)
SHAPES = [
    (128, 784, 256, None),   # first layer forward: X @ W1
    (784, 128, 256, "A"),    # first layer weight gradient: X^T @ dZ1
    (128, 256, 784, "B"),    # gradient wrt the input of the first layer: dZ1 @ W1^T
    (128, 256, 128, None),   # second layer forward
    (256, 128, 128, "A"),    # second layer weight gradient: H1^T @ dZ2
    (128, 128, 256, "B"),    # gradient wrt the second layer's input: dZ2 @ W2^T
    (1024, 1024, 1024, None),
]
IDS = [f"{m}x{k}x{n}" + (f"-t{t}" if t else "") for m, k, n, t in SHAPES]
BY_SHAPE = pytest.mark.parametrize("shape", SHAPES, ids=IDS)
# rounds of at least 5 ms (several calls each for the small shapes), about 0.5 s per benchmark
TIMING = pytest.mark.benchmark(min_time=0.005, max_time=0.5, min_rounds=5, warmup=True, warmup_iterations=5)


def operands(shape):
    """(A as stored, B as stored, op(A) @ op(B) in float64)."""
    m, k, n, t = shape
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, m) if t == "A" else (m, k)).astype(np.float32)
    B = rng.standard_normal((n, k) if t == "B" else (k, n)).astype(np.float32)
    opA = A.T if t == "A" else A
    opB = B.T if t == "B" else B
    return A, B, opA.astype(np.float64) @ opB.astype(np.float64)


def setup(benchmark, shape, impl):
    m, k, n, t = shape
    benchmark.group = "gemm-" + IDS[SHAPES.index(shape)]
    benchmark.extra_info.update(impl=impl, flops=2 * m * k * n)


def check(C, ref):
    np.testing.assert_allclose(np.asarray(C, np.float64), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@TIMING
@BY_SHAPE
def test_gemm_fastnn(benchmark, shape):
    setup(benchmark, shape, "fastnn")
    A, B, ref = operands(shape)
    t = shape[3]
    C = benchmark(fastnn.ops.gemm, A, B, trans_a=t == "A", trans_b=t == "B")
    check(C, ref)


@TIMING
@BY_SHAPE
def test_gemm_numpy(benchmark, shape):
    setup(benchmark, shape, "numpy")
    A, B, ref = operands(shape)
    opA, opB = (A.T if shape[3] == "A" else A), (B.T if shape[3] == "B" else B)
    C = benchmark(np.matmul, opA, opB)
    check(C, ref)


@TIMING
@BY_SHAPE
def test_gemm_torch(benchmark, shape, torch):
    setup(benchmark, shape, "torch")
    A, B, ref = operands(shape)
    tA, tB = torch.from_numpy(A), torch.from_numpy(B)
    opA, opB = (tA.T if shape[3] == "A" else tA), (tB.T if shape[3] == "B" else tB)
    C = benchmark(torch.matmul, opA, opB)
    check(C.numpy(), ref)
