/* optimizers.c — parameter updates as one loop over the flat parameter buffer, and the learning
 * rate schedules. The formulas are in fastnn_api.h; they follow PyTorch (SGD momentum buffer
 * v = mu v + g, Adam with bias-corrected moments and eps outside the square root, AdamW's
 * decoupled decay p *= 1 - lr wd); form FNN_FORM_SKLEARN gives scikit-learn's SGD (velocity
 * v = mu v - lr g, which keeps the rates of earlier steps when lr changes) and Adam (eps added to
 * sqrt(v) before the bias correction, which goes into the rate). Penalties touch only
 * params[0:n_decay], the weights. */
#ifndef real
#include <float.h>
#include <math.h>
#include <string.h>
#include "fastnn.h"
#include "simd.h"
#include "internal.h"

#define OPT_CHUNK 16384 /* elements per task when an update is shared between threads */
#define FNN_OPT_INLINE static inline __attribute__((always_inline)) /* see plan_range */
enum { PLAIN, DECAY, PENALISED }; /* the range loops' modes (see G_TERM) */
#define FNN_SELF "optimizers.c"
#include "instantiate.h"

static double lr_schedule(const fnn_optim *o, int64_t epoch, int64_t step, int64_t samples_seen) {
    const double lr = o->lr;
    switch (o->schedule) {
    case FNN_LR_STEP:
        return lr * pow(o->gamma, (double)(epoch / (o->step_size > 0 ? o->step_size : 1)));
    case FNN_LR_EXPONENTIAL: return lr * pow(o->gamma, (double)epoch);
    case FNN_LR_COSINE: {
        if (o->total_steps <= 0) return lr; /* no horizon given: no decay */
        const double T = (double)o->total_steps;
        const double t = (double)step < T ? (double)step : T;
        return o->lr_min + (lr - o->lr_min) * (1 + cos(3.14159265358979323846 * t / T)) / 2;
    }
    case FNN_LR_INVSCALING: return lr / pow((double)samples_seen + 1, o->power_t);
    default: return lr; /* constant, adaptive */
    }
}

double fnn_lr_at(const fnn_optim *o, int64_t epoch, int64_t step, int64_t samples_seen) {
    return o->lr_scale * lr_schedule(o, epoch, step, samples_seen);
}

#else

#if REAL_IS_FLOAT
#define SQRT sqrtf
#define FABS fabsf
#define REAL_MIN FLT_MIN
typedef int32_t FN(bits);
#define ABS_BITS 0x7fffffff
#define INF_BITS 0x7f800000
#else
#define SQRT sqrt
#define FABS fabs
#define REAL_MIN DBL_MIN
typedef int64_t FN(bits);
#define ABS_BITS INT64_C(0x7fffffffffffffff)
#define INF_BITS INT64_C(0x7ff0000000000000)
#endif

/* |x|'s bits as a non-negative integer: at least INF_BITS exactly when x is an infinity or a NaN.
 * Each update loop keeps the largest of what it wrote (an integer max, a reduction that
 * vectorises; two vector operations an element) and reports a non-finite value once, after the
 * loop: finding it costs about a tenth of Adam's loop, where an element-wise test before and after
 * each store cost half of it and more. */
static inline FN(bits) FN(abs_bits)(real x) {
    FN(bits) u;
    memcpy(&u, &x, sizeof u);
    return u & ABS_BITS;
}
#define KEEP_MAX(hi, x) ((hi) = !check || (hi) > FN(abs_bits)(x) ? (hi) : FN(abs_bits)(x))

/* g + l2 p + l1 sign(p) */
static inline real FN(penalised)(real g, real p, real l2, real l1) {
    const real sign = p > 0 ? (real)1 : (p < 0 ? (real)-1 : (real)0);
    return g + l2 * p + l1 * sign;
}

