/* internal_api.h — type-generic entry points shared between the C files but not part of the
 * public API: the kernels run inside a team (team.h). Included twice by internal.h. */
int FN(fnn_gemm_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m, int64_t n,
                      int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                      double alpha, double beta, real *work);
/* An optimizer's update for one step, prepared once (rates, penalties, Adam's corrections at
 * step t) and then applied to ranges of the flat buffer [lo, hi) whose gradient is g[0:hi-lo]:
 * the online step (network.c) computes a weight row's gradient into a small buffer and updates
 * that row at once, so the whole gradient is never written. Penalties below n_decay, as in the
 * whole-buffer updates. */
typedef struct FN(fnn_opt_plan) {
    int kind, form, nesterov, check; /* check: report a non-finite value left (fnn_optim.overflow_check) */
    real lr, mu, b1, b2, rho, eps, l2, l1, shrink, c1, c2;
} FN(fnn_opt_plan);
/* A dense layer's elementwise work done by gemm_team on each block of C as soon as its sum is
 * complete, by the thread that computed it, while the block is in that core's cache (on many
 * cores, a separate pass on one thread would draw every block back from the others):
 * forward (y == NULL): C += bias on every row (bias may be NULL), then C = f(C);
 * backward (y != NULL): C *= f'(Y), Y the activation's output (m x n, row stride ldy).
 * f is act (FNN_ACT_*, elementwise: never softmax). Each element gets the same operations, in
 * the same order, as from fnn_bias_forward and fnn_activation_forward / _backward after the
 * product: the same bits. nonfinite (or NULL): set to 1 when a block holds a NaN or an infinity
 * after the rest (a weight gradient checked while it is in cache, not in a pass of its own). */
typedef struct FN(fnn_gemm_epi) {
    const real *bias, *y;
    int64_t ldy;
    int act;
    double alpha;
    _Atomic int *nonfinite;
    /* plan (or NULL): C is a weight gradient, the elements [off, off + m * ldc) of the flat
     * buffer of params and slots laid out as C (the block's columns, ldc = n: whole rows), and
     * each block is applied at once by fnn_opt_plan_apply (the online step's GEMM form: the
     * gradient read back from this core's cache, not in a pass of its own); overflowed is set
     * (relaxed) where that answers 1. After anything above. */
    const FN(fnn_opt_plan) *plan;
    real *params, *slots;
    int64_t n_params, n_decay, off;
    int *overflowed;
    /* l2 (with plan): scikit-learn's l2_loss term, C += l2c params on the elements below n_decay,
     * before the update, as the general step adds it to the whole gradient (network.c) */
    int l2;
    real l2c;
    /* x_nonfinite (forward only, or NULL): set to 1 (relaxed) when a block holds a NaN or an
     * infinity after the bias, before the activation (which may map a NaN to 0). A NaN or an
     * infinity in a row of A makes that whole row of A B nonfinite (NaN * w and inf * 0 are NaN,
     * inf * w is infinite, and no sum with either is finite), so predict checks X through the
     * first layer's output, in cache, instead of reading X from memory once more */
    _Atomic int *x_nonfinite;
} FN(fnn_gemm_epi);
/* 1 when no element of x[0:n] is NaN or infinite (network.c). */
int FN(fnn_all_finite)(const real *x, int64_t n);
/* fnn_gemm_team with an epilogue (NULL: none), and skip_zero: for a few rows of C (m <= 4, no
 * trans_b, beta == 0) the rows of B that meet only zero values of A are not read: the same bits
 * when B is finite (gemm.c, gemm_skinny). The network's forward skips (an inf or NaN weight met
 * only by zero inputs is then not propagated, as in a reference BLAS GEMV); fnn_gemm never does. */
int FN(fnn_gemm_fused_team)(fnn_team *team, real *C, const real *A, const real *B, int64_t m,
                            int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a,
                            int trans_b, double alpha, double beta, real *work, int skip_zero,
                            const FN(fnn_gemm_epi) *epi);
/* The updates on a team (NULL: a team of their own when large enough). */
void FN(fnn_sgd_update_team)(fnn_team *team, real *p, real *vel, const real *g, int64_t n,
                             int64_t n_decay, double lr, double momentum, int nesterov, double l2,
                             double l1, double weight_decay, int form);
void FN(fnn_adam_update_team)(fnn_team *team, real *p, real *m, real *v, const real *g, int64_t n,
                              int64_t n_decay, int64_t t, double lr, double beta1, double beta2,
                              double eps, double l2, double l1, double weight_decay, int form);
void FN(fnn_rmsprop_update_team)(fnn_team *team, real *p, real *s, const real *g, int64_t n,
                                 int64_t n_decay, double lr, double rho, double eps, double l2,
                                 double l1, double weight_decay);
void FN(fnn_opt_plan_init)(FN(fnn_opt_plan) *plan, const fnn_optim *opt, double lr, int64_t t);
/* plan->check: 1 when the range's update left a NaN or an infinity in a parameter it changed, or
 * in Adam's v or RMSprop's s (it overflowed, or met such a value written by hand; optimizers.c,
 * sgd_range); else (and always without check) 0. The update is applied either way. */
int FN(fnn_opt_plan_apply)(const FN(fnn_opt_plan) *plan, real *params, real *slots, int64_t n_params,
                           int64_t n_decay, const real *g, int64_t lo, int64_t hi);
/* The plan's update of the whole buffer, n values, on a team (NULL: one of its own when large
 * enough); the return value as fnn_opt_plan_apply's. */
int FN(fnn_opt_plan_run)(fnn_team *team, const FN(fnn_opt_plan) *plan, real *params, real *slots, int64_t n,
                         int64_t n_decay, const real *g);
/* 1 when a zero gradient leaves a parameter as it is (plain SGD, no penalty, no decay) */
int FN(fnn_opt_plan_is_identity_at_zero)(const FN(fnn_opt_plan) *plan);
