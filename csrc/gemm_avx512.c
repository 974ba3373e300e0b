/* gemm_avx512.c — AVX-512F GEMM microkernels (gemm_kernels.h contract) and their table entry.
 *
 * Built with the baseline flags like every other file: only the functions below are compiled for
 * AVX-512F (target attribute), and dispatch.c calls them only when available() says the CPU and
 * the OS can run them (__builtin_cpu_supports also checks that the OS saves the zmm state).
 *
 * Register tile: MR rows x NR columns of c, NR / 16 (float) or NR / 8 (double) zmm per row.
 * float 8 x 32 and double 8 x 16 both hold 16 accumulators + 2 rows of b + 1 broadcast of a in
 * the 32 zmm registers; larger tiles (12 x 32, 14 x 32) ran no faster and waste more rows on the
 * usual m (32, 128, 200, 784). A last panel at most a quarter full in n (the 4 columns of 100)
 * goes to the edge kernel below; one at most half full (10 outputs) runs a one-vector loop. Edge
 * tiles are computed whole, then stored through masks; beta == 0
 * never loads c.
 * Blocks: the kc x NR panel of b stays in L1 (float 384 x 128 B = 48 KB, double 256 x 128 B =
 * 32 KB) while the MC x KC block of a streams from L2 (float 256 x 384 x 4 B = 384 KB, double
 * 128 x 256 x 8 B = 256 KB). Measured on a 2-core AVX-512 Xeon (48 KB L1, 2 MB L2) with gemm.c's
 * slab driver: MC = KC = 784 (one block for the 784-wide training products) or KC = 512 ran no
 * faster, on 1 or 2 threads, and need 3x the workspace. */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#include <stdint.h>
#include "gemm_kernels.h"

#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
#define FNN_AVX512 /* MSVC compiles intrinsics anywhere */
#define FNN_AVX512_INLINE static __forceinline
#else
#define FNN_AVX512 __attribute__((target("avx512f")))
#define FNN_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f")))
#endif

#define S512_MR 8 /* float */
#define S512_NR 32
#define S512_MC 256
#define S512_KC 384
#define S512_NC 1024
#define D512_MR 8 /* double */
#define D512_NR 16
#define D512_MC 128
#define D512_KC 256
#define D512_NC 1024

/* Mask of the lanes of vector v (columns [16 v, 16 v + 16), resp. [8 v, 8 v + 8)) below nr. */
FNN_AVX512_INLINE __mmask16 s512_mask(int64_t nr, int v) {
    const int64_t left = nr - 16 * (int64_t)v;
    return left >= 16 ? (__mmask16)0xFFFF
                      : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}
FNN_AVX512_INLINE __mmask8 d512_mask(int64_t nr, int v) {
    const int64_t left = nr - 8 * (int64_t)v;
    return left >= 8 ? (__mmask8)0xFF : left <= 0 ? (__mmask8)0 : (__mmask8)((1u << left) - 1);
}

/* The body of both kernels. T: vector type, W: lanes, S: intrinsic suffix (ps / pd).
 * acc += a[p, i] * b[p, 0:NR] over p, with NVA of the NV vectors of a row (the rest stay 0). */
#define KLOOP(T, W, S, NVA, AT)                                                                    \
    for (int64_t p = 0; p < k; p++) {                                                             \
        T bv[NV];                                                                                 \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                                   \
            bv[v] = _mm512_loadu_##S(b + p * BS + W * v);                                         \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                   \
            const T ai = _mm512_set1_##S(AT(p, i));                                          \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NVA); v++)                               \
                acc[i][v] = _mm512_fmadd_##S(ai, bv[v], acc[i][v]);                               \
        }                                                                                         \
    }

