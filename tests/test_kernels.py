"""The kernels, as a specification: the compiled backend (fastnn._engine._ext) against the NumPy oracle
(fastnn._engine.reference), both in float32 and float64, plus the public wrappers of fastnn.ops.
The ops tests run on both backends, so their expectations are written here (a float64 product,
the activations' and losses' definitions), never taken from the oracle: on the python backend that
would compare the oracle with itself.

Read a test id as a sentence: `test_gemm_matches_oracle[avx2-float32-transA-odd]` says that the
AVX2 GEMM, in float32, with op(A) = A.T, on an odd shape, gives the oracle's result.

Tolerances are stated once, here, and every comparison uses one of them:

* GEMM. Both backends are compared with a float64 product of the same (rounded) inputs, element
  by element. A dot product of length k accumulated in precision eps has error at most
  ~ k eps |A||B| in the worst case and ~ sqrt(k) eps |A||B| for data of random sign (rounding
  errors add like a random walk; blocking and FMA only make it smaller). We allow
      |C - C_exact| <= 4 (sqrt(k) + 1) eps (|alpha| |op(A)| |op(B)| + |beta| |C0|)
  where |.| is the element-wise absolute value and the products are matrix products: the `+ 1`
  covers rounding alpha, beta and the final scaling to `real`; the factor 4 covers the float64
  reference's own error when the inputs are float64 (same order, eps64). Measured worst ratio on
  this data is below 0.3 of the bound, so a failure means a wrong element, not noise.
* Element-wise kernels and row reductions (activations, bias, losses, optimizers, batch norm):
  the two backends evaluate the same formula in the same precision; they differ by libm ulps
  (expf/tanhf against NumPy's SIMD versions) and by the order of a sum over at most a few hundred
  terms. ELEMENTWISE allows a few ulps of float32 (rtol 2e-6) and 1e-12 in float64.
* Finite differences: float64, central differences with h = 1e-6: truncation error h^2 |f'''|
  ~ 1e-12 and cancellation eps |f| / h ~ 1e-10, so 1e-6 relative is ample.
"""
import math
import os
import re
import subprocess
import tempfile
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn._engine import reference as oracle
from fastnn import ops
from fastnn._engine.codes import ACTIVATIONS, LOSSES, RNG_DROPOUT, SK_LOSSES

try:
    from fastnn._engine import _ext
except ImportError:
    _ext = None

_AT_IMPORT = (fastnn.get_backend(), _ext and _ext.arch_name(), fastnn.get_num_threads())
needs_ext = pytest.mark.skipif(_ext is None, reason="the compiled backend is not built")

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
IMPLS = [pytest.param("oracle", id="oracle"), pytest.param("compiled", id="compiled", marks=needs_ext)]
TRANS = [pytest.param((False, False), id="NN"), pytest.param((True, False), id="transA"),
         pytest.param((False, True), id="transB"), pytest.param((True, True), id="transAB")]
ACT_NAMES = list(ACTIVATIONS)  # identity relu leaky_relu sigmoid tanh softmax
LOSS_NAMES = list(LOSSES)      # softmax_xent sigmoid_bce mse
ELEMENTWISE = {np.float32: dict(rtol=2e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
LEAKY_ALPHA = 0.07
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def impl(name):
    return oracle if name == "oracle" else _ext


def close(got, want, dtype, **kw):
    np.testing.assert_allclose(got, want, **{**ELEMENTWISE[dtype], **kw})


# =================================================================================================
# 1. GEMM
# =================================================================================================
# Microkernel tiles (MR x NR) of every compiled ISA: ref 4x8 (gemm.c), avx2 6x16 float / 6x8
# double (gemm_avx2.c), avx512 8x32 float / 8x16 double (gemm_avx512.c; 14x32 / 14x16 in the
# previous tuning, kept so either build is covered). Cache blocks: KC <= 800, MC <= 512,
# NC <= 4096, so k = 801, m = 513 and n = 4097 cross a block boundary on every ISA. A standalone
# product of at least 2^21 m*n*k runs on the team (fnn_gemm), each thread on slabs of C's columns
# (rows when C is narrow); inside the engine's team, from 32^3.
TILES = [(4, 8), (6, 16), (6, 8), (8, 32), (8, 16), (14, 32), (14, 16)]
SIZES = (1, 3, 7, 33, 129, 257)
_shape_rng = np.random.default_rng(7)
SHAPES = {  # name: (m, n, k)
    "one": (1, 1, 1),
    "small": (3, 7, 33),
    "odd": (7, 33, 129),
    "tall": (257, 7, 3),
    "wide": (3, 257, 7),
    "row": (1, 129, 33),
    "col": (129, 1, 33),
    "dot": (1, 1, 257),
    "outer": (33, 129, 1),
    "cube257": (257, 257, 257),
    "kc+1": (9, 17, 801),
    "mc+1": (513, 9, 17),
    "nc+1": (5, 4097, 9),
    "threads-by-rows": (1001, 19, 111),  # >= 2^21 m*n*k, narrow C: threads split the rows
    "threads-by-cols": (23, 1001, 93),   # threads split the columns
    # packing fills its buffer to the last element: a block of A exactly MC x KC (AVX2 float:
    # 144 x 256), whole 6-row panels at depths that are multiples of 8, and the per-thread copy of
    # a shared A (m <= MC, k <= KC): a store past a panel's end would reach packed B
    "a-block-full": (144, 40, 256),
    "a-panels-k8": (12, 16, 8),
    "a-shared-k64": (12, 1001, 64),
    "a-two-blocks": (288, 17, 512),
    # up to 4 rows of C go through the row kernels, SKINNY_SEG = 1024 rows of B listed at a time:
    # k crossing two segment edges, n crossing the 8- and 4-vector blocks and a masked tail
    "rows-two-segments": (3, 203, 2100),
    **{"rand%d" % i: tuple(int(s) for s in _shape_rng.integers(1, 300, 3)) for i in range(3)},
}


def _operands(rng, dtype, m, n, k, trans_a, trans_b):
    A = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    C0 = rng.standard_normal((m, n)).astype(dtype)
    return A, B, C0


def gemm_expected(A, B, C0, trans_a, trans_b, alpha, beta):
    """(exact result, error bound) of C = alpha op(A) op(B) + beta C0; see the module docstring."""
    a = (A.T if trans_a else A).astype(np.float64)
    b = (B.T if trans_b else B).astype(np.float64)
    k = a.shape[1]
    exact = alpha * (a @ b)
    scale = abs(alpha) * (np.abs(a) @ np.abs(b))
    if beta != 0:
        exact = exact + beta * C0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(C0.astype(np.float64))
    return exact, 4 * (math.sqrt(k) + 1) * np.finfo(A.dtype).eps * scale


def assert_gemm_close(got, exact, bound, what=""):
    err = np.abs(got.astype(np.float64) - exact)
    bad = ~(err <= bound)  # NaN counts as bad
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} elements off, first at ({i}, {j}): "
                             f"got {got[i, j]!r}, want {exact[i, j]!r} +- {bound[i, j]:.3g}")


def run_gemm(fn, C0, A, B, trans_a, trans_b, alpha, beta):
    C = C0.copy()
    fn(C, A, B, trans_a, trans_b, alpha, beta)
    return C


def check_gemm_against_oracle(rng, dtype, m, n, k, trans_a, trans_b, alpha, beta, naive=True):
    A, B, C0 = _operands(rng, dtype, m, n, k, trans_a, trans_b)
    exact, bound = gemm_expected(A, B, C0, trans_a, trans_b, alpha, beta)
    what = f"{m}x{n}x{k} trans_a={trans_a} trans_b={trans_b}"
    got = run_gemm(_ext.gemm, C0, A, B, trans_a, trans_b, alpha, beta)
    want = run_gemm(oracle.gemm, C0, A, B, trans_a, trans_b, alpha, beta)
    assert got.dtype == dtype
    assert_gemm_close(got, exact, bound, "compiled " + what)
    assert_gemm_close(want, exact, bound, "oracle " + what)
    assert_gemm_close(got, want.astype(np.float64), 2 * bound, "compiled vs oracle " + what)
    if naive:
        assert_gemm_close(run_gemm(_ext.gemm_naive, C0, A, B, trans_a, trans_b, alpha, beta),
                          exact, bound, "gemm_naive " + what)


@needs_ext
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_matches_oracle(kernel_arch, dtype, trans, shape, kernel_rng):
    m, n, k = shape
    check_gemm_against_oracle(kernel_rng, dtype, m, n, k, *trans, alpha=0.7, beta=-1.3,
                              naive=m * n * k < 3e6)


@pytest.fixture
def kernel_arch_restored():
    """The compiled GEMM kernel in use before the test, put back afterwards."""
    before = _ext.arch_name()
    yield [a for a in _ext.arch_list() if _ext.arch_available(a)]
    _ext.set_arch(before)


@needs_ext
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_every_runnable_kernel_on_every_listed_size(kernel_arch_restored, dtype, trans,
                                                        kernel_rng):
    """m, n, k each over {1, 3, 7, 33, 129, 257}: 216 products, plain (alpha 1, beta 0), each
    kernel the CPU can run in turn on the same operands (the oracle is covered above)."""
    for m in SIZES:
        for n in SIZES:
            for k in SIZES:
                A, B, C0 = _operands(kernel_rng, dtype, m, n, k, *trans)
                exact, bound = gemm_expected(A, B, C0, *trans, 1.0, 0.0)
                for arch in kernel_arch_restored:
                    _ext.set_arch(arch)
                    got = run_gemm(_ext.gemm, C0, A, B, *trans, 1.0, 0.0)
                    assert_gemm_close(got, exact, bound, f"{arch} {m}x{n}x{k} trans={trans}")


@needs_ext
@pytest.mark.parametrize("tile", TILES, ids=[f"tile{mr}x{nr}" for mr, nr in TILES])
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_matches_oracle_around_tile_edges(kernel_arch, dtype, trans, tile, kernel_rng):
    """m in MR-1, MR, MR+1, 2MR+1; n in NR-1, NR, NR+1, 2NR+1; k not divisible by the unroll."""
    mr, nr = tile
    for m in (mr - 1, mr, mr + 1, 2 * mr + 1):
        for n in (nr - 1, nr, nr + 1, 2 * nr + 1):
            for k in (1, 3, 17):
                check_gemm_against_oracle(kernel_rng, dtype, m, n, k, *trans, alpha=0.7,
                                          beta=-1.3)


# The column panel of NR (tile above) that a product's last columns leave part full: on AVX-512,
# at most NR / 4 columns (float 1-8 of 32, double 1-4 of 16) go to the edge kernel
# (gemm_kernels.h), which takes up to 8 row panels at once in groups of 16, 32 or 64 rows. These
# m land on each side of those groups and of a cache block of rows (MC = 256); k = 401 crosses a
# k block on every kernel (beta applied with the first block's sums, then 1).
EDGE_M = (1, 5, 8, 9, 16, 17, 31, 32, 33, 48, 49, 63, 64, 65, 97, 200, 259)
PANEL_NR = {"ref": {np.float32: 8, np.float64: 8}, "avx2": {np.float32: 16, np.float64: 8},
            "avx512": {np.float32: 32, np.float64: 16}}


