/* bias.c — the bias of a dense layer: Y += b on every row, and its gradient db += sum_rows dY. */
#ifndef real
#include "fastnn.h"
#include "simd.h"
#define FNN_SELF "bias.c"
#include "instantiate.h"
#else

FNN_CLONES void FN(fnn_bias_forward)(real *Y, const real *b, int64_t m, int64_t n, int64_t ldy) {
    for (int64_t i = 0; i < m; i++) {
        real *restrict y = Y + i * ldy;
        for (int64_t j = 0; j < n; j++) y[j] += b[j];
    }
}

FNN_CLONES void FN(fnn_bias_backward)(real *db, const real *dY, int64_t m, int64_t n, int64_t ldy) {
    real *restrict out = db;
    for (int64_t i = 0; i < m; i++) {
        const real *restrict dy = dY + i * ldy;
        for (int64_t j = 0; j < n; j++) out[j] += dy[j];
    }
}

#endif
