/* gemm.c — C = alpha * op(A) @ op(B) + beta * C, row-major, the BLIS way: pack op(B) into
 * KC x NR panels and op(A) into MR x KC panels, then sweep MR x NR tiles with the microkernel of
 * the active kernel table entry (dispatch.c); whole panels of op(A) are read where A lies where
 * the kernel can (a_direct). The five loops live here once for every ISA; an ISA only brings a
 * microkernel and its block sizes (gemm_kernels.h).
 *
 * Threads (team.h): a call's product is split into tasks that own disjoint blocks of C (slabs of
 * rows or columns, a grid of blocks, or row slabs sharing one packed op(B): gemm_team chooses).
 * Small products run serially. */
#ifndef real
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"
#include "gemm_kernels.h"
#include "internal.h"
#include "profile.h"
#include "simd.h"

#define REF_MR 4
#define REF_NR 8
#define PAR_MIN_FLOPS (32 * 32 * 32) /* below this m*n*k, one thread. Inside a running team a
                                        split costs one job, and the operands of a step's small
                                        products lie in other cores' caches: the MNIST output
                                        layer's three products, 128 x 10 x 128, 21 to 15 ms an
                                        epoch on 16 threads; on 2 (Zen 3 VM, phase clock, 2 runs
                                        each) 20-21 to 15-16 ms at batch 128, 12.2 to 10.2 ms at
                                        batch 32. A standalone call starts a team only from
                                        2^21 (fnn_gemm). */
#define SLABS_PER_THREAD 4           /* fixed slabs of C per thread and call (profiling builds'
                                        FNN_GUIDED=0; else guided slabs where they share an operand) */
#define SKINNY_SEG 1024              /* rows of B listed at a time by skinny_row */
#define UNPACKED_B_M 32              /* up to this many rows of C, op(B) is not packed (no trans_b):
                                        1.2-1.6x on 16 and 32 x 784 x 256, slower from 64 rows */
#define SKINNY_LANES 16              /* partial sums of a skinny dot product (two AVX2 vectors) */
#define SKINNY_DOT_K 512             /* op(A)'s row, copied in pieces this long */
#define SKINNY_DOT_ROWS (16 / (int)sizeof(real)) /* rows of B whose dot products are formed together:
                                                     8 or 4 vector chains */
#define FNN_MAX_THREADS_CAP 256      /* fnn_max_threads() never exceeds this (dispatch.c) */
#define GRID_MIN_THREADS 4           /* from this many threads, C may be split into a grid of blocks */
#define GRID_TRAFFIC 14              /* see grid_shape */