@needs_ext
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_part_full_last_panel_gives_the_bits_of_a_full_one(kernel_arch, dtype, trans,
                                                               kernel_rng):
    """Each column of C in a last panel only part full (100 = 3 x 32 + 4) is summed, term after
    term, as in a full panel: the same bits as that column of the product with B widened by zero
    columns to whole panels, and within the float64 bound."""
    trans_a, trans_b = trans
    nr = PANEL_NR[kernel_arch][dtype]
    for e in sorted({1, 2, max(1, nr // 8), nr // 8 + 1, nr // 4 - 1, nr // 4, nr // 4 + 1} - {0}):
        n = 2 * nr + e
        for k in (1, 401):
            for m in EDGE_M:
                A, B, C0 = _operands(kernel_rng, dtype, m, n, k, trans_a, trans_b)
                wide = 3 * nr
                Bw = np.zeros((wide, k) if trans_b else (k, wide), dtype)
                Bw[(slice(0, n), slice(None)) if trans_b else (slice(None), slice(0, n))] = B
                Cw = np.zeros((m, wide), dtype)
                Cw[:, :n] = C0
                got = run_gemm(_ext.gemm, C0, A, B, trans_a, trans_b, 0.7, -1.3)
                full = run_gemm(_ext.gemm, Cw, A, Bw, trans_a, trans_b, 0.7, -1.3)
                what = f"{kernel_arch} {m}x{n}x{k} trans={trans}"
                np.testing.assert_array_equal(got, full[:, :n], err_msg=what)
                exact, bound = gemm_expected(A, B, C0, trans_a, trans_b, 0.7, -1.3)
                assert_gemm_close(got, exact, bound, what)


# Up to 4 rows of C go through the row kernels (gemm_kernels.h): blocks of 8, then 4 vectors of W
# lanes (W = 4, 8, 16: double AVX2, float AVX2 / double AVX-512, float AVX-512), then single
# vectors, the last masked. These n land on each side of every such edge.
ROW_KERNEL_N = sorted({n for w in (4, 8, 16) for n in (w - 1, 4 * w - 1, 4 * w, 4 * w + 1, 8 * w - 1, 8 * w,
                                                        8 * w + 1, 8 * w + 4 * w + w + 3)})


@needs_ext
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_few_rows_on_every_block_edge(kernel_arch, dtype, trans, kernel_rng):
    for m in (1, 4):
        for n in ROW_KERNEL_N:
            check_gemm_against_oracle(kernel_rng, dtype, m, n, 9, *trans, alpha=0.7, beta=-1.3)
            check_gemm_against_oracle(kernel_rng, dtype, m, n, 33, *trans, alpha=1.0, beta=0.0)


@needs_ext
@pytest.mark.parametrize("m", [1, 3, 40])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_zero_times_inf_is_nan(kernel_arch, dtype, m):
    """ops.gemm reads every row of B, as NumPy does: a zero in A meeting an infinity in B gives NaN
    (only inference, on its own inputs, leaves out the rows that meet zeros: test_inference.py)."""
    rng = np.random.default_rng(m)
    A = rng.standard_normal((m, 37)).astype(dtype)
    B = rng.standard_normal((37, 21)).astype(dtype)
    A[:, 5] = 0
    B[5, 3] = np.inf
    got = ops.gemm(A, B)
    with np.errstate(invalid="ignore"):
        want = A.astype(np.float64) @ B.astype(np.float64)
    assert np.isnan(got[:, 3]).all() and np.isnan(want[:, 3]).all()
    rest = np.delete(want, 3, axis=1)
    np.testing.assert_allclose(np.delete(got, 3, axis=1), rest, rtol=1e-4, atol=1e-5 * np.abs(rest).max())


@needs_ext
@pytest.mark.parametrize("shape", [(9, 17, 13), (15, 33, 801), (1, 5, 3)], ids=["edge", "kc+1", "row"])
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta0_ignores_nan_filled_c(kernel_arch, dtype, trans, shape, kernel_rng):
    m, n, k = shape
    A, B, _ = _operands(kernel_rng, dtype, m, n, k, *trans)
    nan_c = np.full((m, n), np.nan, dtype)
    exact, bound = gemm_expected(A, B, nan_c, *trans, 0.7, 0.0)
    for fn in (_ext.gemm, _ext.gemm_naive, oracle.gemm):
        got = run_gemm(fn, nan_c, A, B, *trans, 0.7, 0.0)
        assert np.isfinite(got).all(), fn.__name__
        assert_gemm_close(got, exact, bound, fn.__name__)


@needs_ext
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_strided_rows_match_oracle_and_leave_the_rest_alone(kernel_arch, dtype, trans,
                                                                 kernel_rng):
    """Operands and C are row-slices of wider arrays (big[:, 3:3+cols], big[::2, ...]): the
    compiled gemm takes the row stride as the leading dimension and writes only inside C."""
    trans_a, trans_b = trans
    for m, n, k in [(13, 17, 9), (33, 40, 70), (1, 9, 5), (7, 1, 3)]:
        ar, ac = (k, m) if trans_a else (m, k)
        br, bc = (n, k) if trans_b else (k, n)
        bigA = kernel_rng.standard_normal((2 * ar, ac + 7)).astype(dtype)
        bigB = kernel_rng.standard_normal((br, bc + 5)).astype(dtype)
        A = bigA[::2, 3:3 + ac]  # row stride 2 (ac + 7)
        B = bigB[:, 3:3 + bc]    # row stride bc + 5
        C0 = kernel_rng.standard_normal((m, n)).astype(dtype)
        exact, bound = gemm_expected(A, B, C0, trans_a, trans_b, 0.7, -1.3)
        for fn in (_ext.gemm, _ext.gemm_naive, oracle.gemm):
            bigC = np.full((m + 2, n + 6), 12345.0, dtype)
            C = bigC[1:1 + m, 3:3 + n]
            C[...] = C0
            fn(C, A, B, trans_a, trans_b, 0.7, -1.3)
            assert_gemm_close(C, exact, bound, f"{fn.__name__} {m}x{n}x{k}")
            outside = np.ones(bigC.shape, bool)
            outside[1:1 + m, 3:3 + n] = False
            assert (bigC[outside] == 12345.0).all(), f"{fn.__name__} wrote outside C"


def _rows_apart(a, lda):
    """a (2-D) as the first columns of an array whose rows are lda elements long."""
    big = np.zeros((a.shape[0], lda), a.dtype)
    big[:, :a.shape[1]] = a
    return big[:, :a.shape[1]]


@needs_ext
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_reads_op_a_where_it_lies_with_the_bits_of_packing_it(kernel_arch, dtype, trans_b,
                                                                    kernel_rng):
    """The kernels read op(A)'s whole row panels where A lies (csrc/gemm.c, a_direct), and pack
    the rest: a last panel of fewer rows, every panel of a block whose last column panel goes to
    the edge kernel, and A^T whose rows are a multiple of 4 KB long. The same op(A) stored four
    ways (rows of A, rows of A with a stride, A^T with rows of 4 KB, A^T with rows of another
    length) gives the same bits, within the float64 bound: m on each side of a row panel and of
    a cache block of rows (MC = 256), n with a part-full, a narrow (edge) and a full last panel,
    op(B) read unpacked (32 rows or fewer, no trans_b), k across a k block (401)."""
    page = 4096 // np.dtype(dtype).itemsize
    for m in (5, 8, 9, 17, 31, 33, 263):
        for n in (10, 36, 64, 100):
            for k in (5, 401):
                opA = kernel_rng.standard_normal((m, k)).astype(dtype)
                B = kernel_rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
                C0 = kernel_rng.standard_normal((m, n)).astype(dtype)
                stored = {"rows": (opA, False), "rows, strided": (_rows_apart(opA, k + 13), False),
                          "A^T, 4 KB rows": (_rows_apart(np.ascontiguousarray(opA.T), page), True),
                          "A^T": (_rows_apart(np.ascontiguousarray(opA.T), m + 3), True)}
                exact, bound = gemm_expected(opA, B, C0, False, trans_b, 0.7, -1.3)
                want = None
                for name, (A, trans_a) in stored.items():
                    got = run_gemm(_ext.gemm, C0, A, B, trans_a, trans_b, 0.7, -1.3)
                    what = f"{kernel_arch} {m}x{n}x{k} {name} trans_b={trans_b}"
                    assert_gemm_close(got, exact, bound, what)
                    if want is None:
                        want = got
                    np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture
def kernel_threads_restored():
    before = fastnn.get_num_threads()
    yield
    fastnn.set_num_threads(before)


def _strided(a, stride0):
    """An array of a's shape and dtype (zeros) whose rows are `stride0` bytes apart, in a byte
    buffer of its own that holds every row."""
    buf = np.zeros(stride0 * a.shape[0] + a.itemsize * a.shape[1], np.uint8)
    return np.lib.stride_tricks.as_strided(np.frombuffer(buf.data, a.dtype, a.shape[1]), a.shape,
                                           (stride0, a.itemsize))


@needs_ext
@pytest.mark.parametrize("fn", ["gemm", "gemm_naive"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_refuses_operands_whose_elements_the_kernels_cannot_read_in_a_row(fn, dtype):
    """The kernels read a row's elements one after the other from row i * ld: an operand with
    another element stride (a reversed or every-other-column view), rows in reverse or rows not a
    whole number of elements apart gets a ValueError naming it. Before, such views were read as
    if contiguous: wrong sums, and a reversed view read past its buffer."""
    call = getattr(_ext, fn)
    A = np.arange(12, dtype=dtype).reshape(3, 4)
    B, C = np.eye(4, dtype=dtype), np.zeros((3, 4), dtype)
    wide = np.zeros((3, 8), dtype)
    cases = [("A", (C, A[:, ::-1], B)), ("B", (np.zeros((3, 2), dtype), A, B[:, ::2])),
             ("C", (wide[:, ::2], A, B)), ("A", (C, A[::-1], B)), ("B", (C, A, B[::-1])),
             ("A", (C, _strided(A, 4 * A.itemsize + 2), B))]
    for name, (c, a, b) in cases:
        before = c.copy()
        with pytest.raises(ValueError, match=f"gemm: {name} must have contiguous rows"):
            call(c, a, b, False, False, 1.0, 0.0)
        np.testing.assert_array_equal(c, before)


@needs_ext
@pytest.mark.parametrize("fn", ["gemm", "gemm_naive"])
@pytest.mark.parametrize("trans", TRANS)
def test_gemm_refuses_operands_whose_sizes_disagree(fn, trans):
    """op(A) must be m x k and op(B) k x n for C's m x n: a shorter or longer operand in any of
    the three sizes raises ValueError naming it, before a pointer reaches C (which would read
    past the smaller array). C is left as it was."""
    call = getattr(_ext, fn)
    trans_a, trans_b = trans
    m, n, k = 5, 6, 7

    def op(rows, cols, t):
        return np.ones((cols, rows) if t else (rows, cols), np.float32)

    for what, a, b in [("op(B)", op(m, k + 1, trans_a), op(k, n, trans_b)),  # k is op(A)'s
                       ("op(B)", op(m, k, trans_a), op(k + 1, n, trans_b)),
                       ("op(B)", op(m, k, trans_a), op(k - 1, n, trans_b)),
                       ("op(A)", op(m + 1, k, trans_a), op(k, n, trans_b)),
                       ("op(B)", op(m, k, trans_a), op(k, n + 1, trans_b))]:
        C = np.full((m, n), 3.0, np.float32)
        with pytest.raises(ValueError, match=re.escape(f"gemm: {what} has shape")):
            call(C, a, b, trans_a, trans_b, 1.0, 0.0)
        assert (C == 3.0).all()


@needs_ext
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_gives_the_same_bits_for_every_kind_of_array(kernel_arch, dtype, trans, kernel_rng):
    """Plain aligned ndarrays go to C through NumPy's C API; others (unaligned, a subclass, read
    only) through typed memoryviews. Both give the product within the float64 bound and the same
    bits; what neither can take (a read-only C, byte-swapped or mixed dtypes) raises, C untouched."""
    trans_a, trans_b = trans
    m, n, k = 37, 29, 300
    A, B, C0 = _operands(kernel_rng, dtype, m, n, k, trans_a, trans_b)
    exact, bound = gemm_expected(A, B, C0, trans_a, trans_b, 0.7, -1.3)
    plain = run_gemm(_ext.gemm, C0, A, B, trans_a, trans_b, 0.7, -1.3)
    assert_gemm_close(plain, exact, bound, "plain arrays")

    def unaligned(a):
        buf = np.empty(a.nbytes + 1, np.uint8)
        out = np.frombuffer(buf.data, a.dtype, a.size, offset=1).reshape(a.shape)
        out[...] = a
        assert not out.flags.aligned
        return out

    ro_A, ro_B = A.copy(), B.copy()
    ro_A.flags.writeable = ro_B.flags.writeable = False
    for what, a, b, c in [("unaligned", unaligned(A), unaligned(B), unaligned(C0)),
                          ("subclass", A.view(np.matrix), B.view(np.matrix), C0.copy().view(np.matrix)),
                          ("read-only A and B", ro_A, ro_B, C0.copy())]:
        _ext.gemm(c, a, b, trans_a, trans_b, 0.7, -1.3)
        np.testing.assert_array_equal(np.asarray(c), plain, err_msg=what)
    ro_C = C0.copy()
    ro_C.flags.writeable = False
    swapped = A.astype(A.dtype.newbyteorder())
    other = B.astype(np.float64 if dtype == np.float32 else np.float32)
    for what, c, a, b in [("read-only C", ro_C, A, B), ("byte-swapped A", C0.copy(), swapped, B),
                          ("mixed dtypes", C0.copy(), A, other)]:
        with pytest.raises((ValueError, TypeError)):
            _ext.gemm(c, a, b, trans_a, trans_b, 0.7, -1.3)
        np.testing.assert_array_equal(c, C0, err_msg=what)


@pytest.mark.parametrize("beta", [0.0, -1.5])
def test_gemm_alpha0_reads_neither_a_nor_b_in_either_backend(backend, beta):
    """BLAS's convention, in both backends: with alpha == 0, C = beta * C (zeros for beta == 0),
    whatever A and B hold (infinities and NaN included), for every path of the compiled GEMM (a
    few rows of C, the blocked product, the team's split)."""
    rng = np.random.default_rng(5)
    for m, n, k in [(1, 9, 7), (3, 40, 300), (130, 131, 129)]:
        A, B = rng.standard_normal((m, k)), rng.standard_normal((k, n))
        A[0, 0], B[-1, -1], A[-1, 1 % k] = np.inf, np.nan, -np.inf
        C0 = rng.standard_normal((m, n))
        C = ops.gemm(A, B, C0.copy(), alpha=0.0, beta=beta)
        np.testing.assert_array_equal(C, np.zeros((m, n)) if beta == 0 else beta * C0)


@needs_ext
# m*n*k above 2^21: standalone products smaller than that run on one thread by design
@pytest.mark.parametrize("shape", [(1001, 19, 131), (23, 1001, 131), (130, 131, 129)],
                         ids=["by-rows", "by-cols", "square"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_result_does_not_depend_on_the_thread_count(kernel_arch, kernel_threads_restored,
                                                         dtype, shape, kernel_rng):
    """Every element of C is computed by one thread with the same k-blocking: bit-identical."""
    m, n, k = shape
    A, B, C0 = _operands(kernel_rng, dtype, m, n, k, False, True)
    results = []
    for threads in (1, 2, 3):
        fastnn.set_num_threads(threads)
        results.append(run_gemm(_ext.gemm, C0, A, B, False, True, 0.7, -1.3))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


SHARED_B_CHILD = """
import json, numpy as np, fastnn
from fastnn._engine import _ext
rng = np.random.default_rng(0)
checked = 0
# k > KC on every kernel and n <= NC: on 3 threads the team packs op(B) once and slabs of rows
# share it (gemm.c, gemm_team); m = 1000 on 3 threads gives slabs taller than MC. From 4 threads
# most of these split into a grid of blocks (grid_shape), with block edges inside k blocks and
# panels, a last block narrower than the others, and (m <= 32) op(B) read unpacked.
for arch in [a for a in _ext.arch_list() if _ext.arch_available(a)]:
    _ext.set_arch(arch)
    for dtype in (np.float32, np.float64):
        for m, n, k in ((128, 256, 784), (37, 100, 801), (1000, 40, 300), (200, 1000, 513),
                        (128, 128, 256), (30, 200, 100), (71, 333, 65)):
            for ta in (False, True):
                for tb in (False, True):
                    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                    C0 = rng.standard_normal((m, n)).astype(dtype)
                    a, b = (A.T if ta else A).astype(np.float64), (B.T if tb else B).astype(np.float64)
                    exact = 0.7 * (a @ b) - 1.3 * C0
                    bound = 4 * (np.sqrt(k) + 1) * np.finfo(dtype).eps * (0.7 * (abs(a) @ abs(b)) + 1.3 * abs(C0))
                    runs = []
                    for threads in (1, 2, 3, 4, 5, 8):
                        fastnn.set_num_threads(threads)
                        assert fastnn.get_num_threads() == threads
                        C = C0.copy()
                        _ext.gemm(C, A, B, ta, tb, 0.7, -1.3)
                        assert (abs(C - exact) <= bound).all(), (arch, dtype, m, n, k, ta, tb, threads)
                        runs.append(C)
                    for C in runs[1:]:
                        assert (C == runs[0]).all(), (arch, dtype, m, n, k, ta, tb, "bits")
                    checked += 1
print(json.dumps(checked))
"""


@needs_ext
def test_gemm_shared_b_on_many_threads():
    """Products on 2, 3, 4, 5 and 8 threads (a child allowed 8 by OMP_NUM_THREADS, whatever the
    CPUs), every kernel, dtype and transposition: one slab per thread on 2 threads, the shared
    op(B) and the grid of blocks, within the error bound of the float64 product and the same bits
    as on 1 thread (every split keeps each element's k blocks)."""
    from test_cpus import _child
    assert _child(SHARED_B_CHILD, env={"OMP_NUM_THREADS": "8"}) >= 56


GUARDED_CHILD = """
import ctypes, json, mmap, numpy as np, fastnn
from fastnn._engine import _ext
libc = ctypes.CDLL(None)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
PAGE, keep = mmap.PAGESIZE, []

def guarded(values, after):
    # a copy of `values` (2-D) in pages of its own, a page that cannot be read right after its
    # last byte (after) or right before its first
    nbytes, pages = values.nbytes, values.nbytes // PAGE + 3
    buf = mmap.mmap(-1, pages * PAGE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    guard = (pages - 1) * PAGE if after else 0
    assert libc.mprotect(base + guard, PAGE, 0) == 0
    start = guard - nbytes if after else PAGE
    out = np.frombuffer(buf, values.dtype, values.size, start).reshape(values.shape)
    out[...] = values
    keep.append(buf)
    return out

rng = np.random.default_rng(0)
checked = 0
for arch in [a for a in _ext.arch_list() if _ext.arch_available(a)]:
    _ext.set_arch(arch)
    for dtype in (np.float32, np.float64):
        for m, n, k in ((5, 4, 7), (9, 36, 3), (17, 100, 401), (63, 4, 33), (65, 100, 5), (263, 36, 9),
                        (33, 40, 1)):
            for ta in (False, True):
                for tb in (False, True):
                    A0 = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
                    B0 = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
                    a, b = (A0.T if ta else A0).astype(np.float64), (B0.T if tb else B0).astype(np.float64)
                    bound = 4 * (np.sqrt(k) + 1) * np.finfo(dtype).eps * (abs(a) @ abs(b))
                    for after in (True, False):
                        A, B = guarded(A0, after), guarded(B0, after)
                        for threads in (1, 2):
                            fastnn.set_num_threads(threads)
                            C = np.zeros((m, n), dtype)
                            _ext.gemm(C, A, B, ta, tb, 1.0, 0.0)
                            assert (abs(C - a @ b) <= bound).all(), (arch, dtype, m, n, k, ta, tb)
                    checked += 1
print(json.dumps(checked))
"""


def test_gemm_reads_nothing_outside_its_operands():
    """Every kernel, dtype and transposition, with op(A)'s whole panels read where A lies (also
    by the AVX-512 edge kernel's masked loads of A^T, csrc/gemm_avx512.c) and partial ones packed:
    A and B each end right before a page that cannot be read, then begin right after one; a read
    past either end would kill the child (run apart from the session), not pass unseen."""
    from test_cpus import _child
    assert _child(GUARDED_CHILD, env={"OMP_NUM_THREADS": "2"}) >= 56


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_k0_scales_c_by_beta_in_the_compiled_backend(dtype):
    """k = 0: op(A) op(B) is an m x n matrix of zeros, so C = beta C (here called directly,
    bypassing ops; numpy gives empty arrays row stride 0)."""
    C0 = np.arange(12, dtype=dtype).reshape(3, 4)
    for A, B, ta, tb in [(np.empty((3, 0), dtype), np.empty((0, 4), dtype), False, False),
                         (np.empty((0, 3), dtype), np.empty((4, 0), dtype), True, True)]:
        for fn in (_ext.gemm, _ext.gemm_naive, oracle.gemm):
            C = C0.copy()
            fn(C, A, B, ta, tb, 0.7, -1.3)
            np.testing.assert_array_equal(C, dtype(-1.3) * C0, err_msg=fn.__name__)


@needs_ext
def test_set_arch_rejects_unknown_kernels():
    before = _ext.arch_name()
    with pytest.raises(ValueError, match="not available"):
        _ext.set_arch("sse1")
    assert _ext.arch_name() == before
    assert before in _ext.arch_list() and _ext.arch_available(before)
    assert "ref" in _ext.arch_list() and _ext.arch_available("ref")


# -- through ops.gemm, on both backends --------------------------------------------------------------
@pytest.mark.parametrize("trans", TRANS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_gemm_matches_float64_product(backend, dtype, trans, kernel_rng):
    A, B, C0 = _operands(kernel_rng, dtype, 19, 23, 37, *trans)
    exact, bound = gemm_expected(A, B, C0, *trans, 0.7, -1.3)
    C = C0.copy()
    out = ops.gemm(A, B, C, trans_a=trans[0], trans_b=trans[1], alpha=0.7, beta=-1.3)
    assert out is C
    assert_gemm_close(C, exact, bound, "ops.gemm")
    exact0, bound0 = gemm_expected(A, B, C0, *trans, 1.0, 0.0)
    assert_gemm_close(ops.gemm(A, B, trans_a=trans[0], trans_b=trans[1]), exact0, bound0, "ops.gemm")
    nan_c = np.full_like(C0, np.nan)  # beta = 0 never reads C
    ops.gemm(A, B, nan_c, trans_a=trans[0], trans_b=trans[1], beta=0.0)
    assert_gemm_close(nan_c, exact0, bound0, "ops.gemm into a NaN-filled C")


@pytest.mark.parametrize("mnk", [(3, 4, 0), (1, 4, 0), (3, 1, 0), (1, 1, 0)],
                         ids=["3x4", "1x4", "3x1", "1x1"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_gemm_k0_gives_beta_c(backend, dtype, mnk):
    m, n, k = mnk
    C0 = np.arange(1, m * n + 1, dtype=dtype).reshape(m, n)
    C = C0.copy()
    ops.gemm(np.ones((m, k), dtype), np.ones((k, n), dtype), C, alpha=0.7, beta=-1.3)
    np.testing.assert_array_equal(C, dtype(-1.3) * C0)
    assert (ops.gemm(np.ones((m, k), dtype), np.ones((k, n), dtype)) == 0).all()


@pytest.mark.parametrize("shapes", [((0, 5), (5, 4), (0, 4)), ((3, 5), (5, 0), (3, 0)),
                                    ((0, 5), (5, 0), (0, 0)), ((0, 0), (0, 0), (0, 0))],
                         ids=["m0", "n0", "m0n0", "all0"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_gemm_empty_result(backend, dtype, shapes):
    a, b, c = shapes
    out = ops.gemm(np.ones(a, dtype), np.ones(b, dtype))
    assert out.shape == c and out.dtype == dtype


# =================================================================================================
# 2. bias
# =================================================================================================
@needs_ext
@pytest.mark.parametrize("shape", [(1, 1), (7, 33), (129, 5)], ids=["1x1", "7x33", "129x5"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_forward_and_backward_match_oracle(dtype, shape, kernel_rng):
    Y0 = kernel_rng.standard_normal(shape).astype(dtype)
    b = kernel_rng.standard_normal(shape[1]).astype(dtype)
    Y1, Y2 = Y0.copy(), Y0.copy()
    _ext.bias_forward(Y1, b)
    oracle.bias_forward(Y2, b)
    close(Y1, Y2, dtype)
    close(Y1, Y0 + b, dtype)
    db0 = kernel_rng.standard_normal(shape[1]).astype(dtype)  # backward adds into db
    db1, db2 = db0.copy(), db0.copy()
    _ext.bias_backward(db1, Y0)
    oracle.bias_backward(db2, Y0)
    close(db1, db2, dtype)
    close(db1, db0 + Y0.astype(np.float64).sum(axis=0), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_bias_add_and_grad(backend, dtype, kernel_rng):
    Y0 = kernel_rng.standard_normal((6, 5)).astype(dtype)
    b = kernel_rng.standard_normal(5).astype(dtype)
    Y = Y0.copy()
    assert ops.bias_add(Y, b) is Y
    close(Y, Y0 + b, dtype)
    db = ops.bias_grad(Y0)
    assert db.dtype == dtype and db.shape == (5,)
    close(db, Y0.astype(np.float64).sum(axis=0), dtype)
    assert ops.bias_grad(np.empty((0, 3), dtype)).tolist() == [0, 0, 0]


# =================================================================================================
# 3. activations
# =================================================================================================
def _act_input(rng, dtype, shape=(17, 33)):
    X = rng.standard_normal(shape) * 3
    X[np.abs(X) < 1e-3] = 0.5  # no value at relu's kink
    return X.astype(dtype)


@needs_ext
@pytest.mark.parametrize("act", ACT_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_forward_and_backward_match_oracle(dtype, act, kernel_rng):
    code = ACTIVATIONS[act]
    for shape in [(1, 1), (17, 33), (4, 257)]:
        X = _act_input(kernel_rng, dtype, shape)
        dY = kernel_rng.standard_normal(shape).astype(dtype)
        Y1, Y2 = np.empty_like(X), np.empty_like(X)
        _ext.activation_forward(code, Y1, X, LEAKY_ALPHA)
        oracle.activation_forward(code, Y2, X, LEAKY_ALPHA)
        close(Y1, Y2, dtype)
        dX1, dX2 = np.empty_like(X), np.empty_like(X)
        _ext.activation_backward(code, dX1, dY, Y2, LEAKY_ALPHA)
        oracle.activation_backward(code, dX2, dY, Y2, LEAKY_ALPHA)
        close(dX1, dX2, dtype)


def _ulps_apart(a, b):
    """Distance of float32 or float64 arrays a and b (b cast to a's dtype) in units in the last
    place: the floats in order as integers, -0 and +0 the same; values of opposite signs count as
    far apart as can be."""
    a = np.asarray(a)
    it = np.int32 if a.dtype == np.float32 else np.int64
    lo = np.iinfo(it).min
    ia, ib = (np.asarray(v, a.dtype).view(it) for v in (a, b))
    ia, ib = (np.where(i < 0, lo - i, i) for i in (ia, ib))  # no overflow: lo - i >= lo + 1
    apart = (ia < 0) & (ib > 0) | (ia > 0) & (ib < 0)
    return np.where(apart, np.iinfo(it).max, np.abs(np.where(apart, 0, ia - ib)))


def _check_tanh_sigmoid(act, x, want):
    """The compiled tanh or sigmoid of x (1-D, float32 or float64) within 2 ulp (sigmoid 3: e / (1 +
    e) below 0, e within 2 ulp) of `want`, the result in a wider type rounded to x's; 0,
    infinities and NaN exact."""
    X = x.reshape(1, -1)
    Y = np.empty_like(X)
    _ext.activation_forward(ACTIVATIONS[act], Y, X, 0.0)
    tiny = np.abs(want) < np.finfo(x.dtype).tiny  # below the normal range the engine flushes to 0
    far = _ulps_apart(Y[0], want)
    most = 2 if act == "tanh" else 3
    assert far[~tiny].max() <= most, (act, x[~tiny][np.argmax(far[~tiny])], far[~tiny].max())
    assert (np.abs(Y[0][tiny]) <= np.finfo(x.dtype).tiny).all()
    special = np.array([[0.0, -0.0, np.inf, -np.inf, np.nan]], x.dtype)
    out = np.empty_like(special)
    _ext.activation_forward(ACTIVATIONS[act], out, special, 0.0)
    expect = [0.0, -0.0, 1.0, -1.0] if act == "tanh" else [0.5, 0.5, 1.0, 0.0]
    np.testing.assert_array_equal(out[0, :4], expect)
    if act == "tanh":
        assert list(np.signbit(out[0, :2])) == [False, True]
    assert np.isnan(out[0, 4])


@needs_ext
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_float32_tanh_and_sigmoid_within_2_ulp_of_float64(act):
    """The compiled float32 tanh and sigmoid (csrc/vmath.h's vectorised exp and tanh, not libm's):
    every value of a sweep of the float line (magnitudes 1e-30 to 120, both signs, 2^20 values, and
    each side of tanh's switch at 0.625 and of exp's limits) within 2 ulp (sigmoid 3) of the
    float64 result rounded to float32; 0, infinities and NaN exact."""
    mags = np.geomspace(1e-30, 120, 1 << 19)
    edges = np.array([0.625, 44.0, 87.3365478515625 / 2, 87.3365478515625, 88.3762626647949, 9.0, 1e-4])
    near = np.concatenate([np.nextafter(edges.astype(np.float32), np.float32(s * np.inf)) for s in (-1, 1)])
    x = np.concatenate([mags, -mags, edges, -edges, near, -near]).astype(np.float32)
    x64 = x.astype(np.float64)
    want = np.tanh(x64) if act == "tanh" else 1 / (1 + np.exp(-x64))
    with np.errstate(under="ignore"):
        want32 = want.astype(np.float32)
    _check_tanh_sigmoid(act, x, want32)


@needs_ext
def test_float32_exp_reaches_float32s_overflow():
    """vmath.h's exp, through the poisson loss (its gradient is exp(z) - t): finite and within
    2 ulp of float64 up to ln(FLT_MAX) (a first version gave inf from 88.376, 2^127.5), inf above."""
    code = SK_LOSSES["sk_poisson"]
    Z = np.concatenate([np.linspace(80, 88.72, 4001), [88.7228, 88.72283, 88.7228316]]).astype(np.float32)[None]
    dZ = np.empty_like(Z)  # one row: dZ = exp(z) - t, t = 0
    _ext.loss_backward(code, dZ, Z, np.zeros_like(Z))
    assert np.isfinite(dZ).all()
    assert (_ulps_apart(dZ, np.exp(Z.astype(np.float64)).astype(np.float32)) <= 2).all()
    over = np.array([[88.7228394, 89.0, np.inf]], np.float32)
    dZ = np.empty_like(over)
    _ext.loss_backward(code, dZ, over, np.zeros_like(over))
    assert np.isposinf(dZ).all()


def _compiled_exp(z):
    """vmath.h's exp of each value of z (any shape, float32 or float64), through the poisson
    loss's gradient of one row: dZ = (exp(z) - t) w with t = 0 and w = 1, exactly exp(z)."""
    Z = np.ascontiguousarray(z).reshape(1, -1)
    dZ = np.empty_like(Z)
    _ext.loss_backward(SK_LOSSES["sk_poisson"], dZ, Z, np.zeros_like(Z))
    return dZ.reshape(np.shape(z))


@needs_ext
@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="long double is double here")
def test_float64_exp_within_2_ulp_of_long_double():
    """vmath.h's double exp (softmax, sigmoid and the losses in float64; libm's before): a sweep of
    its whole normal range plus random values within 2 ulp of long double's exp rounded to
    double (measured: 86 % correctly rounded, at most 1.17 eps relative); the limits exact: finite
    up to ln(DBL_MAX) rounded down, inf above, 0 below ln(DBL_MIN) (the kernels flush subnormal
    results to 0), NaN kept."""
    rng = np.random.default_rng(5)
    hi, lo = 709.782712893383973096, -708.396418532264106224
    z = np.concatenate([np.linspace(lo, hi, 1 << 17), rng.uniform(-2, 2, 1 << 15),
                        rng.uniform(-40, 40, 1 << 15), [0.0, -0.0, 1.0, 0.5 * math.log(2), 1e-300, -1e-300]])
    got = _compiled_exp(z)
    want = np.exp(z.astype(np.longdouble)).astype(np.float64)
    far = _ulps_apart(got, want)
    assert far.max() <= 2, (z[np.argmax(far)], far.max())
    assert np.mean(far == 0) > 0.7
    edges = np.array([hi, np.nextafter(hi, np.inf), 710.0, np.inf, lo, np.nextafter(lo, -np.inf), -745.2,
                      -np.inf, np.nan])
    e = _compiled_exp(edges)
    assert np.isfinite(e[0]) and e[0] > 1.79e308
    assert np.isposinf(e[1:4]).all()
    assert e[4] >= np.finfo(np.float64).tiny
    np.testing.assert_array_equal(e[5:8], 0.0)
    assert np.isnan(e[8])


@needs_ext
@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="long double is double here")
@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_float64_tanh_and_sigmoid_within_2_ulp_of_long_double(act):
    """The compiled float64 tanh and sigmoid (vmath.h's double tanh and exp; libm's before): a
    sweep of magnitudes 1e-300 to 800, both signs, and each side of tanh's switch at 0.625 and
    of exp's limits, within 2 ulp (sigmoid 3: e / (1 + e) below 0) of long double's result
    rounded to double; 0, infinities and NaN exact."""
    mags = np.concatenate([np.geomspace(1e-300, 800, 1 << 17), np.linspace(0.3, 40, 1 << 17)])
    edges = np.array([0.625, 354.8913560325, 354.9, 709.782712893383973096 / 2, 36.7, 37.5, 1e-8])
    near = np.concatenate([np.nextafter(edges, s * np.inf) for s in (-1, 1)])
    x = np.concatenate([mags, -mags, edges, -edges, near, -near])
    xl = x.astype(np.longdouble)
    with np.errstate(over="ignore", under="ignore"):
        want = (np.tanh(xl) if act == "tanh" else 1 / (1 + np.exp(-xl))).astype(np.float64)
    _check_tanh_sigmoid(act, x, want)


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 10, 100, 2047, 2048, 2049, 3000])
@pytest.mark.parametrize("in_place", [False, True])
def test_softmax_is_exp_of_row_less_max_over_in_order_sum(dtype, n, in_place):
    """The compiled softmax (rows in blocks of about 2,048 values: each row less its maximum, the
    block's exponentials in one loop, each row's sum in order) gives, bit for bit, vmath.h's exp of
    each value less its row's maximum, times 1 over the row's sum taken in order, whatever the
    rows' count against the block size (several blocks and a partial one, rows longer than it)."""
    rng = np.random.default_rng(n)
    m = 2 * max(1, 2048 // n) + 3
    X = (rng.standard_normal((m, n)) * 4).astype(dtype)
    d = X - X.max(axis=1, keepdims=True)
    e = _compiled_exp(d)
    s = np.add.accumulate(e, axis=1)[:, -1]  # in order, in dtype
    want = e * (np.ones((), dtype) / s)[:, None]
    Y = X.copy() if in_place else np.empty_like(X)
    _ext.activation_forward(ACTIVATIONS["softmax"], Y, Y if in_place else X, 0.0)
    np.testing.assert_array_equal(Y, want)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("act", ACT_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_backward_runs_in_place(which, dtype, act, kernel_rng):
    be, code = impl(which), ACTIVATIONS[act]
    X = _act_input(kernel_rng, dtype)
    Y = np.empty_like(X)
    be.activation_forward(code, Y, X, LEAKY_ALPHA)
    dY = kernel_rng.standard_normal(X.shape).astype(dtype)
    want = np.empty_like(X)
    be.activation_backward(code, want, dY, Y, LEAKY_ALPHA)
    G = dY.copy()
    be.activation_backward(code, G, G, Y, LEAKY_ALPHA)  # dX is dY
    np.testing.assert_array_equal(G, want)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_saturate_to_exact_limits(which, dtype, act):
    be, code = impl(which), ACTIVATIONS[act]
    X = np.array([[1e4, -1e4, 1e30, -1e30]], dtype)
    Y = np.full_like(X, np.nan)
    with np.errstate(over="raise", invalid="raise"):
        be.activation_forward(code, Y, X)
    lo = 0.0 if act == "sigmoid" else -1.0
    np.testing.assert_array_equal(Y, np.array([[1, lo, 1, lo]], dtype))
    dX = np.full_like(X, np.nan)
    be.activation_backward(code, dX, np.ones_like(X), Y)
    np.testing.assert_array_equal(dX, np.zeros_like(X))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_huge_logits_is_finite(which, dtype):
    X = np.array([[1e4, -1e4, 0], [-1e4, -1e4, -1e4], [3e4, 3e4, -3e4]], dtype)
    Y = np.empty_like(X)
    impl(which).activation_forward(ACTIVATIONS["softmax"], Y, X)
    np.testing.assert_allclose(Y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], rtol=1e-6)


# Dyadic logits and integer shifts: X + c is exact in float32, so the shifted row is the same row.
_logits = st.lists(st.lists(st.integers(-400, 400), min_size=1, max_size=40), min_size=1, max_size=6)


def _rectangular(rows):
    n = min(len(r) for r in rows)
    return np.array([r[:n] for r in rows], np.float64) / 16


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@FAST
@given(rows=_logits, shifts=st.lists(st.integers(-10000, 10000), min_size=6, max_size=6))
def test_softmax_rows_sum_to_one_and_are_shift_invariant(which, dtype, rows, shifts):
    be, code = impl(which), ACTIVATIONS["softmax"]
    X = _rectangular(rows).astype(dtype)
    c = np.array(shifts[:X.shape[0]], dtype)[:, None]
    Y, Ys = np.empty_like(X), np.empty_like(X)
    be.activation_forward(code, Y, X)
    be.activation_forward(code, Ys, X + c)
    eps = np.finfo(dtype).eps
    assert ((Y >= 0) & (Y <= 1)).all()
    np.testing.assert_allclose(Y.sum(axis=1, dtype=np.float64), 1.0, rtol=0, atol=2 * X.shape[1] * eps)
    np.testing.assert_allclose(Ys, Y, rtol=4 * eps, atol=0)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("code", [-1, 6, 99])
def test_unknown_activation_code_raises_value_error(which, code):
    X = np.ones((2, 3))
    with pytest.raises(ValueError):
        impl(which).activation_forward(code, np.empty_like(X), X)
    with pytest.raises(ValueError):
        impl(which).activation_backward(code, np.empty_like(X), X, X)


def activation_definition(act, X, alpha=LEAKY_ALPHA):
    """f(X) in float64, written from the definitions here, not taken from the oracle (so the
    ops tests below mean something on the python backend too)."""
    x = X.astype(np.float64)
    if act == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return {"identity": lambda: x, "relu": lambda: np.maximum(x, 0),
            "leaky_relu": lambda: np.where(x > 0, x, alpha * x),
            "sigmoid": lambda: 1 / (1 + np.exp(-x)), "tanh": lambda: np.tanh(x)}[act]()


def activation_grad_definition(act, dY, Y, alpha=LEAKY_ALPHA):
    """dL/dX from dY and the output Y = f(X), in float64: f'(x) written in terms of y."""
    dy, y = dY.astype(np.float64), Y.astype(np.float64)
    if act == "softmax":  # J = diag(y) - y y^T per row
        return y * dy - y * (dy * y).sum(axis=-1, keepdims=True)
    return dy * {"identity": lambda: 1.0, "relu": lambda: (y > 0) * 1.0,
                 "leaky_relu": lambda: np.where(y > 0, 1.0, alpha),
                 "sigmoid": lambda: y * (1 - y), "tanh": lambda: 1 - y * y}[act]()


@pytest.mark.parametrize("act", ACT_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_activation_and_grad_match_their_definition(backend, dtype, act, kernel_rng):
    X = _act_input(kernel_rng, dtype, (5, 7))
    dY = kernel_rng.standard_normal(X.shape).astype(dtype)
    want_Y = activation_definition(act, X).astype(dtype)  # rounded, as the kernels' output is
    want_dX = activation_grad_definition(act, dY, want_Y)
    Y = ops.activation(act, X, alpha=LEAKY_ALPHA)
    close(Y, want_Y, dtype)
    close(ops.activation_grad(act, dY, want_Y, alpha=LEAKY_ALPHA), want_dX, dtype)
    if act != "softmax":  # element-wise activations take any shape
        close(ops.activation(act, X[0], alpha=LEAKY_ALPHA), want_Y[0], dtype)
        close(ops.activation(act, X.reshape(5, 7, 1), alpha=LEAKY_ALPHA), want_Y.reshape(5, 7, 1), dtype)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3, 4)], ids=["0d", "1d", "3d"])
@pytest.mark.parametrize("act", [a for a in ACT_NAMES if a != "softmax"])
def test_ops_elementwise_activation_takes_any_shape(backend, act, shape, kernel_rng):
    """Element-wise activations (and their gradients) accept arrays of any shape, 0-d included,
    and give their definition's values element by element."""
    X = _act_input(kernel_rng, np.float64, (1, max(1, int(np.prod(shape)))))
    want_Y = activation_definition(act, X)
    want_dX = activation_grad_definition(act, X, want_Y)
    Y = ops.activation(act, X.reshape(shape), alpha=LEAKY_ALPHA)
    assert Y.shape == shape
    close(Y.reshape(1, -1), want_Y, np.float64)
    dX = ops.activation_grad(act, X.reshape(shape), want_Y.reshape(shape), alpha=LEAKY_ALPHA)
    assert dX.shape == shape
    close(dX.reshape(1, -1), want_dX, np.float64)


@pytest.mark.parametrize("alias,name", [("linear", "identity"), ("logistic", "sigmoid"), (None, "identity")])
def test_ops_activation_aliases(backend, alias, name, kernel_rng):
    X = kernel_rng.standard_normal((3, 4))
    np.testing.assert_array_equal(ops.activation(alias, X), ops.activation(name, X))


# =================================================================================================
# 4. losses
# =================================================================================================
def _loss_data(rng, dtype, loss, m=13, n=5, weights="none"):
    Z = (rng.standard_normal((m, n)) * 2).astype(dtype)
    T = labels = None
    if loss == "softmax_xent":
        labels = rng.integers(0, n, m).astype(np.int64)
    elif loss == "sigmoid_bce":
        T = rng.uniform(0, 1, (m, n)).astype(dtype)
        T[0] = np.round(T[0])  # hard 0/1 targets too
    else:
        T = rng.standard_normal((m, n)).astype(dtype)
    sw = {"none": None,
          "random": rng.uniform(0, 3, m),
          "some-zero": np.where(np.arange(m) % 3 == 0, 0.0, rng.uniform(0.5, 2, m)),
          "all-zero": np.zeros(m)}[weights]
    return Z, T, labels, None if sw is None else sw.astype(dtype)


@needs_ext
@pytest.mark.parametrize("weights", ["none", "random", "some-zero"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_matches_oracle(dtype, loss, weights, kernel_rng):
    code = LOSSES[loss]
    for m, n in [(13, 5), (1, 1), (64, 33)]:
        Z, T, labels, sw = _loss_data(kernel_rng, dtype, loss, m, n, weights)
        v1 = _ext.loss_forward(code, Z, T, labels, sw)
        v2 = oracle.loss_forward(code, Z, T, labels, sw)
        assert isinstance(v1, float) and isinstance(v2, float)
        close(v1, v2, dtype)
        d1, d2 = np.full_like(Z, np.nan), np.full_like(Z, np.nan)
        _ext.loss_backward(code, d1, Z, T, labels, sw)
        oracle.loss_backward(code, d2, Z, T, labels, sw)
        close(d1, d2, dtype)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_with_all_zero_weights_is_zero_with_zero_gradient(which, dtype, loss, kernel_rng):
    be, code = impl(which), LOSSES[loss]
    Z, T, labels, sw = _loss_data(kernel_rng, dtype, loss, weights="all-zero")
    assert be.loss_forward(code, Z, T, labels, sw) == 0.0
    dZ = np.full_like(Z, np.nan)
    be.loss_backward(code, dZ, Z, T, labels, sw)
    np.testing.assert_array_equal(dZ, 0)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_values_match_their_definition(which, dtype, loss, kernel_rng):
    """Values against the formulas of fastnn_api.h, written here in float64."""
    be, code = impl(which), LOSSES[loss]
    Z, T, labels, sw = _loss_data(kernel_rng, dtype, loss, weights="random")
    z, w = Z.astype(np.float64), sw.astype(np.float64)
    if loss == "softmax_xent":
        per = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), labels]
    elif loss == "sigmoid_bce":
        p, t = 1 / (1 + np.exp(-z)), T.astype(np.float64)
        per = -(t * np.log(p) + (1 - t) * np.log1p(-p)).mean(axis=1)
    else:
        per = ((z - T) ** 2).mean(axis=1)
    close(be.loss_forward(code, Z, T, labels, sw), (w * per).sum() / w.sum(), dtype)
    close(be.loss_forward(code, Z, T, labels, None), per.mean(), dtype)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("bad", [-1, 5, 2**40], ids=["negative", "n", "huge"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_labels_out_of_range_raise_value_error(which, dtype, bad, kernel_rng):
    """The compiled kernel returns FNN_EINVAL (checked before anything is read) -> ValueError."""
    be = impl(which)
    Z, _, labels, _ = _loss_data(kernel_rng, dtype, "softmax_xent", n=5)
    labels[7] = bad
    with pytest.raises(ValueError, match="invalid argument"):
        be.loss_forward(LOSSES["softmax_xent"], Z, None, labels, None)
    dZ = np.zeros_like(Z)
    with pytest.raises(ValueError, match="invalid argument"):
        be.loss_backward(LOSSES["softmax_xent"], dZ, Z, None, labels, None)


@needs_ext
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_compiled_loss_without_its_targets_raises_instead_of_crashing(loss):
    """loss_forward(code, Z) with labels (softmax_xent) or T (sigmoid_bce, mse) left at their
    default None must be a ValueError, as every other bad argument of a kernel is. Run in a child
    process: a NULL dereference would kill the test session."""
    code = (f"import numpy as np\nfrom fastnn._engine import _ext\n"
            f"try:\n    _ext.loss_forward({LOSSES[loss]}, np.zeros((2, 3)))\n"
            f"except ValueError:\n    raise SystemExit(0)\nraise SystemExit(3)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120,
                          cwd=tempfile.gettempdir())  # not the repository root: its fastnn/ is unbuilt
    assert proc.returncode == 0, (f"exit status {proc.returncode} (-11: segmentation fault, 3: no "
                                  f"error raised); stderr: {proc.stderr.decode()[-500:]}")


@pytest.mark.parametrize("which", IMPLS)
def test_unknown_loss_code_raises_value_error(which):
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError):
        impl(which).loss_forward(7, Z, Z)


@pytest.mark.parametrize("name,code", [("cross_entropy", 0), ("softmax_xent", 0),
                                       ("binary_crossentropy", 1), ("sigmoid_bce", 1), ("mse", 2)])
@pytest.mark.parametrize("weights", ["none", "random"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_loss_matches_its_definition(backend, dtype, weights, name, code, kernel_rng):
    Z, T, labels, sw = _loss_data(kernel_rng, dtype, LOSS_NAMES[code], weights=weights)
    value, dZ = ops.loss(name, Z, labels if code == 0 else T, sample_weight=sw)
    want_value, want_dZ = loss_definition(LOSS_NAMES[code], Z, T, labels, sw)
    close(value, want_value, dtype)
    assert dZ.dtype == dtype
    close(dZ, want_dZ, dtype)


def loss_definition(loss, Z, T, labels, sw):
    """(value, dL/dZ) in float64 from the formulas of fastnn_api.h, written here, not taken from
    the oracle: L = sum_i w_i l_i / sum_i w_i, so dL/dZ_i = (w_i / sum w) dl_i/dZ_i."""
    z = Z.astype(np.float64)
    m, n = z.shape
    w = np.ones(m) if sw is None else sw.astype(np.float64)
    w = w / w.sum()
    if loss == "softmax_xent":
        onehot = np.eye(n)[labels]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        per = np.log(np.exp(z).sum(axis=1)) - z[np.arange(m), labels]
        grad = p - onehot
    elif loss == "sigmoid_bce":
        t = T.astype(np.float64)
        p = 1 / (1 + np.exp(-z))
        per = -(t * np.log(p) + (1 - t) * np.log1p(-p)).mean(axis=1)
        grad = (p - t) / n
    else:
        t = T.astype(np.float64)
        per = ((z - t) ** 2).mean(axis=1)
        grad = 2 * (z - t) / n
    return float(w @ per), w[:, None] * grad


# =================================================================================================
# 5. optimizers
# =================================================================================================
N_PARAMS, N_DECAY = 37, 20  # only params[0:20] get l2 / l1 / weight decay


def _opt_state(rng, dtype, n_slots):
    p = rng.standard_normal(N_PARAMS).astype(dtype)
    p[3] = 0  # sign(0) = 0 for l1
    slots = [np.abs(rng.standard_normal(N_PARAMS)).astype(dtype) for _ in range(n_slots)]
    grads = [rng.standard_normal(N_PARAMS).astype(dtype) for _ in range(3)]
    return p, slots, grads


PENALTIES = dict(l2=1e-2, l1=3e-3, weight_decay=0.05)
OPT_CASES = {
    "sgd-plain": ("sgd_update", 1, dict(lr=0.1, momentum=0.0, nesterov=False)),
    "sgd-momentum": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, nesterov=False)),
    "sgd-nesterov": ("sgd_update", 1, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": ("adam_update", 2, dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8)),
    "rmsprop": ("rmsprop_update", 1, dict(lr=1e-2, rho=0.9, eps=1e-8)),
}


@needs_ext
@pytest.mark.parametrize("penalties", [{}, PENALTIES], ids=["bare", "l2-l1-decay"])
@pytest.mark.parametrize("case", OPT_CASES.values(), ids=OPT_CASES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_optimizer_matches_oracle_over_three_steps(dtype, case, penalties, kernel_rng):
    fname, n_slots, hyper = case
    p, slots, grads = _opt_state(kernel_rng, dtype, n_slots)
    states = {be: (p.copy(), [s.copy() for s in slots]) for be in (_ext, oracle)}
    for t, g in enumerate(grads, start=1):
        for be, (pp, ss) in states.items():
            if fname == "adam_update":
                be.adam_update(pp, *ss, g, N_DECAY, t, **hyper, **penalties)
            else:
                getattr(be, fname)(pp, *ss, g, N_DECAY, **hyper, **penalties)
        (p1, s1), (p2, s2) = states[_ext], states[oracle]
        close(p1, p2, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
        for a, b in zip(s1, s2):
            close(a, b, dtype)


def _penalised(p, g, l2=0.0, l1=0.0, weight_decay=0.0, lr=0.0):
    """(g', p after decoupled decay) in float64, decay on params[0:N_DECAY] only."""
    p, g = p.astype(np.float64), g.astype(np.float64)
    d = np.arange(len(p)) < N_DECAY
    g2 = np.where(d, g + l2 * p + l1 * np.sign(p), g)
    return g2, np.where(d, p * (1 - lr * weight_decay), p)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("penalties", [{}, PENALTIES], ids=["bare", "l2-l1-decay"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_one_step_equals_closed_form(which, dtype, penalties, kernel_rng):
    """From m = v = 0 at t = 1: m = (1-b1) g', v = (1-b2) g'^2, and the bias-corrected step is
    p <- p (1 - lr wd) - lr g' / (|g'| + eps)."""
    be = impl(which)
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8
    p, _, (g, *_) = _opt_state(kernel_rng, dtype, 0)
    m, v = np.zeros_like(p), np.zeros_like(p)
    gp, pd = _penalised(p, g, lr=lr, **penalties)
    pp = p.copy()
    be.adam_update(pp, m, v, g, N_DECAY, 1, lr, b1, b2, eps, **penalties)
    close(m, (1 - b1) * gp, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
    close(v, (1 - b2) * gp**2, dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)
    close(pp, pd - lr * gp / (np.abs(gp) + eps), dtype, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
@pytest.mark.parametrize("penalties", [{}, PENALTIES], ids=["bare", "l2-l1-decay"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_one_step_equals_closed_form(which, dtype, penalties, nesterov, kernel_rng):
    """v <- mu v + g'; p <- p (1 - lr wd) - lr (nesterov ? g' + mu v : v); mu = 0: p -= lr g'."""
    be = impl(which)
    lr, mu = 0.1, 0.9
    p, (vel,), (g, *_) = _opt_state(kernel_rng, dtype, 1)
    gp, pd = _penalised(p, g, lr=lr, **penalties)
    v_new = mu * vel.astype(np.float64) + gp
    pp, vv = p.copy(), vel.copy()
    be.sgd_update(pp, vv, g, N_DECAY, lr, mu, nesterov, **penalties)
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12)
    close(vv, v_new, dtype, **tol)
    close(pp, pd - lr * (gp + mu * v_new if nesterov else v_new), dtype, **tol)
    pp, vv = p.copy(), vel.copy()
    be.sgd_update(pp, vv, g, N_DECAY, lr, 0.0, nesterov, **penalties)
    close(pp, pd - lr * gp, dtype, **tol)
    np.testing.assert_array_equal(vv, vel)  # momentum 0 leaves the velocity alone


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("setting", ["momentum", "l2", "l1"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_setting_below_the_smallest_normal_is_0(which, dtype, setting):
    """A momentum, l2 or l1 that is subnormal in the dtype acts as 0, whatever the caller's
    floating-point mode (the engine flushes subnormals in its own threads; a kernel called from
    Python runs in the caller's): the plain step, which leaves an infinite weight with g = 0 and
    its velocity as they are. A velocity form would give 1e-40 x inf + 0 = inf there, a penalty
    term -inf + 1e-40 x -inf = NaN."""
    be = impl(which)
    tiny = float(np.finfo(dtype).tiny) / 4  # subnormal, not 0
    p = np.array([-np.inf, 0.5, 1.0], dtype)
    vel = np.array([np.inf, 0, 0], dtype)
    g = np.array([0, 0.25, -0.5], dtype)
    kw = {"momentum": tiny} if setting == "momentum" else {setting: tiny}
    with np.errstate(invalid="ignore", over="ignore"):
        be.sgd_update(p, vel, g, 3, 0.1, nesterov=False, **kw)
    np.testing.assert_array_equal(p, np.array([-np.inf, 0.5 - 0.1 * 0.25, 1.0 + 0.1 * 0.5], dtype))
    np.testing.assert_array_equal(vel, np.array([np.inf, 0, 0], dtype))


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("case", ["sgd lr", "sgd-sklearn lr", "adam lr", "adam-sklearn lr", "adam beta1",
                                  "adam beta2", "rmsprop lr", "rmsprop rho"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_rate_or_decay_rate_below_the_smallest_normal_gives_the_update_with_0(which, dtype, case):
    """The round-4 tester's finding: the compiled engine computes with subnormals flushed to 0, so
    a learning rate, beta1, beta2 or rho below the dtype's smallest normal acted as 0 there and as
    itself in the oracle (NaN against inf, a finite weight against -inf, status and counters).
    Both give exactly the update with that setting at 0 (NaN where 0 x inf is one)."""
    be = impl(which)
    tiny = float(np.finfo(dtype).tiny) / 4
    name, setting = case.split()
    fn, form = name.replace("-sklearn", ""), 1 if "sklearn" in name else 0
    huge = float(np.finfo(dtype).max) / 2

    def update(value):
        p = np.array([0.5, -1.0, 2.0, 0.0], dtype)  # 0 - a subnormal step would be subnormal
        slots = [np.array([np.inf, huge, 0.25, 0.0], dtype), np.array([np.inf, huge, 0.5, 0.0], dtype)]
        g = np.array([0.0, 0.5, -0.25, 1.0], dtype)
        kw = {"lr": 0.1, setting: value}
        with np.errstate(all="ignore"):
            if fn == "sgd":
                be.sgd_update(p, slots[0], g, 4, momentum=0.5, form=form, **kw)
            elif fn == "adam":
                be.adam_update(p, slots[0], slots[1], g, 4, 1, form=form, **kw)
            else:
                be.rmsprop_update(p, slots[0], g, 4, **kw)
        return p, slots

    (p, slots), (p0, slots0) = update(tiny), update(0.0)
    np.testing.assert_array_equal(p, p0)
    for s, s0 in zip(slots, slots0):
        np.testing.assert_array_equal(s, s0)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("case", OPT_CASES.values(), ids=OPT_CASES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_an_infinite_weight_without_a_penalty_stays_as_it_is(which, dtype, case):
    """Without l2 or l1 there is no penalty term (not g + 0 p, which is NaN for an infinite p):
    a weight at +-inf with a zero gradient stays there and its optimizer state stays finite,
    with or without decoupled decay, on both backends alike. With l2 the term is there: NaN."""
    be = impl(which)
    fname, n_slots, hyper = case
    for extra, expect_nan in (({}, False), ({"weight_decay": 0.05}, False), ({"l2": 1e-2}, True),
                              ({"l1": 1e-2}, True)):
        p = np.array([-np.inf, np.inf, 0.5, 1.0], dtype)
        slots = [np.zeros(4, dtype) for _ in range(n_slots)]
        g = np.array([0, 0, 0.25, -0.5], dtype)
        with np.errstate(invalid="ignore"):  # the oracle's NaN from inf * l2 - inf ...
            if fname == "adam_update":
                be.adam_update(p, *slots, g, 4, 1, **hyper, **extra)
            else:
                getattr(be, fname)(p, *slots, g, 4, **hyper, **extra)
        if expect_nan:
            assert np.isnan(p[:2]).all(), (extra, p)
        else:
            assert p[0] == -np.inf and p[1] == np.inf, (extra, p)
            for s in slots:
                assert np.isfinite(s).all() and (s[:2] == 0).all(), (extra, s)
        assert np.isfinite(p[2:]).all()


# =================================================================================================
# 6. random numbers, dropout, batch normalisation
# =================================================================================================
SEEDS = [0, 1, 42, 2**63 + 5, 2**64 - 1]


@needs_ext
@pytest.mark.parametrize("seed", SEEDS)
def test_rng_is_identical_between_backends(seed):
    for kind, index in [(0, 0), (1, 7), (16, 2**40), (2**64 - 1, 2**64 - 1)]:
        assert _ext.rng_key(seed, kind, index) == oracle.rng_key(seed, kind, index)
    key = _ext.rng_key(seed, 1, 3)
    for ctr0 in (0, 12345, 2**64 - 10):
        u1, u2 = np.empty(1000), np.empty(1000)
        _ext.rng_uniform(u1, key, ctr0)
        oracle.rng_uniform(u2, key, ctr0)
        np.testing.assert_array_equal(u1, u2)
        assert ((u1 >= 0) & (u1 < 1)).all()
    assert abs(u1.mean() - 0.5) < 0.05  # 1000 uniforms: sd of the mean 0.009


@needs_ext
@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000])
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_shuffle_is_the_same_permutation_in_both_backends(seed, n):
    key = _ext.rng_key(seed, 1, 0)
    p1, p2 = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
    _ext.shuffle(p1, key)
    oracle.shuffle(p2, key)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(np.sort(p1), np.arange(n))
    if n == 1000:
        other = np.empty(n, np.int64)
        _ext.shuffle(other, _ext.rng_key(seed, 1, 1))
        assert (other != p1).any() and (p1 != np.arange(n)).any()


@needs_ext
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_masks_are_identical_between_backends(dtype, rate, kernel_rng):
    X = kernel_rng.standard_normal((37, 29)).astype(dtype)
    key = oracle.rng_key(3, RNG_DROPOUT + 2, 11)
    out = {}
    for be in (_ext, oracle):
        Y, mask = np.full_like(X, np.nan), np.full_like(X, np.nan)
        be.dropout_forward(Y, mask, X, rate, key)
        dY = np.arange(X.size, dtype=dtype).reshape(X.shape)
        dX = np.full_like(X, np.nan)
        be.dropout_backward(dX, dY, mask)
        out[be] = (Y, mask, dX)
    for a, b in zip(out[_ext], out[oracle]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.8])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_keeps_one_minus_rate_scaled_by_its_inverse(which, dtype, rate, kernel_rng):
    be = impl(which)
    X = kernel_rng.standard_normal((200, 100)).astype(dtype)
    Y, mask = np.empty_like(X), np.empty_like(X)
    be.dropout_forward(Y, mask, X, rate, oracle.rng_key(9, RNG_DROPOUT, 0))
    kept = mask != 0
    n = X.size  # keep fraction within 5 standard deviations of 1 - rate
    assert abs(kept.mean() - (1 - rate)) <= 5 * math.sqrt(rate * (1 - rate) / n) + 1e-12
    np.testing.assert_array_equal(mask[kept], dtype(1 / (1 - rate)))
    np.testing.assert_array_equal(Y, X * mask)
    dX = np.empty_like(X)
    be.dropout_backward(dX, X, mask)
    np.testing.assert_array_equal(dX, X * mask)
    Y2, mask2 = np.empty_like(X), np.empty_like(X)  # another key, another mask
    be.dropout_forward(Y2, mask2, X, rate, oracle.rng_key(9, RNG_DROPOUT, 1))
    assert rate == 0 or (mask2 != mask).any()


def _bn_data(rng, dtype, m, n):
    X = (rng.standard_normal((m, n)) * 2 + 3).astype(dtype)
    gamma = rng.uniform(0.5, 2, n).astype(dtype)
    beta = rng.standard_normal(n).astype(dtype)
    return X, gamma, beta


def _bn_forward(be, X, gamma, beta, eps=1e-5):
    m, n = X.shape
    Y, xhat = np.empty_like(X), np.empty_like(X)
    mean, var, inv_std = (np.empty(n, X.dtype) for _ in range(3))
    be.batchnorm_forward(Y, xhat, mean, var, inv_std, X, gamma, beta, eps)
    return Y, xhat, mean, var, inv_std


@needs_ext
@pytest.mark.parametrize("shape", [(2, 1), (16, 7), (129, 33)], ids=["2x1", "16x7", "129x33"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_matches_oracle(dtype, shape, kernel_rng):
    m, n = shape
    X, gamma, beta = _bn_data(kernel_rng, dtype, m, n)
    f1 = _bn_forward(_ext, X, gamma, beta)
    f2 = _bn_forward(oracle, X, gamma, beta)
    for name, a, b in zip(["Y", "xhat", "mean", "var", "inv_std"], f1, f2):
        close(a, b, dtype, err_msg=name)
    Y, xhat, mean, var, inv_std = f2
    x = X.astype(np.float64)  # and against the definition
    close(mean, x.mean(0), dtype)
    close(var, x.var(0), dtype)
    close(Y, gamma * (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5) + beta, dtype, atol=1e-5)

    rm0, rv0 = kernel_rng.standard_normal(n).astype(dtype), kernel_rng.uniform(0.5, 2, n).astype(dtype)
    runs = {}
    for be in (_ext, oracle):
        rm, rv = rm0.copy(), rv0.copy()
        be.batchnorm_running(rm, rv, mean, var, m, 0.1)
        Yi = np.empty_like(X)
        be.batchnorm_inference(Yi, X, gamma, beta, rm, rv, 1e-5)
        runs[be] = (rm, rv, Yi)
    for a, b in zip(runs[_ext], runs[oracle]):
        close(a, b, dtype)
    rm, rv, Yi = runs[oracle]
    close(rm, 0.9 * rm0 + 0.1 * mean.astype(np.float64), dtype)
    close(rv, 0.9 * rv0 + 0.1 * var.astype(np.float64) * m / (m - 1), dtype)
    close(Yi, gamma * (X - rm.astype(np.float64)) / np.sqrt(rv.astype(np.float64) + 1e-5) + beta,
          dtype, atol=1e-5)

    dY = kernel_rng.standard_normal((m, n)).astype(dtype)
    dg0, db0 = kernel_rng.standard_normal(n).astype(dtype), kernel_rng.standard_normal(n).astype(dtype)
    back = {}
    for be in (_ext, oracle):
        dX, dg, db = np.empty_like(X), dg0.copy(), db0.copy()  # dgamma, dbeta are added into
        be.batchnorm_backward(dX, dg, db, dY, xhat, inv_std, gamma)
        back[be] = (dX, dg, db)
    for name, a, b in zip(["dX", "dgamma", "dbeta"], back[_ext], back[oracle]):
        close(a, b, dtype, atol=1e-5 if dtype == np.float32 else 1e-12, err_msg=name)
    close(back[oracle][2], db0 + dY.astype(np.float64).sum(0), dtype, atol=1e-5)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_backward_runs_in_place(which, dtype, kernel_rng):
    be = impl(which)
    X, gamma, beta = _bn_data(kernel_rng, dtype, 9, 4)
    _, xhat, _, _, inv_std = _bn_forward(be, X, gamma, beta)
    dY = kernel_rng.standard_normal(X.shape).astype(dtype)
    dX = np.empty_like(X)
    be.batchnorm_backward(dX, np.zeros(4, dtype), np.zeros(4, dtype), dY, xhat, inv_std, gamma)
    G = dY.copy()
    be.batchnorm_backward(G, np.zeros(4, dtype), np.zeros(4, dtype), G, xhat, inv_std, gamma)
    close(G, dX, dtype, rtol=0, atol=0)


# =================================================================================================
# 7. finite differences (float64) on the derivatives
# =================================================================================================
H = 1e-6


def _central(f, x):
    """Central differences of the scalar f with respect to every entry of x (in place, restored)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        fp = f()
        flat[i] = old - H
        fm = f()
        flat[i] = old
        gf[i] = (fp - fm) / (2 * H)
    return g


def _fd_close(analytic, numeric):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("act", ACT_NAMES)
def test_activation_backward_is_the_derivative_of_forward(which, act, kernel_rng):
    """L = sum(R * f(X)); dL/dX = activation_backward(dY = R, Y = f(X)). |X| >= 0.1 keeps
    relu's kink out of the h-neighbourhood."""
    be, code = impl(which), ACTIVATIONS[act]
    X = kernel_rng.standard_normal((4, 6))
    X = np.where(np.abs(X) < 0.1, 0.1 * np.sign(X) + 0.1 * (X == 0), X)
    R = kernel_rng.standard_normal(X.shape)
    Y = np.empty_like(X)

    def loss():
        be.activation_forward(code, Y, X, LEAKY_ALPHA)
        return float((R * Y).sum())

    numeric = _central(loss, X)
    be.activation_forward(code, Y, X, LEAKY_ALPHA)
    dX = np.empty_like(X)
    be.activation_backward(code, dX, R, Y, LEAKY_ALPHA)
    _fd_close(dX, numeric)


@pytest.mark.parametrize("which", IMPLS)
@pytest.mark.parametrize("weights", ["none", "random"])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_backward_is_the_derivative_of_forward(which, loss, weights, kernel_rng):
    be, code = impl(which), LOSSES[loss]
    Z, T, labels, sw = _loss_data(kernel_rng, np.float64, loss, m=6, n=4, weights=weights)
    numeric = _central(lambda: be.loss_forward(code, Z, T, labels, sw), Z)
    dZ = np.empty_like(Z)
    be.loss_backward(code, dZ, Z, T, labels, sw)
    _fd_close(dZ, numeric)


@pytest.mark.parametrize("which", IMPLS)
def test_batchnorm_backward_is_the_derivative_of_forward(which, kernel_rng):
    """L = sum(Y * R) with Y = batchnorm_forward(X, gamma, beta): dX, dgamma, dbeta."""
    be = impl(which)
    X, gamma, beta = _bn_data(kernel_rng, np.float64, 7, 3)
    R = kernel_rng.standard_normal(X.shape)

    def loss():
        return float((_bn_forward(be, X, gamma, beta)[0] * R).sum())

    num_dX, num_dg, num_db = _central(loss, X), _central(loss, gamma), _central(loss, beta)
    _, xhat, _, _, inv_std = _bn_forward(be, X, gamma, beta)
    dX, dg, db = np.empty_like(X), np.zeros(3), np.zeros(3)
    be.batchnorm_backward(dX, dg, db, R, xhat, inv_std, gamma)
    _fd_close(dX, num_dX)
    _fd_close(dg, num_dg)
    _fd_close(db, num_db)


# =================================================================================================
# 8. bad input to fastnn.ops: TypeError / ValueError with a message, never a crash
# =================================================================================================
f32 = np.ones((3, 4), np.float32)
f64 = np.ones((3, 4))
i64 = np.ones((3, 4), np.int64)
sq = np.ones((4, 4))
strided_cols = np.ones((3, 8))[:, ::2]   # elements not contiguous within a row
fortran = np.asfortranarray(np.ones((3, 4)))
labels3 = np.array([0, 1, 3])

class _NoBase(np.ndarray):
    base = None  # says it is no view


BAD_CALLS = {
    # gemm
    "gemm-int-A": (TypeError, lambda: ops.gemm(i64, sq)),
    "gemm-int-B": (TypeError, lambda: ops.gemm(f64, sq.astype(np.int32))),
    "gemm-mixed-f32-f64": (TypeError, lambda: ops.gemm(f32, sq)),
    "gemm-mixed-C": (TypeError, lambda: ops.gemm(f64, sq, np.zeros((3, 4), np.float32))),
    "gemm-inner-mismatch": (ValueError, lambda: ops.gemm(f64, f64)),
    "gemm-C-shape": (ValueError, lambda: ops.gemm(f64, sq, np.zeros((4, 3)))),
    "gemm-list": (TypeError, lambda: ops.gemm([[1.0, 2.0]], np.ones((2, 2)))),
    "gemm-1d": (ValueError, lambda: ops.gemm(np.ones(4), sq)),
    "gemm-strided-cols": (ValueError, lambda: ops.gemm(strided_cols, sq)),
    "gemm-fortran": (ValueError, lambda: ops.gemm(fortran, sq)),
    "gemm-alpha-str": (TypeError, lambda: ops.gemm(f64, sq, alpha="2")),
    "gemm-alpha-bool": (TypeError, lambda: ops.gemm(f64, sq, alpha=True)),
    "gemm-unknown-dtype": (TypeError, lambda: ops.gemm(f64.astype(np.float16), sq.astype(np.float16))),
    "gemm-beta-without-C": (ValueError, lambda: ops.gemm(f64, sq, beta=1.0)),
    "gemm-C-overlaps-A": (ValueError, lambda: ops.gemm(sq, sq, sq, beta=1.0)),
    "gemm-C-is-B": (ValueError, lambda: ops.gemm(np.ones((4, 4)), sq, sq)),
    "gemm-C-views-A": (ValueError, lambda: (lambda a: ops.gemm(a, np.ones((4, 4)), a[:, :]))(np.ones((4, 4)))),
    "gemm-A-views-C": (ValueError, lambda: (lambda c: ops.gemm(c[1:3, :], np.ones((4, 4)), c[:2]))(np.ones((4, 4)))),
    "gemm-B-views-C": (ValueError, lambda: (lambda c: ops.gemm(np.ones((4, 4)), c[:, :], c))(np.ones((4, 4)))),
    # a subclass may claim to own its memory (base None): only plain ndarrays skip the check
    "gemm-C-claims-no-base": (ValueError, lambda: (lambda a: ops.gemm(a, np.ones((4, 4)), a.view(_NoBase)))(
        np.ones((4, 4)))),
    # bias_add
    "bias_add-int-Y": (TypeError, lambda: ops.bias_add(i64, np.ones(4))),
    "bias_add-mixed": (TypeError, lambda: ops.bias_add(f64.copy(), np.ones(4, np.float32))),
    "bias_add-length": (ValueError, lambda: ops.bias_add(f64.copy(), np.ones(3))),
    "bias_add-b-2d": (ValueError, lambda: ops.bias_add(f64.copy(), np.ones((1, 4)))),
    "bias_add-Y-1d": (ValueError, lambda: ops.bias_add(np.ones(4), np.ones(4))),
    "bias_add-list": (TypeError, lambda: ops.bias_add([[1.0]], np.ones(1))),
    "bias_add-strided": (ValueError, lambda: ops.bias_add(np.ones((3, 8))[:, ::2], np.ones(4))),
    # bias_grad
    "bias_grad-int": (TypeError, lambda: ops.bias_grad(i64)),
    "bias_grad-list": (TypeError, lambda: ops.bias_grad([[1.0, 2.0]])),
    "bias_grad-1d": (ValueError, lambda: ops.bias_grad(np.ones(3))),
    "bias_grad-fortran": (ValueError, lambda: ops.bias_grad(fortran)),
    # activation / activation_grad
    "activation-unknown": (ValueError, lambda: ops.activation("gelu", f64)),
    "activation-int": (TypeError, lambda: ops.activation("relu", i64)),
    "activation-list": (TypeError, lambda: ops.activation("relu", [[1.0, -1.0]])),
    "activation-strided": (ValueError, lambda: ops.activation("relu", strided_cols)),
    "activation-softmax-1d": (ValueError, lambda: ops.activation("softmax", np.ones(3))),
    "activation_grad-unknown": (ValueError, lambda: ops.activation_grad("swish", f64, f64)),
    "activation_grad-shapes": (ValueError, lambda: ops.activation_grad("tanh", f64, sq)),
    "activation_grad-mixed": (TypeError, lambda: ops.activation_grad("tanh", f64, f32)),
    "activation_grad-int": (TypeError, lambda: ops.activation_grad("tanh", i64, i64)),
    "activation_grad-strided": (ValueError, lambda: ops.activation_grad("tanh", strided_cols, f64)),
    # loss
    "loss-unknown": (ValueError, lambda: ops.loss("hinge", f64, labels3)),
    "loss-int-Z": (TypeError, lambda: ops.loss("mse", i64, f64)),
    "loss-list-Z": (TypeError, lambda: ops.loss("mse", [[1.0]], np.ones((1, 1)))),
    "loss-mixed-targets": (TypeError, lambda: ops.loss("mse", f32, f64)),
    "loss-target-shape": (ValueError, lambda: ops.loss("mse", f64, sq)),
    "loss-float-labels": (TypeError, lambda: ops.loss("cross_entropy", f64, labels3.astype(float))),
    "loss-label-shape": (ValueError, lambda: ops.loss("cross_entropy", f64, np.array([0, 1]))),
    "loss-label-range": (ValueError, lambda: ops.loss("cross_entropy", f64, np.array([0, 1, 4]))),
    "loss-label-negative": (ValueError, lambda: ops.loss("cross_entropy", f64, np.array([0, -1, 2]))),
    "loss-weight-shape": (ValueError, lambda: ops.loss("mse", f64, f64, sample_weight=np.ones(4))),
    "loss-weight-dtype": (TypeError, lambda: ops.loss("mse", f32, f32, sample_weight=np.ones(3))),
    "loss-empty": (ValueError, lambda: ops.loss("mse", np.ones((0, 4)), np.ones((0, 4)))),
    "loss-Z-1d": (ValueError, lambda: ops.loss("mse", np.ones(4), np.ones(4))),
    "loss-Z-strided": (ValueError, lambda: ops.loss("mse", strided_cols, f64)),
}


@pytest.mark.parametrize("exc,call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_ops_reject_bad_input_with_a_message(backend, exc, call):
    with pytest.raises(exc) as info:
        call()
    assert len(str(info.value)) > 10


# -- NaN is data: it passes through to where the maths puts it ----------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_gemm_propagates_nan(backend, dtype, kernel_rng):
    A = kernel_rng.standard_normal((9, 13)).astype(dtype)
    B = kernel_rng.standard_normal((13, 17)).astype(dtype)
    A[4, 6] = np.nan
    C = ops.gemm(A, B)
    assert np.isnan(C[4]).all()
    assert np.isfinite(np.delete(C, 4, axis=0)).all()


@pytest.mark.parametrize("act", ACT_NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_activation_propagates_nan(backend, dtype, act):
    X = np.array([[np.nan, 1.0, -1.0, 2.0], [0.5, -0.5, 3.0, -2.0]], dtype)
    Y = ops.activation(act, X, alpha=LEAKY_ALPHA)
    want_nan = np.zeros(X.shape, bool)
    if act == "softmax":
        want_nan[0] = True  # the whole row
    else:
        want_nan[0, 0] = True
    np.testing.assert_array_equal(np.isnan(Y), want_nan, err_msg=f"{act}({X}) = {Y}")
    dY = np.array([[1.0, np.nan, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]], dtype)
    Yp = np.full(X.shape, 0.25, dtype)  # a positive output: every derivative passes dY on
    dX = ops.activation_grad(act, dY, Yp, alpha=LEAKY_ALPHA)
    want_nan = np.zeros(X.shape, bool)
    if act == "softmax":
        want_nan[0] = True
    else:
        want_nan[0, 1] = True
    np.testing.assert_array_equal(np.isnan(dX), want_nan)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ops_bias_and_loss_propagate_nan(backend, dtype):
    Y = np.zeros((3, 2), dtype)
    ops.bias_add(Y, np.array([np.nan, 1], dtype))
    assert np.isnan(Y[:, 0]).all() and (Y[:, 1] == 1).all()
    db = ops.bias_grad(np.array([[np.nan, 1], [2, 3]], dtype))
    assert np.isnan(db[0]) and db[1] == 4
    Z = np.array([[np.nan, 1.0], [0.5, -0.5]], dtype)
    for name, y in [("cross_entropy", np.array([0, 1])), ("binary_crossentropy", np.ones_like(Z)),
                    ("mse", np.zeros_like(Z))]:
        value, dZ = ops.loss(name, Z, y)
        assert math.isnan(value), name
        assert np.isnan(dZ[0, 0]) and np.isfinite(dZ[1]).all(), name


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite_finds_a_nan_or_an_infinity_wherever_it_lies(backend, dtype, threads):
    """The backend's whole-array check (input validation's): against np.isfinite, on an array above
    the compiled check's team threshold (2^22 values, 64 slices), with the bad value at each end,
    at the slices' edges and inside; huge finite values and subnormals are finite."""
    from fastnn._engine import current
    n = (1 << 22) + 12345
    x = np.zeros(n, dtype)
    x[1::97] = np.finfo(dtype).max  # a sum of these overflows: finite all the same
    x[2::89] = np.finfo(dtype).smallest_subnormal
    slice_ = -(-n // 64)
    places = [0, 1, slice_ - 1, slice_, 31 * slice_ + 7, 63 * slice_ - 1, 63 * slice_, n - 1]
    with fastnn.thread_limit(threads):
        assert current().all_finite(x) is True and np.isfinite(x).all()
        for i, place in enumerate(places):
            old = x[place]
            x[place] = (np.nan, np.inf, -np.inf)[i % 3]
            assert current().all_finite(x) is False, place
            x[place] = old
        for size in (1, 2, 17, 1000):
            y = np.ones(size, dtype)
            assert current().all_finite(y) is True
            y[-1] = np.nan
            assert current().all_finite(y) is False
        assert current().all_finite(np.zeros(0, dtype)) is True


def test_fixtures_put_back_the_backend_kernel_and_threads_they_changed():
    """Runs after everything above (in any order): nothing leaked out of a test."""
    assert (fastnn.get_backend(), _ext and _ext.arch_name(), fastnn.get_num_threads()) == _AT_IMPORT


@needs_ext
def test_a_normal_build_does_not_clock_phases():
    """The phase clock (csrc/profile.h) exists only in builds made with FASTNN_PROFILE=1."""
    assert _ext.phase_times() is None and oracle.phase_times() is None


def test_phase_names_follow_the_clocks_enum():
    """codes.PHASES names csrc/profile.h's phases (benchmarks/phases.py prints them), one each."""
    from fastnn._engine.codes import PHASES
    import re
    with open(os.path.join(os.path.dirname(__file__), "..", "csrc", "profile.h")) as f:
        enum = re.findall(r"^\s+(FNN_PH_\w+)", f.read(), re.M)
    assert enum[-1] == "FNN_PH_COUNT" and len(enum) - 1 == len(PHASES)
