/* dropout.c — inverted dropout: a unit is kept when its uniform draw u(key, i) >= rate and then
 * scaled by 1 / (1 - rate), so inference is the identity. The mask (0 or 1/(1-rate)) is kept for
 * the backward pass, which is dX = dY * mask. Draws come from the counter-based generator (rng.c):
 * element i of the batch uses counter i, so the NumPy oracle reproduces every mask. */
#ifndef real
#include "fastnn.h"
#include "simd.h"
#define FNN_SELF "dropout.c"
#include "instantiate.h"
#else

void FN(fnn_dropout_forward)(real *Y, real *mask, const real *X, int64_t n, double rate,
                             uint64_t key) {
    const real keep_scale = rate < 1 ? (real)(1 / (1 - rate)) : (real)0;
    for (int64_t i = 0; i < n; i++) {
        const double u = (double)(fnn_rng_u64(key, (uint64_t)i) >> 11) * 0x1.0p-53;
        mask[i] = u >= rate ? keep_scale : (real)0;
        Y[i] = X[i] * mask[i];
    }
}

FNN_CLONES void FN(fnn_dropout_backward)(real *dX, const real *dY, const real *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++) dX[i] = dY[i] * mask[i];
}

#endif
