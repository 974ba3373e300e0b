# gemm: C = alpha op(A) @ op(B) + beta C. Rows may be strided (leading dimension = strides[0]),
# elements must be contiguous within a row.

cdef inline int64_t _ld(Py_ssize_t stride0, Py_ssize_t rows, Py_ssize_t cols, size_t item) noexcept nogil:
    # leading dimension in elements; any value >= cols works when there is at most one row or
    # nothing to read (NumPy gives empty arrays a row stride of 0)
    if rows <= 1 or cols == 0:
        return cols if cols > 1 else 1
    return stride0 // <Py_ssize_t>item

cdef int _gemm(floating[:, :] C, const floating[:, :] A, const floating[:, :] B, bint trans_a,
               bint trans_b, double alpha, double beta, bint naive) except -1:
    # the one wrapper of fnn_gemm and fnn_gemm_naive: leading dimensions, empty operands, status
    cdef int64_t m = C.shape[0], n = C.shape[1]
    cdef int64_t k = A.shape[0] if trans_a else A.shape[1]
    agree("gemm", (m, k), {"op(A)": (A.shape[1], A.shape[0]) if trans_a else (A.shape[0], A.shape[1])})
    agree("gemm", (k, n), {"op(B)": (B.shape[1], B.shape[0]) if trans_b else (B.shape[0], B.shape[1])})
    cdef int64_t ldc = _ld(C.strides[0], m, n, sizeof(floating))
    cdef int64_t lda = _ld(A.strides[0], A.shape[0], A.shape[1], sizeof(floating))
    cdef int64_t ldb = _ld(B.strides[0], B.shape[0], B.shape[1], sizeof(floating))
    cdef floating *c = &C[0, 0] if m and n else NULL
    cdef const floating *a = &A[0, 0] if A.shape[0] and A.shape[1] else NULL
    cdef const floating *b = &B[0, 0] if B.shape[0] and B.shape[1] else NULL
    cdef int st
    with nogil:
        if naive:
            st = fnn_gemm_naive(c, a, b, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta)
        else:
            st = fnn_gemm(c, a, b, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, NULL)
    return check_status(st)

def gemm(floating[:, :] C,        # OUT m x n
         const floating[:, :] A,  # IN  m x k, or k x m when trans_a
         const floating[:, :] B,  # IN  k x n, or n x k when trans_b
         bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    _gemm(C, A, B, trans_a, trans_b, alpha, beta, False)

def gemm_naive(floating[:, :] C, const floating[:, :] A, const floating[:, :] B,
               bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    """The plain triple loop (csrc/gemm.c), the definition the blocked GEMM is tested against."""
    _gemm(C, A, B, trans_a, trans_b, alpha, beta, True)

def bias_forward(floating[:, ::1] Y,       # IN/OUT m x n: Y += b
                 const floating[::1] b):   # IN n
    agree("bias_forward", (Y.shape[1],), {"b": _s1(b)})
    with nogil:
        fnn_bias_forward(&Y[0, 0], &b[0], Y.shape[0], Y.shape[1], Y.shape[1])

def bias_backward(floating[::1] db,               # IN/OUT n: db += column sums of dY
                  const floating[:, ::1] dY):     # IN m x n
    agree("bias_backward", (dY.shape[1],), {"db": _s1(db)})
    with nogil:
        fnn_bias_backward(&db[0], &dY[0, 0], dY.shape[0], dY.shape[1], dY.shape[1])