#define UKR_BODY(T, R, W, S, MASK_T, MASK_FN, AT)                                                  \
    T acc[MR][NV];                                                                                \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_##S();    \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) if (i < mr) {                           \
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);                                   \
        if (nr * (int64_t)sizeof(R) > 64)                                                         \
            _mm_prefetch((const char *)((uintptr_t)(c + i * ldc) + 64), _MM_HINT_T0);             \
    }                                                                                             \
    if (NV == 2 && nr <= NR / 2) {                                                                \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, 1, AT)                                              \
    } else {                                                                                      \
        _Pragma("GCC unroll 4") KLOOP(T, W, S, NV, AT)                                             \
    }                                                                                             \
    const T va = _mm512_set1_##S(alpha), vb = _mm512_set1_##S(beta);                             \
    if (mr == MR && nr == NR) {                                                                   \
        if (beta == 0) {                                                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                    _mm512_storeu_##S(c + i * ldc + W * v, _mm512_mul_##S(va, acc[i][v]));        \
        } else {                                                                                  \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                            \
                    R *cp = c + i * ldc + W * v;                                                  \
                    _mm512_storeu_##S(cp, _mm512_fmadd_##S(vb, _mm512_loadu_##S(cp),              \
                                                           _mm512_mul_##S(va, acc[i][v])));       \
                }                                                                                 \
        }                                                                                         \
        return;                                                                                   \
    }                                                                                             \
    MASK_T mk[NV];                                                                                \
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) mk[v] = MASK_FN(nr, v);                  \
    _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                                       \
        if (i >= mr) break;                                                                       \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) {                                    \
            R *cp = c + i * ldc + W * v;                                                          \
            T r = _mm512_mul_##S(va, acc[i][v]);                                                  \
            if (beta != 0) r = _mm512_fmadd_##S(vb, _mm512_maskz_loadu_##S(mk[v], cp), r);       \
            _mm512_mask_storeu_##S(cp, mk[v], r);                                                 \
        }                                                                                         \
    }

FNN_AVX512 void fnn_sgemm_ukr_avx512_8x32(int64_t k, const float *restrict a,
                                          const float *restrict b, float *restrict c, int64_t ldc,
                                          int64_t mr, int64_t nr, float alpha, float beta) {
    enum { MR = S512_MR, NR = S512_NR, NV = S512_NR / 16, BS = NR };
    UKR_BODY(__m512, float, 16, ps, __mmask16, s512_mask, A_PACKED)
}

FNN_AVX512 void fnn_sgemm_ukrb_avx512_8x32(int64_t k, const float *restrict a,
                                           const float *restrict b, int64_t ldb, float *restrict c,
                                           int64_t ldc, int64_t mr, int64_t nr, float alpha,
                                           float beta) {
    enum { MR = S512_MR, NR = S512_NR, NV = S512_NR / 16 };
    const int64_t BS = ldb;
    UKR_BODY(__m512, float, 16, ps, __mmask16, s512_mask, A_PACKED)
}

FNN_AVX512 void fnn_dgemm_ukr_avx512_8x16(int64_t k, const double *restrict a,
                                          const double *restrict b, double *restrict c,
                                          int64_t ldc, int64_t mr, int64_t nr, double alpha,
                                          double beta) {
    enum { MR = D512_MR, NR = D512_NR, NV = D512_NR / 8, BS = NR };
    UKR_BODY(__m512d, double, 8, pd, __mmask8, d512_mask, A_PACKED)
}

FNN_AVX512 void fnn_dgemm_ukrb_avx512_8x16(int64_t k, const double *restrict a,
                                           const double *restrict b, int64_t ldb, double *restrict c,
                                           int64_t ldc, int64_t mr, int64_t nr, double alpha,
                                           double beta) {
    enum { MR = D512_MR, NR = D512_NR, NV = D512_NR / 8 };
    const int64_t BS = ldb;
    UKR_BODY(__m512d, double, 8, pd, __mmask8, d512_mask, A_PACKED)
}

/* Strided a (gemm_kernels.h, ukr_s): op(A)'s rows where they are stored, one loop per layout */
FNN_AVX512 void fnn_sgemm_ukrs_avx512_8x32(int64_t k, const float *restrict a, int64_t rsa, int64_t csa,
                                           const float *restrict b, int64_t ldb, float *restrict c,
                                           int64_t ldc, int64_t nr, float alpha, float beta) {
    enum { MR = S512_MR, NR = S512_NR, NV = S512_NR / 16 };
    const int64_t BS = ldb, mr = MR;
    UKRS_BODY(__m512, float, 16, ps, __mmask16, s512_mask)
}

