/* internal.h — declarations shared by the C files of fastnn, not exported to Python. */
#ifndef FASTNN_INTERNAL_H
#define FASTNN_INTERNAL_H
#include <stdatomic.h>
#include "fastnn.h"
#include "team.h"

/* Up to this many rows of C, gemm runs its GEMV-like loop (no packing), whose sums round
 * differently from the blocked kernels': a row's bits depend on the path its product took. */
#define FNN_SKINNY_M 4
#define FNN_SKINNY_SPLIT_BYTES (64 * 1024) /* a product of at most FNN_SKINNY_M rows is split across a
                                              team's threads from this size of op(B) (gemm.c,
                                              skinny_split) */
#define FNN_COLD_WORK (1 << 24) /* rows x parameters: a shorter call (about 0.7 ms on one
                                   thread) runs on one after a pause (network.c, threads_for) */
#define FNN_SKINNY_TEAM_BYTES (384 * 1024) /* a prediction of so few rows gets a team when its
                                              products read this much (network.c, predict_threads) */

#define FNN_SELF "internal_api.h" /* its prototypes for float (_f32) and double (_f64) */
#include "instantiate.h"
#undef FNN_SELF

#endif
