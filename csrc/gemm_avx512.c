/* gemm_avx512.c — AVX-512F GEMM microkernels (gemm_kernels.h contract) and their table entry.
 *
 * Built with the baseline flags like every other file: only the functions below are compiled for
 * AVX-512F (target attribute), and dispatch.c calls them only when available() says the CPU has
 * it. Register tile: MR rows x NR columns of c, NR / VL zmm vectors per row, so MR * NR / VL
 * accumulators (float 14 x 32: 28, double 14 x 16: 28) + NR / VL loads of b + one broadcast of a
 * stay inside the 32 zmm registers. Edge tiles are computed whole and stored through masks. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "gemm_kernels.h"

#define FNN_AVX512 __attribute__((target("avx512f")))
#define FNN_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))

#ifndef S512_MR /* float tile and blocks */
#define S512_MR 8
#define S512_NR 32
#define S512_MC 512
#define S512_KC 800
#define S512_NC 1024
#endif
#ifndef D512_MR /* double tile and blocks */
#define D512_MR 8
#define D512_NR 16
#define D512_MC 512
#define D512_KC 400
#define D512_NC 1024
#endif
#define S512_NV (S512_NR / 16)
#define D512_NV (D512_NR / 8)

#define CAT5(a, b, c, d, e) a##b##c##d##e
#define XCAT5(a, b, c, d, e) CAT5(a, b, c, d, e)
#define S512_NAME XCAT5(fnn_sgemm_ukr_avx512_, S512_MR, x, S512_NR, )
#define D512_NAME XCAT5(fnn_dgemm_ukr_avx512_, D512_MR, x, D512_NR, )

/* lanes [0, n) of a vector of w lanes starting at column v * w */
FNN_AVX512_INLINE __mmask16 s512_mask(int64_t nr, int v) {
    int64_t left = nr - 16 * (int64_t)v;
    return left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}
FNN_AVX512_INLINE __mmask8 d512_mask(int64_t nr, int v) {
    int64_t left = nr - 8 * (int64_t)v;
    return left >= 8 ? (__mmask8)0xFF : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1);
}

FNN_AVX512 void S512_NAME(int64_t k, const float *restrict a, const float *restrict b,
                          float *restrict c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                          float beta) {
    enum { MR = S512_MR, NR = S512_NR, NV = S512_NV };
    __m512 acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);

#define KLOOP(NVA)                                                                         \
    for (int64_t p = 0; p < k; p++) {                                                          \
        __m512 bv[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                \
            bv[v] = _mm512_loadu_ps(b + p * NR + 16 * v);                                      \
        _Pragma("GCC unroll 32") for (int i = 0; i < MR; i++) {                                 \
            const __m512 ai = _mm512_set1_ps(a[p * MR + i]);                                       \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                            \
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);                                \
        }                                                                                      \
    }
    /* a panel at most half full (narrow n, last panel of a row) skips the empty vectors */
    if (NV == 2 && nr <= NR / 2) {
        _Pragma("GCC unroll 4") KLOOP(1)
    } else {
        _Pragma("GCC unroll 4") KLOOP(NV)
    }
#undef KLOOP

    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    if (mr == MR && nr == NR) {
        if (beta == 0) {
#pragma GCC unroll 32
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    _mm512_storeu_ps(c + i * ldc + 16 * v, _mm512_mul_ps(va, acc[i][v]));
        } else {
#pragma GCC unroll 32
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    float *cp = c + i * ldc + 16 * v;
                    _mm512_storeu_ps(cp, _mm512_fmadd_ps(vb, _mm512_loadu_ps(cp),
                                                         _mm512_mul_ps(va, acc[i][v])));
                }
        }
        return;
    }
    __mmask16 mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = s512_mask(nr, v);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            float *cp = c + i * ldc + 16 * v;
            __m512 r = _mm512_mul_ps(va, acc[i][v]);
            if (beta != 0) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk[v], cp), r);
            _mm512_mask_storeu_ps(cp, mk[v], r);
        }
    }
}

FNN_AVX512 void D512_NAME(int64_t k, const double *restrict a, const double *restrict b,
                          double *restrict c, int64_t ldc, int64_t mr, int64_t nr, double alpha,
                          double beta) {
    enum { MR = D512_MR, NR = D512_NR, NV = D512_NV };
    __m512d acc[MR][NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_pd();
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
        if (i < mr) _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);

#define KLOOP(NVA)                                                                         \
    for (int64_t p = 0; p < k; p++) {                                                          \
        __m512d bv[NV];                                                                          \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                \
            bv[v] = _mm512_loadu_pd(b + p * NR + 8 * v);                                      \
        _Pragma("GCC unroll 32") for (int i = 0; i < MR; i++) {                                 \
            const __m512d ai = _mm512_set1_pd(a[p * MR + i]);                                       \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                            \
                acc[i][v] = _mm512_fmadd_pd(ai, bv[v], acc[i][v]);                                \
        }                                                                                      \
    }
    /* a panel at most half full (narrow n, last panel of a row) skips the empty vectors */
    if (NV == 2 && nr <= NR / 2) {
        _Pragma("GCC unroll 4") KLOOP(1)
    } else {
        _Pragma("GCC unroll 4") KLOOP(NV)
    }
#undef KLOOP

    const __m512d va = _mm512_set1_pd(alpha), vb = _mm512_set1_pd(beta);
    if (mr == MR && nr == NR) {
        if (beta == 0) {
#pragma GCC unroll 32
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    _mm512_storeu_pd(c + i * ldc + 8 * v, _mm512_mul_pd(va, acc[i][v]));
        } else {
#pragma GCC unroll 32
            for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    double *cp = c + i * ldc + 8 * v;
                    _mm512_storeu_pd(cp, _mm512_fmadd_pd(vb, _mm512_loadu_pd(cp),
                                                         _mm512_mul_pd(va, acc[i][v])));
                }
        }
        return;
    }
    __mmask8 mk[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = d512_mask(nr, v);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            double *cp = c + i * ldc + 8 * v;
            __m512d r = _mm512_mul_pd(va, acc[i][v]);
            if (beta != 0) r = _mm512_fmadd_pd(vb, _mm512_maskz_loadu_pd(mk[v], cp), r);
            _mm512_mask_storeu_pd(cp, mk[v], r);
        }
    }
}

static int avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

const fnn_arch fnn_arch_avx512 = {
    "avx512",
    avx512_available,
    {S512_MR, S512_NR, S512_MC, S512_KC, S512_NC, S512_NAME},
    {D512_MR, D512_NR, D512_MC, D512_KC, D512_NC, D512_NAME},
};

#endif
