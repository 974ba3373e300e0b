/* fastnn_api.h — type-generic prototypes, included by fastnn.h once with real = float, FN = _f32
 * and once with real = double, FN = _f64. No include guard on purpose. Matrices are contiguous
 * (leading dimension = number of columns) unless a leading dimension is passed. Scalar
 * hyper-parameters are double for both types and rounded to `real` once, at the top of a call. */

/* ---- gemm.c: C = alpha * op(A) @ op(B) + beta * C --------------------------------------------
 * op(A) is m x k, op(B) is k x n, C is m x n. trans_a: A is stored k x m. trans_b: B is n x k.
 * beta == 0: C is never read (it may hold NaN). work: FN(fnn_gemm_work_size)() elements, 64-byte
 * aligned, or NULL to let the call allocate its own. */
int FN(fnn_gemm)(real *C, const real *A, const real *B, int64_t m, int64_t n, int64_t k,
                 int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                 double alpha, double beta, real *work);
size_t FN(fnn_gemm_work_size)(void);
/* Enough for every product of at most m x n x k (what a training workspace needs). */
size_t FN(fnn_gemm_work_size_for)(int64_t m, int64_t n, int64_t k);
/* The plain triple loop, for tests and as the definition of the maths. */
int FN(fnn_gemm_naive)(real *C, const real *A, const real *B, int64_t m, int64_t n, int64_t k,
                       int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b,
                       double alpha, double beta);

/* ---- bias.c: Y (m x n) += b per row; db (n) += column sums of dY ---------------------------- */
void FN(fnn_bias_forward)(real *Y, const real *b, int64_t m, int64_t n, int64_t ldy);
void FN(fnn_bias_backward)(real *db, const real *dY, int64_t m, int64_t n, int64_t ldy);

/* ---- activations.c: y = f(x) on n elements; dx = dy * f'(x) written from y. dx may alias dy. */
void FN(fnn_identity_forward)(real *y, const real *x, int64_t n);
void FN(fnn_identity_backward)(real *dx, const real *dy, const real *y, int64_t n);
void FN(fnn_relu_forward)(real *y, const real *x, int64_t n);
void FN(fnn_relu_backward)(real *dx, const real *dy, const real *y, int64_t n);
void FN(fnn_leaky_relu_forward)(real *y, const real *x, int64_t n, double alpha);
void FN(fnn_leaky_relu_backward)(real *dx, const real *dy, const real *y, int64_t n, double alpha);
void FN(fnn_sigmoid_forward)(real *y, const real *x, int64_t n);
void FN(fnn_sigmoid_backward)(real *dx, const real *dy, const real *y, int64_t n);
void FN(fnn_tanh_forward)(real *y, const real *x, int64_t n);
void FN(fnn_tanh_backward)(real *dx, const real *dy, const real *y, int64_t n);
/* row-wise over an m x n matrix */
void FN(fnn_softmax_forward)(real *Y, const real *X, int64_t m, int64_t n);
void FN(fnn_softmax_backward)(real *dX, const real *dY, const real *Y, int64_t m, int64_t n);
/* by enum (fnn_activation), on an m x n matrix; alpha is the leaky relu slope */
int FN(fnn_activation_forward)(int act, real *Y, const real *X, int64_t m, int64_t n, double alpha);
int FN(fnn_activation_backward)(int act, real *dX, const real *dY, const real *Y, int64_t m,
                                int64_t n, double alpha);

/* ---- losses.c: value and gradient w.r.t. the logits / outputs Z (m x n) -----------------------
 * Per-sample losses l_i are combined as sum_i w_i l_i / sum_i w_i, with w = sw or 1 (sw == NULL);
 * sum w == 0 gives loss 0 and gradient 0.
 *   softmax_xent: l_i = logsumexp(Z_i) - Z_i[labels_i]              labels in [0, n)
 *   sigmoid_bce:  l_i = mean_j max(z,0) - z t + log1p(exp(-|z|))    targets T in [0, 1]
 *   mse:          l_i = mean_j (Z_ij - T_ij)^2
 *   scikit-learn's (gradient (link(Z) - T) w_i / sum w for all four; clip(p) = min(max(p, eps), 1 - eps)):
 *   sk_log_loss:        l_i = -log clip(softmax(Z_i)[labels_i])           labels in [0, n)
 *   sk_binary_log_loss: l_i = -sum_j T log clip(p) + (1 - T) log(1 - clip(p)), p = sigmoid(Z)
 *   sk_squared_error:   l_i = 0.5 mean_j (Z_ij - T_ij)^2   (gradient: of 0.5 sum_j, see fastnn.h)
 *   sk_poisson:         l_i = sum_j xlogy(T, T / p) - T + p, p = exp(Z)
 * _backward overwrites dZ with dL/dZ. Status FNN_EINVAL when a label is out of range. */