/* The range loops below take `mode` as a constant (they are always inlined into plan_range):
 * PLAIN, no penalty and no decay (l2 = l1 = 0, shrink = 1): the gradient term is g itself and p is
 * not rescaled; DECAY, decoupled decay only (AdamW, shrink != 1): g itself; PENALISED, the general
 * form. Each gives the general form's values for finite parameters (up to the sign of a zero),
 * without the work of a term that is zero; an infinite weight stays infinite where the general
 * form's 0 p would make it NaN, as in the oracle (reference.py, _penalised). Adam's update is
 * bound by its square root and division: on 1 thread of the Zen 3 VM, 235 K float parameters
 * took 114-123 us a step with the penalty's work and take 83 without it, against 79 for the
 * square roots and divisions alone. */
#define G_TERM(i) (mode == PENALISED ? FN(penalised)(g[i], p[i], l2, l1) : g[i])
#define P_KEPT(i) (mode == PLAIN ? p[i] : p[i] * shrink)

/* Each update runs over [0, n_decay) with the penalties and over [n_decay, n) without: two
 * branch-free loops that vectorise, instead of a test per element. Each returns 1 when it left a
 * NaN or an infinity in a parameter, or in Adam's v or RMSprop's s (an m or a velocity that
 * overflows makes its parameter non-finite too; a v or an s that does makes the step 0). A step
 * that leaves a parameter as it was (plain SGD where g = 0: p - lr 0 is p, and where the online
 * step skips a row whose inputs are all 0) is not checked: a NaN written there by hand is not
 * this update's doing, and both backends then see the same elements (reference.py, _step). */
FNN_OPT_INLINE int FN(sgd_range)(real *restrict p, real *restrict vel, const real *restrict g, int64_t i0,
                                 int64_t i1, real lr, real mu, int nesterov, real l2, real l1,
                                 real shrink, const int mode, const int check) {
    FN(bits) hi = 0;
    if (mu == 0) {
        for (int64_t i = i0; i < i1; i++) {
            const real now = P_KEPT(i) - lr * G_TERM(i);
            p[i] = now;
            const FN(bits) b = !check || (mode == PLAIN && g[i] == 0) ? 0 : FN(abs_bits)(now);
            hi = hi > b ? hi : b;
        }
    } else if (nesterov) {
        for (int64_t i = i0; i < i1; i++) {
            const real gi = G_TERM(i);
            const real v = mu * vel[i] + gi;
            vel[i] = v;
            p[i] = P_KEPT(i) - lr * (gi + mu * v);
            KEEP_MAX(hi, p[i]);
        }
    } else {
        for (int64_t i = i0; i < i1; i++) {
            const real v = mu * vel[i] + G_TERM(i);
            vel[i] = v;
            p[i] = P_KEPT(i) - lr * v;
            KEEP_MAX(hi, p[i]);
        }
    }
    return hi >= INF_BITS;
}

/* scikit-learn's SGD (_stochastic_optimizers.SGDOptimizer): the velocity holds the step itself.
 * Without momentum it is plain SGD, the same step as sgd_range's. */
FNN_OPT_INLINE int FN(sgd_sk_range)(real *restrict p, real *restrict vel, const real *restrict g, int64_t i0,
                                    int64_t i1, real lr, real mu, int nesterov, real l2, real l1,
                                    real shrink, const int mode, const int check) {
    if (mu == 0) return FN(sgd_range)(p, vel, g, i0, i1, lr, mu, nesterov, l2, l1, shrink, mode, check);
    FN(bits) hi = 0;
    if (nesterov) {
        for (int64_t i = i0; i < i1; i++) {
            const real gi = G_TERM(i);
            const real v = mu * vel[i] - lr * gi;
            vel[i] = v;
            p[i] = P_KEPT(i) + (mu * v - lr * gi);
            KEEP_MAX(hi, p[i]);
        }
    } else {
        for (int64_t i = i0; i < i1; i++) {
            const real v = mu * vel[i] - lr * G_TERM(i);
            vel[i] = v;
            p[i] = P_KEPT(i) + v;
            KEEP_MAX(hi, p[i]);
        }
    }
    return hi >= INF_BITS;
}

