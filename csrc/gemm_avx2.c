/* gemm_avx2.c — AVX2 + FMA GEMM microkernels (gemm_kernels.h contract) and their table entry.
 *
 * Built with the baseline flags like every other file: only the functions below are compiled for
 * AVX2 + FMA (target attribute), and dispatch.c calls them only when available() says the CPU and
 * the OS can run them.
 *
 * Register tile: MR rows x NR columns of c, NR / 8 (float) or NR / 4 (double) ymm per row:
 * float 6 x 16 and double 6 x 8 hold 12 accumulators + 2 rows of b + 1 broadcast of a in the 16
 * ymm registers. A panel at most half full in n runs a one-vector loop. Edge tiles are computed
 * whole, then stored through maskload / maskstore; beta == 0 never loads c.
 * Blocks for the usual AVX2 caches (32 KB L1, 256 KB - 1 MB L2): the kc x NR panel of b takes
 * 16 KB of L1, the MC x KC block of a 144 KB (float) / 192 KB (double) of L2. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "gemm_kernels.h"

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define FNN_AVX2 /* MSVC compiles intrinsics anywhere */
#define FNN_AVX2_INLINE static __forceinline
#else
#define FNN_AVX2 __attribute__((target("avx2,fma")))
#define FNN_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))
#endif

#define S256_MR 6 /* float */
#define S256_NR 16
#define S256_MC 144
#define S256_KC 256
#define S256_NC 3072
#define D256_MR 6 /* double */
#define D256_NR 8
#define D256_MC 96
#define D256_KC 256
#define D256_NC 2048

/* -1 then 0: 8 (resp. 4) lanes loaded at offset 8 - n (4 - n) mask the first n lanes. */
static const int32_t mask32_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t mask64_tab[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

/* Mask of the lanes of vector v (columns [8 v, 8 v + 8), resp. [4 v, 4 v + 4)) below nr. */
FNN_AVX2_INLINE __m256i s256_mask(int64_t nr, int v) {
    int64_t left = nr - 8 * (int64_t)v;
    left = left < 0 ? 0 : left > 8 ? 8 : left;
    return _mm256_loadu_si256((const __m256i *)(mask32_tab + 8 - left));
}
FNN_AVX2_INLINE __m256i d256_mask(int64_t nr, int v) {
    int64_t left = nr - 4 * (int64_t)v;
    left = left < 0 ? 0 : left > 4 ? 4 : left;
    return _mm256_loadu_si256((const __m256i *)(mask64_tab + 4 - left));
}

/* The body of both kernels. T: vector type, R: scalar type, W: lanes, S: intrinsic suffix.
 * acc += a[p, i] * b[p, 0:NR] over p, for the first MRA rows, with NVA of the NV vectors of a row
 * (the rest stay 0). */
#define KLOOP(T, W, S, BC, NVA, MRA, AT)                                                           \
    for (int64_t p = 0; p < k; p++) {                                                             \
        T bv[NV];                                                                                 \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                   \
            bv[v] = _mm256_loadu_##S(b + p * BS + W * v);                                         \
        _Pragma("GCC unroll 16") for (int i = 0; i < (MRA); i++) {                                \
            const T ai = _mm256_broadcast_##BC(&AT(p, i));                                   \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                               \
                acc[i][v] = _mm256_fmadd_##S(ai, bv[v], acc[i][v]);                               \
        }                                                                                         \
    }

#define UKR_BODY(T, R, W, S, BC, MASK_FN, AT)                                                      \
    T acc[MR][NV];                                                                                \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_##S();    \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) if (i < mr)                             \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                                   \
    if (NV == 2 && nr <= NR / 2) {                                                                \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, BC, 1, MR, AT)                                      \
    } else if (mr <= MR / 2) { /* a last panel of a few rows (m = 128: 2 of 6) */                \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, BC, NV, MR / 2, AT)                                 \
    } else if (mr <= MR - 2) { /* (m = 16, a batch of 16: 4 of 6) */                              \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, BC, NV, MR - 2, AT)                                 \
    } else {                                                                                      \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, BC, NV, MR, AT)                                     \
    }                                                                                             \
    const T va = _mm256_set1_##S(alpha), vb = _mm256_set1_##S(beta);                              \
    if (mr == MR && nr == NR) {                                                                   \
        if (beta == 0) {                                                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                    _mm256_storeu_##S(c + i * ldc + W * v, _mm256_mul_##S(va, acc[i][v]));        \
        } else {                                                                                  \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                            \
                    R *cp = c + i * ldc + W * v;                                                  \
                    _mm256_storeu_##S(cp, _mm256_fmadd_##S(vb, _mm256_loadu_##S(cp),              \
                                                           _mm256_mul_##S(va, acc[i][v])));       \
                }                                                                                 \
        }                                                                                         \
        return;                                                                                   \
    }                                                                                             \
    __m256i mk[NV];                                                                               \
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) mk[v] = MASK_FN(nr, v);                  \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                       \
        if (i >= mr) break;                                                                       \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                    \
            R *cp = c + i * ldc + W * v;                                                          \
            T r = _mm256_mul_##S(va, acc[i][v]);                                                  \
            if (beta != 0) r = _mm256_fmadd_##S(vb, _mm256_maskload_##S(cp, mk[v]), r);           \
            _mm256_maskstore_##S(cp, mk[v], r);                                                   \
        }                                                                                         \
    }

