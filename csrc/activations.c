/* activations.c — y = f(x) and dx = dy * f'(x), the derivative written from the output y:
 *   identity  1                 relu        y > 0
 *   leaky     y > 0 ? 1 : alpha sigmoid     y (1 - y)
 *   tanh      1 - y^2           softmax     (row-wise) dx = y (dy - sum(dy y))
 * Sigmoid is evaluated from exp(-|x|) so it never overflows; softmax subtracts the row maximum.
 * Backward kernels may run in place (dx == dy). */
#ifndef real
#include <math.h>
#include "fastnn.h"
#include "simd.h"
#include "vmath.h"
#define FNN_SELF "activations.c"
#include "instantiate.h"
#else

#if REAL_IS_FLOAT /* vmath.h: vectorised (libm's float calls were scalar) */
#define EXP fnn_expf
#define TANH fnn_tanhf
#define ELEMENTWISE_CLONES FNN_CLONES
#else
#define EXP exp
#define TANH tanh
#define ELEMENTWISE_CLONES
#endif

void FN(fnn_identity_forward)(real *y, const real *x, int64_t n) {
    if (y != x)
        for (int64_t i = 0; i < n; i++) y[i] = x[i];
}
void FN(fnn_identity_backward)(real *dx, const real *dy, const real *y, int64_t n) {
    (void)y;
    if (dx != dy)
        for (int64_t i = 0; i < n; i++) dx[i] = dy[i];
}

FNN_CLONES void FN(fnn_relu_forward)(real *y, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const real v = x[i]; /* unconditional loads: the selects below vectorise */
        y[i] = v < 0 ? (real)0 : v; /* NaN passes through */
    }
}
FNN_CLONES void FN(fnn_relu_backward)(real *dx, const real *dy, const real *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const real d = dy[i];
        dx[i] = y[i] > 0 ? d : (real)0;
    }
}

FNN_CLONES void FN(fnn_leaky_relu_forward)(real *y, const real *x, int64_t n, double alpha_d) {
    const real alpha = (real)alpha_d;
    for (int64_t i = 0; i < n; i++) {
        const real v = x[i];
        y[i] = v > 0 ? v : alpha * v;
    }
}
FNN_CLONES void FN(fnn_leaky_relu_backward)(real *dx, const real *dy, const real *y, int64_t n,
                                 double alpha_d) {
    const real alpha = (real)alpha_d;
    for (int64_t i = 0; i < n; i++) {
        const real d = dy[i];
        dx[i] = y[i] > 0 ? d : alpha * d;
    }
}

ELEMENTWISE_CLONES void FN(fnn_sigmoid_forward)(real *y, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        real e = EXP(-(x[i] >= 0 ? x[i] : -x[i])); /* in (0, 1]: no overflow */
        y[i] = x[i] >= 0 ? 1 / (1 + e) : e / (1 + e);
    }
}
FNN_CLONES void FN(fnn_sigmoid_backward)(real *dx, const real *dy, const real *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * y[i] * (1 - y[i]);
}

ELEMENTWISE_CLONES void FN(fnn_tanh_forward)(real *y, const real *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = TANH(x[i]);
}
FNN_CLONES void FN(fnn_tanh_backward)(real *dx, const real *dy, const real *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (1 - y[i] * y[i]);
}

/* Row by row; the exponentials in a loop that vectorises, then their sum in order (the same sum:
 * a loop that adds as it goes stays scalar). A row holding a NaN gives NaNs whose sign and payload
 * follow the compiler's operand order, as for any NaN met by two operations */
ELEMENTWISE_CLONES void FN(fnn_softmax_forward)(real *Y, const real *X, int64_t m, int64_t n) {
    for (int64_t r = 0; r < m; r++) {
        const real *x = X + r * n;
        real *y = Y + r * n;
        real mx = x[0];
        for (int64_t j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
        for (int64_t j = 0; j < n; j++) y[j] = EXP(x[j] - mx);
        real s = 0;
        for (int64_t j = 0; j < n; j++) s += y[j];
        const real inv = 1 / s;
        for (int64_t j = 0; j < n; j++) y[j] *= inv;
    }
}
void FN(fnn_softmax_backward)(real *dX, const real *dY, const real *Y, int64_t m, int64_t n) {
    for (int64_t r = 0; r < m; r++) {
        const real *dy = dY + r * n, *y = Y + r * n;
        real *dx = dX + r * n;
        real dot = 0;
        for (int64_t j = 0; j < n; j++) dot += dy[j] * y[j];
        for (int64_t j = 0; j < n; j++) dx[j] = y[j] * (dy[j] - dot);
    }
}

int FN(fnn_activation_forward)(int act, real *Y, const real *X, int64_t m, int64_t n,
                               double alpha) {
    const int64_t size = m * n;
    switch (act) {
    case FNN_ACT_IDENTITY: FN(fnn_identity_forward)(Y, X, size); return FNN_OK;
    case FNN_ACT_RELU: FN(fnn_relu_forward)(Y, X, size); return FNN_OK;
    case FNN_ACT_LEAKY_RELU: FN(fnn_leaky_relu_forward)(Y, X, size, alpha); return FNN_OK;
    case FNN_ACT_SIGMOID: FN(fnn_sigmoid_forward)(Y, X, size); return FNN_OK;
    case FNN_ACT_TANH: FN(fnn_tanh_forward)(Y, X, size); return FNN_OK;
    case FNN_ACT_SOFTMAX: FN(fnn_softmax_forward)(Y, X, m, n); return FNN_OK;
    default: return FNN_EINVAL;
    }
}

int FN(fnn_activation_backward)(int act, real *dX, const real *dY, const real *Y, int64_t m,
                                int64_t n, double alpha) {
    const int64_t size = m * n;
    switch (act) {
    case FNN_ACT_IDENTITY: FN(fnn_identity_backward)(dX, dY, Y, size); return FNN_OK;
    case FNN_ACT_RELU: FN(fnn_relu_backward)(dX, dY, Y, size); return FNN_OK;
    case FNN_ACT_LEAKY_RELU: FN(fnn_leaky_relu_backward)(dX, dY, Y, size, alpha); return FNN_OK;
    case FNN_ACT_SIGMOID: FN(fnn_sigmoid_backward)(dX, dY, Y, size); return FNN_OK;
    case FNN_ACT_TANH: FN(fnn_tanh_backward)(dX, dY, Y, size); return FNN_OK;
    case FNN_ACT_SOFTMAX: FN(fnn_softmax_backward)(dX, dY, Y, m, n); return FNN_OK;
    default: return FNN_EINVAL;
    }
}

#undef EXP
#undef TANH
#undef ELEMENTWISE_CLONES
#endif