/* scikit-learn's Adam (_stochastic_optimizers.AdamOptimizer): lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)
 * is given as lr; p -= lr_t m / (sqrt(v) + eps). */
FNN_OPT_INLINE int FN(adam_sk_range)(real *restrict p, real *restrict m, real *restrict v,
                                     const real *restrict g, int64_t i0, int64_t i1, real lr_t, real b1,
                                     real b2, real eps, real l2, real l1, real shrink, const int mode, const int check) {
    FN(bits) hi = 0;
    for (int64_t i = i0; i < i1; i++) {
        const real gi = G_TERM(i);
        const real mi = b1 * m[i] + (1 - b1) * gi;
        const real vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = P_KEPT(i) - lr_t * mi / (SQRT(vi) + eps);
        KEEP_MAX(hi, vi);
        KEEP_MAX(hi, p[i]);
    }
    return hi >= INF_BITS;
}

FNN_OPT_INLINE int FN(adam_range)(real *restrict p, real *restrict m, real *restrict v,
                                  const real *restrict g, int64_t i0, int64_t i1, real lr, real b1, real b2,
                                  real eps, real l2, real l1, real shrink, real c1, real c2,
                                  const int mode, const int check) {
    FN(bits) hi = 0;
    for (int64_t i = i0; i < i1; i++) {
        const real gi = G_TERM(i);
        const real mi = b1 * m[i] + (1 - b1) * gi;
        const real vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = P_KEPT(i) - lr * (mi * c1) / (SQRT(vi * c2) + eps);
        KEEP_MAX(hi, vi);
        KEEP_MAX(hi, p[i]);
    }
    return hi >= INF_BITS;
}

FNN_OPT_INLINE int FN(rmsprop_range)(real *restrict p, real *restrict s, const real *restrict g, int64_t i0,
                                     int64_t i1, real lr, real rho, real eps, real l2, real l1,
                                     real shrink, const int mode, const int check) {
    FN(bits) hi = 0;
    for (int64_t i = i0; i < i1; i++) {
        const real gi = G_TERM(i);
        const real si = rho * s[i] + (1 - rho) * gi * gi;
        s[i] = si;
        p[i] = P_KEPT(i) - lr * gi / (SQRT(si) + eps);
        KEEP_MAX(hi, si);
        KEEP_MAX(hi, p[i]);
    }
    return hi >= INF_BITS;
}

/* The optimizer's loop over [lo, hi), for one constant `mode`: 1 when it left a non-finite value
 * (see sgd_range). */
FNN_OPT_INLINE int FN(kind_range)(const FN(fnn_opt_plan) *q, real *p, real *s1, real *s2, const real *g,
                                  int64_t lo, int64_t hi, real l2, real l1, real shrink, const int mode, const int check) {
    switch (q->kind) {
    case FNN_OPT_SGD:
        if (q->form == FNN_FORM_SKLEARN)
            return FN(sgd_sk_range)(p, s1, g, lo, hi, q->lr, q->mu, q->nesterov, l2, l1, shrink, mode, check);
        return FN(sgd_range)(p, s1, g, lo, hi, q->lr, q->mu, q->nesterov, l2, l1, shrink, mode, check);
    case FNN_OPT_ADAM:
        if (q->form == FNN_FORM_SKLEARN)
            return FN(adam_sk_range)(p, s1, s2, g, lo, hi, q->c1, q->b1, q->b2, q->eps, l2, l1, shrink, mode,
                                     check);
        return FN(adam_range)(p, s1, s2, g, lo, hi, q->lr, q->b1, q->b2, q->eps, l2, l1, shrink, q->c1,
                              q->c2, mode, check);
    default: return FN(rmsprop_range)(p, s1, g, lo, hi, q->lr, q->rho, q->eps, l2, l1, shrink, mode, check);
    }
}