int FN(fnn_softmax_xent_forward)(double *loss, const real *Z, const int64_t *labels, const real *sw,
                                 int64_t m, int64_t n);
int FN(fnn_softmax_xent_backward)(real *dZ, const real *Z, const int64_t *labels, const real *sw,
                                  int64_t m, int64_t n);
int FN(fnn_sigmoid_bce_forward)(double *loss, const real *Z, const real *T, const real *sw,
                                int64_t m, int64_t n);
int FN(fnn_sigmoid_bce_backward)(real *dZ, const real *Z, const real *T, const real *sw,
                                 int64_t m, int64_t n);
int FN(fnn_mse_forward)(double *loss, const real *Z, const real *T, const real *sw, int64_t m,
                        int64_t n);
int FN(fnn_mse_backward)(real *dZ, const real *Z, const real *T, const real *sw, int64_t m,
                         int64_t n);
/* Both at once, by enum (fnn_loss): the engine's call. T or labels, whichever the loss takes. */
int FN(fnn_loss_forward_backward)(int loss, double *value, real *dZ, const real *Z, const real *T,
                                  const int64_t *labels, const real *sw, int64_t m, int64_t n);

/* ---- optimizers.c: one loop over flat arrays; params[0:n_decay] get l2/l1/weight_decay -------
 * g' = g + l2 p + l1 sign(p)    (i < n_decay; else g' = g)
 * p *= 1 - lr weight_decay      (i < n_decay, decoupled)
 * sgd:     v = momentum v + g'; p -= lr (nesterov ? g' + momentum v : v)   (momentum 0: p -= lr g')
 * adam:    m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
 *          p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)         t >= 1 is this step
 * rmsprop: s = rho s + (1-rho) g'^2; p -= lr g' / (sqrt(s) + eps)
 * form FNN_FORM_SKLEARN (fnn_optim_form) changes sgd and adam to scikit-learn's:
 * sgd:     v = momentum v - lr g'; p += nesterov ? momentum v - lr g' : v  (momentum 0: p -= lr g')
 * adam:    m, v as above; p -= (lr sqrt(1 - b2^t) / (1 - b1^t)) m / (sqrt(v) + eps) */
void FN(fnn_sgd_update)(real *p, real *vel, const real *g, int64_t n, int64_t n_decay, double lr,
                        double momentum, int nesterov, double l2, double l1, double weight_decay,
                        int form);
void FN(fnn_adam_update)(real *p, real *m, real *v, const real *g, int64_t n, int64_t n_decay,
                         int64_t t, double lr, double beta1, double beta2, double eps, double l2,
                         double l1, double weight_decay, int form);
void FN(fnn_rmsprop_update)(real *p, real *s, const real *g, int64_t n, int64_t n_decay, double lr,
                            double rho, double eps, double l2, double l1, double weight_decay);

/* ---- dropout.c: inverted dropout; mask = (uniform(key, i) >= rate) / (1 - rate) ------------- */
void FN(fnn_dropout_forward)(real *Y, real *mask, const real *X, int64_t n, double rate,
                             uint64_t key);
void FN(fnn_dropout_backward)(real *dX, const real *dY, const real *mask, int64_t n);

/* ---- batchnorm.c: per column of an m x n batch ------------------------------------------------
 * training: mean, var (biased) over the batch; inv_std = 1/sqrt(var + eps);
 *           xhat = (X - mean) inv_std; Y = gamma xhat + beta
 * running:  rm = (1-mom) rm + mom mean; rv = (1-mom) rv + mom var m/(m-1); a batch of one row
 *           (m = 1: xhat = 0, Y = beta, dX = 0) leaves them unchanged
 * inference: Y = gamma (X - rm) / sqrt(rv + eps) + beta
 * backward: dbeta += sum dY; dgamma += sum dY xhat;
 *           dX = gamma inv_std / m (m dY - sum dY - xhat sum(dY xhat))  (dX may alias dY) */
void FN(fnn_batchnorm_forward)(real *Y, real *xhat, real *mean, real *var, real *inv_std,
                               const real *X, const real *gamma, const real *beta, int64_t m,
                               int64_t n, double eps);
