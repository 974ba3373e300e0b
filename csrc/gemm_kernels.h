/* gemm_kernels.h — the microkernel contract and the kernel table behind fnn_gemm.
 *
 * Contract of a microkernel fnn_sgemm_ukr_<isa>_<MR>x<NR> (and its double twin):
 *   c[0:mr, 0:nr] := beta * c + alpha * a @ b        (row-major c, leading dimension ldc)
 *   a: packed MR x k panel, a[p * MR + i];  b: packed k x NR panel, b[p * NR + j]; both are
 *   zero-padded past mr / nr. The packing buffers are 64-byte aligned but panel p starts
 *   p * MR * k (p * NR * k) elements in, so kernels load with unaligned instructions.
 *   1 <= mr <= MR, 1 <= nr <= NR, k >= 1.
 *   Only the mr x nr corner of c is touched; beta == 0 never reads c. No loops over m or n.
 * A kernel table entry gives the tile (MR, NR), the cache blocks (MC, KC, NC; MC % MR == 0,
 * NC % NR == 0) and the kernel. The portable "ref" entry is always there.
 *
 * Contract of a row kernel fnn_<s|d>rows_<isa> (C's rows when C has at most 4, gemm.c):
 *   c[0:n] += sum over t < cnt of a[t] * b[idx[t] * ldb + 0:n], the terms added one at a time
 *   in the order t = 0, 1, ..., each as one fused multiply-add where the ISA has one (ref: a
 *   product, then a sum). n >= 1, cnt >= 0; c is read and written once per column.
 *
 * Contract of a list kernel fnn_<s|d>list_<isa> (the inputs of a row of C, for the row kernel):
 *   for p = 0, 1, ..., k - 1 in order, each v = alpha * a[p] with v != 0 (a NaN included) goes to
 *   vals[t] and p to idx[t], t = 0, 1, ...; returns the count. vals and idx have room for
 *   k + FNN_LIST_PAD elements: a kernel may write anything past the count. k >= 0. */
#ifndef FASTNN_GEMM_KERNELS_H
#define FASTNN_GEMM_KERNELS_H
#include <stdint.h>

typedef void (*fnn_ukr_f32)(int64_t k, const float *restrict a, const float *restrict b,
                            float *restrict c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                            float beta);
typedef void (*fnn_ukr_f64)(int64_t k, const double *restrict a, const double *restrict b,
                            double *restrict c, int64_t ldc, int64_t mr, int64_t nr, double alpha,
                            double beta);

/* The same microkernel reading b unpacked: row p of the k x NR panel at b + p * ldb (a block of
 * op(B) as stored, no trans_b), every one of its NR columns inside B: nr == NR always. */
typedef void (*fnn_ukrb_f32)(int64_t k, const float *restrict a, const float *restrict b, int64_t ldb,
                             float *restrict c, int64_t ldc, int64_t mr, int64_t nr, float alpha,
                             float beta);
typedef void (*fnn_ukrb_f64)(int64_t k, const double *restrict a, const double *restrict b,
                             int64_t ldb, double *restrict c, int64_t ldc, int64_t mr, int64_t nr,
                             double alpha, double beta);
/* The same microkernel reading a unpacked too (optional, NULL where a kernel has none): a whole
 * panel of MR rows of op(A) where it is stored, element (i, p) at a[i * rsa + p * csa] (rsa == 1:
 * op(A) = A^T, a row of A holds the panel's MR values of one p; csa == 1: rows of A), every one of
 * the MR rows inside A: mr == MR always. b at b + p * ldb as for ukr_b (ldb == NR: a packed
 * panel, nr <= NR; else nr == NR). The same sums, term after term in the same order, as the
 * packed kernel's: the same bits (but for which of two NaN factors of one term gives its sign and
 * payload, as for the edge kernel below). */
typedef void (*fnn_ukrs_f32)(int64_t k, const float *restrict a, int64_t rsa, int64_t csa,
                             const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc,
                             int64_t nr, float alpha, float beta);
typedef void (*fnn_ukrs_f64)(int64_t k, const double *restrict a, int64_t rsa, int64_t csa,
                             const double *restrict b, int64_t ldb, double *restrict c, int64_t ldc,
                             int64_t nr, double alpha, double beta);
/* The edge kernel (optional, NULL where a kernel has none): a last column panel at most NR / 4
 * wide (1 <= nr <= NR / 4) against up to FNN_EDGE_PANELS consecutive packed row panels of a
 * (panel q at a + q * MR * k; only the panels holding rows below mr are read,
 * 1 <= mr <= FNN_EDGE_PANELS * MR), b and c as for the microkernel. Each element of c is the same sum, term after term in the same
 * order, as the microkernel forms: the same bits (but for which of two NaN factors of one term
 * gives its sign and payload, which follows the compiler's operand order and already differed
 * between the microkernel's full and narrow panels). */