#undef G_TERM
#undef P_KEPT

/* One optimizer update over [lo, hi) of p and its slots, gradient g (same indexing), penalised
 * (l2, l1, decoupled decay) or not; 1 when it left a non-finite value (see sgd_range). */
FNN_CLONES static int FN(plan_range)(const FN(fnn_opt_plan) *q, real *p, real *s1, real *s2, const real *g,
                                     int64_t lo, int64_t hi, int decay) {
    const real l2 = decay ? q->l2 : 0, l1 = decay ? q->l1 : 0, shrink = decay ? q->shrink : 1;
    const int mode = l2 != 0 || l1 != 0 ? PENALISED : shrink != 1 ? DECAY : PLAIN;
    /* each (mode, check) pair is its own loop: without the check, no cost at all */
#define PLAN_CASE(m, c) \
    if (mode == m && q->check == c) return FN(kind_range)(q, p, s1, s2, g, lo, hi, l2, l1, shrink, m, c)
    PLAN_CASE(PENALISED, 0); PLAN_CASE(PENALISED, 1);
    PLAN_CASE(DECAY, 0); PLAN_CASE(DECAY, 1);
    PLAN_CASE(PLAIN, 0);
#undef PLAN_CASE
    return FN(kind_range)(q, p, s1, s2, g, lo, hi, l2, l1, shrink, PLAIN, 1);
}

/* The update over [lo, hi): penalised below n_decay, plain from there on. */
static int FN(plan_split)(const FN(fnn_opt_plan) *q, real *p, real *s1, real *s2, const real *g,
                          int64_t lo, int64_t hi, int64_t n_decay) {
    const int64_t mid = n_decay < lo ? lo : (n_decay > hi ? hi : n_decay);
    return FN(plan_range)(q, p, s1, s2, g, lo, mid, 1) | FN(plan_range)(q, p, s1, s2, g, mid, hi, 0);
}

int FN(fnn_opt_plan_apply)(const FN(fnn_opt_plan) *q, real *params, real *slots, int64_t n_params,
                           int64_t n_decay, const real *g, int64_t lo, int64_t hi) {
    real *s1 = q->kind == FNN_OPT_SGD && q->mu == 0 ? NULL : slots;
    real *s2 = q->kind == FNN_OPT_ADAM ? slots + n_params : NULL;
    /* the range functions index p, slots and g alike: shift them so that g starts at lo */
    return FN(plan_split)(q, params + lo, s1 ? s1 + lo : NULL, s2 ? s2 + lo : NULL, g, 0, hi - lo,
                          n_decay - lo);
}

int FN(fnn_opt_plan_is_identity_at_zero)(const FN(fnn_opt_plan) *q) {
    return q->kind == FNN_OPT_SGD && q->mu == 0 && q->l2 == 0 && q->l1 == 0 && q->shrink == 1;
}

/* An update as tasks: chunk t covers [t * OPT_CHUNK, ...), penalised below n_decay. */
typedef struct FN(opt_job) {
    FN(fnn_opt_plan) q;
    real *p, *s1, *s2;
    const real *g;
    int64_t n, n_decay;
    int overflowed; /* set (relaxed atomic) by a task whose update left a non-finite value */
} FN(opt_job);

static void FN(opt_chunk)(void *ctx, int64_t task, int worker) {
    FN(opt_job) *j = (FN(opt_job) *)ctx;
    (void)worker;
    const int64_t lo = task * OPT_CHUNK, hi = lo + OPT_CHUNK < j->n ? lo + OPT_CHUNK : j->n;
    if (FN(plan_split)(&j->q, j->p, j->s1, j->s2, j->g, lo, hi, j->n_decay))
        __atomic_store_n(&j->overflowed, 1, __ATOMIC_RELAXED);
}