FNN_AVX512 void fnn_dgemm_ukrs_avx512_8x16(int64_t k, const double *restrict a, int64_t rsa, int64_t csa,
                                           const double *restrict b, int64_t ldb, double *restrict c,
                                           int64_t ldc, int64_t nr, double alpha, double beta) {
    enum { MR = D512_MR, NR = D512_NR, NV = D512_NR / 8 };
    const int64_t BS = ldb, mr = MR;
    UKRS_BODY(__m512d, double, 8, pd, __mmask8, d512_mask)
}

#undef KLOOP
#undef UKR_BODY

/* Edge kernels (gemm_kernels.h): the rows of c along the vector and its columns in broadcasts,
 * so that a narrow last panel (the 4 columns left of 100, a layer of 10 outputs) fills every
 * lane, where the 8 x 32 tile fills 4 or 10 of 32 and issues a broadcast per multiply (on Zen 5
 * a 784 x 100 product ran as slowly as 784 x 112). NJ columns (at most NR / 4: the tile goes
 * through a buffer and a gather per row, which made wider edges, 10 to 28 columns, slower than
 * the microkernel on Zen 5) against NV vectors of rows from the panels from q0 on (float: panels q0 + 2v and q0 + 2v + 1 in vector v; double:
 * panel q0 + v), NV x NJ = 16 accumulators where the rows allow (8 chains of dependent FMAs did
 * not keep Zen 5's two FMA units busy). Each element's terms are added in p order by one FMA
 * each, as in the microkernel; the tile goes through a buffer to be stored by rows (a gather
 * each), alpha and beta applied as the microkernel does. A panel past mr is never read: its
 * pointer is the first panel's, and its rows are not stored. */
#define EDGE_CHUNK(T, R, W, S, MASK_T, MASK_FN, NV, NJ, LOAD_A, PREP, q0, mg, cg)                 \
    {                                                                                             \
        T acc[NV][NJ];                                                                            \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                    \
            _Pragma("GCC unroll 8") for (int j = 0; j < (NJ); j++) acc[v][j] = _mm512_setzero_##S(); \
        for (int64_t p = 0; p < k; p++) {                                                         \
            PREP(q0, NV, p)                                                                       \
            T av[NV];                                                                             \
            _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++) av[v] = LOAD_A(q0, v, p);      \
            _Pragma("GCC unroll 8") for (int j = 0; j < (NJ); j++) {                              \
                const T bj = _mm512_set1_##S(b[p * NR + j0 + j]);                                 \
                _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                            \
                    acc[v][j] = _mm512_fmadd_##S(av[v], bj, acc[v][j]);                           \
            }                                                                                     \
        }                                                                                         \
        _Pragma("GCC unroll 4") for (int v = 0; v < (NV); v++)                                    \
            _Pragma("GCC unroll 8") for (int j = 0; j < (NJ); j++)                                \
                _mm512_storeu_##S(t + (j * (NV) + v) * W, acc[v][j]);                             \
        const MASK_T mk = MASK_FN(nr - j0 < (NJ) ? nr - j0 : (NJ), 0);                            \
        const VIDX_T_##S vidx = VIDX_##S((NV) * W); /* lane j: column j of the buffer */          \
        for (int64_t i = 0; i < (mg); i++) {                                                      \
            R *cp = (cg) + i * ldc + j0;                                                          \
            T r = _mm512_mul_##S(va, GATHER_##S(mk, vidx, t + i));                                \
            if (beta != 0) r = _mm512_fmadd_##S(vb, _mm512_maskz_loadu_##S(mk, cp), r);           \
            _mm512_mask_storeu_##S(cp, mk, r);                                                    \
        }                                                                                         \
    }

#define VIDX_T_ps __m512i
#define VIDX_T_pd __m256i
#define VIDX_ps(step) _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), \
                                         _mm512_set1_epi32(step))
