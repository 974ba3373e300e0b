/* losses.c — losses on raw outputs Z (m x n) and their gradients dL/dZ.
 * Per-sample losses l_i combine as L = sum_i w_i l_i / sum_i w_i (w = sample weights, or 1), so
 * sample weights rescale samples without changing the scale of the loss. The link (softmax,
 * sigmoid) is fused into the loss: its gradient is the stable "probability minus target".
 * Each loss is one function that fills the value, the gradient, or both (NULL skips one).
 * scikit-learn's losses (FNN_LOSS_SK_*) compute the value from the clipped probabilities as
 * sklearn/neural_network/_base.py does, and the gradient as its _backprop does:
 * (link(Z) - T) w_i / sum w, whatever the value's scaling. */
#ifndef real
#include <float.h>
#include <math.h>
#include <string.h>
#include "fastnn.h"
#include "vmath.h"
#define FNN_SELF "losses.c"
#include "instantiate.h"
#else

#if REAL_IS_FLOAT
#define EXP fnn_expf /* vmath.h: inline, within 2 ulp (libm's expf is a call) */
#define LOG logf
#define LOG1P log1pf
#define REAL_EPS FLT_EPSILON
#else
#define EXP fnn_exp /* vmath.h: inline, within 2 ulp */
#define LOG log
#define LOG1P log1p
#define REAL_EPS DBL_EPSILON
#endif

/* sum of weights; 0 means "no weight at all": value 0, gradient 0. */
static double FN(weight_sum)(const real *sw, int64_t m) {
    if (!sw) return (double)m;
    double s = 0;
    for (int64_t i = 0; i < m; i++) s += sw[i];
    return s;
}

/* row i's share of the batch, w_i / W (0 when the batch weighs nothing) */
static inline double FN(row_weight)(const real *sw, int64_t i, double W) {
    return W == 0 ? 0 : (sw ? sw[i] : 1) / W;
}

/* sigmoid(z) without overflow for either sign of z */
static inline real FN(sigmoid1)(real z) {
    const real e = EXP(-(z >= 0 ? z : -z));
    return z >= 0 ? 1 / (1 + e) : e / (1 + e);
}

/* sum_j exp(z[j] - mx) over a row of n, each exponential kept in d[j] when d is not NULL (the
 * gradient's row, scaled afterwards: each exponential computed once) */
static real FN(exp_sum)(real *d, const real *z, int64_t n, real mx) {
    real s = 0;
    if (d)
        for (int64_t j = 0; j < n; j++) s += (d[j] = EXP(z[j] - mx));
    else
        for (int64_t j = 0; j < n; j++) s += EXP(z[j] - mx);
    return s;
}

static int FN(xent)(double *loss, real *dZ, const real *Z, const int64_t *labels, const real *sw,
                    int64_t m, int64_t n) {
    for (int64_t i = 0; i < m; i++)
        if (labels[i] < 0 || labels[i] >= n) return FNN_EINVAL;
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n;
        const double w = FN(row_weight)(sw, i, W);
        real mx = z[0];
        for (int64_t j = 1; j < n; j++) mx = z[j] > mx ? z[j] : mx;
        const real zl = z[labels[i]]; /* read before d is written (should d alias z) */
        real *d = dZ ? dZ + i * n : NULL;
        const real s = FN(exp_sum)(d, z, n, mx);
        if (d) {
            const real scale = (real)w / s;
            for (int64_t j = 0; j < n; j++) d[j] *= scale;
            d[labels[i]] -= (real)w;
        }
        if (loss) total += w * ((double)mx + log((double)s) - (double)zl);
    }
    if (loss) *loss = total;
    return FNN_OK;
}

static int FN(bce)(double *loss, real *dZ, const real *Z, const real *T, const real *sw, int64_t m,
                   int64_t n) {
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n, *t = T + i * n;
        const double w = FN(row_weight)(sw, i, W);
        if (loss) {
            double li = 0;
            for (int64_t j = 0; j < n; j++) {
                const real a = z[j] >= 0 ? z[j] : -z[j];
                li += (double)((z[j] > 0 ? z[j] : 0) - z[j] * t[j] + LOG1P(EXP(-a)));
            }
            total += w * li / (double)n;
        }
        if (dZ) {
            real *d = dZ + i * n;
            const real scale = (real)(w / (double)n);
            for (int64_t j = 0; j < n; j++) {
                d[j] = (FN(sigmoid1)(z[j]) - t[j]) * scale;
            }
        }
    }
    if (loss) *loss = total;
    return FNN_OK;
}

