/* optimizers.c — parameter updates as one loop over the flat parameter buffer, and the learning
 * rate schedules. The formulas are in fastnn_api.h; they follow PyTorch (SGD momentum buffer
 * v = mu v + g, Adam with bias-corrected moments and eps outside the square root, AdamW's
 * decoupled decay p *= 1 - lr wd). Penalties touch only params[0:n_decay], the weights. */
#ifndef real
#include <math.h>
#include "fastnn.h"
#include "simd.h"
#ifdef _OPENMP
#include <omp.h>
#define FNN_THREAD_IDS(tid, team) ((tid) = omp_get_thread_num(), (team) = omp_get_num_threads())
#else
#define FNN_THREAD_IDS(tid, team) ((void)(tid), (void)(team))
#endif
#define FNN_SELF "optimizers.c"
#include "instantiate.h"

double fnn_lr_at(const fnn_optim *o, int64_t epoch, int64_t step, int64_t samples_seen) {
    const double lr = o->lr;
    switch (o->schedule) {
    case FNN_LR_STEP:
        return lr * pow(o->gamma, (double)(epoch / (o->step_size > 0 ? o->step_size : 1)));
    case FNN_LR_EXPONENTIAL: return lr * pow(o->gamma, (double)epoch);
    case FNN_LR_COSINE: {
        const double T = o->total_steps > 0 ? (double)o->total_steps : 1.0;
        const double t = (double)step < T ? (double)step : T;
        return o->lr_min + (lr - o->lr_min) * (1 + cos(3.14159265358979323846 * t / T)) / 2;
    }
    case FNN_LR_INVSCALING: return lr / pow((double)samples_seen + 1, o->power_t);
    case FNN_LR_ADAPTIVE: return lr * o->lr_scale;
    default: return lr;
    }
}

#else

#if REAL_IS_FLOAT
#define SQRT sqrtf
#else
#define SQRT sqrt
#endif

/* g + l2 p + l1 sign(p) */
static inline real FN(penalised)(real g, real p, real l2, real l1) {
    const real sign = p > 0 ? (real)1 : (p < 0 ? (real)-1 : (real)0);
    return g + l2 * p + l1 * sign;
}

/* Each update runs over [0, n_decay) with the penalties and over [n_decay, n) without: two
 * branch-free loops that vectorise, instead of a test per element. */
/* Threads split [0, n) into contiguous chunks (64-element aligned); each chunk is updated with
 * the penalties on its part below n_decay and without them above. Element-wise: the result does
 * not depend on the thread count. */
#define FNN_PARALLEL_RANGES(n, n_decay, WITH, WITHOUT)                                          \
    do {                                                                                         \
        int nt_ = (n) >= 65536 ? fnn_get_num_threads() : 1;                                     \
        (void)nt_;                                                                               \
        _Pragma("omp parallel num_threads(nt_) if (nt_ > 1)") {                                  \
            int tid_ = 0, team_ = 1;                                                             \
            FNN_THREAD_IDS(tid_, team_);                                                         \
            const int64_t chunk_ = (((n) + team_ - 1) / team_ + 63) / 64 * 64;                  \
            const int64_t lo = chunk_ * tid_, hi = lo + chunk_ < (n) ? lo + chunk_ : (n);        \
            const int64_t mid = (n_decay) < lo ? lo : ((n_decay) > hi ? hi : (n_decay));         \
            if (lo < hi) {                                                                       \
                WITH;                                                                            \
                WITHOUT;                                                                         \
            }                                                                                    \
        }                                                                                        \
    } while (0)

FNN_CLONES static void FN(sgd_range)(real *restrict p, real *restrict vel, const real *restrict g, int64_t i0,
                          int64_t i1, real lr, real mu, int nesterov, real l2, real l1, real shrink) {
    if (mu == 0) {
        for (int64_t i = i0; i < i1; i++) p[i] = p[i] * shrink - lr * FN(penalised)(g[i], p[i], l2, l1);
    } else if (nesterov) {
        for (int64_t i = i0; i < i1; i++) {
            const real gi = FN(penalised)(g[i], p[i], l2, l1);
            const real v = mu * vel[i] + gi;
            vel[i] = v;
            p[i] = p[i] * shrink - lr * (gi + mu * v);
        }
    } else {
        for (int64_t i = i0; i < i1; i++) {
            const real v = mu * vel[i] + FN(penalised)(g[i], p[i], l2, l1);
            vel[i] = v;
            p[i] = p[i] * shrink - lr * v;
        }
    }
}

