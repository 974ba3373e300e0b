/* profile.h — an optional clock of the training step's phases, to see where an epoch's time goes
 * on many cores (benchmarks/phases.py). It exists only in a build made with FASTNN_PROFILE=1
 * (-DFNN_PROFILE); in every other build the marks compile to nothing and fnn_profile_read
 * reports 0 phases.
 *
 * FNN_MARK_BEGIN() starts the clock of a call; FNN_MARK(phase, layer) adds the wall time since the previous mark to (phase, layer). Only the
 * calling thread marks (the team's body), so a teamed phase counts its join too: what the step
 * waits for. A profiling build keeps this one table for the whole process: time one call at a
 * time. */
#ifndef FASTNN_PROFILE_H
#define FASTNN_PROFILE_H

enum {
    FNN_PH_GATHER,   /* a batch's rows copied out of X */
    FNN_PH_FWD_GEMM, /* x W of a dense layer */
    FNN_PH_FWD_EPI,  /* its bias and activation */
    FNN_PH_OTHER_FWD,/* activation, dropout and batch-norm layers */
    FNN_PH_LOSS,     /* loss, its gradient, the correct count */
    FNN_PH_ACT_BWD,  /* activation derivative */
    FNN_PH_DW_GEMM,  /* in^T dZ */
    FNN_PH_BIAS_BWD, /* colsum dZ */
    FNN_PH_DX_GEMM,  /* dZ W^T */
    FNN_PH_CHECK,    /* l2 term, finite check of the gradient */
    FNN_PH_UPDATE,   /* optimizer (or online) update */
    FNN_PH_REST,     /* everything between the marks above */
    FNN_PH_COUNT
};
#define FNN_PROF_LAYERS 8 /* layers told apart; deeper ones share the last row */

#ifdef FNN_PROFILE
void fnn_prof_begin(void);
void fnn_prof_mark(int phase, int64_t layer);
#define FNN_MARK_BEGIN() fnn_prof_begin()
#define FNN_MARK(phase, layer) fnn_prof_mark((phase), (int64_t)(layer))
#else
#define FNN_MARK_BEGIN() ((void)0)
#define FNN_MARK(phase, layer) ((void)0)
#endif

/* A knob of a profiling build, to compare variants in one process (benchmarks/phases.py): the
 * environment variable `name` as a number, or `dflt` where it is unset, and always in every
 * other build. */
#ifdef FNN_PROFILE
#include <stdlib.h>
static inline double fnn_prof_knob(const char *name, double dflt) {
    const char *e = getenv(name);
    return e ? atof(e) : dflt;
}
#else
static inline double fnn_prof_knob(const char *name, double dflt) {
    (void)name;
    return dflt;
}
#endif

#endif
