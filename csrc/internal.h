/* internal.h — declarations shared by the C files of fastnn, not exported to Python. */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H
#include "fastnn.h"
#include "team.h"

/* Up to this many rows of C, gemm runs its GEMV-like loop (no packing), whose sums round
 * differently from the blocked kernels': a row's bits depend on the path its product took. */
#define FNN_SKINNY_M 4

#define FNN_SELF "internal_api.h" /* its prototypes for float (_f32) and double (_f64) */
#include "instantiate.h"
#undef FNN_SELF

#endif