void FN(fnn_sgd_update)(real *restrict p, real *restrict vel, const real *restrict g, int64_t n,
                        int64_t n_decay, double lr_d, double momentum_d, int nesterov, double l2_d,
                        double l1_d, double wd_d) {
    const real lr = (real)lr_d, mu = (real)momentum_d, l2 = (real)l2_d, l1 = (real)l1_d;
    const real shrink = (real)(1 - lr_d * wd_d);
    FNN_PARALLEL_RANGES(n, n_decay, FN(sgd_range)(p, vel, g, lo, mid, lr, mu, nesterov, l2, l1, shrink),
                        FN(sgd_range)(p, vel, g, mid, hi, lr, mu, nesterov, 0, 0, 1));
}

FNN_CLONES static void FN(adam_range)(real *restrict p, real *restrict m, real *restrict v,
                           const real *restrict g, int64_t i0, int64_t i1, real lr, real b1, real b2,
                           real eps, real l2, real l1, real shrink, real c1, real c2) {
    for (int64_t i = i0; i < i1; i++) {
        const real gi = FN(penalised)(g[i], p[i], l2, l1);
        const real mi = b1 * m[i] + (1 - b1) * gi;
        const real vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * shrink - lr * (mi * c1) / (SQRT(vi * c2) + eps);
    }
}

void FN(fnn_adam_update)(real *restrict p, real *restrict m, real *restrict v,
                         const real *restrict g, int64_t n, int64_t n_decay, int64_t t, double lr_d,
                         double beta1_d, double beta2_d, double eps_d, double l2_d, double l1_d,
                         double wd_d) {
    const real lr = (real)lr_d, b1 = (real)beta1_d, b2 = (real)beta2_d, eps = (real)eps_d;
    const real l2 = (real)l2_d, l1 = (real)l1_d, shrink = (real)(1 - lr_d * wd_d);
    const real c1 = (real)(1 / (1 - pow(beta1_d, (double)t)));
    const real c2 = (real)(1 / (1 - pow(beta2_d, (double)t)));
    FNN_PARALLEL_RANGES(n, n_decay, FN(adam_range)(p, m, v, g, lo, mid, lr, b1, b2, eps, l2, l1, shrink, c1, c2),
                        FN(adam_range)(p, m, v, g, mid, hi, lr, b1, b2, eps, 0, 0, 1, c1, c2));
}

FNN_CLONES static void FN(rmsprop_range)(real *restrict p, real *restrict s, const real *restrict g, int64_t i0,
                              int64_t i1, real lr, real rho, real eps, real l2, real l1, real shrink) {
    for (int64_t i = i0; i < i1; i++) {
        const real gi = FN(penalised)(g[i], p[i], l2, l1);
        const real si = rho * s[i] + (1 - rho) * gi * gi;
        s[i] = si;
        p[i] = p[i] * shrink - lr * gi / (SQRT(si) + eps);
    }
}

void FN(fnn_rmsprop_update)(real *restrict p, real *restrict s, const real *restrict g, int64_t n,
                            int64_t n_decay, double lr_d, double rho_d, double eps_d, double l2_d,
                            double l1_d, double wd_d) {
    const real lr = (real)lr_d, rho = (real)rho_d, eps = (real)eps_d;
    const real l2 = (real)l2_d, l1 = (real)l1_d, shrink = (real)(1 - lr_d * wd_d);
    FNN_PARALLEL_RANGES(n, n_decay, FN(rmsprop_range)(p, s, g, lo, mid, lr, rho, eps, l2, l1, shrink),
                        FN(rmsprop_range)(p, s, g, mid, hi, lr, rho, eps, 0, 0, 1));
}

#undef SQRT
#endif
