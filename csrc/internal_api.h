/* internal_api.h — type-generic entry points shared between the C files but not part of the
 * public API: the kernels run inside a team (team.h). Included twice by internal.h. */
int FN(fnn_gemm_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m, int64_t n,
                      int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                      double alpha, double beta, real *work);
/* fnn_gemm_team, except that for a few rows of C (m <= 4, no trans_b, beta == 0) the rows of B
 * that meet only zero values of A are not read: the same bits when B is finite (gemm.c,
 * gemm_skinny). The network's inference forward calls it; the public fnn_gemm never skips. */
int FN(fnn_gemm_skip_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m,
                           int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                           int trans_b, double alpha, double beta, real *work);
void FN(fnn_sgd_update_team)(fnn_team *team, real *p, real *vel, const real *g, int64_t n,
                             int64_t n_decay, double lr, double momentum, int nesterov, double l2,
                             double l1, double weight_decay, int form);
void FN(fnn_adam_update_team)(fnn_team *team, real *p, real *m, real *v, const real *g, int64_t n,
                              int64_t n_decay, int64_t t, double lr, double beta1, double beta2,
                              double eps, double l2, double l1, double weight_decay, int form);
void FN(fnn_rmsprop_update_team)(fnn_team *team, real *p, real *s, const real *g, int64_t n,
                                 int64_t n_decay, double lr, double rho, double eps, double l2,
                                 double l1, double weight_decay);
