/* gemm.c — C = alpha * op(A) @ op(B) + beta * C, row-major, the BLIS way: pack op(B) into
 * KC x NR panels and op(A) into MR x KC panels, then sweep MR x NR tiles with the microkernel of
 * the active kernel table entry (dispatch.c). The five loops live here once for every ISA; an ISA
 * only brings a microkernel and its block sizes (gemm_kernels.h).
 *
 * Threads (OpenMP, when built with it): one parallel region per call; packing and the tile loop
 * are shared out with `omp for`, the packed panels are shared. Small products run serially. */
#ifndef real
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"
#include "gemm_kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define REF_MR 4
#define REF_NR 8
#define PAR_MIN_FLOPS (64 * 64 * 64) /* below this m*n*k, one thread */

static inline void *align64(void *p) { return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

#define FNN_SELF "gemm.c"
#include "instantiate.h"

const fnn_arch fnn_arch_ref = {
    "ref", NULL,
    {REF_MR, REF_NR, 128, 256, 4096, fnn_gemm_ukr_ref_4x8_f32},
    {REF_MR, REF_NR, 64, 256, 2048, fnn_gemm_ukr_ref_4x8_f64},
};

#else /* template part: real, FN */

/* The portable microkernel: the compiler vectorises the 4 x 8 accumulator with baseline flags. */
void FN(fnn_gemm_ukr_ref_4x8)(int64_t k, const real *restrict a, const real *restrict b,
                              real *restrict c, int64_t ldc, int64_t mr, int64_t nr, real alpha,
                              real beta) {
    real acc[REF_MR][REF_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < k; p++)
        for (int i = 0; i < REF_MR; i++)
            for (int j = 0; j < REF_NR; j++) acc[i][j] += a[p * REF_MR + i] * b[p * REF_NR + j];
    for (int64_t i = 0; i < mr; i++) {
        real *ci = c + i * ldc;
        if (beta == 0)
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j];
        else
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
}

/* Packing space of one thread: an MC x KC block of A and a KC x NC block of B, aligned. */
static size_t FN(thread_work)(void) {
    size_t most = 0;
    for (const fnn_arch *const *a = fnn_all_archs; *a; a++) {
#if REAL_IS_FLOAT
        const fnn_kernel_f32 *K = &(*a)->f32;
#else
        const fnn_kernel_f64 *K = &(*a)->f64;
#endif
        size_t s = (size_t)(K->mc * K->kc + K->kc * K->nc);
        if (s > most) most = s;
    }
    return (most + 2 * 64 / sizeof(real) + 63) & ~(size_t)63;
}

size_t FN(fnn_gemm_work_size)(void) { return FN(thread_work)() * (size_t)fnn_max_threads(); }

/* op(A)[i0 + ip*MR + i, p0 + p] into dst[p*MR + i] for one MR-row panel, zero-padded past mr. */
static void FN(pack_a)(real *restrict dst, const real *restrict A, int64_t lda, int trans,
                       int64_t i0, int64_t p0, int64_t mr, int64_t kc, int64_t MR) {
    if (trans) { /* A stored k x m: a row of A holds MR consecutive i */
        for (int64_t p = 0; p < kc; p++) {
            const real *src = A + (p0 + p) * lda + i0;
            int64_t i = 0;
            for (; i < mr; i++) dst[p * MR + i] = src[i];
            for (; i < MR; i++) dst[p * MR + i] = 0;
        }
    } else {
        for (int64_t i = 0; i < mr; i++) {
            const real *src = A + (i0 + i) * lda + p0;
            for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[p];
        }
        for (int64_t i = mr; i < MR; i++)
            for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0;
    }
}

/* op(B)[p0 + p, j0 + j] into dst[p*NR + j] for one NR-column panel, zero-padded past nr. */
static void FN(pack_b)(real *restrict dst, const real *restrict B, int64_t ldb, int trans,
                       int64_t p0, int64_t j0, int64_t nr, int64_t kc, int64_t NR) {
    if (trans) { /* B stored n x k */
        for (int64_t j = 0; j < nr; j++) {
            const real *src = B + (j0 + j) * ldb + p0;
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = src[p];
        }
        for (int64_t j = nr; j < NR; j++)
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0;
    } else {
        for (int64_t p = 0; p < kc; p++) {
            const real *src = B + (p0 + p) * ldb + j0;
            int64_t j = 0;
            for (; j < nr; j++) dst[p * NR + j] = src[j];
            for (; j < NR; j++) dst[p * NR + j] = 0;
        }
    }
}

static int FN(check_args)(int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb,
                          int trans_a, int trans_b) {
    if (m < 0 || n < 0 || k < 0) return FNN_EINVAL;
    if (ldc < (n > 1 ? n : 1)) return FNN_EINVAL;
    int64_t acols = trans_a ? m : k, bcols = trans_b ? k : n;
    if (lda < (acols > 1 ? acols : 1) || ldb < (bcols > 1 ? bcols : 1)) return FNN_EINVAL;
    return FNN_OK;
}

/* C := beta * C, without reading C when beta == 0. */
static void FN(scale_c)(real *C, int64_t m, int64_t n, int64_t ldc, real beta) {
    for (int64_t i = 0; i < m; i++) {
        real *ci = C + i * ldc;
        if (beta == 0)
            memset(ci, 0, (size_t)n * sizeof(real));
        else if (beta != 1)
            for (int64_t j = 0; j < n; j++) ci[j] *= beta;
    }
}

/* The five loops over one block of C: rows [i0, i1), columns [j0, j1), packing into pa / pb. */
static void FN(gemm_block)(real *C, const real *A, const real *B, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                           int trans_b, real alpha, real beta, real *pa, real *pb,
#if REAL_IS_FLOAT
                           const fnn_kernel_f32 *K
#else
                           const fnn_kernel_f64 *K
#endif
) {
    const int64_t MR = K->mr, NR = K->nr;
    for (int64_t jc = j0; jc < j1; jc += K->nc) {
        const int64_t nc = min64(K->nc, j1 - jc), nb = (nc + NR - 1) / NR;
        for (int64_t pc = 0; pc < k; pc += K->kc) {
            const int64_t kc = min64(K->kc, k - pc);
            const real beta_pc = pc == 0 ? beta : (real)1;
            for (int64_t jp = 0; jp < nb; jp++)
                FN(pack_b)(pb + jp * NR * kc, B, ldb, trans_b, pc, jc + jp * NR,
                           min64(NR, nc - jp * NR), kc, NR);
            for (int64_t ic = i0; ic < i1; ic += K->mc) {
                const int64_t mc = min64(K->mc, i1 - ic), na = (mc + MR - 1) / MR;
                for (int64_t ip = 0; ip < na; ip++)
                    FN(pack_a)(pa + ip * MR * kc, A, lda, trans_a, ic + ip * MR, pc,
                               min64(MR, mc - ip * MR), kc, MR);
                for (int64_t jp = 0; jp < nb; jp++)
                    for (int64_t ip = 0; ip < na; ip++) {
                        real *c = C + (ic + ip * MR) * ldc + jc + jp * NR;
                        K->ukr(kc, pa + ip * MR * kc, pb + jp * NR * kc, c, ldc,
                               min64(MR, mc - ip * MR), min64(NR, nc - jp * NR), alpha, beta_pc);
                    }
            }
        }
    }
}

int FN(fnn_gemm)(real *C, const real *A, const real *B, int64_t m, int64_t n, int64_t k,
                 int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha_d,
                 double beta_d, real *work) {
    int st = FN(check_args)(m, n, k, ldc, lda, ldb, trans_a, trans_b);
    if (st != FNN_OK) return st;
    const real alpha = (real)alpha_d, beta = (real)beta_d;
    if (m == 0 || n == 0) return FNN_OK;
    if (k == 0 || alpha == 0) {
        FN(scale_c)(C, m, n, ldc, beta);
        return FNN_OK;
    }
#if REAL_IS_FLOAT
    const fnn_kernel_f32 K = fnn_active_arch()->f32;
#else
    const fnn_kernel_f64 K = fnn_active_arch()->f64;
#endif
    real *owned = NULL;
    if (!work) {
        owned = (real *)malloc(FN(fnn_gemm_work_size)() * sizeof(real));
        if (!owned) return FNN_ENOMEM;
        work = owned;
    }
    /* Threads take disjoint slabs of C's columns (or rows, when C is narrow), each packing into
     * its own buffers: no barrier inside a call. Slabs are handed out dynamically, a few per
     * thread, so a thread that the OS descheduled (a busy, shared machine) delays the call by one
     * slab, not by half of the work. */
    int nt = fnn_get_num_threads();
    const double flops = (double)m * (double)n * (double)k;
    if (flops < PAR_MIN_FLOPS) nt = 1;
    const int by_cols = n >= 2 * K.nr * nt || n >= m;
    const int64_t step = by_cols ? K.nr : K.mr, extent = by_cols ? n : m;
    const int64_t panels = (extent + step - 1) / step;
    int64_t per_slab = panels; /* panels per slab: about 4 slabs per thread, >= 2 panels each */
    if (nt > 1) {
        per_slab = (panels + 4 * nt - 1) / (4 * nt);
        if (per_slab < 2) per_slab = 2;
    }
    const int64_t slabs = (panels + per_slab - 1) / per_slab;
    if (nt > slabs) nt = (int)slabs;
    const size_t per_thread = FN(thread_work)();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        real *pa = (real *)align64(work + per_thread * (size_t)tid);
        real *pb = (real *)align64(pa + K.mc * K.kc);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t s = 0; s < slabs; s++) {
            const int64_t lo = s * per_slab * step, hi = min64((s + 1) * per_slab * step, extent);
            if (by_cols)
                FN(gemm_block)(C, A, B, 0, m, lo, hi, k, ldc, lda, ldb, trans_a, trans_b, alpha,
                               beta, pa, pb, &K);
            else
                FN(gemm_block)(C, A, B, lo, hi, 0, n, k, ldc, lda, ldb, trans_a, trans_b, alpha,
                               beta, pa, pb, &K);
        }
    }
    free(owned);
    return FNN_OK;
}

int FN(fnn_gemm_naive)(real *C, const real *A, const real *B, int64_t m, int64_t n, int64_t k,
                       int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                       double alpha_d, double beta_d) {
    int st = FN(check_args)(m, n, k, ldc, lda, ldb, trans_a, trans_b);
    if (st != FNN_OK) return st;
    const real alpha = (real)alpha_d, beta = (real)beta_d;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            real s = 0;
            for (int64_t p = 0; p < k; p++)
                s += (trans_a ? A[p * lda + i] : A[i * lda + p]) *
                     (trans_b ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = beta == 0 ? alpha * s : alpha * s + beta * C[i * ldc + j];
        }
    return FNN_OK;
}

#endif