static int FN(opt_body)(fnn_team *team, void *ctx) {
    const FN(opt_job) *j = (const FN(opt_job) *)ctx;
    fnn_team_run(team, (j->n + OPT_CHUNK - 1) / OPT_CHUNK, FN(opt_chunk), (void *)j);
    return FNN_OK;
}

/* A rate, momentum, penalty or decay rate (beta1, beta2, rho) in the dtype, 0 where it is below
 * the dtype's smallest normal. On x86 the engine computes with subnormals flushed to 0 (team.c,
 * fp_enter), so such a setting acts as 0 there anyway; fp_enter sets no mode on other CPUs
 * (aarch64). Made explicit so that the form (plain, decay, penalised; with or without a velocity)
 * and the values are the same everywhere, and as the oracle's (reference.py, _setting). */
static inline real FN(setting)(double x) {
    const real r = (real)x;
    return FABS(r) < REAL_MIN ? (real)0 : r;
}

/* What every update's plan holds: the kind, the rate and the penalties. */
static FN(fnn_opt_plan) FN(plan_common)(int kind, double lr, double l2, double l1, double wd) {
    FN(fnn_opt_plan) q;
    memset(&q, 0, sizeof q);
    q.kind = kind;
    q.lr = FN(setting)(lr); q.l2 = FN(setting)(l2); q.l1 = FN(setting)(l1); q.shrink = (real)(1 - lr * wd);
    return q;
}

static FN(opt_job) FN(opt_common)(int kind, real *p, real *s1, real *s2, const real *g, int64_t n,
                                  int64_t n_decay, double lr, double l2, double l1, double wd) {
    FN(opt_job) j;
    memset(&j, 0, sizeof j);
    j.q = FN(plan_common)(kind, lr, l2, l1, wd);
    j.p = p; j.s1 = s1; j.s2 = s2; j.g = g; j.n = n;
    j.n_decay = n_decay < 0 ? 0 : n_decay;
    return j;
}

/* Adam's per-step constants: scikit-learn's rate lr_t (computed as it does, in double) in c1, or
 * PyTorch's bias corrections 1 / (1 - b^t) in c1 and c2. */
static void FN(adam_constants)(FN(fnn_opt_plan) *q, int form, int64_t t, double lr, double beta1,
                               double beta2) {
    if (form == FNN_FORM_SKLEARN) {
        q->c1 = FN(setting)(lr * sqrt(1 - pow(beta2, (double)t)) / (1 - pow(beta1, (double)t)));
    } else {
        q->c1 = (real)(1 / (1 - pow(beta1, (double)t)));
        q->c2 = (real)(1 / (1 - pow(beta2, (double)t)));
    }
}

void FN(fnn_opt_plan_init)(FN(fnn_opt_plan) *q, const fnn_optim *opt, double lr, int64_t t) {
    *q = FN(plan_common)(opt->kind, lr, opt->l2, opt->l1, opt->weight_decay);
    q->form = opt->form;
    q->check = opt->overflow_check;
    switch (opt->kind) {
    case FNN_OPT_SGD:
        q->mu = FN(setting)(opt->momentum);
        q->nesterov = opt->nesterov;
        break;
    case FNN_OPT_ADAM:
        q->b1 = FN(setting)(opt->beta1); q->b2 = FN(setting)(opt->beta2); q->eps = (real)opt->eps;
        FN(adam_constants)(q, opt->form, t, lr, opt->beta1, opt->beta2);
        break;
    default:
        q->rho = FN(setting)(opt->rho); q->eps = (real)opt->eps;
    }
}

/* Inside a team (the engine) the update is a job of that team; a standalone call (team NULL)
 * makes its own team when the update is large enough to pay for one. */
static int FN(opt_run)(fnn_team *team, FN(opt_job) *j) {
    if (team)
        FN(opt_body)(team, j);
    else
        fnn_with_team(j->n >= 16 * OPT_CHUNK ? fnn_get_num_threads() : 1, FN(opt_body), j);
    return j->overflowed; /* the team's join orders the tasks' stores before this read */
}

