/* batchnorm.c — batch normalisation over the rows of an m x n batch, per column (feature).
 * Statistics are accumulated in double whatever the type, two passes (mean, then variance) for
 * accuracy. The running statistics are committed separately (fnn_batchnorm_running) so a step
 * that is rejected (non-finite loss) leaves them untouched. Formulas: fastnn_api.h. */
#ifndef real
#include <math.h>
#include "fastnn.h"
#define FNN_SELF "batchnorm.c"
#include "instantiate.h"
#else

void FN(fnn_batchnorm_forward)(real *Y, real *xhat, real *mean, real *var, real *inv_std,
                               const real *X, const real *gamma, const real *beta, int64_t m,
                               int64_t n, double eps) {
    for (int64_t j = 0; j < n; j++) {
        double s = 0;
        for (int64_t i = 0; i < m; i++) s += X[i * n + j];
        const double mu = s / (double)m;
        double q = 0;
        for (int64_t i = 0; i < m; i++) {
            const double d = X[i * n + j] - mu;
            q += d * d;
        }
        const double v = q / (double)m;
        mean[j] = (real)mu;
        var[j] = (real)v;
        inv_std[j] = (real)(1 / sqrt(v + eps));
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const real h = (X[i * n + j] - mean[j]) * inv_std[j];
            xhat[i * n + j] = h;
            Y[i * n + j] = gamma[j] * h + beta[j];
        }
}

void FN(fnn_batchnorm_running)(real *run_mean, real *run_var, const real *mean, const real *var,
                               int64_t m, int64_t n, double momentum) {
    if (m < 2) return; /* one row: its variance is 0 by construction, not an estimate */
    const double unbias = (double)m / (double)(m - 1);
    for (int64_t j = 0; j < n; j++) {
        run_mean[j] = (real)((1 - momentum) * run_mean[j] + momentum * mean[j]);
        run_var[j] = (real)((1 - momentum) * run_var[j] + momentum * var[j] * unbias);
    }
}

void FN(fnn_batchnorm_inference)(real *Y, const real *X, const real *gamma, const real *beta,
                                 const real *run_mean, const real *run_var, int64_t m, int64_t n,
                                 double eps) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const real inv = (real)(1 / sqrt((double)run_var[j] + eps));
            Y[i * n + j] = gamma[j] * (X[i * n + j] - run_mean[j]) * inv + beta[j];
        }
}

void FN(fnn_batchnorm_backward)(real *dX, real *dgamma, real *dbeta, const real *dY,
                                const real *xhat, const real *inv_std, const real *gamma,
                                int64_t m, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < m; i++) {
            sdy += dY[i * n + j];
            sdyx += (double)dY[i * n + j] * xhat[i * n + j];
        }
        dbeta[j] += (real)sdy;
        dgamma[j] += (real)sdyx;
        const double k = (double)gamma[j] * inv_std[j] / (double)m;
        for (int64_t i = 0; i < m; i++)
            dX[i * n + j] = (real)(k * ((double)m * dY[i * n + j] - sdy - xhat[i * n + j] * sdyx));
    }
}

#endif