static inline void *align64(void *p) { return (void *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FNN_HAVE_PACK8_AVX 1
/* The 8 x 8 transpose of r[0..7] (rows) into c[0..7] (columns) in AVX registers. */
__attribute__((target("avx"), always_inline)) static inline void transpose8_f32(const __m256 r[8],
                                                                               __m256 c[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    c[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    c[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    c[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    c[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    c[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    c[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    c[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    c[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Eight full rows of a row-major float A into an 8-row panel, dst[p*8 + i] = rows[i][p]: 8 x 8
 * transposes in AVX registers instead of 64 scalar moves. Same values, only faster. */
__attribute__((target("avx"))) static void pack_a8_f32_avx(float *restrict dst,
                                                           const float *const rows[8],
                                                           int64_t kc) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8], c[8];
        for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(rows[i] + p);
        transpose8_f32(r, c);
        for (int j = 0; j < 8; j++) _mm256_storeu_ps(dst + (p + j) * 8, c[j]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < 8; i++) dst[p * 8 + i] = rows[i][p];
}

/* Six full rows of a row-major float A into a 6-row panel (the AVX2 kernel's MR), dst[p*6 + i]
 * = rows[i][p]: the 8 x 8 transpose with two zero rows; column p is stored 8 wide at dst + 6p,
 * its two extra lanes overwritten by column p + 1's store, so the last column of the panel is
 * stored 6 wide (the panel's end is not written past). */
__attribute__((target("avx"))) static void pack_a6_f32_avx(float *restrict dst,
                                                           const float *const rows[6],
                                                           int64_t kc) {
    const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8], c[8];
        for (int i = 0; i < 6; i++) r[i] = _mm256_loadu_ps(rows[i] + p);
        r[6] = r[7] = _mm256_setzero_ps();
        transpose8_f32(r, c);
        for (int j = 0; j < 7; j++) _mm256_storeu_ps(dst + (p + j) * 6, c[j]);
        if (p + 8 < kc)
            _mm256_storeu_ps(dst + (p + 7) * 6, c[7]);
        else
            _mm256_maskstore_ps(dst + (p + 7) * 6, six, c[7]);
    }
    for (; p < kc; p++)
        for (int i = 0; i < 6; i++) dst[p * 6 + i] = rows[i][p];
}

/* A full panel of op(B) from B stored n x k (trans_b), dst[p*NR + j] = b[j * ldb + p] for the
 * panel's NR rows of B (NR a multiple of 8): 8 x 8 transposes, each storing 8 whole rows of the
 * panel, where the scalar copy writes one element per cache line. Same values, only faster. */
__attribute__((target("avx"))) static void pack_bt_f32_avx(float *restrict dst, const float *restrict b,
                                                            int64_t ldb, int64_t kc, int64_t NR) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8)
        for (int64_t g = 0; g < NR; g += 8) {
            __m256 r[8], c[8];
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(b + (g + i) * ldb + p);
            transpose8_f32(r, c);
            for (int q = 0; q < 8; q++) _mm256_storeu_ps(dst + (p + q) * NR + g, c[q]);
        }
    for (; p < kc; p++)
        for (int64_t j = 0; j < NR; j++) dst[p * NR + j] = b[j * ldb + p];
}

/* The same for double (NR a multiple of 4): 4 x 4 transposes. */
__attribute__((target("avx"))) static void pack_bt_f64_avx(double *restrict dst, const double *restrict b,
                                                            int64_t ldb, int64_t kc, int64_t NR) {
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4)
        for (int64_t g = 0; g < NR; g += 4) {
            const double *r = b + g * ldb + p;
            __m256d r0 = _mm256_loadu_pd(r), r1 = _mm256_loadu_pd(r + ldb);
            __m256d r2 = _mm256_loadu_pd(r + 2 * ldb), r3 = _mm256_loadu_pd(r + 3 * ldb);
            __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
            __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
            double *d = dst + p * NR + g;
            _mm256_storeu_pd(d, _mm256_permute2f128_pd(t0, t2, 0x20));
            _mm256_storeu_pd(d + NR, _mm256_permute2f128_pd(t1, t3, 0x20));
            _mm256_storeu_pd(d + 2 * NR, _mm256_permute2f128_pd(t0, t2, 0x31));
            _mm256_storeu_pd(d + 3 * NR, _mm256_permute2f128_pd(t1, t3, 0x31));
        }
    for (; p < kc; p++)
        for (int64_t j = 0; j < NR; j++) dst[p * NR + j] = b[j * ldb + p];
}

/* Six full rows of a row-major double A into a 6-row panel: rows 0-3 by 4 x 4 transposes, rows
 * 4-5 by 2 x 2 ones. */
__attribute__((target("avx"))) static void pack_a6_f64_avx(double *restrict dst,
                                                            const double *const rows[6],
                                                            int64_t kc) {
    int64_t p = 0;
    for (; p + 4 <= kc; p += 4) {
        __m256d r0 = _mm256_loadu_pd(rows[0] + p), r1 = _mm256_loadu_pd(rows[1] + p);
        __m256d r2 = _mm256_loadu_pd(rows[2] + p), r3 = _mm256_loadu_pd(rows[3] + p);
        __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        __m256d c0 = _mm256_permute2f128_pd(t0, t2, 0x20), c1 = _mm256_permute2f128_pd(t1, t3, 0x20);
        __m256d c2 = _mm256_permute2f128_pd(t0, t2, 0x31), c3 = _mm256_permute2f128_pd(t1, t3, 0x31);
        __m128d a0 = _mm_loadu_pd(rows[4] + p), a1 = _mm_loadu_pd(rows[4] + p + 2);
        __m128d b0 = _mm_loadu_pd(rows[5] + p), b1 = _mm_loadu_pd(rows[5] + p + 2);
        double *d = dst + p * 6;
        _mm256_storeu_pd(d + 0, c0);
        _mm_storeu_pd(d + 4, _mm_unpacklo_pd(a0, b0));
        _mm256_storeu_pd(d + 6, c1);
        _mm_storeu_pd(d + 10, _mm_unpackhi_pd(a0, b0));
        _mm256_storeu_pd(d + 12, c2);
        _mm_storeu_pd(d + 16, _mm_unpacklo_pd(a1, b1));
        _mm256_storeu_pd(d + 18, c3);
        _mm_storeu_pd(d + 22, _mm_unpackhi_pd(a1, b1));
    }
    for (; p < kc; p++)
        for (int i = 0; i < 6; i++) dst[p * 6 + i] = rows[i][p];
}
static int have_avx(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx") ? 1 : 0;
    }
    return known;
}
#endif

/* Guided slabs, for slabs that share a packed operand: each takes 1 / nt of the panels that the
 * slabs before it left (rounded up), so that the first nt take most of the work in large pieces
 * and the last are single panels that even out the threads' finish (a thread that woke late, or
 * was descheduled, takes fewer). guided_start: the first panel of slab s, `panels` when s is the
 * slab count. Against fixed slabs of a quarter of a thread's panels, on 2 threads of the Zen 3
 * VM, one process alternating the two (profiling builds' FNN_GUIDED=0):
 *   - 256 x 128 x 128 with trans_a, medians of 9 rounds: 92 -> 103 and 107 -> 112 GFLOP/s; 784 x
 *     128 x 256 with trans_a 123 -> 134 and 139 -> 139;
 *   - the batch-128 epoch of 20,000 MNIST rows, best of 25: 179 -> 176 and 175 -> 169 ms (its
 *     weight gradients with their update 74 -> 72 and 74 -> 70); batch 32: 228 -> 219 ms;
 *   - batch 16: the weight gradients with their update 119 -> 110 and 289 -> 214 ms, the dX
 *     products 12.9 -> 13.2 and 22.4 -> 26.3 ms.
 * Equal slabs (no short last one) were slower than the fixed ones (256 x 128 x 128: 132 -> 125). */
static inline int64_t guided_next(int64_t at, int64_t panels, int64_t nt) {
    return at + (panels - at + nt - 1) / nt; /* at least one panel while at < panels */
}

static int64_t guided_start(int64_t s, int64_t panels, int64_t nt) {
    int64_t at = 0;
    for (int64_t q = 0; q < s && at < panels; q++) at = guided_next(at, panels, nt);
    return at < panels ? at : panels;
}

#define FNN_SELF "gemm.c"
#include "instantiate.h"

const fnn_arch fnn_arch_ref = {
    "ref", NULL,
    {REF_MR, REF_NR, 128, 256, 4096, fnn_gemm_ukr_ref_4x8_f32, fnn_gemm_rows_ref_f32, fnn_gemm_ukrb_ref_4x8_f32, fnn_gemm_list_ref_f32, NULL, fnn_gemm_ukrs_ref_4x8_f32, NULL},
    {REF_MR, REF_NR, 64, 256, 2048, fnn_gemm_ukr_ref_4x8_f64, fnn_gemm_rows_ref_f64, fnn_gemm_ukrb_ref_4x8_f64, fnn_gemm_list_ref_f64, NULL, fnn_gemm_ukrs_ref_4x8_f64, NULL},
};

#else /* template part: real, FN */

/* The portable microkernels, packed b (b[p * REF_NR + j]) and unpacked (fnn_ukrb: b[p * ldb + j]):
 * one body, the compiler vectorises the 4 x 8 accumulator with baseline flags. */
static inline void FN(ukr_ref_body)(int64_t k, const real *restrict a, int64_t rsa, int64_t csa,
                                    const real *restrict b, int64_t ldb, real *restrict c,
                                    int64_t ldc, int64_t mr, int64_t nr, real alpha, real beta) {
    real acc[REF_MR][REF_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < k; p++)
        for (int i = 0; i < REF_MR; i++)
            for (int j = 0; j < REF_NR; j++) acc[i][j] += a[i * rsa + p * csa] * b[p * ldb + j];
    for (int64_t i = 0; i < mr; i++) {
        real *ci = c + i * ldc;
        if (beta == 0)
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j];
        else
            for (int64_t j = 0; j < nr; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
}

void FN(fnn_gemm_ukr_ref_4x8)(int64_t k, const real *restrict a, const real *restrict b,
                              real *restrict c, int64_t ldc, int64_t mr, int64_t nr, real alpha,
                              real beta) {
    FN(ukr_ref_body)(k, a, 1, REF_MR, b, REF_NR, c, ldc, mr, nr, alpha, beta);
}

void FN(fnn_gemm_ukrb_ref_4x8)(int64_t k, const real *restrict a, const real *restrict b,
                               int64_t ldb, real *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                               real alpha, real beta) {
    FN(ukr_ref_body)(k, a, 1, REF_MR, b, ldb, c, ldc, mr, nr, alpha, beta);
}

void FN(fnn_gemm_ukrs_ref_4x8)(int64_t k, const real *restrict a, int64_t rsa, int64_t csa,
                               const real *restrict b, int64_t ldb, real *restrict c, int64_t ldc,
                               int64_t nr, real alpha, real beta) {
    FN(ukr_ref_body)(k, a, rsa, csa, b, ldb, c, ldc, REF_MR, nr, alpha, beta);
}

/* The portable row kernel (gemm_kernels.h): c += a[t] * b's row idx[t], one row after the other,
 * a product then a sum (no FMA); the compiler vectorises the column loop. */
void FN(fnn_gemm_rows_ref)(int64_t n, int64_t cnt, const int32_t *restrict idx,
                           const real *restrict a, const real *restrict b, int64_t ldb,
                           real *restrict c) {
    for (int64_t t = 0; t < cnt; t++) {
        const real at = a[t], *restrict bt = b + idx[t] * ldb;
        for (int64_t j = 0; j < n; j++) c[j] += at * bt[j];
    }
}

/* The portable list kernel (gemm_kernels.h): 8 inputs at a time, a chunk of zeros costing one
 * test (when alpha is finite: alpha * 0 is then 0), the others listed branch-free (written
 * always, kept when nonzero). */
int64_t FN(fnn_gemm_list_ref)(int64_t k, const real *restrict a, real alpha, real *restrict vals,
                              int32_t *restrict idx) {
    int64_t cnt = 0, p = 0;
    for (; p + 8 <= k && alpha - alpha == 0; p += 8) {
        uint64_t w[sizeof(real)], any = 0; /* the 8 values' bits, ORed; the signs dropped */
        memcpy(w, a + p, sizeof w);
        for (size_t q = 0; q < sizeof(real); q++) any |= w[q];
        if (!(any & (sizeof(real) == 4 ? 0x7FFFFFFF7FFFFFFFull : 0x7FFFFFFFFFFFFFFFull))) continue;
        for (int q = 0; q < 8; q++) {
            const real v = alpha * a[p + q];
            vals[cnt] = v;
            idx[cnt] = (int32_t)(p + q);
            cnt += v != 0;
        }
    }
    for (; p < k; p++) {
        const real v = alpha * a[p];
        vals[cnt] = v;
        idx[cnt] = (int32_t)p;
        cnt += v != 0;
    }
    return cnt;
}

/* Packing space one thread needs for products of at most m x n x k with kernel K: a block of A
 * (rows rounded up to MR, at most MC) by KC, a block of B (columns rounded up to NR, at most NC),
 * room to align both. gemm_team uses the same formula for each call. */
#if REAL_IS_FLOAT
static size_t FN(per_thread_for)(const fnn_kernel_f32 *K, int64_t m, int64_t n, int64_t k) {
#else
static size_t FN(per_thread_for)(const fnn_kernel_f64 *K, int64_t m, int64_t n, int64_t k) {
#endif
    const int64_t rows = min64(K->mc, (m + K->mr - 1) / K->mr * K->mr);
    const int64_t cols = min64(K->nc, (n + K->nr - 1) / K->nr * K->nr), depth = min64(K->kc, k);
    return ((size_t)(rows * depth + depth * cols) + 2 * 64 / sizeof(real) + 63) & ~(size_t)63;
}

/* Workspace for any product up to m x n x k, whichever kernel is active, one area per thread. */
size_t FN(fnn_gemm_work_size_for)(int64_t m, int64_t n, int64_t k) {
    size_t most = 0;
    for (const fnn_arch *const *a = fnn_all_archs; *a; a++) {
#if REAL_IS_FLOAT
        const size_t s = FN(per_thread_for)(&(*a)->f32, m, n, k);
#else
        const size_t s = FN(per_thread_for)(&(*a)->f64, m, n, k);
#endif
        if (s > most) most = s;
    }
#ifdef FNN_PROFILE /* dispatch.c's block knobs */
#if REAL_IS_FLOAT
    const size_t s = FN(per_thread_for)(&fnn_active_arch()->f32, m, n, k);
#else
    const size_t s = FN(per_thread_for)(&fnn_active_arch()->f64, m, n, k);
#endif
    if (s > most) most = s;
#endif
    return most * (size_t)fnn_max_threads();
}

size_t FN(fnn_gemm_work_size)(void) {
    const int64_t any = (int64_t)1 << 40; /* no bound: full cache blocks */
    return FN(fnn_gemm_work_size_for)(any, any, any);
}

/* A full panel whose rows are contiguous in the operand: dst[p * w : p * w + w] = src[p * ld :
 * p * ld + w] for p < kc. For the kernels' panel widths, copies of constant size, which the
 * compiler makes a move or two; the generic loop became a call to memcpy per p (256 x 128 x 128
 * with trans_a: 13 % of the time in memmove). 0, having done nothing, for another width. */
static inline int FN(copy_panel)(real *restrict dst, const real *restrict src, int64_t ld, int64_t kc,
                                 int64_t w) {
#define COPY_FIXED(W)                                                                             \
    case W:                                                                                       \
        for (int64_t p = 0; p < kc; p++) memcpy(dst + p * (W), src + p * ld, (W) * sizeof(real)); \
        return 1;
    switch (w) {
        COPY_FIXED(4)
        COPY_FIXED(6)
        COPY_FIXED(8)
        COPY_FIXED(16)
        COPY_FIXED(32)
    default: return 0;
    }
#undef COPY_FIXED
}

/* op(A)[i0 + ip*MR + i, p0 + p] into dst[p*MR + i] for one MR-row panel, zero-padded past mr. */
static void FN(pack_a)(real *restrict dst, const real *restrict A, int64_t lda, int trans,
                       int64_t i0, int64_t p0, int64_t mr, int64_t kc, int64_t MR) {
    if (trans) { /* A stored k x m: a row of A holds MR consecutive i */
        if (mr == MR && FN(copy_panel)(dst, A + p0 * lda + i0, lda, kc, MR)) return;
        for (int64_t p = 0; p < kc; p++) {
            const real *src = A + (p0 + p) * lda + i0;
            int64_t i = 0;
            for (; i < mr; i++) dst[p * MR + i] = src[i];
            for (; i < MR; i++) dst[p * MR + i] = 0;
        }
    } else { /* MR rows streamed side by side: sequential reads, sequential writes */
        const real *rows[32];
        int64_t i = 0;
        for (; i < mr && i < 32; i++) rows[i] = A + (i0 + i) * lda + p0;
#if defined(FNN_HAVE_PACK8_AVX) && REAL_IS_FLOAT
        if (MR == 8 && mr == 8 && have_avx()) {
            pack_a8_f32_avx(dst, (const float *const *)rows, kc);
            return;
        }
        if (MR == 6 && mr == 6 && have_avx()) {
            pack_a6_f32_avx(dst, (const float *const *)rows, kc);
            return;
        }
#elif defined(FNN_HAVE_PACK8_AVX)
        if (MR == 6 && mr == 6 && have_avx()) {
            pack_a6_f64_avx(dst, (const double *const *)rows, kc);
            return;
        }
#endif
        if (MR <= 32) {
            for (int64_t p = 0; p < kc; p++) {
                real *d = dst + p * MR;
                for (i = 0; i < mr; i++) d[i] = rows[i][p];
                for (; i < MR; i++) d[i] = 0;
            }
        } else {
            for (i = 0; i < mr; i++)
                for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = A[(i0 + i) * lda + p0 + p];
            for (; i < MR; i++)
                for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0;
        }
    }
}

/* op(B)[p0 + p, j0 + j] into dst[p*NR + j] for one NR-column panel, zero-padded past nr. */
static void FN(pack_b)(real *restrict dst, const real *restrict B, int64_t ldb, int trans,
                       int64_t p0, int64_t j0, int64_t nr, int64_t kc, int64_t NR) {
    if (trans) { /* B stored n x k */
#if defined(FNN_HAVE_PACK8_AVX) && REAL_IS_FLOAT
        if (nr == NR && NR % 8 == 0 && have_avx()) {
            pack_bt_f32_avx(dst, B + j0 * ldb + p0, ldb, kc, NR);
            return;
        }
#elif defined(FNN_HAVE_PACK8_AVX)
        if (nr == NR && NR % 4 == 0 && have_avx()) {
            pack_bt_f64_avx(dst, B + j0 * ldb + p0, ldb, kc, NR);
            return;
        }
#endif
        for (int64_t j = 0; j < nr; j++) {
            const real *src = B + (j0 + j) * ldb + p0;
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = src[p];
        }
        for (int64_t j = nr; j < NR; j++)
            for (int64_t p = 0; p < kc; p++) dst[p * NR + j] = 0;
    } else {
        if (nr == NR && FN(copy_panel)(dst, B + p0 * ldb + j0, ldb, kc, NR)) return;
        for (int64_t p = 0; p < kc; p++) {
            const real *src = B + (p0 + p) * ldb + j0;
            int64_t j = 0;
            for (; j < nr; j++) dst[p * NR + j] = src[j];
            for (; j < NR; j++) dst[p * NR + j] = 0;
        }
    }
}

/* Panels [jp0, ceil(nc / NR)) of op(B)'s columns [j0, j0 + nc), rows [p0, p0 + kc), each into
 * dst + jp * NR * kc as pack_b lays it out. Without trans_b the full panels are filled row by row
 * of B: each row of B read once, in order, which the hardware prefetcher follows, where a
 * panel at a time reads a cache line from each of kc rows (128 x 784 x 256 on 1 thread: 75 ->
 * 79 GFLOP/s, medians of 8 processes, Zen 3). */
static void FN(pack_b_panels)(real *restrict dst, const real *restrict B, int64_t ldb, int trans,
                              int64_t p0, int64_t j0, int64_t nc, int64_t kc, int64_t NR,
                              int64_t jp0) {
    const int64_t nb = (nc + NR - 1) / NR, full = nc / NR;
    int64_t jp = jp0;
    if (!trans && full - jp0 >= 2) {
#define PACK_B_ROWS(W)                                                                            \
    if (NR == (W)) {                                                                              \
        for (int64_t p = 0; p < kc; p++) {                                                        \
            const real *src = B + (p0 + p) * ldb + j0;                                            \
            for (int64_t q = jp0; q < full; q++)                                                  \
                memcpy(dst + q * (W) * kc + p * (W), src + q * (W), (W) * sizeof(real));          \
        }                                                                                         \
        jp = full;                                                                                \
    }
        PACK_B_ROWS(8)
        PACK_B_ROWS(16)
        PACK_B_ROWS(32)
#undef PACK_B_ROWS
    }
    for (; jp < nb; jp++)
        FN(pack_b)(dst + jp * NR * kc, B, ldb, trans, p0, j0 + jp * NR, min64(NR, nc - jp * NR), kc, NR);
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

/* The epilogue's l2_loss term (internal_api.h): C += l2c params below n_decay, rows [i0, i1),
 * columns [j0, j1) of C; a row's elements lie at e->off + i ldc + j of the flat buffer. */
FNN_CLONES static void FN(epi_l2)(const FN(fnn_gemm_epi) *e, real *C, int64_t ldc, int64_t i0, int64_t i1,
                                  int64_t j0, int64_t j1) {
    const real c = e->l2c;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t lo = e->off + i * ldc + j0;
        if (lo >= e->n_decay) break; /* later rows lie further on */
        const int64_t w = j1 - j0 < e->n_decay - lo ? j1 - j0 : e->n_decay - lo;
        real *restrict ci = C + i * ldc + j0;
        const real *restrict p = e->params + lo;
        for (int64_t j = 0; j < w; j++) ci[j] += c * p[j];
    }
}

/* The epilogue (internal_api.h) on rows [i0, i1), columns [j0, j1) of C, row by row. */
static void FN(epi_apply)(const FN(fnn_gemm_epi) *e, real *C, int64_t ldc, int64_t i0, int64_t i1,
                          int64_t j0, int64_t j1) {
    const int64_t w = j1 - j0;
    int pre_bad = 0;
    for (int64_t i = i0; i < i1; i++) {
        real *c = C + i * ldc + j0;
        if (e->y) {
            FN(fnn_activation_backward)(e->act, c, c, e->y + i * e->ldy + j0, 1, w, e->alpha);
        } else {
            if (e->bias) FN(fnn_bias_forward)(c, e->bias + j0, 1, w, w);
            if (e->x_nonfinite && !pre_bad) pre_bad = !FN(fnn_all_finite)(c, w); /* the row is in L1 */
            if (e->act != FNN_ACT_IDENTITY) FN(fnn_activation_forward)(e->act, c, c, 1, w, e->alpha);
        }
    }
    if (pre_bad) atomic_store_explicit(e->x_nonfinite, 1, memory_order_relaxed);
    if (e->nonfinite) {
        /* whole rows of C lie one after another: one call for the block (a layer of one output,
         * or ten, made as many calls as the block's rows, each of a few values: +14-21 % a step) */
        int bad = 0;
        if (w == ldc)
            bad = !FN(fnn_all_finite)(C + i0 * ldc, (i1 - i0) * w);
        else
            for (int64_t i = i0; i < i1 && !bad; i++) bad = !FN(fnn_all_finite)(C + i * ldc + j0, w);
        if (bad) atomic_store_explicit(e->nonfinite, 1, memory_order_relaxed);
    }
    if (e->plan) { /* the same: one call where the block's rows are whole */
        int over = 0;
        if (e->l2) FN(epi_l2)(e, C, ldc, i0, i1, j0, j1);
        if (w == ldc)
            over = FN(fnn_opt_plan_apply)(e->plan, e->params, e->slots, e->n_params, e->n_decay,
                                          C + i0 * ldc, e->off + i0 * ldc, e->off + i1 * ldc);
        else
            for (int64_t i = i0; i < i1; i++)
                over |= FN(fnn_opt_plan_apply)(e->plan, e->params, e->slots, e->n_params, e->n_decay,
                                               C + i * ldc + j0, e->off + i * ldc + j0, e->off + i * ldc + j1);
        if (over) __atomic_store_n(e->overflowed, 1, __ATOMIC_RELAXED);
    }
}

/* The depth of gemm's k blocks: k in blocks of equal depth (at most kc), no thin last block whose
 * C traffic outweighs it. Every path sums each element over the same blocks, in the same order. */
static inline int64_t FN(k_depth)(int64_t k, int64_t kc) {
    const int64_t blocks = (k + kc - 1) / kc;
    return (k + blocks - 1) / blocks;
}

/* One packed column panel pb (nr columns) against the mc rows packed in pa, into c: the
 * microkernel a row panel at a time, or a last panel at most NR / 4 wide by the kernel's edge
 * kernel, FNN_EDGE_PANELS row panels at a time, where it has one (same bits) and there is more
 * than one row panel (one ran 4-7 % slower there than the microkernel: 8 x 784 x 4, double). */
static inline void FN(panel_tiles)(
#if REAL_IS_FLOAT
    const fnn_kernel_f32 *K,
#else
    const fnn_kernel_f64 *K,
#endif
    int64_t kc, const real *pa, int64_t mc, const real *pb, real *c, int64_t ldc, int64_t nr,
    real alpha, real beta) {
    const int64_t MR = K->mr;
    if (4 * nr <= K->nr && mc > MR && K->edge) {
        for (int64_t i = 0; i < mc; i += FNN_EDGE_PANELS * MR)
            K->edge(kc, pa + i * kc, pb, c + i * ldc, ldc, min64(FNN_EDGE_PANELS * MR, mc - i), nr, alpha,
                    beta);
        return;
    }
    for (int64_t i = 0; i < mc; i += MR)
        K->ukr(kc, pa + i * kc, pb, c + i * ldc, ldc, min64(MR, mc - i), nr, alpha, beta);
}

/* The five loops over one block of C: rows [i0, i1), columns [j0, j1), packing into pa / pb;
 * the epilogue (or NULL) on each MC x NC block of C after its last k block. */
static void FN(gemm_block)(real *C, const real *A, const real *B, int64_t i0, int64_t i1, int64_t j0,
                           int64_t j1, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                           int trans_b, real alpha, real beta, real *pa, real *pb,
                           const real *pa_ready, const real *pb_ready, int unpacked_b, int direct_a,
                           const FN(fnn_gemm_epi) *epi,
#if REAL_IS_FLOAT
                           const fnn_kernel_f32 *K
#else
                           const fnn_kernel_f64 *K
#endif
) {
    /* pa_ready / pb_ready: op(A) / op(B) already packed whole (one block: i1 - i0 <= MC,
     * j1 - j0 <= NC, k <= KC). unpacked_b (no trans_b): the kernel reads B's whole NR-column
     * panels where they are stored (ukr_b); only a last, narrower panel is packed. direct_a
     * (K->ukr_s): op(A)'s whole row panels are read where A lies, not packed (a_direct); only a
     * last, shorter one is, and all of them where the block's last column panel goes to the edge
     * kernel, which reads packed panels, unless the kernel has an edge kernel that reads A where
     * it lies (edge_s): it then takes every row of that column panel. */
    const int64_t MR = K->mr, NR = K->nr, KCB = FN(k_depth)(k, K->kc);
    const int64_t rsa = trans_a ? 1 : lda, csa = trans_a ? lda : 1;
    for (int64_t jc = j0; jc < j1; jc += K->nc) {
        const int64_t nc = min64(K->nc, j1 - jc), nb = (nc + NR - 1) / NR;
        const int edge_panel = K->edge && 4 * (nc - (nb - 1) * NR) <= NR;
        const int edge_direct = edge_panel && K->edge_s;
        const int direct = direct_a && !pa_ready && (!edge_panel || edge_direct);
        for (int64_t pc = 0; pc < k; pc += KCB) {
            const int64_t kc = min64(KCB, k - pc);
            const real beta_pc = pc == 0 ? beta : (real)1;
            if (pb_ready)
                pb = (real *)pb_ready;
            else
                FN(pack_b_panels)(pb, B, ldb, trans_b, pc, jc, nc, kc, NR, unpacked_b ? nc / NR : 0);
            for (int64_t ic = i0; ic < i1; ic += K->mc) {
                const int64_t mc = min64(K->mc, i1 - ic), na = (mc + MR - 1) / MR;
                const int64_t full = direct ? mc / MR : 0; /* row panels read where they lie */
                const int64_t mt = mc - full * MR;         /* rows in packed panels, from pa on */
                if (pa_ready)
                    pa = (real *)pa_ready;
                else
                    for (int64_t ip = full; ip < na; ip++)
                        FN(pack_a)(pa + (ip - full) * MR * kc, A, lda, trans_a, ic + ip * MR, pc,
                                   min64(MR, mc - ip * MR), kc, MR);
                for (int64_t jp = 0; jp < nb; jp++) {
                    real *c = C + ic * ldc + jc + jp * NR;
                    const int64_t nr = min64(NR, nc - jp * NR);
                    const int ub = unpacked_b && (jp + 1) * NR <= nc;
                    const real *bp = ub ? B + pc * ldb + jc + jp * NR : pb + jp * NR * kc;
                    if (direct && edge_direct && jp == nb - 1) { /* every row, FNN_EDGE_PANELS panels at a time */
                        for (int64_t i = 0; i < mc; i += FNN_EDGE_PANELS * MR)
                            K->edge_s(kc, A + (ic + i) * rsa + pc * csa, rsa, csa, bp, c + i * ldc, ldc,
                                      min64(FNN_EDGE_PANELS * MR, mc - i), nr, alpha, beta_pc);
                        continue;
                    }
                    for (int64_t ip = 0; ip < full; ip++) {
                        const int64_t i = ic + ip * MR;
                        K->ukr_s(kc, A + i * rsa + pc * csa, rsa, csa, bp, ub ? ldb : NR, c + ip * MR * ldc, ldc,
                                 nr, alpha, beta_pc);
                    }
                    real *ct = c + full * MR * ldc;
                    if (mt == 0) continue;
                    if (ub)
                        for (int64_t ip = 0; ip * MR < mt; ip++)
                            K->ukr_b(kc, pa + ip * MR * kc, bp, ldb, ct + ip * MR * ldc, ldc,
                                     min64(MR, mt - ip * MR), NR, alpha, beta_pc);
                    else
                        FN(panel_tiles)(K, kc, pa, mt, bp, ct, ldc, nr, alpha, beta_pc);
                }
                if (epi && pc + kc >= k) FN(epi_apply)(epi, C, ldc, ic, ic + mc, jc, jc + nc);
            }
        }
    }
}

/* The axpy form (no trans_b) for row i of C: its used rows of B (those whose input is nonzero,
 * or all of them), listed SKINNY_SEG at a time (by the kernel's list kernel when op(A)'s row is
 * contiguous), go to the kernel's row kernel (gemm_kernels.h), which keeps blocks of C's row in
 * registers across the whole list. */
#if REAL_IS_FLOAT
static void FN(skinny_row)(const fnn_kernel_f32 *K, real *restrict c, const real *A, const real *B,
#else
static void FN(skinny_row)(const fnn_kernel_f64 *K, real *restrict c, const real *A, const real *B,
#endif
                           int64_t i, int64_t n, int64_t k, int64_t lda, int64_t ldb, int trans_a,
                           real alpha, real beta, int skip_zero) {
    real a[SKINNY_SEG + FNN_LIST_PAD];     /* alpha * op(A)[i, p] of the listed rows p */
    int32_t idx[SKINNY_SEG + FNN_LIST_PAD]; /* p - p0 */
    if (beta == 0)
        for (int64_t j = 0; j < n; j++) c[j] = 0;
    else if (beta != 1)
        for (int64_t j = 0; j < n; j++) c[j] *= beta;
    for (int64_t p0 = 0; p0 < k; p0 += SKINNY_SEG) {
        const int64_t kk = k - p0 < SKINNY_SEG ? k - p0 : SKINNY_SEG;
        int64_t cnt = 0;
        if (!trans_a && skip_zero) {
            cnt = K->list(kk, A + i * lda + p0, alpha, a, idx);
        } else {
            for (int64_t p = 0; p < kk; p++) {
                a[cnt] = alpha * (trans_a ? A[(p0 + p) * lda + i] : A[i * lda + p0 + p]);
                idx[cnt] = (int32_t)p;
                cnt += !skip_zero || a[cnt] != 0;
            }
        }
        if (cnt) K->rows(n, cnt, idx, a, B + p0 * ldb, ldb, c);
    }
}

/* s[r] = sum over p < kk of a[p] b[r * ldb + p], for `rows` rows of B at once (a constant where
 * inlined): SKINNY_LANES partial sums a row that vectorise, added up as a tree (a chain of 4 adds,
 * not 16), and the last kk % SKINNY_LANES products added one by one. Each row's sums are formed
 * in the same order whatever `rows` is; several rows at once keep several chains of additions in
 * flight (dX of batch 1, 1 x 256 x 128 and 1 x 128 x 10: 8.9 and 4.3 ms an epoch of 2,000 steps
 * before, one row at a time with the lanes added in a chain). */
static inline __attribute__((always_inline)) void FN(skinny_dots)(real *restrict s, const real *restrict a,
                                                                  const real *restrict b, int64_t ldb,
                                                                  int64_t kk, const int rows) {
    const int64_t full = kk - kk % SKINNY_LANES; /* products summed in the lanes */
#if defined(__GNUC__)
    typedef real vec __attribute__((vector_size(32)));
    enum { V = 32 / (int)sizeof(real), NV = SKINNY_LANES / V }; /* lanes a vector, vectors a row */
    vec acc[SKINNY_DOT_ROWS][NV];
    _Pragma("GCC unroll 4") for (int r = 0; r < rows; r++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[r][v] = (vec){0};
    for (int64_t p = 0; p < full; p += SKINNY_LANES)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {
            vec av;
            __builtin_memcpy(&av, a + p + v * V, sizeof av);
            _Pragma("GCC unroll 4") for (int r = 0; r < rows; r++) {
                vec bv;
                __builtin_memcpy(&bv, b + r * ldb + p + v * V, sizeof bv);
                acc[r][v] += av * bv;
            }
        }
#endif
    _Pragma("GCC unroll 4") for (int r = 0; r < rows; r++) {
        real t = 0;
        for (int64_t p = full; p < kk; p++) t += a[p] * b[r * ldb + p];
        if (full > 0) {
            real lane[SKINNY_LANES];
#if defined(__GNUC__)
            __builtin_memcpy(lane, acc[r], sizeof lane);
#else
            for (int q = 0; q < SKINNY_LANES; q++) lane[q] = 0;
            for (int64_t p = 0; p < full; p += SKINNY_LANES)
                for (int q = 0; q < SKINNY_LANES; q++) lane[q] += a[p + q] * b[r * ldb + p + q];
#endif
            _Pragma("GCC unroll 4") for (int w = SKINNY_LANES / 2; w >= 1; w /= 2)
                for (int q = 0; q < w; q++) lane[q] += lane[q + w];
            t += lane[0];
        }
        s[r] = t;
    }
}

/* A few rows of C (single-sample inference, tiny batches): packing B would cost more than the
 * product, so stream B once per row instead. Row i of C is sum_p op(A)[i,p] * op(B)[p,:]
 * (axpy over B's rows, skinny_row) or, with trans_b, dot products with B's rows.
 * skip_zero (no trans_b, beta == 0 only), for inputs with many zeros (MNIST rows are 80% zeros):
 * a row of B whose input in row i of A is zero is not read for row i. Its term is a[p] * b = +-0
 * for a finite b, and adding +-0 to a partial sum s gives s back when s != 0, and a zero when
 * s is: skipping changes at most the sign of a zero element of C, never a value (checked by
 * tests/test_inference.py against the product that reads every row). An inf or NaN in a row not
 * read is not propagated (0 * inf would give NaN), as in the reference BLAS's GEMV, which skips a
 * zero x(j) the same way. */
FNN_CLONES static void FN(gemm_skinny)(real *C, const real *A, const real *B, int64_t m, int64_t n,
                                       int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                                       int trans_b, real alpha, real beta, int skip_zero) {
#define SKINNY_A(i, q) (alpha * (trans_a ? A[(q) * lda + (i)] : A[(i) * lda + (q)]))
    if (!trans_b) {
        skip_zero = skip_zero && beta == 0;
#if REAL_IS_FLOAT
        const fnn_kernel_f32 *K = &fnn_active_arch()->f32;
#else
        const fnn_kernel_f64 *K = &fnn_active_arch()->f64;
#endif
        for (int64_t i = 0; i < m; i++)
            FN(skinny_row)(K, C + i * ldc, A, B, i, n, k, lda, ldb, trans_a, alpha, beta, skip_zero);
    } else { /* dot products with B's rows: SKINNY_LANES partial sums that vectorise, then added up */
        real arow[FNN_SKINNY_M][SKINNY_DOT_K]; /* a row of op(A) contiguous, SKINNY_DOT_K at a time */
        for (int64_t i = 0; i < m; i++) {
            real *restrict c = C + i * ldc;
            for (int64_t j = 0; j < n; j++) c[j] = beta == 0 ? (real)0 : beta * c[j];
        }
        for (int64_t p0 = 0; p0 < k; p0 += SKINNY_DOT_K) {
            const int64_t kk = k - p0 < SKINNY_DOT_K ? k - p0 : SKINNY_DOT_K;
            for (int64_t i = 0; i < m; i++)
                for (int64_t p = 0; p < kk; p++) arow[i][p] = SKINNY_A(i, p0 + p);
            int64_t j = 0;
            for (; j + SKINNY_DOT_ROWS <= n; j += SKINNY_DOT_ROWS)
                for (int64_t i = 0; i < m; i++) {
                    real s[SKINNY_DOT_ROWS];
                    FN(skinny_dots)(s, arow[i], B + j * ldb + p0, ldb, kk, SKINNY_DOT_ROWS);
                    for (int r = 0; r < SKINNY_DOT_ROWS; r++) C[i * ldc + j + r] += s[r];
                }
            for (; j < n; j++)
                for (int64_t i = 0; i < m; i++) {
                    real s[1];
                    FN(skinny_dots)(s, arow[i], B + j * ldb + p0, ldb, kk, 1);
                    C[i * ldc + j] += s[0];
                }
        }
    }
#undef SKINNY_A
}

/* One call split into slabs of C's columns (or rows, when C is narrow): the tasks of a team. */
typedef struct FN(gemm_job) {
    real *C;
    const real *A, *B;
    int64_t m, n, k, ldc, lda, ldb, step, per_slab, extent;
    int64_t guided; /* 0: slab s is panels [s * per_slab, (s + 1) * per_slab); else its team's size (guided_start) */
    int trans_a, trans_b, by_cols;
    real alpha, beta, *work;
    /* keep_a / keep_b: the operand every slab needs fits one block, so each thread packs it once
     * per call into its own area and keeps it for all its slabs (packed[worker] says it has);
     * sharing one packed copy between cores measured slower than packing it twice. */
    int keep_a, keep_b;
    unsigned char packed[FNN_MAX_THREADS_CAP];
    size_t per_thread, pa_size; /* a thread's packing area: pa_size elements of A, then B's */
    /* shared_b (gemm_team): all of op(B) packed once by the team into sb, k in kblocks blocks of
     * KCB, each block n_pad = nb * NR wide; then slabs of rows, each packing only its A rows */
    real *sb;
    int64_t kblocks, KCB, nb;
    int unpacked_b; /* gemm_block's: a few rows of op(A) meet op(B) where it is stored */
    int direct_a;   /* gemm_block's: whole row panels of op(A) read where A lies (a_direct) */
    int64_t grid_tn, grid_r, grid_c; /* grid: tasks in a row of the grid, rows and columns a task owns */
    const FN(fnn_gemm_epi) *epi;
    size_t pa_stride; /* shared_b: a thread's area for its rows of op(A) */
#if REAL_IS_FLOAT
    fnn_kernel_f32 K;
#else
    fnn_kernel_f64 K;
#endif
} FN(gemm_job);

static void FN(gemm_slab)(void *ctx, int64_t s, int worker) {
    FN(gemm_job) *j = (FN(gemm_job) *)ctx;
    real *pa = (real *)align64(j->work + j->per_thread * (size_t)worker);
    real *pb = (real *)align64(pa + j->pa_size);
    const int64_t panels = (j->extent + j->step - 1) / j->step;
    const int64_t p0 = j->guided ? guided_start(s, panels, j->guided) : s * j->per_slab;
    const int64_t p1 = j->guided ? guided_start(s + 1, panels, j->guided) : (s + 1) * j->per_slab;
    const int64_t lo = p0 * j->step, hi = min64(p1 * j->step, j->extent);
    const int64_t MR = j->K.mr, NR = j->K.nr;
    if (j->keep_a && !j->packed[worker]) { /* all of op(A), once per thread and call */
        for (int64_t ip = 0; ip * MR < j->m; ip++)
            FN(pack_a)(pa + ip * MR * j->k, j->A, j->lda, j->trans_a, ip * MR, 0,
                       min64(MR, j->m - ip * MR), j->k, MR);
        j->packed[worker] = 1;
    }
    if (j->keep_b && !j->packed[worker]) { /* all of op(B), once per thread and call */
        FN(pack_b_panels)(pb, j->B, j->ldb, j->trans_b, 0, 0, j->n, j->k, NR, 0);
        j->packed[worker] = 1;
    }
    if (j->by_cols)
        FN(gemm_block)(j->C, j->A, j->B, 0, j->m, lo, hi, j->k, j->ldc, j->lda, j->ldb, j->trans_a,
                       j->trans_b, j->alpha, j->beta, pa, pb, j->keep_a ? pa : NULL, NULL, j->unpacked_b,
                       j->direct_a, j->epi, &j->K);
    else
        FN(gemm_block)(j->C, j->A, j->B, lo, hi, 0, j->n, j->k, j->ldc, j->lda, j->ldb, j->trans_a,
                       j->trans_b, j->alpha, j->beta, pa, pb, NULL, j->keep_b ? pb : NULL, j->unpacked_b,
                       j->direct_a, j->epi, &j->K);
}

/* Grid (see gemm_team): task t owns a grid_r x grid_c block of C, packing its own rows of op(A)
 * and columns of op(B). */
static void FN(gemm_grid_task)(void *ctx, int64_t t, int worker) {
    const FN(gemm_job) *j = (const FN(gemm_job) *)ctx;
    real *pa = (real *)align64(j->work + j->per_thread * (size_t)worker);
    real *pb = (real *)align64(pa + j->pa_size);
    const int64_t i0 = t / j->grid_tn * j->grid_r, j0 = t % j->grid_tn * j->grid_c;
    FN(gemm_block)(j->C, j->A, j->B, i0, min64(i0 + j->grid_r, j->m), j0, min64(j0 + j->grid_c, j->n), j->k,
                   j->ldc, j->lda, j->ldb, j->trans_a, j->trans_b, j->alpha, j->beta, pa, pb, NULL, NULL,
                   j->unpacked_b, j->direct_a, j->epi, &j->K);
}

/* The grid of at most nt blocks of C whose block costs least, as tm rows by tn columns of blocks,
 * from rp row panels (of MR rows) and cp column panels (of NR columns). A block of r x c
 * elements of C, k deep, costs about 2 r c k / F to compute and 4 (r + c) k / W to read its
 * operands (float; F a core's FLOP/s, W the bytes per second it draws from other cores' caches,
 * where a step's operands were last written): in units of 2 k / F, r c + GRID_TRAFFIC (r + c),
 * with GRID_TRAFFIC = 2 F / W, about 14 on the 16-core AVX-512 Xeon measured (F / W ~ 7 FLOP per
 * byte). Returns 1 when the best grid has more than one block in each direction; a single row or
 * column of blocks is left to the slab splits, which share a whole packed operand. */
static int FN(grid_shape)(int64_t rp, int64_t cp, int64_t MR, int64_t NR, int nt, int64_t *tm, int64_t *tn) {
    double best = -1;
    for (int64_t a = 1; a <= nt && a <= rp; a++) {
        const int64_t b = min64(nt / a, cp);
        const double r = (double)((rp + a - 1) / a * MR), c = (double)((cp + b - 1) / b * NR);
        const double cost = r * c + GRID_TRAFFIC * (r + c);
        if (best < 0 || cost < best) {
            best = cost;
            *tm = a;
            *tn = b;
        }
    }
    return *tm > 1 && *tn > 1;
}

/* Whether gemm_block reads op(A)'s whole row panels where A lies (the kernel's ukr_s) instead of
 * packing them. The microkernel's broadcasts read op(A)'s MR values of one p from anywhere as
 * fast as from a packed panel, and packing cost a tenth of the training's small products, more
 * where each thread of a team packed all of op(A) (2-core Zen 5 VM, 2 threads, AVX-512, best of
 * 400 calls: 128 x 256 x 128 21.6 -> 19.5 us, 256 x 128 x 128 with trans_a 22.3-23.4 -> 19.8,
 * 128 x 784 x 256 118-120 -> 114; the batch-128 epoch 191-195 -> 178-184 ms, batch 16 100-110
 * -> 91-102). Except with trans_a where a row of A is a multiple of 4 KB long: a panel's values
 * of successive p then lie 4 KB apart, in one set of the L1 cache and each on a page of its own,
 * which the prefetchers do not cross (AVX2, 256 x 128 x 128, lda 1024: 193 -> 135 GFLOP/s;
 * AVX-512, 784 x 128 x 256: 429 -> 396; rows of 784, 1536 or 1040 floats ran as fast or faster
 * direct). Profiling builds: FNN_DIRECT_A=0 packs every panel, as before. */
#if REAL_IS_FLOAT
static int FN(a_direct)(const fnn_kernel_f32 *K, int trans_a, int64_t lda) {
#else
static int FN(a_direct)(const fnn_kernel_f64 *K, int trans_a, int64_t lda) {
#endif
    if (trans_a && (lda * (int64_t)sizeof(real)) % 4096 == 0) return 0;
    return K->ukr_s != NULL && fnn_prof_knob("FNN_DIRECT_A", 1) != 0;
}

/* Profiling builds only (profile.h), to compare the team's splits on one machine:
 * FNN_GEMM_GRID=0 no grid, 1 the shared op(B) path first where both apply, 3 the grid wherever
 * grid_shape picks one (2, the default: see gemm_team); FNN_PAR_MIN: the m*n*k below which a
 * product runs on one thread. */
static int FN(grid_mode)(void) { return (int)fnn_prof_knob("FNN_GEMM_GRID", 2); }

static double FN(par_min)(void) { return fnn_prof_knob("FNN_PAR_MIN", PAR_MIN_FLOPS); }

/* Shared op(B) (see gemm_team): task t packs panel t % nb of k block t / nb. */
static void FN(gemm_pack_b_task)(void *ctx, int64_t t, int worker) {
    const FN(gemm_job) *j = (const FN(gemm_job) *)ctx;
    const int64_t q = t / j->nb, jp = t % j->nb, NR = j->K.nr;
    const int64_t pc = q * j->KCB, kc = min64(j->KCB, j->k - pc);
    (void)worker;
    FN(pack_b)(j->sb + q * j->KCB * j->nb * NR + jp * NR * kc, j->B, j->ldb, j->trans_b, pc, jp * NR,
               min64(NR, j->n - jp * NR), kc, NR);
}

/* Shared op(B): slab s of rows, k block after k block, packing its own rows of op(A). */
static void FN(gemm_rows_task)(void *ctx, int64_t s, int worker) {
    const FN(gemm_job) *j = (const FN(gemm_job) *)ctx;
    real *pa = (real *)align64(j->work + j->pa_stride * (size_t)worker);
    const int64_t MR = j->K.mr, NR = j->K.nr;
    const int64_t i0 = s * j->per_slab * MR, i1 = min64((s + 1) * j->per_slab * MR, j->m);
    for (int64_t q = 0; q < j->kblocks; q++) {
        const int64_t pc = q * j->KCB, kc = min64(j->KCB, j->k - pc);
        const real beta_pc = q == 0 ? j->beta : (real)1;
        const real *pb = j->sb + q * j->KCB * j->nb * NR;
        for (int64_t ic = i0; ic < i1; ic += j->K.mc) {
            const int64_t mc = min64(j->K.mc, i1 - ic), na = (mc + MR - 1) / MR;
            for (int64_t ip = 0; ip < na; ip++)
                FN(pack_a)(pa + ip * MR * kc, j->A, j->lda, j->trans_a, ic + ip * MR, pc,
                           min64(MR, mc - ip * MR), kc, MR);
            for (int64_t jp = 0; jp < j->nb; jp++)
                FN(panel_tiles)(&j->K, kc, pa, mc, pb + jp * NR * kc, j->C + ic * j->ldc + jp * NR, j->ldc,
                                min64(NR, j->n - jp * NR), j->alpha, beta_pc);
            if (j->epi && q == j->kblocks - 1) FN(epi_apply)(j->epi, j->C, j->ldc, ic, ic + mc, 0, j->n);
        }
    }
}

/* A few rows of C against a large op(B) (single-sample inference): the columns of C split into one
 * slab per thread, each a whole-cache-line multiple, the product and its epilogue done by the
 * slab's task. Each thread reads only its slab of op(B)'s rows, so that the two halves of a
 * weight matrix too large for one core's L2 stay in two; the product of a row is bound by the
 * bandwidth from L2 (a 784-256-128-10 MNIST row read about 285 KB of weights there). Each
 * element is summed over the same listed rows of B in the same order as by one thread: the
 * result does not depend on the split. With trans_b (the backward's dX = dZ W^T of a batch of a
 * few rows) a slab of C's columns is a slab of B's rows, whose dot products skinny_dots forms
 * alike whatever rows it is given with. */
typedef struct FN(skinny_job) {
    real *C;
    const real *A, *B;
    int64_t m, n, k, ldc, lda, ldb, cols;
    int trans_a, trans_b, skip_zero;
    real alpha, beta;
    const FN(fnn_gemm_epi) *epi;
} FN(skinny_job);

static void FN(skinny_task)(void *ctx, int64_t t, int worker) {
    const FN(skinny_job) *j = (const FN(skinny_job) *)ctx;
    (void)worker;
    const int64_t c0 = t * j->cols, c1 = c0 + j->cols < j->n ? c0 + j->cols : j->n;
    if (c0 >= c1) return;
    /* with trans_b, C's columns c0..c1 are B's rows c0..c1 */
    FN(gemm_skinny)(j->C + c0, j->A, j->B + (j->trans_b ? c0 * j->ldb : c0), j->m, c1 - c0, j->k, j->ldc,
                    j->lda, j->ldb, j->trans_a, j->trans_b, j->alpha, j->beta, j->skip_zero);
    if (j->epi) FN(epi_apply)(j->epi, j->C, j->ldc, 0, j->m, c0, c1);
}

static void FN(skinny_split)(fnn_team *team, real *C, const real *A, const real *B, int64_t m, int64_t n,
                             int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                             real alpha, real beta, int skip_zero, const FN(fnn_gemm_epi) *epi) {
    /* slabs of whole cache lines of C, and at least one register block of the row kernels (8
     * vectors of 32 bytes: the AVX2 kernels' widest) */
    const int64_t line = 64 / (int64_t)sizeof(real), least = 256 / (int64_t)sizeof(real);
    const int64_t nt = fnn_team_size(team);
    FN(skinny_job) j = {C, A, B, m, n, k, ldc, lda, ldb, 0, trans_a, trans_b, skip_zero, alpha, beta, epi};
    j.cols = ((n + nt - 1) / nt + line - 1) / line * line;
    if (j.cols < least) j.cols = least;
    fnn_team_run(team, (n + j.cols - 1) / j.cols, FN(skinny_task), &j);
}

/* Profiling builds only: FNN_SKINNY_TRANS_B=0 keeps a few rows' products with trans_b (the
 * backward's dX = dZ W^T) on the calling thread, as before. */
static int FN(skinny_split_trans_b)(void) { return (int)fnn_prof_knob("FNN_SKINNY_TRANS_B", 1) != 0; }

/* Threads take slabs of C, each packing into its own part of `work`: no barrier inside a call.
 * Slabs that share a packed operand are guided (guided_start), handed out as threads come free,
 * so a thread that the OS descheduled (a busy, shared machine) costs one small slab's delay, not
 * half of the work. */
static int FN(gemm_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m, int64_t n,
                         int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                         double alpha_d, double beta_d, real *work, int skip_zero,
                         const FN(fnn_gemm_epi) *epi) {
    int st = FN(check_args)(m, n, k, ldc, lda, ldb, trans_a, trans_b);
    if (st != FNN_OK) return st;
    const real alpha = (real)alpha_d, beta = (real)beta_d;
    if (m == 0 || n == 0) return FNN_OK;
    if (k == 0 || alpha == 0 || m <= FNN_SKINNY_M) {
        if (k == 0 || alpha == 0) {
            FN(scale_c)(C, m, n, ldc, beta);
        } else if ((!trans_b || FN(skinny_split_trans_b)()) && fnn_team_size(team) > 1 &&
                   (double)n * (double)k * sizeof(real) >= FNN_SKINNY_SPLIT_BYTES) {
            FN(skinny_split)(team, C, A, B, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, skip_zero,
                             epi);
            return FNN_OK;
        } else {
            FN(gemm_skinny)(C, A, B, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, skip_zero);
        }
        if (epi) FN(epi_apply)(epi, C, ldc, 0, m, 0, n);
        return FNN_OK;
    }
    FN(gemm_job) j;
#if REAL_IS_FLOAT
    j.K = fnn_active_arch()->f32;
#else
    j.K = fnn_active_arch()->f64;
#endif
    int nt = fnn_team_size(team);
    if ((double)m * (double)n * (double)k < FN(par_min)()) nt = 1;
    /* packing space this call needs per thread: within what fnn_gemm_work_size_for(m, n, k) gave */
    j.pa_size = (size_t)(min64(j.K.mc, (m + j.K.mr - 1) / j.K.mr * j.K.mr) * min64(j.K.kc, k));
    j.per_thread = FN(per_thread_for)(&j.K, m, n, k);
    real *owned = NULL;
    if (!work) { /* a standalone call: just what this call needs */
        owned = (real *)malloc(j.per_thread * (size_t)nt * sizeof(real) + 64);
        if (!owned) return FNN_ENOMEM;
        work = owned;
    }
    /* Split C along the dimension whose slabs repack the least: column slabs each need all of
     * op(A), row slabs all of op(B); when that operand fits one cache block it is packed once,
     * shared by every slab. */
    const int64_t col_panels = (n + j.K.nr - 1) / j.K.nr, row_panels = (m + j.K.mr - 1) / j.K.mr;
    const int share_a = m <= j.K.mc && k <= j.K.kc, share_b = n <= j.K.nc && k <= j.K.kc;
    j.KCB = FN(k_depth)(k, j.K.kc);
    j.kblocks = (k + j.KCB - 1) / j.KCB;
    j.nb = col_panels;
    j.C = C; j.A = A; j.B = B;
    j.m = m; j.n = n; j.k = k; j.ldc = ldc; j.lda = lda; j.ldb = ldb;
    j.trans_a = trans_a; j.trans_b = trans_b; j.alpha = alpha; j.beta = beta;
    j.work = work;
    j.epi = epi;
    j.unpacked_b = !trans_b && m <= UNPACKED_B_M;
    j.direct_a = FN(a_direct)(&j.K, trans_a, lda);
    /* Many threads: a grid of blocks of C, when it beats one row or column of them (grid_shape)
     * and no operand fits one block that the slabs below would pack once per thread and share
     * across two slabs per thread or more. On the 16-core Xeon, split into rows of 8, the step's
     * products read all of op(B) per 8 rows of C, bound by the cores' reach into each other's
     * caches; the grid ran them 1.3-1.9x faster inside the epoch. Where a slab split shares an
     * operand (the first layer's weight gradient, 784 x 256 x 128: op(B) packed once per
     * thread, 49 slabs), that split stayed faster (35 against 52 ms an epoch). */
    const int grid_mode = FN(grid_mode)();
    int64_t gtm = 1, gtn = 1;
    const int slabs_share = (share_a && col_panels >= 2 * nt) || (share_b && row_panels >= 2 * nt);
    /* an optimizer's epilogue (a weight gradient updated block by block) updates whole rows of C
     * in one call each, many short rows of column slabs or grid blocks in a call a row: on 2
     * threads the column slabs of 256 x 128 x 16 made the step slower than a pass of its own */
    const int whole_rows = epi && epi->plan;
    const int grid = !whole_rows && nt >= GRID_MIN_THREADS && grid_mode > 0 && (grid_mode != 2 || !slabs_share) &&
                     FN(grid_shape)(row_panels, col_panels, j.K.mr, j.K.nr, nt, &gtm, &gtn);
    /* Shared op(B), where the grid does not apply (3 threads, or one row or column of blocks): neither
     * operand fits one block (k > KC: the first layer's 128 x 784 x 256), so every slab would
     * repack a whole operand, and on many threads there are too few slabs of one kind to go
     * round. With 3 threads or more, when op(B) is at most NC wide, the workspace holds it whole
     * and C has a row panel per thread at least: the team packs op(B) once (one job), then slabs
     * of rows share it, each packing its own rows of op(A) (a second job). With fewer row panels
     * than threads, the rows alone would leave threads idle: the column split below. */
    const int shared = nt >= 3 && !share_a && !share_b && n <= j.K.nc && !j.unpacked_b && row_panels >= nt;
    if (grid && (grid_mode != 1 || !shared)) {
        j.grid_r = (row_panels + gtm - 1) / gtm * j.K.mr;
        j.grid_c = (col_panels + gtn - 1) / gtn * j.K.nr;
        j.grid_tn = (n + j.grid_c - 1) / j.grid_c; /* rounding may leave fewer blocks than tm x tn */
        fnn_team_run(team, (m + j.grid_r - 1) / j.grid_r * j.grid_tn, FN(gemm_grid_task), &j);
        free(owned);
        return FNN_OK;
    }
    if (shared) {
        const size_t pa_need = (size_t)(min64(j.K.mc, row_panels * j.K.mr) * j.KCB) + 64 / sizeof(real);
        const size_t sb_need = (size_t)(j.kblocks * j.KCB * col_panels * j.K.nr) + 64 / sizeof(real);
        if ((size_t)nt * pa_need + sb_need <= j.per_thread * (size_t)nt) {
            j.pa_stride = pa_need; /* nt areas for rows of op(A), then op(B) */
            j.sb = (real *)align64(work + pa_need * (size_t)nt);
            j.per_slab = (row_panels + 2 * nt - 1) / (2 * nt);
            fnn_team_run(team, j.kblocks * col_panels, FN(gemm_pack_b_task), &j);
            fnn_team_run(team, (row_panels + j.per_slab - 1) / j.per_slab, FN(gemm_rows_task), &j);
            free(owned);
            return FNN_OK;
        }
    }
    if (nt == 1)
        j.by_cols = 1;
    else if (whole_rows && row_panels >= nt)
        j.by_cols = 0;
    else if (share_a && col_panels >= 2 * nt)
        j.by_cols = 1;
    else if (share_b && row_panels >= 2 * nt)
        j.by_cols = 0;
    else
        j.by_cols = col_panels >= 2 * nt && (m <= n || row_panels < 2 * nt);
    j.step = j.by_cols ? j.K.nr : j.K.mr;
    j.extent = j.by_cols ? n : m;
    const int64_t panels = (j.extent + j.step - 1) / j.step;
    j.per_slab = panels;
    if (nt > 1) {
        /* without a shared operand every slab repacks the other one: fewer, larger slabs; on 2
         * threads one each, so each packs that operand once (the first layer's 128 x 256 x 784,
         * medians of 15 alternating processes on the 2-core Zen 3 VM: 110 -> 117 GFLOP/s, 1024^3
         * 136 -> 141; the Xeon pinned to 2 cores: 173 -> 190; the batch-128 epoch on 2 threads
         * 0.62 -> 0.58 s on the VM). From 3 threads the team may share op(B) instead (above). */
        const int per_thread_slabs = (j.by_cols ? share_a : share_b) ? SLABS_PER_THREAD : (nt == 2 ? 1 : 2);
        j.per_slab = (panels + per_thread_slabs * nt - 1) / (per_thread_slabs * nt);
        if (j.per_slab < 2) j.per_slab = 2;
    }
    int64_t slabs = (panels + j.per_slab - 1) / j.per_slab;
    /* guided slabs where they share an operand (profiling builds: FNN_GUIDED=0, the fixed slabs) */
    j.guided = 0;
    if (nt > 1 && (j.by_cols ? share_a : share_b) && fnn_prof_knob("FNN_GUIDED", 1) != 0) {
        j.guided = nt;
        slabs = 0;
        for (int64_t at = 0; at < panels; at = guided_next(at, panels, nt)) slabs++;
    }
    j.keep_a = slabs > 1 && j.by_cols && share_a && !j.direct_a;
    j.keep_b = slabs > 1 && !j.by_cols && share_b && !j.unpacked_b;
    memset(j.packed, 0, sizeof j.packed);
    fnn_team *tm = nt > 1 ? team : NULL;
    fnn_team_run(tm, slabs, FN(gemm_slab), &j);
    free(owned);
    return FNN_OK;
}

int FN(fnn_gemm_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m, int64_t n,
                      int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                      double alpha, double beta, real *work) {
    return FN(gemm_team)(team, C, A, B, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, work, 0,
                         NULL);
}

int FN(fnn_gemm_fused_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m,
                            int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                            int trans_b, double alpha, double beta, real *work, int skip_zero,
                            const FN(fnn_gemm_epi) *epi) {
    return FN(gemm_team)(team, C, A, B, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, work,
                         skip_zero, epi);
}

typedef struct FN(gemm_call) {
    real *C;
    const real *A, *B;
    int64_t m, n, k, ldc, lda, ldb;
    int trans_a, trans_b;
    double alpha, beta;
    real *work;
} FN(gemm_call);

static int FN(gemm_body)(fnn_team *team, void *ctx) {
    const FN(gemm_call) *c = (const FN(gemm_call) *)ctx;
    return FN(fnn_gemm_team)(team, c->C, c->A, c->B, c->m, c->n, c->k, c->ldc, c->lda, c->ldb,
                             c->trans_a, c->trans_b, c->alpha, c->beta, c->work);
}

int FN(fnn_gemm)(real *C, const real *A, const real *B, int64_t m, int64_t n, int64_t k,
                 int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha,
                 double beta, real *work) {
    FN(gemm_call) c = {C, A, B, m, n, k, ldc, lda, ldb, trans_a, trans_b, alpha, beta, work};
    /* a team costs a fork and a join: only for products that take tens of microseconds */
    const int big = (double)m * (double)n * (double)k >= (double)(1 << 21);
    return fnn_with_team(big ? fnn_get_num_threads() : 1, FN(gemm_body), &c);
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