#define VIDX_pd(step) _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32(step))
#define GATHER_ps(mk, vidx, p) _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mk, vidx, p, 4)
#define GATHER_pd(mk, vidx, p) _mm512_mask_i32gather_pd(_mm512_setzero_pd(), mk, vidx, p, 8)
/* float: 16 rows from two panels of 8 (one 256-bit load each, joined by an AVX-512F insert) */
#define SEDGE_A(q0, v, p)                                                                         \
    _mm512_castpd_ps(_mm512_insertf64x4(                                                          \
        _mm512_castps_pd(_mm512_castps256_ps512(_mm256_loadu_ps(ap[(q0) + 2 * (v)] + (p) * 8))),  \
        _mm256_castps_pd(_mm256_loadu_ps(ap[(q0) + 2 * (v) + 1] + (p) * 8)), 1))
#define DEDGE_A(q0, v, p) _mm512_loadu_pd(ap[(q0) + (v)] + (p) * 8)
#define NO_PREP(q0, NV, p)
#define SCHUNK(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512, float, 16, ps, __mmask16, s512_mask, NV, NJ, SEDGE_A, NO_PREP, q0, mg, cg)
#define DCHUNK(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512d, double, 8, pd, __mmask8, d512_mask, NV, NJ, DEDGE_A, NO_PREP, q0, mg, cg)
/* What every edge kernel starts with: the tile, the buffer, alpha, beta; those reading packed
 * panels also the row panels' pointers */
#define EDGE_TILE(T, R, S, TILE_MR, TILE_NR, BUF)                                                 \
    enum { MR = TILE_MR, NR = TILE_NR, j0 = 0 };                                                  \
    R t[BUF];                                                                                     \
    const T va = _mm512_set1_##S(alpha), vb = _mm512_set1_##S(beta);
#define EDGE_SETUP(T, R, S, TILE_MR, TILE_NR, BUF)                                                \
    EDGE_TILE(T, R, S, TILE_MR, TILE_NR, BUF)                                                     \
    const R *ap[FNN_EDGE_PANELS];                                                                 \
    for (int q = 0; q < FNN_EDGE_PANELS; q++) ap[q] = q * MR < mr ? a + q * MR * k : a;

/* The edge kernels' bodies, CHUNK: the chunk of rows with its loads of op(A) */
#define SEDGE_BODY(CHUNK)                                                                         \
    if (nr > 4) {                                                                                 \
        for (int64_t g = 0; g < mr; g += 32) {                                                    \
            const int64_t mg = mr - g < 32 ? mr - g : 32;                                         \
            if (mg > 16) CHUNK(2, 8, g / MR, mg, c + g * ldc)                                     \
            else CHUNK(1, 8, g / MR, mg, c + g * ldc)                                             \
        }                                                                                         \
    } else if (mr > 32) {                                                                         \
        CHUNK(4, 4, 0, mr, c)                                                                     \
    } else if (mr > 16) {                                                                         \
        CHUNK(2, 4, 0, mr, c)                                                                     \
    } else {                                                                                      \
        CHUNK(1, 4, 0, mr, c)                                                                     \
    }
#define DEDGE_BODY(CHUNK)                                                                         \
    for (int64_t g = 0; g < mr; g += 32) {                                                        \
        const int64_t mg = mr - g < 32 ? mr - g : 32;                                             \
        if (mg > 16) CHUNK(4, 4, g / MR, mg, c + g * ldc)                                         \
        else CHUNK(2, 4, g / MR, mg, c + g * ldc)                                                 \
    }

/* float: up to 8 columns against 32 rows (2 x 8 accumulators), up to 4 against 64 (4 x 4) */
FNN_AVX512 void fnn_sgemm_edge_avx512(int64_t k, const float *restrict a, const float *restrict b,
                                      float *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                                      float alpha, float beta) {
    EDGE_SETUP(__m512, float, ps, S512_MR, S512_NR, 4 * 4 * 16)
    SEDGE_BODY(SCHUNK)
}

/* double: up to 4 columns against 32 rows (4 x 4 accumulators) */
FNN_AVX512 void fnn_dgemm_edge_avx512(int64_t k, const double *restrict a, const double *restrict b,
                                      double *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                                      double alpha, double beta) {
    EDGE_SETUP(__m512d, double, pd, D512_MR, D512_NR, 4 * 4 * 8)
    DEDGE_BODY(DCHUNK)
}