FNN_AVX2 void fnn_sgemm_ukr_avx2_6x16(int64_t k, const float *restrict a, const float *restrict b,
                                      float *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                                      float alpha, float beta) {
    enum { MR = S256_MR, NR = S256_NR, NV = S256_NR / 8, BS = NR };
    UKR_BODY(__m256, float, 8, ps, ss, s256_mask, A_PACKED)
}

FNN_AVX2 void fnn_sgemm_ukrb_avx2_6x16(int64_t k, const float *restrict a, const float *restrict b,
                                       int64_t ldb, float *restrict c, int64_t ldc, int64_t mr,
                                       int64_t nr, float alpha, float beta) {
    enum { MR = S256_MR, NR = S256_NR, NV = S256_NR / 8 };
    const int64_t BS = ldb;
    UKR_BODY(__m256, float, 8, ps, ss, s256_mask, A_PACKED)
}

FNN_AVX2 void fnn_dgemm_ukr_avx2_6x8(int64_t k, const double *restrict a,
                                     const double *restrict b, double *restrict c, int64_t ldc,
                                     int64_t mr, int64_t nr, double alpha, double beta) {
    enum { MR = D256_MR, NR = D256_NR, NV = D256_NR / 4, BS = NR };
    UKR_BODY(__m256d, double, 4, pd, sd, d256_mask, A_PACKED)
}

FNN_AVX2 void fnn_dgemm_ukrb_avx2_6x8(int64_t k, const double *restrict a,
                                      const double *restrict b, int64_t ldb, double *restrict c,
                                      int64_t ldc, int64_t mr, int64_t nr, double alpha, double beta) {
    enum { MR = D256_MR, NR = D256_NR, NV = D256_NR / 4 };
    const int64_t BS = ldb;
    UKR_BODY(__m256d, double, 4, pd, sd, d256_mask, A_PACKED)
}

/* Strided a (gemm_kernels.h, ukr_s): op(A)'s rows where they are stored, one loop per layout */
FNN_AVX2 void fnn_sgemm_ukrs_avx2_6x16(int64_t k, const float *restrict a, int64_t rsa, int64_t csa,
                                       const float *restrict b, int64_t ldb, float *restrict c,
                                       int64_t ldc, int64_t nr, float alpha, float beta) {
    enum { MR = S256_MR, NR = S256_NR, NV = S256_NR / 8 };
    const int64_t BS = ldb, mr = MR;
    UKRS_BODY(__m256, float, 8, ps, ss, s256_mask)
}

FNN_AVX2 void fnn_dgemm_ukrs_avx2_6x8(int64_t k, const double *restrict a, int64_t rsa, int64_t csa,
                                      const double *restrict b, int64_t ldb, double *restrict c,
                                      int64_t ldc, int64_t nr, double alpha, double beta) {
    enum { MR = D256_MR, NR = D256_NR, NV = D256_NR / 4 };
    const int64_t BS = ldb, mr = MR;
    UKRS_BODY(__m256d, double, 4, pd, sd, d256_mask)
}

#undef KLOOP
#undef UKR_BODY