int FN(fnn_opt_plan_run)(fnn_team *team, const FN(fnn_opt_plan) *q, real *params, real *slots, int64_t n,
                         int64_t n_decay, const real *g) {
    FN(opt_job) j;
    memset(&j, 0, sizeof j);
    j.q = *q;
    j.p = params;
    j.s1 = q->kind == FNN_OPT_SGD && q->mu == 0 ? NULL : slots;
    j.s2 = q->kind == FNN_OPT_ADAM ? slots + n : NULL;
    j.g = g; j.n = n;
    j.n_decay = n_decay < 0 ? 0 : n_decay;
    return FN(opt_run)(team, &j);
}

void FN(fnn_sgd_update_team)(fnn_team *team, real *p, real *vel, const real *g, int64_t n,
                             int64_t n_decay, double lr, double momentum, int nesterov, double l2,
                             double l1, double weight_decay, int form) {
    FN(opt_job) j = FN(opt_common)(FNN_OPT_SGD, p, vel, NULL, g, n, n_decay, lr, l2, l1, weight_decay);
    j.q.form = form;
    j.q.mu = FN(setting)(momentum);
    j.q.nesterov = nesterov;
    FN(opt_run)(team, &j);
}

void FN(fnn_adam_update_team)(fnn_team *team, real *p, real *m, real *v, const real *g, int64_t n,
                              int64_t n_decay, int64_t t, double lr, double beta1, double beta2,
                              double eps, double l2, double l1, double weight_decay, int form) {
    FN(opt_job) j = FN(opt_common)(FNN_OPT_ADAM, p, m, v, g, n, n_decay, lr, l2, l1, weight_decay);
    j.q.form = form;
    j.q.b1 = FN(setting)(beta1); j.q.b2 = FN(setting)(beta2); j.q.eps = (real)eps;
    FN(adam_constants)(&j.q, form, t, lr, beta1, beta2);
    FN(opt_run)(team, &j);
}

void FN(fnn_rmsprop_update_team)(fnn_team *team, real *p, real *s, const real *g, int64_t n,
                                 int64_t n_decay, double lr, double rho, double eps, double l2,
                                 double l1, double weight_decay) {
    FN(opt_job) j = FN(opt_common)(FNN_OPT_RMSPROP, p, s, NULL, g, n, n_decay, lr, l2, l1, weight_decay);
    j.q.rho = FN(setting)(rho); j.q.eps = (real)eps;
    FN(opt_run)(team, &j);
}

void FN(fnn_sgd_update)(real *p, real *vel, const real *g, int64_t n, int64_t n_decay, double lr,
                        double momentum, int nesterov, double l2, double l1, double weight_decay,
                        int form) {
    FN(fnn_sgd_update_team)(NULL, p, vel, g, n, n_decay, lr, momentum, nesterov, l2, l1, weight_decay,
                            form);
}

void FN(fnn_adam_update)(real *p, real *m, real *v, const real *g, int64_t n, int64_t n_decay,
                         int64_t t, double lr, double beta1, double beta2, double eps, double l2,
                         double l1, double weight_decay, int form) {
    FN(fnn_adam_update_team)(NULL, p, m, v, g, n, n_decay, t, lr, beta1, beta2, eps, l2, l1, weight_decay,
                             form);
}

void FN(fnn_rmsprop_update)(real *p, real *s, const real *g, int64_t n, int64_t n_decay, double lr,
                            double rho, double eps, double l2, double l1, double weight_decay) {
    FN(fnn_rmsprop_update_team)(NULL, p, s, g, n, n_decay, lr, rho, eps, l2, l1, weight_decay);
}

#undef SQRT
#undef FABS
#undef REAL_MIN
#undef ABS_BITS
#undef INF_BITS
#undef KEEP_MAX
#endif