/* The edge kernels reading op(A) where A lies (gemm_kernels.h, edge_s). op(A) = A^T (rsa == 1): a
 * row of A holds one p's values for consecutive rows of c, so a vector of rows is one load, masked
 * past mr. Rows of A (csa == 1): 16 rows x 16 depths (double: 8 x 8) are loaded, masked past mr
 * and k, and transposed in registers into a buffer (at each p a multiple of 16), from which each
 * p's vector of rows is loaded: the packing of those rows, done where the edge needs them. A
 * masked-off lane is never read. The same FMAs, in the same order, as from packed panels. */
#define SEDGE_AS(q0, v, p)                                                                        \
    _mm512_maskz_loadu_ps(s512_mask(mr - ((q0) + 2 * (v)) * 8, 0), a + (p) * csa + ((q0) + 2 * (v)) * 8)
#define DEDGE_AS(q0, v, p)                                                                        \
    _mm512_maskz_loadu_pd(d512_mask(mr - ((q0) + (v)) * 8, 0), a + (p) * csa + ((q0) + (v)) * 8)
#define SEDGE_AT(q0, v, p) _mm512_loadu_ps(tb + ((v) * 16 + ((p) & 15)) * 16)
#define DEDGE_AT(q0, v, p) _mm512_loadu_pd(tb + ((v) * 8 + ((p) & 7)) * 8)
#define SEDGE_TPREP(q0, NV, p)                                                                    \
    if (((p) & 15) == 0) s512_rows_t(tb, a + (q0) * 8 * rsa + (p), rsa, NV, mr - (q0) * 8, k - (p));
#define DEDGE_TPREP(q0, NV, p)                                                                    \
    if (((p) & 7) == 0) d512_rows_t(tb, a + (q0) * 8 * rsa + (p), rsa, NV, mr - (q0) * 8, k - (p));
#define SCHUNK_S(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512, float, 16, ps, __mmask16, s512_mask, NV, NJ, SEDGE_AS, NO_PREP, q0, mg, cg)
#define DCHUNK_S(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512d, double, 8, pd, __mmask8, d512_mask, NV, NJ, DEDGE_AS, NO_PREP, q0, mg, cg)
#define SCHUNK_T(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512, float, 16, ps, __mmask16, s512_mask, NV, NJ, SEDGE_AT, SEDGE_TPREP, q0, mg, cg)
#define DCHUNK_T(NV, NJ, q0, mg, cg) EDGE_CHUNK(__m512d, double, 8, pd, __mmask8, d512_mask, NV, NJ, DEDGE_AT, DEDGE_TPREP, q0, mg, cg)

/* nv groups of 16 rows of a (row r at a + r * lda), their first `depths` values (at most 16 read),
 * rows from `rows` on as zeros: tb[(v * 16 + q) * 16 + i] = row 16 v + i at depth q */
FNN_AVX512_INLINE void s512_rows_t(float *restrict tb, const float *restrict a, int64_t lda, int nv,
                                   int64_t rows, int64_t depths) {
    const __mmask16 dm = s512_mask(depths, 0);
    for (int v = 0; v < nv; v++) {
        __m512 r[16], t[16], u[16];
        for (int i = 0; i < 16; i++)
            r[i] = 16 * v + i < rows ? _mm512_maskz_loadu_ps(dm, a + (16 * v + i) * lda) : _mm512_setzero_ps();
        for (int i = 0; i < 16; i += 2) {
            t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int g = 0; g < 16; g += 4) { /* rows g..g+3: depths 4l + e in 128-bit lane l of u[g + e] */
            u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
            u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
            u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
            u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
        }
        float *d = tb + v * 256;
        for (int e = 0; e < 4; e++) { /* depths 4 l + e, l = 0..3 */
            const __m512 x0 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x88), x1 = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xDD);
            const __m512 y0 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x88), y1 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xDD);
            _mm512_storeu_ps(d + e * 16, _mm512_shuffle_f32x4(x0, y0, 0x88));
            _mm512_storeu_ps(d + (8 + e) * 16, _mm512_shuffle_f32x4(x0, y0, 0xDD));
            _mm512_storeu_ps(d + (4 + e) * 16, _mm512_shuffle_f32x4(x1, y1, 0x88));
            _mm512_storeu_ps(d + (12 + e) * 16, _mm512_shuffle_f32x4(x1, y1, 0xDD));
        }
    }
}

