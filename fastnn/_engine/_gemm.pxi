# gemm: C = alpha op(A) @ op(B) + beta C. Rows may be strided (leading dimension = strides[0]),
# elements must be contiguous within a row.

cdef inline int64_t _ld(Py_ssize_t stride0, Py_ssize_t rows, Py_ssize_t cols, size_t item) noexcept nogil:
    # leading dimension in elements; any value >= cols works when there is at most one row or
    # nothing to read (NumPy gives empty arrays a row stride of 0)
    if rows <= 1 or cols == 0:
        return cols if cols > 1 else 1
    return stride0 // <Py_ssize_t>item


cdef inline bint _rows_readable(Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t stride0, Py_ssize_t stride1,
                                Py_ssize_t item) noexcept nogil:
    # the kernels read row i's cols elements from i * (stride0 / item), one after the other:
    # elements contiguous within a row, rows a whole number of elements apart, in order and apart
    # by a row at least (nothing to check where nothing or one row is read)
    if rows == 0 or cols == 0:
        return True
    if cols > 1 and stride1 != item:
        return False
    return rows == 1 or (stride0 > 0 and stride0 % item == 0 and stride0 >= cols * item)


cdef int _gemm(floating[:, :] C, const floating[:, :] A, const floating[:, :] B, bint trans_a,
               bint trans_b, double alpha, double beta, bint naive) except -1:
    # the one wrapper of fnn_gemm and fnn_gemm_naive: leading dimensions, empty operands, status
    cdef int64_t m = C.shape[0], n = C.shape[1]
    cdef int64_t k = A.shape[0] if trans_a else A.shape[1]
    agree("gemm", (m, k), {"op(A)": (A.shape[1], A.shape[0]) if trans_a else (A.shape[0], A.shape[1])})
    agree("gemm", (k, n), {"op(B)": (B.shape[1], B.shape[0]) if trans_b else (B.shape[0], B.shape[1])})
    for name, rows, cols, s0, s1 in (("C", C.shape[0], C.shape[1], C.strides[0], C.strides[1]),
                                     ("A", A.shape[0], A.shape[1], A.strides[0], A.strides[1]),
                                     ("B", B.shape[0], B.shape[1], B.strides[0], B.strides[1])):
        if not _rows_readable(rows, cols, s0, s1, sizeof(floating)):
            raise ValueError(f"gemm: {name} must have contiguous rows, a whole number of elements apart "
                             f"and in order (strides {(s0, s1)})")
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

def _gemm_views(floating[:, :] C,        # OUT m x n
                const floating[:, :] A,  # IN  m x k, or k x m when trans_a
                const floating[:, :] B,  # IN  k x n, or n x k when trans_b
                bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    _gemm(C, A, B, trans_a, trans_b, alpha, beta, False)


cdef inline bint _native_array(object a, int ndim, int typenum) noexcept:
    # a is an ndarray (no subclass), ndim-D, of typenum in native byte order, aligned: what the C
    # code may read through its data pointer (with the strides the caller checks)
    return (type(a) is _ndarray and cnp.PyArray_NDIM(<cnp.ndarray>a) == ndim
            and cnp.PyArray_TYPE(<cnp.ndarray>a) == typenum and cnp.PyArray_ISALIGNED(<cnp.ndarray>a)
            and cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>a))


cdef inline void *_gemm_operand(object a, int typenum, bint write, int64_t *ld) noexcept:
    # a's data, when a is a _native_array (2-D; writeable: `write`) whose rows the kernels read as
    # they are (_rows_readable); ld its leading dimension. Else NULL
    if not _native_array(a, 2, typenum) or (write and not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a)):
        return NULL
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(arr)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(arr)
    cdef Py_ssize_t item = 4 if typenum == cnp.NPY_FLOAT32 else 8
    if not _rows_readable(dims[0], dims[1], strides[0], strides[1], item):
        return NULL
    ld[0] = _ld(strides[0], dims[0], dims[1], item)
    return cnp.PyArray_DATA(arr)


cdef int _gemm_ptrs(floating *C, const void *A, const void *B, int64_t m, int64_t n, int64_t k, int64_t ldc,
                    int64_t lda, int64_t ldb, bint trans_a, bint trans_b, double alpha, double beta) noexcept nogil:
    # gemm's call, typed by C (A's and B's types were checked against it)
    return fnn_gemm(C, <const floating *>A, <const floating *>B, m, n, k, ldc, lda, ldb, trans_a, trans_b,
                    alpha, beta, NULL)


def gemm(C, A, B, bint trans_a=False, bint trans_b=False, double alpha=1.0, double beta=0.0):
    "gemm(C, A, B, trans_a=False, trans_b=False, alpha=1.0, beta=0.0)\n--\n\n" \
    "C (m x n, written) := alpha op(A) @ op(B) + beta C, op(A) = A.T when trans_a; beta == 0 never " \
    "reads C. 2-D arrays of one dtype, float32 or float64, whose elements are contiguous within a row."
    # Ndarrays the kernels read as they are go straight to C through NumPy's C API: a 2 x 2
    # product's call took 0.45 us against 1.7 through the typed memoryviews (fused-type dispatch,
    # three buffer exports). Anything else, and every error, goes through _gemm_views, which
    # names the argument at fault.
    cdef int typenum = cnp.PyArray_TYPE(<cnp.ndarray>C) if type(C) is _ndarray else -1
    cdef int64_t ldc, lda, ldb, m, n, k
    cdef void *pc = NULL
    cdef const void *pa = NULL
    cdef const void *pb = NULL
    cdef int st
    if typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64:
        pc = _gemm_operand(C, typenum, True, &ldc)
        pa = _gemm_operand(A, typenum, False, &lda)
        pb = _gemm_operand(B, typenum, False, &ldb)
    if pc != NULL and pa != NULL and pb != NULL:
        m, n = cnp.PyArray_DIMS(<cnp.ndarray>C)[0], cnp.PyArray_DIMS(<cnp.ndarray>C)[1]
        k = cnp.PyArray_DIMS(<cnp.ndarray>A)[0 if trans_a else 1]
        if (cnp.PyArray_DIMS(<cnp.ndarray>A)[1 if trans_a else 0] == m  # else _gemm_views names it
                and cnp.PyArray_DIMS(<cnp.ndarray>B)[1 if trans_b else 0] == k
                and cnp.PyArray_DIMS(<cnp.ndarray>B)[0 if trans_b else 1] == n):
            with nogil:
                if typenum == cnp.NPY_FLOAT32:
                    st = _gemm_ptrs(<float *>pc, pa, pb, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta)
                else:
                    st = _gemm_ptrs(<double *>pc, pa, pb, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta)
            check_status(st)
            return
    _gemm_views(C, A, B, trans_a, trans_b, alpha, beta)

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