/* Row kernels (gemm_kernels.h): blocks of 8 vectors of c in registers over every listed row of
 * b, then of 4, then one vector at a time, the last one masked. The listed rows are scattered
 * (the nonzero inputs'), which the hardware prefetcher cannot follow: the block's part of the row
 * 6 ahead is prefetched (the engine's 1-row MNIST predict 5.9 -> 5.3 us, medians of 14 processes
 * on a 2-core Zen 3 VM; a dense row, which reads every row in order, gained nothing measurable). */
#define ROWS_BLOCK(T, W, S, BC, NB)                                                               \
    for (; j + (NB) * W <= n; j += (NB) * W) {                                                    \
        T acc[NB];                                                                                \
        _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++) acc[v] = _mm256_loadu_##S(c + j + W * v); \
        for (int64_t t = 0; t < cnt; t++) {                                                       \
            const T at = _mm256_broadcast_##BC(a + t);                                            \
            const R *bt = b + idx[t] * ldb + j;                                                   \
            const R *bp = b + idx[t + 6 < cnt ? t + 6 : t] * ldb + j;                             \
            _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v += 64 / (int)sizeof(R) / W)       \
                _mm_prefetch((const char *)(bp + W * v), _MM_HINT_T0);                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++)                                \
                acc[v] = _mm256_fmadd_##S(at, _mm256_loadu_##S(bt + W * v), acc[v]);              \
        }                                                                                         \
        _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++) _mm256_storeu_##S(c + j + W * v, acc[v]); \
    }

#define ROWS_BODY(T, W, S, BC, MASK_FN)                                                           \
    int64_t j = 0;                                                                                \
    ROWS_BLOCK(T, W, S, BC, 8)                                                                    \
    ROWS_BLOCK(T, W, S, BC, 4)                                                                    \
    for (; j < n; j += W) {                                                                       \
        const __m256i mk = MASK_FN(n - j, 0);                                                     \
        T acc = _mm256_maskload_##S(c + j, mk);                                                   \
        for (int64_t t = 0; t < cnt; t++)                                                         \
            acc = _mm256_fmadd_##S(_mm256_broadcast_##BC(a + t),                                  \
                                   _mm256_maskload_##S(b + idx[t] * ldb + j, mk), acc);           \
        _mm256_maskstore_##S(c + j, mk, acc);                                                     \
    }

FNN_AVX2 void fnn_srows_avx2(int64_t n, int64_t cnt, const int32_t *restrict idx,
                             const float *restrict a, const float *restrict b, int64_t ldb,
                             float *restrict c) {
    typedef float R;
    ROWS_BODY(__m256, 8, ps, ss, s256_mask)
}

FNN_AVX2 void fnn_drows_avx2(int64_t n, int64_t cnt, const int32_t *restrict idx,
                             const double *restrict a, const double *restrict b, int64_t ldb,
                             double *restrict c) {
    typedef double R;
    ROWS_BODY(__m256d, 4, pd, sd, d256_mask)
}

#undef ROWS_BLOCK
#undef ROWS_BODY

/* List kernels (gemm_kernels.h): 8 (float) or 4 (double) inputs at a time, branch-free. The lanes
 * whose value is nonzero are moved to the front by one permute, from list_pos[mask] (their
 * positions, a byte each), and stored whole; the count moves on by list_count[mask]. */
#define POS1(m, b) ((uint64_t)(((m) >> (b)) & 1) * (uint64_t)(b) << (8 * POP8((m) & ((1u << (b)) - 1))))
#define POP8(m) (((m) & 1) + (((m) >> 1) & 1) + (((m) >> 2) & 1) + (((m) >> 3) & 1) +              \
                 (((m) >> 4) & 1) + (((m) >> 5) & 1) + (((m) >> 6) & 1) + (((m) >> 7) & 1))
#define POS(m) (POS1(m, 0) | POS1(m, 1) | POS1(m, 2) | POS1(m, 3) | POS1(m, 4) | POS1(m, 5) |      \
                POS1(m, 6) | POS1(m, 7))