static int FN(mse)(double *loss, real *dZ, const real *Z, const real *T, const real *sw, int64_t m,
                   int64_t n) {
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n, *t = T + i * n;
        const double w = FN(row_weight)(sw, i, W);
        if (loss) {
            double li = 0;
            for (int64_t j = 0; j < n; j++) li += (double)((z[j] - t[j]) * (z[j] - t[j]));
            total += w * li / (double)n;
        }
        if (dZ) {
            real *d = dZ + i * n;
            const real scale = (real)(2 * w / (double)n);
            for (int64_t j = 0; j < n; j++) d[j] = (z[j] - t[j]) * scale;
        }
    }
    if (loss) *loss = total;
    return FNN_OK;
}

/* scikit-learn's np.clip(p, eps, 1 - eps), eps = np.finfo(dtype).eps */
static inline real FN(clip_prob)(real p) {
    const real lo = (real)REAL_EPS, hi = 1 - (real)REAL_EPS;
    return p < lo ? lo : (p > hi ? hi : p);
}

/* softmax, then log_loss: l_i = -log clip(p_label); dZ = (p - onehot) w_i / W */
static int FN(sk_xent)(double *loss, real *dZ, const real *Z, const int64_t *labels, const real *sw,
                       int64_t m, int64_t n) {
    for (int64_t i = 0; i < m; i++)
        if (labels[i] < 0 || labels[i] >= n) return FNN_EINVAL;
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n;
        const double w = FN(row_weight)(sw, i, W);
        real mx = z[0];
        for (int64_t j = 1; j < n; j++) mx = z[j] > mx ? z[j] : mx;
        real *d = dZ ? dZ + i * n : NULL;
        const real s = FN(exp_sum)(d, z, n, mx);
        const real el = d ? d[labels[i]] : EXP(z[labels[i]] - mx);
        if (loss) total += w * -(double)LOG(FN(clip_prob)(el / s));
        if (d) {
            for (int64_t j = 0; j < n; j++) d[j] = (d[j] / s) * (real)w;
            d[labels[i]] = (el / s - 1) * (real)w;
        }
    }
    if (loss) *loss = total;
    return FNN_OK;
}

/* sigmoid, then binary_log_loss: l_i = -sum_j t log clip(p) + (1 - t) log(1 - clip(p));
 * dZ = (p - t) w_i / W */
static int FN(sk_bce)(double *loss, real *dZ, const real *Z, const real *T, const real *sw,
                      int64_t m, int64_t n) {
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n, *t = T + i * n;
        const double w = FN(row_weight)(sw, i, W);
        double li = 0;
        for (int64_t j = 0; j < n; j++) {
            const real p = FN(sigmoid1)(z[j]);
            if (loss) {
                const real pc = FN(clip_prob)(p);
                li += (double)(t[j] * LOG(pc) + (1 - t[j]) * LOG(1 - pc));
            }
            if (dZ) dZ[i * n + j] = (p - t[j]) * (real)w;
        }
        total -= w * li;
    }
    if (loss) *loss = total;
    return FNN_OK;
}

/* identity, then squared_loss: l_i = 0.5 mean_j (z - t)^2; dZ = (z - t) w_i / W (not / n) */
static int FN(sk_squared)(double *loss, real *dZ, const real *Z, const real *T, const real *sw,
                          int64_t m, int64_t n) {
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n, *t = T + i * n;
        const double w = FN(row_weight)(sw, i, W);
        if (loss) {
            double li = 0;
            for (int64_t j = 0; j < n; j++) li += (double)((z[j] - t[j]) * (z[j] - t[j]));
            total += w * 0.5 * li / (double)n;
        }
        if (dZ)
            for (int64_t j = 0; j < n; j++) dZ[i * n + j] = (z[j] - t[j]) * (real)w;
    }
    if (loss) *loss = total;
    return FNN_OK;
}

