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

/* vmath.h: vectorised (libm's calls were scalar) */
#if REAL_IS_FLOAT
#define EXP fnn_expf
#define TANH fnn_tanhf
#else
#define EXP fnn_exp
#define TANH fnn_tanh
#endif
#define ELEMENTWISE_CLONES FNN_CLONES

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

/* Blocks of rows, about SOFTMAX_BLOCK values each: each row less its maximum, then the block's
 * exponentials in one loop that vectorises (row by row, 10 outputs left a vector and a scalar
 * tail a row), then each row's sum in order (a loop that adds as it goes stays scalar) and its
 * scaling. The same operations on each value as row by row, so the same bits. A row holding a
 * NaN gives NaNs whose sign and payload follow the compiler's operand order, as for any NaN met
 * by two operations. 10,000 x 10 through ops.activation on one thread (its output's allocation
 * included), 2-core Zen 5 VM: float32 205 -> 102 us; float64 460 -> 242 with vmath.h's exp, ->
 * 135 in blocks. Y and X are the same array or do not overlap. */
#define SOFTMAX_BLOCK 2048
ELEMENTWISE_CLONES void FN(fnn_softmax_forward)(real *Y, const real *X, int64_t m, int64_t n) {
    const int64_t rows = n >= SOFTMAX_BLOCK || n < 1 ? 1 : SOFTMAX_BLOCK / n;
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
        const int64_t nr = m - r0 < rows ? m - r0 : rows;
        real *yb = Y + r0 * n;
        for (int64_t r = 0; r < nr; r++) {
            const real *x = X + (r0 + r) * n;
            real *y = yb + r * n;
            real mx = x[0];
            for (int64_t j = 1; j < n; j++) mx = x[j] > mx ? x[j] : mx;
            for (int64_t j = 0; j < n; j++) y[j] = x[j] - mx;
        }
        for (int64_t i = 0; i < nr * n; i++) yb[i] = EXP(yb[i]);
        for (int64_t r = 0; r < nr; r++) {
            real *y = yb + r * n;
            real s = 0;
            for (int64_t j = 0; j < n; j++) s += y[j];
            const real inv = 1 / s;
            for (int64_t j = 0; j < n; j++) y[j] *= inv;
        }
    }
}
#undef SOFTMAX_BLOCK
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