/* The same for double: nv groups of 8 rows, 8 depths: tb[(v * 8 + q) * 8 + i] */
FNN_AVX512_INLINE void d512_rows_t(double *restrict tb, const double *restrict a, int64_t lda, int nv,
                                   int64_t rows, int64_t depths) {
    const __mmask8 dm = d512_mask(depths, 0);
    for (int v = 0; v < nv; v++) {
        __m512d r[8], t[8];
        for (int i = 0; i < 8; i++)
            r[i] = 8 * v + i < rows ? _mm512_maskz_loadu_pd(dm, a + (8 * v + i) * lda) : _mm512_setzero_pd();
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);   /* lane l: depth 2 l */
            t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]); /* lane l: depth 2 l + 1 */
        }
        double *d = tb + v * 64;
        for (int e = 0; e < 2; e++) { /* depths 2 l + e */
            const __m512d u0 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88), u1 = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xDD);
            const __m512d u2 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88), u3 = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xDD);
            _mm512_storeu_pd(d + e * 8, _mm512_shuffle_f64x2(u0, u2, 0x88));
            _mm512_storeu_pd(d + (4 + e) * 8, _mm512_shuffle_f64x2(u0, u2, 0xDD));
            _mm512_storeu_pd(d + (2 + e) * 8, _mm512_shuffle_f64x2(u1, u3, 0x88));
            _mm512_storeu_pd(d + (6 + e) * 8, _mm512_shuffle_f64x2(u1, u3, 0xDD));
        }
    }
}

FNN_AVX512 void fnn_sgemm_edges_avx512(int64_t k, const float *restrict a, int64_t rsa, int64_t csa,
                                       const float *restrict b, float *restrict c, int64_t ldc,
                                       int64_t mr, int64_t nr, float alpha, float beta) {
    EDGE_TILE(__m512, float, ps, S512_MR, S512_NR, 4 * 4 * 16)
    if (rsa == 1) {
        SEDGE_BODY(SCHUNK_S)
    } else {
        float tb[4 * 16 * 16];
        SEDGE_BODY(SCHUNK_T)
    }
}

FNN_AVX512 void fnn_dgemm_edges_avx512(int64_t k, const double *restrict a, int64_t rsa, int64_t csa,
                                       const double *restrict b, double *restrict c, int64_t ldc,
                                       int64_t mr, int64_t nr, double alpha, double beta) {
    EDGE_TILE(__m512d, double, pd, D512_MR, D512_NR, 4 * 4 * 8)
    if (rsa == 1) {
        DEDGE_BODY(DCHUNK_S)
    } else {
        double tb[4 * 8 * 8];
        DEDGE_BODY(DCHUNK_T)
    }
}

#undef EDGE_CHUNK
#undef EDGE_SETUP
#undef EDGE_TILE
#undef SEDGE_AS
#undef SEDGE_BODY
#undef DEDGE_BODY
#undef DEDGE_AS
#undef SCHUNK_S
#undef DCHUNK_S
#undef SCHUNK_T
#undef DCHUNK_T
#undef SEDGE_AT
#undef DEDGE_AT
#undef SEDGE_TPREP
#undef DEDGE_TPREP
#undef NO_PREP
#undef SCHUNK
#undef DCHUNK
#undef VIDX_T_ps
#undef VIDX_T_pd
#undef VIDX_ps
#undef VIDX_pd
#undef GATHER_ps
#undef GATHER_pd
#undef SEDGE_A
#undef DEDGE_A

/* Row kernels (gemm_kernels.h): blocks of 8 vectors of c in registers over every listed row of
 * b, then of 4, then one vector at a time, the last one masked. */