/* exp, then poisson_loss: l_i = sum_j xlogy(t, t / p) - t + p; dZ = (p - t) w_i / W */
static int FN(sk_poisson)(double *loss, real *dZ, const real *Z, const real *T, const real *sw,
                          int64_t m, int64_t n) {
    const double W = FN(weight_sum)(sw, m);
    double total = 0;
    for (int64_t i = 0; i < m; i++) {
        const real *z = Z + i * n, *t = T + i * n;
        const double w = FN(row_weight)(sw, i, W);
        double li = 0;
        for (int64_t j = 0; j < n; j++) {
            const real p = EXP(z[j]);
            if (loss) li += (double)((t[j] == 0 ? 0 : t[j] * LOG(t[j] / p)) - t[j] + p);
            if (dZ) dZ[i * n + j] = (p - t[j]) * (real)w;
        }
        total += w * li;
    }
    if (loss) *loss = total;
    return FNN_OK;
}

int FN(fnn_loss_forward_backward)(int loss, double *value, real *dZ, const real *Z, const real *T,
                                  const int64_t *labels, const real *sw, int64_t m, int64_t n) {
    if (m < 1 || n < 1 || !Z) return FNN_EINVAL;
    const int takes_labels = loss == FNN_LOSS_SOFTMAX_XENT || loss == FNN_LOSS_SK_LOG_LOSS;
    if (takes_labels ? labels == NULL : T == NULL) return FNN_EINVAL;
    switch (loss) {
    case FNN_LOSS_SOFTMAX_XENT: return FN(xent)(value, dZ, Z, labels, sw, m, n);
    case FNN_LOSS_SIGMOID_BCE: return FN(bce)(value, dZ, Z, T, sw, m, n);
    case FNN_LOSS_MSE: return FN(mse)(value, dZ, Z, T, sw, m, n);
    case FNN_LOSS_SK_LOG_LOSS: return FN(sk_xent)(value, dZ, Z, labels, sw, m, n);
    case FNN_LOSS_SK_BINARY_LOG_LOSS: return FN(sk_bce)(value, dZ, Z, T, sw, m, n);
    case FNN_LOSS_SK_SQUARED_ERROR: return FN(sk_squared)(value, dZ, Z, T, sw, m, n);
    case FNN_LOSS_SK_POISSON: return FN(sk_poisson)(value, dZ, Z, T, sw, m, n);
    default: return FNN_EINVAL;
    }
}


/* The named entry points go through the checks of the dispatcher above. */
int FN(fnn_softmax_xent_forward)(double *loss, const real *Z, const int64_t *labels, const real *sw,
                                 int64_t m, int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_SOFTMAX_XENT, loss, NULL, Z, NULL, labels, sw, m, n);
}
int FN(fnn_softmax_xent_backward)(real *dZ, const real *Z, const int64_t *labels, const real *sw,
                                  int64_t m, int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_SOFTMAX_XENT, NULL, dZ, Z, NULL, labels, sw, m, n);
}
int FN(fnn_sigmoid_bce_forward)(double *loss, const real *Z, const real *T, const real *sw,
                                int64_t m, int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_SIGMOID_BCE, loss, NULL, Z, T, NULL, sw, m, n);
}
int FN(fnn_sigmoid_bce_backward)(real *dZ, const real *Z, const real *T, const real *sw,
                                 int64_t m, int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_SIGMOID_BCE, NULL, dZ, Z, T, NULL, sw, m, n);
}
int FN(fnn_mse_forward)(double *loss, const real *Z, const real *T, const real *sw, int64_t m,
                        int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_MSE, loss, NULL, Z, T, NULL, sw, m, n);
}
int FN(fnn_mse_backward)(real *dZ, const real *Z, const real *T, const real *sw, int64_t m,
                         int64_t n) {
    return FN(fnn_loss_forward_backward)(FNN_LOSS_MSE, NULL, dZ, Z, T, NULL, sw, m, n);
}

#undef EXP
#undef LOG
#undef LOG1P
#undef REAL_EPS
#endif
