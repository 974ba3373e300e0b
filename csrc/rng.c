/* rng.c — the one counter-based generator of fastnn (see fastnn.h for its definition): every random
 * number is a pure function of (seed, stream, counter), so the compiled engine and the NumPy oracle
 * draw identical shuffles and dropout masks, in any order and from any thread. */
#include "fastnn.h"

#define GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t fnn_rng_key(uint64_t seed, uint64_t kind, uint64_t index) {
    return mix(mix(seed + GOLDEN * (kind + 1)) ^ (index * 0xD1B54A32D192ED03ULL));
}

uint64_t fnn_rng_u64(uint64_t key, uint64_t ctr) { return mix(key + GOLDEN * (ctr + 1)); }

void fnn_rng_uniform(double *out, uint64_t key, uint64_t ctr0, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (double)(fnn_rng_u64(key, ctr0 + (uint64_t)i) >> 11) * 0x1.0p-53;
}

void fnn_shuffle(int64_t *perm, uint64_t key, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(fnn_rng_u64(key, (uint64_t)i) % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