#define ROWS_BLOCK(T, W, S, NB)                                                                   \
    for (; j + (NB) * W <= n; j += (NB) * W) {                                                    \
        T acc[NB];                                                                                \
        _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++) acc[v] = _mm512_loadu_##S(c + j + W * v); \
        for (int64_t t = 0; t < cnt; t++) {                                                       \
            const T at = _mm512_set1_##S(a[t]);                                                   \
            const R *bt = b + idx[t] * ldb + j;                                                   \
            _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++)                                \
                acc[v] = _mm512_fmadd_##S(at, _mm512_loadu_##S(bt + W * v), acc[v]);              \
        }                                                                                         \
        _Pragma("GCC unroll 8") for (int v = 0; v < (NB); v++) _mm512_storeu_##S(c + j + W * v, acc[v]); \
    }

#define ROWS_BODY(T, W, S, MT, MASK_FN)                                                           \
    int64_t j = 0;                                                                                \
    ROWS_BLOCK(T, W, S, 8)                                                                        \
    ROWS_BLOCK(T, W, S, 4)                                                                        \
    for (; j < n; j += W) {                                                                       \
        const MT mk = MASK_FN(n - j, 0);                                                          \
        T acc = _mm512_maskz_loadu_##S(mk, c + j);                                                \
        for (int64_t t = 0; t < cnt; t++)                                                         \
            acc = _mm512_fmadd_##S(_mm512_set1_##S(a[t]),                                        \
                                   _mm512_maskz_loadu_##S(mk, b + idx[t] * ldb + j), acc);        \
        _mm512_mask_storeu_##S(c + j, mk, acc);                                                   \
    }

FNN_AVX512 void fnn_srows_avx512(int64_t n, int64_t cnt, const int32_t *restrict idx,
                                 const float *restrict a, const float *restrict b, int64_t ldb,
                                 float *restrict c) {
    typedef float R;
    ROWS_BODY(__m512, 16, ps, __mmask16, s512_mask)
}

FNN_AVX512 void fnn_drows_avx512(int64_t n, int64_t cnt, const int32_t *restrict idx,
                                 const double *restrict a, const double *restrict b, int64_t ldb,
                                 double *restrict c) {
    typedef double R;
    ROWS_BODY(__m512d, 8, pd, __mmask8, d512_mask)
}

#undef ROWS_BLOCK
#undef ROWS_BODY

#if defined(_MSC_VER) && !defined(__clang__)
static int avx512_available(void) { /* CPUID.7.EBX[16] and XCR0 saving opmask / zmm state */
    int r[4];
    __cpuid(r, 0);
    if (r[0] < 7) return 0;
    __cpuid(r, 1);
    if (!((r[2] >> 27) & 1)) return 0; /* OSXSAVE */
    if ((_xgetbv(0) & 0xE6) != 0xE6) return 0;
    __cpuidex(r, 7, 0);
    return ((r[1] >> 16) & 1) && ((r[1] >> 5) & 1); /* AVX-512F, and AVX2 for the list kernels */
}
#else
static int avx512_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2"); /* list kernels */
}
#endif

/* The list kernels are AVX2's (every AVX-512 CPU runs AVX2): listing costs little beside the row
 * kernel's products, and an AVX-512 version would be code no machine of ours can test. */
const fnn_arch fnn_arch_avx512 = {
    "avx512",
    avx512_available,
    {S512_MR, S512_NR, S512_MC, S512_KC, S512_NC, fnn_sgemm_ukr_avx512_8x32, fnn_srows_avx512, fnn_sgemm_ukrb_avx512_8x32, fnn_slist_avx2, fnn_sgemm_edge_avx512, fnn_sgemm_ukrs_avx512_8x32, fnn_sgemm_edges_avx512},
    {D512_MR, D512_NR, D512_MC, D512_KC, D512_NC, fnn_dgemm_ukr_avx512_8x16, fnn_drows_avx512, fnn_dgemm_ukrb_avx512_8x16, fnn_dlist_avx2, fnn_dgemm_edge_avx512, fnn_dgemm_ukrs_avx512_8x16, fnn_dgemm_edges_avx512},
};

#endif