#define FNN_EDGE_PANELS 8
typedef fnn_ukr_f32 fnn_edge_f32;
typedef fnn_ukr_f64 fnn_edge_f64;
/* The edge kernel reading op(A) where A lies (optional, NULL where a kernel has none): row i of c
 * at depth p is a[i * rsa + p * csa] (rsa == 1 or csa == 1, as for ukr_s), 1 <= mr <=
 * FNN_EDGE_PANELS * MR rows (no value of a row at or past mr, nor at a depth at or past k, is
 * read), b, c and nr as for the edge kernel; the same bits, NaNs as for the edge kernel. */
typedef void (*fnn_edges_f32)(int64_t k, const float *restrict a, int64_t rsa, int64_t csa,
                              const float *restrict b, float *restrict c, int64_t ldc, int64_t mr,
                              int64_t nr, float alpha, float beta);
typedef void (*fnn_edges_f64)(int64_t k, const double *restrict a, int64_t rsa, int64_t csa,
                              const double *restrict b, double *restrict c, int64_t ldc, int64_t mr,
                              int64_t nr, double alpha, double beta);
typedef void (*fnn_rows_f32)(int64_t n, int64_t cnt, const int32_t *restrict idx,
                             const float *restrict a, const float *restrict b, int64_t ldb,
                             float *restrict c);
typedef void (*fnn_rows_f64)(int64_t n, int64_t cnt, const int32_t *restrict idx,
                             const double *restrict a, const double *restrict b, int64_t ldb,
                             double *restrict c);

#define FNN_LIST_PAD 16
typedef int64_t (*fnn_list_f32)(int64_t k, const float *restrict a, float alpha,
                                float *restrict vals, int32_t *restrict idx);
typedef int64_t (*fnn_list_f64)(int64_t k, const double *restrict a, double alpha,
                                double *restrict vals, int32_t *restrict idx);

typedef struct fnn_kernel_f32 {
    int64_t mr, nr, mc, kc, nc;
    fnn_ukr_f32 ukr;
    fnn_rows_f32 rows;
    fnn_ukrb_f32 ukr_b;
    fnn_list_f32 list;
    fnn_edge_f32 edge;
    fnn_ukrs_f32 ukr_s;
    fnn_edges_f32 edge_s;
} fnn_kernel_f32;
typedef struct fnn_kernel_f64 {
    int64_t mr, nr, mc, kc, nc;
    fnn_ukr_f64 ukr;
    fnn_rows_f64 rows;
    fnn_ukrb_f64 ukr_b;
    fnn_list_f64 list;
    fnn_edge_f64 edge;
    fnn_ukrs_f64 ukr_s;
    fnn_edges_f64 edge_s;
} fnn_kernel_f64;

typedef struct fnn_arch {
    const char *name;
    int (*available)(void); /* can this CPU run it */
    fnn_kernel_f32 f32;
    fnn_kernel_f64 f64;
} fnn_arch;

/* Defined in gemm.c, gemm_avx2.c, gemm_avx512.c (x86-64 only). */
extern const fnn_arch fnn_arch_ref;
#if defined(__x86_64__) || defined(_M_X64)
#define FNN_HAVE_X86_KERNELS 1
extern const fnn_arch fnn_arch_avx2;
extern const fnn_arch fnn_arch_avx512;
/* gemm_avx2.c's list kernels, which the AVX-512 entry shares. */
int64_t fnn_slist_avx2(int64_t k, const float *restrict a, float alpha, float *restrict vals,
                       int32_t *restrict idx);
int64_t fnn_dlist_avx2(int64_t k, const double *restrict a, double alpha, double *restrict vals,
                       int32_t *restrict idx);

/* For the ISA files' microkernel bodies (each defines its own UKR_BODY(..., AT), AT(p, i) naming
 * where a tile's value of op(A) at row i, depth p lies): a packed panel, or A itself (ukr_s). */
#define A_PACKED(p, i) a[(p) * MR + (i)]
#define A_COLS(p, i) a[(p) * csa + (i)] /* rsa == 1: op(A) = A^T */
#define A_ROWS(p, i) a[(i) * rsa + (p)] /* csa == 1: rows of A */
#define UKRS_BODY(T, R, W, S, M, MASK_FN)                                                         \
    if (rsa == 1) {                                                                               \
        UKR_BODY(T, R, W, S, M, MASK_FN, A_COLS)                                                  \
    } else {                                                                                      \
        UKR_BODY(T, R, W, S, M, MASK_FN, A_ROWS)                                                  \
    }
#endif

/* dispatch.c: the entry in use (chosen once: FASTNN_ARCH, else newest ISA first). */
const fnn_arch *fnn_active_arch(void);
/* Every compiled entry, for sizing workspaces: NULL-terminated. */
extern const fnn_arch *const fnn_all_archs[];

#endif