void FN(fnn_batchnorm_running)(real *run_mean, real *run_var, const real *mean, const real *var,
                               int64_t m, int64_t n, double momentum);
void FN(fnn_batchnorm_inference)(real *Y, const real *X, const real *gamma, const real *beta,
                                 const real *run_mean, const real *run_var, int64_t m, int64_t n,
                                 double eps);
void FN(fnn_batchnorm_backward)(real *dX, real *dgamma, real *dbeta, const real *dY,
                                const real *xhat, const real *inv_std, const real *gamma,
                                int64_t m, int64_t n);

/* ---- network.c: the training engine ----------------------------------------------------------
 * A workspace holds everything a training step needs for batches of up to `batch` rows: the
 * gathered batch, every layer's output, dropout masks, batch-norm statistics, two gradient
 * buffers, the flat gradient and the GEMM packing buffer. It is allocated once; the calls below
 * never allocate. One workspace must not be used by two calls at the same time.
 * slots: optimizer state, n_slots x n_params (sgd: velocity; adam: m, v; rmsprop: s).
 * Order of one step: gather, forward (dropout key from counters[STEP]), loss and gradient,
 * backward, opt->l2_loss term (loss and weight gradient), finiteness check (FNN_ENONFINITE before anything is changed), batch-norm running
 * statistics, optimizer update with lr = fnn_lr_at(opt, epoch, counters[STEP], samples seen at the
 * start of the call), counters += (1, rows), then the check callback (FNN_EINTR). */
typedef struct FN(fnn_workspace) FN(fnn_workspace);
int FN(fnn_workspace_new)(FN(fnn_workspace) **ws, const fnn_net *net, int64_t batch);
void FN(fnn_workspace_free)(FN(fnn_workspace) *ws);
int64_t FN(fnn_workspace_batch)(const FN(fnn_workspace) *ws);

int FN(fnn_train_epoch)(fnn_train_result *res, real *params, real *slots, real *state,
                        int64_t *counters, int64_t *perm, FN(fnn_workspace) *ws,
                        const fnn_net *net, const fnn_optim *opt, const real *X, const real *T,
                        const int64_t *labels, const real *sw, int64_t n, int64_t batch,
                        int shuffle, int64_t epoch, fnn_check_fn check, void *ctx);
int FN(fnn_train_step)(fnn_train_result *res, real *params, real *slots, real *state,
                       int64_t *counters, FN(fnn_workspace) *ws, const fnn_net *net,
                       const fnn_optim *opt, const real *X, const real *T, const int64_t *labels,
                       const real *sw, int64_t n, int64_t epoch);
/* train_epoch: `shuffle` is an fnn_order: the epoch's rows are perm[0:n] after the engine writes
 * the identity (FNN_ORDER_IDENTITY) or its shuffle of the epoch (FNN_ORDER_SHUFFLE) into perm, or
 * the caller's perm as given (FNN_ORDER_GIVEN: entries outside [0, n) give FNN_EINVAL before
 * anything changes); batches are perm[0:batch], perm[batch:2 batch], ... (the last one shorter). */
/* Loss and flat gradient (overwritten) of one batch of n <= batch rows in training mode (dropout
 * masks drawn for optimizer step `step`, batch statistics for batch norm); nothing is updated.
 * The loss's alone: no optimizer penalty (l2, l1, l2_loss) is in it. */
int FN(fnn_gradient)(double *loss, real *grads, const real *params, FN(fnn_workspace) *ws,
                     const fnn_net *net, const real *X, const real *T, const int64_t *labels,
                     const real *sw, int64_t n, int64_t step);
/* 1 when no element of x[0:n] is NaN or infinite (1 for n <= 0); a large array is shared by the
 * threads of fnn_get_num_threads. Input validation's check of a whole data set. */
int FN(fnn_finite)(const real *x, int64_t n);
/* Inference on any n, in chunks of the workspace's batch. link: apply softmax / sigmoid of the
 * loss to the outputs (probabilities) instead of returning raw outputs. check_x: FNN_ENONFINITE
 * when X holds a NaN or an infinity (each chunk is checked before its forward; the chunks before it
 * are already in out). check (may be NULL) is called between two chunks, as fnn_train_epoch calls
 * it between batches: nonzero stops with FNN_EINTR. */
int FN(fnn_predict)(real *out, const real *params, const real *state, FN(fnn_workspace) *ws,
                    const fnn_net *net, const real *X, int64_t n, int link, int check_x,
                    fnn_check_fn check, void *ctx);