#define X4(F, m) F(m), F(m + 1), F(m + 2), F(m + 3)
#define X16(F, m) X4(F, m), X4(F, m + 4), X4(F, m + 8), X4(F, m + 12)
#define X64(F, m) X16(F, m), X16(F, m + 16), X16(F, m + 32), X16(F, m + 48)
static const uint64_t list_pos[256] = {X64(POS, 0u), X64(POS, 64u), X64(POS, 128u), X64(POS, 192u)};
static const uint8_t list_count[256] = {X64(POP8, 0u), X64(POP8, 64u), X64(POP8, 128u), X64(POP8, 192u)};
#undef POS1
#undef POP8
#undef POS
#undef X4
#undef X16
#undef X64

FNN_AVX2 int64_t fnn_slist_avx2(int64_t k, const float *restrict a, float alpha,
                                float *restrict vals, int32_t *restrict idx) {
    const __m256 va = _mm256_set1_ps(alpha), zero = _mm256_setzero_ps();
    int64_t cnt = 0, p = 0;
    for (; p + 8 <= k; p += 8) {
        const __m256 v = _mm256_mul_ps(va, _mm256_loadu_ps(a + p));
        const int m = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NEQ_UQ));
        const __m256i pos = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(list_pos + m)));
        _mm256_storeu_ps(vals + cnt, _mm256_permutevar8x32_ps(v, pos));
        _mm256_storeu_si256((__m256i *)(idx + cnt), _mm256_add_epi32(pos, _mm256_set1_epi32((int32_t)p)));
        cnt += list_count[m];
    }
    for (; p < k; p++) {
        const float v = alpha * a[p];
        vals[cnt] = v;
        idx[cnt] = (int32_t)p;
        cnt += v != 0;
    }
    return cnt;
}

FNN_AVX2 int64_t fnn_dlist_avx2(int64_t k, const double *restrict a, double alpha,
                                double *restrict vals, int32_t *restrict idx) {
    const __m256d va = _mm256_set1_pd(alpha), zero = _mm256_setzero_pd();
    const __m256i one = _mm256_set1_epi64x(1);
    int64_t cnt = 0, p = 0;
    for (; p + 4 <= k; p += 4) {
        const __m256d v = _mm256_mul_pd(va, _mm256_loadu_pd(a + p));
        const int m = _mm256_movemask_pd(_mm256_cmp_pd(v, zero, _CMP_NEQ_UQ));
        const __m128i pos = _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)(uint32_t)list_pos[m]));
        /* double lane q is float lanes 2q, 2q + 1 */
        const __m256i twice = _mm256_slli_epi64(_mm256_cvtepu32_epi64(pos), 1);
        const __m256i perm = _mm256_or_si256(twice, _mm256_slli_epi64(_mm256_add_epi64(twice, one), 32));
        _mm256_storeu_pd(vals + cnt, _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), perm)));
        _mm_storeu_si128((__m128i *)(idx + cnt), _mm_add_epi32(pos, _mm_set1_epi32((int32_t)p)));
        cnt += list_count[m];
    }
    for (; p < k; p++) {
        const double v = alpha * a[p];
        vals[cnt] = v;
        idx[cnt] = (int32_t)p;
        cnt += v != 0;
    }
    return cnt;
}

#if defined(_MSC_VER) && !defined(__clang__)
static int avx2_available(void) { /* CPUID.1.ECX FMA + OSXSAVE + AVX, CPUID.7.EBX AVX2, XCR0 ymm */
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    if (((r[2] >> 12) & 1) == 0 || ((r[2] >> 27) & 1) == 0 || ((r[2] >> 28) & 1) == 0) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
}
#else
static int avx2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

const fnn_arch fnn_arch_avx2 = {
    "avx2",
    avx2_available,
    {S256_MR, S256_NR, S256_MC, S256_KC, S256_NC, fnn_sgemm_ukr_avx2_6x16, fnn_srows_avx2, fnn_sgemm_ukrb_avx2_6x16, fnn_slist_avx2, NULL, fnn_sgemm_ukrs_avx2_6x16},
    {D256_MR, D256_NR, D256_MC, D256_KC, D256_NC, fnn_dgemm_ukr_avx2_6x8, fnn_drows_avx2, fnn_dgemm_ukrb_avx2_6x8, fnn_dlist_avx2, NULL, fnn_dgemm_ukrs_avx2_6x8},
};

#endif
