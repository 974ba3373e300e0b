/* gemm_avx2.c — AVX2 + FMA GEMM microkernels (gemm_kernels.h contract) and their table entry.
 *
 * Built with the baseline flags like every other file: only the functions below are compiled for
 * AVX2 + FMA (target attribute), and dispatch.c calls them only when available() says the CPU has
 * both. Register tile: MR rows x NR columns of c, NR / VL ymm vectors per row: float 6 x 16 and
 * double 6 x 8 give 12 accumulators + 2 loads of b + 1 broadcast of a out of 16 ymm registers.
 * A panel at most half full in n runs a one-vector loop. Edge tiles are computed whole and stored
 * through maskload / maskstore; beta == 0 never loads c.
 * Blocks for the usual AVX2 caches (32 KB L1, 256 KB - 1 MB L2): the kc x NR panel of b takes
 * 16 KB of L1, the MC x KC block of a 144 KB (float) / 192 KB (double) of L2. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "gemm_kernels.h"

#define FNN_AVX2 __attribute__((target("avx2,fma")))
#define FNN_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma")))

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
#define S256_NV (S256_NR / 8)
#define D256_NV (D256_NR / 4)

/* -1 then 0: loading 8 (resp. 4) lanes at offset 8 - n (4 - n) gives a mask of the first n lanes */
static const int32_t mask32_tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t mask64_tab[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

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

FNN_AVX2 void fnn_sgemm_ukr_avx2_6x16(int64_t k, const float *restrict a, const float *restrict b,
                                      float *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                                      float alpha, float beta) {
    enum { MR = S256_MR, NR = S256_NR, NV = S256_NV };
    __m256 acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);

#define KLOOP(NVA)                                                                         \
    for (int64_t p = 0; p < k; p++) {                                                          \
        __m256 bv[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                \
            bv[v] = _mm256_loadu_ps(b + p * NR + 8 * v);                                       \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                 \
            const __m256 ai = _mm256_broadcast_ss(a + p * MR + i);                                   \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                            \
                acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);                                \
        }                                                                                      \
    }
    /* a panel at most half full (narrow n, last panel of a row) skips the empty vector */
    if (NV == 2 && nr <= NR / 2) {
        _Pragma("GCC unroll 4") KLOOP(1)
    } else {
        _Pragma("GCC unroll 4") KLOOP(NV)
    }
#undef KLOOP

    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    if (mr == MR && nr == NR) {
        if (beta == 0) {
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    _mm256_storeu_ps(c + i * ldc + 8 * v, _mm256_mul_ps(va, acc[i][v]));
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    float *cp = c + i * ldc + 8 * v;
                    _mm256_storeu_ps(cp, _mm256_fmadd_ps(vb, _mm256_loadu_ps(cp),
                                                         _mm256_mul_ps(va, acc[i][v])));
                }
        }
        return;
    }
    __m256i mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = s256_mask(nr, v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *cp = c + i * ldc + 8 * v;
            __m256 r = _mm256_mul_ps(va, acc[i][v]);
            if (beta != 0) r = _mm256_fmadd_ps(vb, _mm256_maskload_ps(cp, mk[v]), r);
            _mm256_maskstore_ps(cp, mk[v], r);
        }
    }
}

FNN_AVX2 void fnn_dgemm_ukr_avx2_6x8(int64_t k, const double *restrict a,
                                     const double *restrict b, double *restrict c, int64_t ldc,
                                     int64_t mr, int64_t nr, double alpha, double beta) {
    enum { MR = D256_MR, NR = D256_NR, NV = D256_NV };
    __m256d acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_pd();
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);

#define KLOOP(NVA)                                                                         \
    for (int64_t p = 0; p < k; p++) {                                                          \
        __m256d bv[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                \
            bv[v] = _mm256_loadu_pd(b + p * NR + 4 * v);                                       \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                 \
            const __m256d ai = _mm256_broadcast_sd(a + p * MR + i);                                   \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                            \
                acc[i][v] = _mm256_fmadd_pd(ai, bv[v], acc[i][v]);                                \
        }                                                                                      \
    }
    /* a panel at most half full (narrow n, last panel of a row) skips the empty vector */
    if (NV == 2 && nr <= NR / 2) {
        _Pragma("GCC unroll 4") KLOOP(1)
    } else {
        _Pragma("GCC unroll 4") KLOOP(NV)
    }
#undef KLOOP

    const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
    if (mr == MR && nr == NR) {
        if (beta == 0) {
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    _mm256_storeu_pd(c + i * ldc + 4 * v, _mm256_mul_pd(va, acc[i][v]));
        } else {
#pragma GCC unroll 16
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    double *cp = c + i * ldc + 4 * v;
                    _mm256_storeu_pd(cp, _mm256_fmadd_pd(vb, _mm256_loadu_pd(cp),
                                                         _mm256_mul_pd(va, acc[i][v])));
                }
        }
        return;
    }
    __m256i mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = d256_mask(nr, v);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            double *cp = c + i * ldc + 4 * v;
            __m256d r = _mm256_mul_pd(va, acc[i][v]);
            if (beta != 0) r = _mm256_fmadd_pd(vb, _mm256_maskload_pd(cp, mk[v]), r);
            _mm256_maskstore_pd(cp, mk[v], r);
        }
    }
}

static int avx2_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const fnn_arch fnn_arch_avx2 = {
    "avx2",
    avx2_available,
    {S256_MR, S256_NR, S256_MC, S256_KC, S256_NC, fnn_sgemm_ukr_avx2_6x16},
    {D256_MR, D256_NR, D256_MC, D256_KC, D256_NC, fnn_dgemm_ukr_avx2_6x8},
};

#endif
