/* profile.c — see profile.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <stdint.h>
#include <string.h>
#include "fastnn.h"
#include "profile.h"

#ifdef FNN_PROFILE
#include <time.h>

static double table[FNN_PH_COUNT * FNN_PROF_LAYERS];
static double last;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void fnn_prof_begin(void) { last = now(); }

void fnn_prof_mark(int phase, int64_t layer) {
    const double t = now();
    if (layer < 0) layer = 0;
    if (layer >= FNN_PROF_LAYERS) layer = FNN_PROF_LAYERS - 1;
    table[phase * FNN_PROF_LAYERS + layer] += t - last;
    last = t;
}
#endif

int fnn_profile_read(double *out, int size, int reset) {
#ifdef FNN_PROFILE
    const int n = FNN_PH_COUNT * FNN_PROF_LAYERS;
    if (size < n) return -1;
    memcpy(out, table, sizeof table);
    if (reset) memset(table, 0, sizeof table);
    return FNN_PH_COUNT;
#else
    (void)out; (void)size; (void)reset;
    return 0;
#endif
}
