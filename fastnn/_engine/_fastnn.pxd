# _fastnn.pxd — Cython declarations of csrc/fastnn.h (the C API). Prototypes mirror
# csrc/fastnn_api.h instantiated for float (_f32) and double (_f64).
from libc.stdint cimport int32_t, int64_t, uint64_t

cdef extern from "fastnn.h" nogil:
    enum:
        FNN_OK
        FNN_EINVAL
        FNN_ENOMEM
        FNN_EINTR
        FNN_ENONFINITE
        FNN_EUNSUPPORTED
        FNN_CTR_STEP
        FNN_CTR_SAMPLES
        FNN_N_COUNTERS

    ctypedef struct fnn_layer:
        int32_t kind
        int32_t activation
        int64_t n_in, n_out
        int64_t w_off, b_off, s_off
        double alpha, rate, momentum, eps

    ctypedef struct fnn_optim:
        int32_t kind
        int32_t nesterov
        double lr, momentum, beta1, beta2, eps, rho
        double l2, l1, weight_decay
        int32_t schedule
        double gamma, power_t, lr_min, lr_scale
        int64_t step_size, total_steps

    ctypedef struct fnn_net:
        int32_t n_layers
        const fnn_layer *layers
        int32_t loss
        int64_t n_inputs, n_outputs
        int64_t n_params, n_decay, n_state
        uint64_t seed

    ctypedef struct fnn_train_result:
        int64_t batches, samples
        double loss_sum, weight_sum
        int64_t correct, bad_batch

    ctypedef int (*fnn_check_fn)(void *ctx) noexcept

    uint64_t fnn_rng_key(uint64_t seed, uint64_t kind, uint64_t index)
    uint64_t fnn_rng_u64(uint64_t key, uint64_t ctr)
    void fnn_rng_uniform(double *out, uint64_t key, uint64_t ctr0, int64_t n)
    void fnn_shuffle(int64_t *perm, uint64_t key, int64_t n)
    double fnn_lr_at(const fnn_optim *opt, int64_t epoch, int64_t step, int64_t samples_seen)

    const char *fnn_arch_name()
    int fnn_arch_available(const char *name)
    int fnn_set_arch(const char *name)
    const char *fnn_arch_list()
    int fnn_openmp_enabled()
    int fnn_get_num_threads()
    void fnn_set_num_threads(int n)

    # float
    ctypedef struct fnn_workspace_f32:
        pass
    int fnn_gemm_f32(float *C, const float *A, const float *B, int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha, double beta, float *work) nogil
    size_t fnn_gemm_work_size_f32() nogil
    size_t fnn_gemm_work_size_for_f32(int64_t m, int64_t n, int64_t k) nogil
    int fnn_gemm_naive_f32(float *C, const float *A, const float *B, int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha, double beta) nogil
    void fnn_bias_forward_f32(float *Y, const float *b, int64_t m, int64_t n, int64_t ldy) nogil
    void fnn_bias_backward_f32(float *db, const float *dY, int64_t m, int64_t n, int64_t ldy) nogil
    void fnn_identity_forward_f32(float *y, const float *x, int64_t n) nogil
    void fnn_identity_backward_f32(float *dx, const float *dy, const float *y, int64_t n) nogil
    void fnn_relu_forward_f32(float *y, const float *x, int64_t n) nogil
    void fnn_relu_backward_f32(float *dx, const float *dy, const float *y, int64_t n) nogil
    void fnn_leaky_relu_forward_f32(float *y, const float *x, int64_t n, double alpha) nogil
    void fnn_leaky_relu_backward_f32(float *dx, const float *dy, const float *y, int64_t n, double alpha) nogil
    void fnn_sigmoid_forward_f32(float *y, const float *x, int64_t n) nogil
    void fnn_sigmoid_backward_f32(float *dx, const float *dy, const float *y, int64_t n) nogil
    void fnn_tanh_forward_f32(float *y, const float *x, int64_t n) nogil
    void fnn_tanh_backward_f32(float *dx, const float *dy, const float *y, int64_t n) nogil
    void fnn_softmax_forward_f32(float *Y, const float *X, int64_t m, int64_t n) nogil
    void fnn_softmax_backward_f32(float *dX, const float *dY, const float *Y, int64_t m, int64_t n) nogil
    int fnn_activation_forward_f32(int act, float *Y, const float *X, int64_t m, int64_t n, double alpha) nogil
    int fnn_activation_backward_f32(int act, float *dX, const float *dY, const float *Y, int64_t m, int64_t n, double alpha) nogil
    int fnn_softmax_xent_forward_f32(double *loss, const float *Z, const int64_t *labels, const float *sw, int64_t m, int64_t n) nogil
    int fnn_softmax_xent_backward_f32(float *dZ, const float *Z, const int64_t *labels, const float *sw, int64_t m, int64_t n) nogil
    int fnn_sigmoid_bce_forward_f32(double *loss, const float *Z, const float *T, const float *sw, int64_t m, int64_t n) nogil
    int fnn_sigmoid_bce_backward_f32(float *dZ, const float *Z, const float *T, const float *sw, int64_t m, int64_t n) nogil
    int fnn_mse_forward_f32(double *loss, const float *Z, const float *T, const float *sw, int64_t m, int64_t n) nogil
    int fnn_mse_backward_f32(float *dZ, const float *Z, const float *T, const float *sw, int64_t m, int64_t n) nogil
    int fnn_loss_forward_backward_f32(int loss, double *value, float *dZ, const float *Z, const float *T, const int64_t *labels, const float *sw, int64_t m, int64_t n) nogil
    void fnn_sgd_update_f32(float *p, float *vel, const float *g, int64_t n, int64_t n_decay, double lr, double momentum, int nesterov, double l2, double l1, double weight_decay) nogil
    void fnn_adam_update_f32(float *p, float *m, float *v, const float *g, int64_t n, int64_t n_decay, int64_t t, double lr, double beta1, double beta2, double eps, double l2, double l1, double weight_decay) nogil
    void fnn_rmsprop_update_f32(float *p, float *s, const float *g, int64_t n, int64_t n_decay, double lr, double rho, double eps, double l2, double l1, double weight_decay) nogil
    void fnn_dropout_forward_f32(float *Y, float *mask, const float *X, int64_t n, double rate, uint64_t key) nogil
    void fnn_dropout_backward_f32(float *dX, const float *dY, const float *mask, int64_t n) nogil
    void fnn_batchnorm_forward_f32(float *Y, float *xhat, float *mean, float *var, float *inv_std, const float *X, const float *gamma, const float *beta, int64_t m, int64_t n, double eps) nogil
    void fnn_batchnorm_running_f32(float *run_mean, float *run_var, const float *mean, const float *var, int64_t m, int64_t n, double momentum) nogil
    void fnn_batchnorm_inference_f32(float *Y, const float *X, const float *gamma, const float *beta, const float *run_mean, const float *run_var, int64_t m, int64_t n, double eps) nogil
    void fnn_batchnorm_backward_f32(float *dX, float *dgamma, float *dbeta, const float *dY, const float *xhat, const float *inv_std, const float *gamma, int64_t m, int64_t n) nogil
    int fnn_workspace_new_f32(fnn_workspace_f32 **ws, const fnn_net *net, int64_t batch) nogil
    void fnn_workspace_free_f32(fnn_workspace_f32 *ws) nogil
    int64_t fnn_workspace_batch_f32(const fnn_workspace_f32 *ws) nogil
    int fnn_train_epoch_f32(fnn_train_result *res, float *params, float *slots, float *state, int64_t *counters, int64_t *perm, fnn_workspace_f32 *ws, const fnn_net *net, const fnn_optim *opt, const float *X, const float *T, const int64_t *labels, const float *sw, int64_t n, int64_t batch, int shuffle, int64_t epoch, fnn_check_fn check, void *ctx) nogil
    int fnn_train_step_f32(fnn_train_result *res, float *params, float *slots, float *state, int64_t *counters, fnn_workspace_f32 *ws, const fnn_net *net, const fnn_optim *opt, const float *X, const float *T, const int64_t *labels, const float *sw, int64_t n, int64_t epoch) nogil
    int fnn_gradient_f32(double *loss, float *grads, const float *params, fnn_workspace_f32 *ws, const fnn_net *net, const float *X, const float *T, const int64_t *labels, const float *sw, int64_t n, int64_t step) nogil
    int fnn_predict_f32(float *out, const float *params, const float *state, fnn_workspace_f32 *ws, const fnn_net *net, const float *X, int64_t n, int link) nogil
    # double
    ctypedef struct fnn_workspace_f64:
        pass
    int fnn_gemm_f64(double *C, const double *A, const double *B, int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha, double beta, double *work) nogil
    size_t fnn_gemm_work_size_f64() nogil
    size_t fnn_gemm_work_size_for_f64(int64_t m, int64_t n, int64_t k) nogil
    int fnn_gemm_naive_f64(double *C, const double *A, const double *B, int64_t m, int64_t n, int64_t k, int64_t ldc, int64_t lda, int64_t ldb, int trans_a, int trans_b, double alpha, double beta) nogil
    void fnn_bias_forward_f64(double *Y, const double *b, int64_t m, int64_t n, int64_t ldy) nogil
    void fnn_bias_backward_f64(double *db, const double *dY, int64_t m, int64_t n, int64_t ldy) nogil
    void fnn_identity_forward_f64(double *y, const double *x, int64_t n) nogil
    void fnn_identity_backward_f64(double *dx, const double *dy, const double *y, int64_t n) nogil
    void fnn_relu_forward_f64(double *y, const double *x, int64_t n) nogil
    void fnn_relu_backward_f64(double *dx, const double *dy, const double *y, int64_t n) nogil
    void fnn_leaky_relu_forward_f64(double *y, const double *x, int64_t n, double alpha) nogil
    void fnn_leaky_relu_backward_f64(double *dx, const double *dy, const double *y, int64_t n, double alpha) nogil
    void fnn_sigmoid_forward_f64(double *y, const double *x, int64_t n) nogil
    void fnn_sigmoid_backward_f64(double *dx, const double *dy, const double *y, int64_t n) nogil
    void fnn_tanh_forward_f64(double *y, const double *x, int64_t n) nogil
    void fnn_tanh_backward_f64(double *dx, const double *dy, const double *y, int64_t n) nogil
    void fnn_softmax_forward_f64(double *Y, const double *X, int64_t m, int64_t n) nogil
    void fnn_softmax_backward_f64(double *dX, const double *dY, const double *Y, int64_t m, int64_t n) nogil
    int fnn_activation_forward_f64(int act, double *Y, const double *X, int64_t m, int64_t n, double alpha) nogil
    int fnn_activation_backward_f64(int act, double *dX, const double *dY, const double *Y, int64_t m, int64_t n, double alpha) nogil
    int fnn_softmax_xent_forward_f64(double *loss, const double *Z, const int64_t *labels, const double *sw, int64_t m, int64_t n) nogil
    int fnn_softmax_xent_backward_f64(double *dZ, const double *Z, const int64_t *labels, const double *sw, int64_t m, int64_t n) nogil
    int fnn_sigmoid_bce_forward_f64(double *loss, const double *Z, const double *T, const double *sw, int64_t m, int64_t n) nogil
    int fnn_sigmoid_bce_backward_f64(double *dZ, const double *Z, const double *T, const double *sw, int64_t m, int64_t n) nogil
    int fnn_mse_forward_f64(double *loss, const double *Z, const double *T, const double *sw, int64_t m, int64_t n) nogil
    int fnn_mse_backward_f64(double *dZ, const double *Z, const double *T, const double *sw, int64_t m, int64_t n) nogil
    int fnn_loss_forward_backward_f64(int loss, double *value, double *dZ, const double *Z, const double *T, const int64_t *labels, const double *sw, int64_t m, int64_t n) nogil
    void fnn_sgd_update_f64(double *p, double *vel, const double *g, int64_t n, int64_t n_decay, double lr, double momentum, int nesterov, double l2, double l1, double weight_decay) nogil
    void fnn_adam_update_f64(double *p, double *m, double *v, const double *g, int64_t n, int64_t n_decay, int64_t t, double lr, double beta1, double beta2, double eps, double l2, double l1, double weight_decay) nogil
    void fnn_rmsprop_update_f64(double *p, double *s, const double *g, int64_t n, int64_t n_decay, double lr, double rho, double eps, double l2, double l1, double weight_decay) nogil
    void fnn_dropout_forward_f64(double *Y, double *mask, const double *X, int64_t n, double rate, uint64_t key) nogil
    void fnn_dropout_backward_f64(double *dX, const double *dY, const double *mask, int64_t n) nogil
    void fnn_batchnorm_forward_f64(double *Y, double *xhat, double *mean, double *var, double *inv_std, const double *X, const double *gamma, const double *beta, int64_t m, int64_t n, double eps) nogil
    void fnn_batchnorm_running_f64(double *run_mean, double *run_var, const double *mean, const double *var, int64_t m, int64_t n, double momentum) nogil
    void fnn_batchnorm_inference_f64(double *Y, const double *X, const double *gamma, const double *beta, const double *run_mean, const double *run_var, int64_t m, int64_t n, double eps) nogil
    void fnn_batchnorm_backward_f64(double *dX, double *dgamma, double *dbeta, const double *dY, const double *xhat, const double *inv_std, const double *gamma, int64_t m, int64_t n) nogil
    int fnn_workspace_new_f64(fnn_workspace_f64 **ws, const fnn_net *net, int64_t batch) nogil
    void fnn_workspace_free_f64(fnn_workspace_f64 *ws) nogil
    int64_t fnn_workspace_batch_f64(const fnn_workspace_f64 *ws) nogil
    int fnn_train_epoch_f64(fnn_train_result *res, double *params, double *slots, double *state, int64_t *counters, int64_t *perm, fnn_workspace_f64 *ws, const fnn_net *net, const fnn_optim *opt, const double *X, const double *T, const int64_t *labels, const double *sw, int64_t n, int64_t batch, int shuffle, int64_t epoch, fnn_check_fn check, void *ctx) nogil
    int fnn_train_step_f64(fnn_train_result *res, double *params, double *slots, double *state, int64_t *counters, fnn_workspace_f64 *ws, const fnn_net *net, const fnn_optim *opt, const double *X, const double *T, const int64_t *labels, const double *sw, int64_t n, int64_t epoch) nogil
    int fnn_gradient_f64(double *loss, double *grads, const double *params, fnn_workspace_f64 *ws, const fnn_net *net, const double *X, const double *T, const int64_t *labels, const double *sw, int64_t n, int64_t step) nogil
    int fnn_predict_f64(double *out, const double *params, const double *state, fnn_workspace_f64 *ws, const fnn_net *net, const double *X, int64_t n, int link) nogil