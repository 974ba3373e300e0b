/* network.c — the training engine: whole epochs, single steps, gradients and inference of a stack
 * of layers, on one flat parameter buffer, with a workspace allocated once.
 *
 * params = [W_0, W_1, ..., | b_0, gamma, beta, ...]: weights first, so penalties apply to the
 * prefix [0, n_decay). grads mirror params; optimizer slots mirror them n_slots times.
 * Forward keeps every layer's output (acts[l]); derivatives are taken from those outputs.
 * Backward runs in two gradient buffers: in place through activations, dropout and batch norm,
 * ping-pong across dense layers (dX = dZ @ W^T), and stops at the lowest layer with parameters.
 * Nothing here allocates after fnn_workspace_new, holds global state, or touches Python. */
#ifndef real
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"
#include "internal.h"
#include "profile.h"
#include "simd.h"

#define FNN_SELF "network.c"
#include "instantiate.h"

#else

struct FN(fnn_workspace) {
    int64_t batch, n_layers, width; /* width: widest layer (and input, output) */
    real *x, *t, *sw;               /* gathered batch: inputs, real targets, sample weights */
    int64_t *labels;                /* gathered integer labels */
    real **out;                     /* per layer output, batch x n_out */
    const real **acts;              /* per layer output pointer (may alias out of an earlier layer) */
    real **aux;                     /* dropout mask or batch-norm xhat, batch x n_out */
    real **stats;                   /* batch norm: mean, var, inv_std (3 x n_out) */
    real *g0, *g1;                  /* gradient ping-pong, batch x width */
    real *grads;                    /* flat gradient, n_params */
    real *gemm_work;                /* GEMM packing buffers */
    real **delta;                   /* online step: per dense layer dZ, online_rows x n_out */
    real *rows;                     /* online step: a gradient row per thread, width each */
    int64_t online_rows;            /* min(batch, DEFER_MAX_ROWS); ONLINE_MAX_ROWS where the dZ
                                       kept would pass DEFER_MAX_BYTES */
    real l2c;                       /* online step: the l2_loss term's l2 / S, when l2_on */
    int l2_on;                      /* (set by forward_backward, read by online_gemm_update) */
    void *block;
};

/* The online step: see online_update. Up to ONLINE_MAX_ROWS rows a weight row's gradient is a sum
 * of outer products (outer_rows); above, up to DEFER_MAX_ROWS (online_rows), each layer's weight
 * gradient is the general step's product, updated block by block by its epilogue
 * (online_gemm_update). Either way every dZ is formed and checked before the first update. */
#define ONLINE_MAX_ROWS 8
#define DEFER_MAX_ROWS 256 /* at most every kernel's KC: the product is one k block, as the general step's */
#define DEFER_MAX_BYTES ((size_t)64 << 20) /* the dZ it keeps, at most: beyond, the general step */
#define ONLINE_BLOCK 4 /* weight rows whose gradient the online step forms at once (outer_rows) */
#define ONLINE_LIST 256 /* rows listed at a time when rows of zero inputs are skipped (online_task) */

static size_t FN(round64)(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Profiling builds only, to compare in one sitting: FNN_DEFER_ROWS, the largest batch the online
 * step takes (8: the outer products alone, as before). */
static int64_t FN(online_max_rows)(void) {
    const int64_t n = (int64_t)fnn_prof_knob("FNN_DEFER_ROWS", DEFER_MAX_ROWS);
    return n < 1 ? 1 : n > DEFER_MAX_ROWS ? DEFER_MAX_ROWS : n;
}

/* 1 when [off, off + len) lies inside [0, size). */
static int FN(inside)(int64_t off, int64_t len, int64_t size) {
    return off >= 0 && len >= 0 && off <= size && len <= size - off;
}

/* Every width, offset, code and scalar of a network description, checked once before a
 * workspace is made for it: the layers chain from n_inputs to n_outputs, every array a layer
 * reads lies inside params or state, and the codes are known. Nothing later re-checks them. */
static int FN(valid_net)(const fnn_net *net) {
    if (net->n_layers < 1 || net->n_inputs < 1 || net->n_outputs < 1 || net->n_params < 0 ||
        net->n_decay < 0 || net->n_decay > net->n_params || net->n_state < 0)
        return 0;
    if (net->loss < FNN_LOSS_SOFTMAX_XENT || net->loss > FNN_LOSS_SK_POISSON) return 0;
    int64_t width = net->n_inputs;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        const int64_t n = ly->n_out;
        if (ly->n_in != width || n < 1) return 0;
        if (ly->activation < FNN_ACT_IDENTITY || ly->activation > FNN_ACT_SOFTMAX) return 0;
        switch (ly->kind) {
        case FNN_LAYER_DENSE:
            if (n > INT64_MAX / ly->n_in || !FN(inside)(ly->w_off, ly->n_in * n, net->n_params) ||
                !FN(inside)(ly->b_off, n, net->n_params) || !(ly->alpha >= 0))
                return 0;
            break;
        case FNN_LAYER_ACTIVATION:
            if (n != ly->n_in || !(ly->alpha >= 0)) return 0;
            break;
        case FNN_LAYER_DROPOUT:
            if (n != ly->n_in || !(ly->rate >= 0 && ly->rate < 1)) return 0;
            break;
        case FNN_LAYER_BATCHNORM:
            if (n != ly->n_in || !FN(inside)(ly->w_off, n, net->n_params) ||
                !FN(inside)(ly->b_off, n, net->n_params) || n > INT64_MAX / 2 ||
                !FN(inside)(ly->s_off, 2 * n, net->n_state) || !(ly->eps > 0) ||
                !(ly->momentum >= 0 && ly->momentum <= 1))
                return 0;
            break;
        default: return 0;
        }
        width = n;
    }
    return width == net->n_outputs;
}

int FN(fnn_workspace_new)(FN(fnn_workspace) **out, const fnn_net *net, int64_t batch) {
    *out = NULL;
    if (batch < 1 || !FN(valid_net)(net)) return FNN_EINVAL;
    const int64_t L = net->n_layers, B = batch;
    int64_t width = net->n_inputs > net->n_outputs ? net->n_inputs : net->n_outputs;
    for (int64_t l = 0; l < L; l++)
        if (net->layers[l].n_out > width) width = net->layers[l].n_out;
    /* every product below is at most B x width x sizeof(real) x (2 L + 8) bytes plus the GEMM
     * packing space: refuse a batch whose block could not be addressed */
    if ((double)B * (double)width * (double)sizeof(real) * (double)(2 * L + 8) > 0x1p62 ||
        (double)B * (double)B > 0x1p62)
        return FNN_ENOMEM;
    /* size table: one block carved into named buffers */
    size_t sz = FN(round64)(sizeof(FN(fnn_workspace)));
    sz += FN(round64)((size_t)L * (sizeof(real *) * 4 + sizeof(const real *)));
    sz += FN(round64)((size_t)(B * net->n_inputs) * sizeof(real));
    sz += FN(round64)((size_t)(B * net->n_outputs) * sizeof(real));
    sz += FN(round64)((size_t)B * sizeof(real)) + FN(round64)((size_t)B * sizeof(int64_t));
    for (int64_t l = 0; l < L; l++) {
        const fnn_layer *ly = &net->layers[l];
        sz += FN(round64)((size_t)(B * ly->n_out) * sizeof(real));
        if (ly->kind == FNN_LAYER_DROPOUT || ly->kind == FNN_LAYER_BATCHNORM)
            sz += FN(round64)((size_t)(B * ly->n_out) * sizeof(real));
        if (ly->kind == FNN_LAYER_BATCHNORM) sz += FN(round64)((size_t)(3 * ly->n_out) * sizeof(real));
    }
    sz += 2 * FN(round64)((size_t)(B * width) * sizeof(real));
    sz += FN(round64)((size_t)(net->n_params > 0 ? net->n_params : 1) * sizeof(real));
    int64_t OB = B < DEFER_MAX_ROWS ? B : DEFER_MAX_ROWS, dense_out = 0;
    for (int64_t l = 0; l < L; l++)
        if (net->layers[l].kind == FNN_LAYER_DENSE) dense_out += net->layers[l].n_out;
    if ((double)OB * (double)dense_out * sizeof(real) > (double)DEFER_MAX_BYTES)
        OB = B < ONLINE_MAX_ROWS ? B : ONLINE_MAX_ROWS;
    for (int64_t l = 0; l < L; l++)
        if (net->layers[l].kind == FNN_LAYER_DENSE)
            sz += FN(round64)((size_t)(OB * net->layers[l].n_out) * sizeof(real));
    sz += FN(round64)((size_t)(ONLINE_BLOCK * width) * (size_t)fnn_max_threads() * sizeof(real));
    /* GEMM shapes of a step: forward B x n_out x n_in, dW n_in x n_out x B, dX B x n_in x n_out */
    const int64_t big = B > width ? B : width;
    const size_t gemm_work = FN(fnn_gemm_work_size_for)(big, width, big);
    sz += FN(round64)(gemm_work * sizeof(real));
    char *block = (char *)aligned_alloc(64, sz);
    if (!block) return FNN_ENOMEM;
    memset(block, 0, sz);
    char *cur = block;
    FN(fnn_workspace) *ws = (FN(fnn_workspace) *)(void *)cur;
    cur += FN(round64)(sizeof(FN(fnn_workspace)));
    char *ptrs = cur;
    cur += FN(round64)((size_t)L * (sizeof(real *) * 4 + sizeof(const real *)));
    ws->out = (real **)(void *)ptrs;
    ws->aux = ws->out + L;
    ws->stats = ws->aux + L;
    ws->delta = ws->stats + L;
    ws->acts = (const real **)(void *)(ws->delta + L);
#define TAKE(ptr, T_, count) \
    do { ptr = (T_ *)(void *)cur; cur += FN(round64)((size_t)(count) * sizeof(T_)); } while (0)
    TAKE(ws->x, real, B * net->n_inputs);
    TAKE(ws->t, real, B * net->n_outputs);
    TAKE(ws->sw, real, B);
    TAKE(ws->labels, int64_t, B);
    for (int64_t l = 0; l < L; l++) {
        const fnn_layer *ly = &net->layers[l];
        TAKE(ws->out[l], real, B * ly->n_out);
        ws->aux[l] = NULL;
        ws->stats[l] = NULL;
        if (ly->kind == FNN_LAYER_DROPOUT || ly->kind == FNN_LAYER_BATCHNORM)
            TAKE(ws->aux[l], real, B * ly->n_out);
        if (ly->kind == FNN_LAYER_BATCHNORM) TAKE(ws->stats[l], real, 3 * ly->n_out);
    }
    TAKE(ws->g0, real, B * width);
    TAKE(ws->g1, real, B * width);
    TAKE(ws->grads, real, net->n_params > 0 ? net->n_params : 1);
    for (int64_t l = 0; l < L; l++) {
        ws->delta[l] = NULL;
        if (net->layers[l].kind == FNN_LAYER_DENSE) TAKE(ws->delta[l], real, OB * net->layers[l].n_out);
    }
    TAKE(ws->rows, real, ONLINE_BLOCK * width * (int64_t)fnn_max_threads());
    ws->online_rows = OB;
    TAKE(ws->gemm_work, real, gemm_work);
#undef TAKE
    ws->batch = B;
    ws->n_layers = L;
    ws->width = width;
    ws->block = block;
    *out = ws;
    return FNN_OK;
}

void FN(fnn_workspace_free)(FN(fnn_workspace) *ws) {
    if (ws) free(ws->block); /* the workspace lives inside its own block */
}

int64_t FN(fnn_workspace_batch)(const FN(fnn_workspace) *ws) { return ws->batch; }

/* A dense layer's bias and softmax (the one activation not done in the GEMM's epilogue, being
 * row-wise), row by row: at inference shared by the team in slices of about EPILOGUE_VALUES
 * values when the layer's output is large, else on the calling thread. */
#define EPILOGUE_VALUES 16384

/* 1 when a layer's activation (and its derivative) is done in a GEMM's epilogue (fnn_gemm_epi):
 * a dense layer's elementwise one, every one but softmax. */
static int FN(act_in_epilogue)(const fnn_layer *ly) {
    return ly->kind == FNN_LAYER_DENSE && ly->activation != FNN_ACT_SOFTMAX;
}

typedef struct FN(epilogue_job) {
    const fnn_layer *ly;
    real *y;
    const real *b;
    int64_t nb, rows; /* rows per task */
} FN(epilogue_job);

static void FN(epilogue_task)(void *ctx, int64_t t, int worker) {
    const FN(epilogue_job) *e = (const FN(epilogue_job) *)ctx;
    const int64_t n = e->ly->n_out, r0 = t * e->rows;
    const int64_t rows = r0 + e->rows < e->nb ? e->rows : e->nb - r0;
    real *y = e->y + r0 * n;
    (void)worker;
    FN(fnn_bias_forward)(y, e->b, rows, n, n);
    FN(fnn_activation_forward)(e->ly->activation, y, y, rows, n, e->ly->alpha); /* code checked by valid_net */
}

static int FN(bias_activation)(fnn_team *team, const fnn_layer *ly, real *y, const real *b, int64_t nb,
                               int training) {
    const int64_t n = ly->n_out;
    if (training || fnn_team_size(team) == 1 || nb * n < 2 * EPILOGUE_VALUES) {
        FN(fnn_bias_forward)(y, b, nb, n, n);
        return FN(fnn_activation_forward)(ly->activation, y, y, nb, n, ly->alpha);
    }
    FN(epilogue_job) e = {ly, y, b, nb, (EPILOGUE_VALUES + n - 1) / n};
    fnn_team_run(team, (nb + e.rows - 1) / e.rows, FN(epilogue_task), &e);
    return FNN_OK;
}

/* 1 when forward can check its input through the first layer's output (fnn_gemm_epi's
 * x_nonfinite): a dense layer whose bias and activation are done in the GEMM's epilogue. */
static int FN(checks_x)(const fnn_net *net) {
    return net->n_layers > 0 && FN(act_in_epilogue)(&net->layers[0]);
}

/* Forward pass of nb rows of x. training: dropout draws for optimizer step `step`, batch-norm
 * batch statistics; else dropout is the identity and batch norm uses the running statistics.
 * x_nonfinite (NULL, or where checks_x): set to 1 when the first layer's output before its
 * activation holds a NaN or an infinity, as it does wherever x does (fnn_gemm_epi). */
static int FN(forward)(fnn_team *team, FN(fnn_workspace) *ws, const fnn_net *net, const real *params,
                       const real *state, const real *x, int64_t nb, int training, int64_t step,
                       _Atomic int *x_nonfinite) {
    const real *in = x;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        real *y = ws->out[l];
        const int64_t n = ly->n_out;
        int st = FNN_OK;
        switch (ly->kind) {
        case FNN_LAYER_DENSE: { /* a few rows: weight rows met only by zero inputs are not read */
            /* bias and an elementwise activation in the GEMM's epilogue */
            const int fused = FN(act_in_epilogue)(ly);
            FN(fnn_gemm_epi) epi = {params + ly->b_off, NULL, 0, ly->activation, ly->alpha};
            if (l == 0) epi.x_nonfinite = x_nonfinite;
            st = FN(fnn_gemm_fused_team)(team, y, in, params + ly->w_off, nb, n, ly->n_in, n, ly->n_in, n,
                                         0, 0, 1.0, 0.0, ws->gemm_work, 1, fused ? &epi : NULL);
            if (st != FNN_OK) return st;
            FNN_MARK(FNN_PH_FWD_GEMM, l);
            if (!fused) st = FN(bias_activation)(team, ly, y, params + ly->b_off, nb, training);
            FNN_MARK(FNN_PH_FWD_EPI, l);
            break;
        }
        case FNN_LAYER_ACTIVATION:
            st = FN(fnn_activation_forward)(ly->activation, y, in, nb, n, ly->alpha);
            break;
        case FNN_LAYER_DROPOUT:
            if (training && ly->rate > 0) {
                const uint64_t key = fnn_rng_key(net->seed, FNN_RNG_DROPOUT + (uint64_t)l, (uint64_t)step);
                FN(fnn_dropout_forward)(y, ws->aux[l], in, nb * n, ly->rate, key);
            } else {
                y = (real *)in; /* identity: alias, no copy */
            }
            break;
        case FNN_LAYER_BATCHNORM: {
            const real *gamma = params + ly->w_off, *beta = params + ly->b_off;
            if (training) {
                real *s = ws->stats[l];
                FN(fnn_batchnorm_forward)(y, ws->aux[l], s, s + n, s + 2 * n, in, gamma, beta, nb,
                                          n, ly->eps);
            } else {
                FN(fnn_batchnorm_inference)(y, in, gamma, beta, state + ly->s_off,
                                            state + ly->s_off + n, nb, n, ly->eps);
            }
            break;
        }
        default: return FNN_EINVAL;
        }
        if (st != FNN_OK) return st;
        if (ly->kind != FNN_LAYER_DENSE) FNN_MARK(FNN_PH_OTHER_FWD, l);
        ws->acts[l] = y;
        in = y;
    }
    return FNN_OK;
}

/* The largest of the values' bits ANDed with mask, as unsigned integers: exact, and it
 * vectorises (a float max or sum would be a serial chain). Inlined into each clone below. */
#if REAL_IS_FLOAT
typedef uint32_t FN(bits);
#define REAL_EXPO 0x7F800000u
#define REAL_MAG 0x7FFFFFFFu
#else
typedef uint64_t FN(bits);
#define REAL_EXPO 0x7FF0000000000000ull
#define REAL_MAG 0x7FFFFFFFFFFFFFFFull
#endif
static inline FN(bits) FN(max_bits)(const real *x, int64_t n, FN(bits) mask) {
    FN(bits) most = 0;
    for (int64_t i = 0; i < n; i++) {
        FN(bits) b;
        memcpy(&b, &x[i], sizeof b);
        b &= mask;
        most = b > most ? b : most;
    }
    return most;
}

/* 1 when no element is NaN or infinite: the largest exponent field must not be all ones. */
FNN_CLONES int FN(fnn_all_finite)(const real *x, int64_t n) {
    return FN(max_bits)(x, n, REAL_EXPO) != REAL_EXPO;
}

/* 1 when x[0:size] is finite (a chunk's rows at inference, a step's gradient); shared by the team
 * in slices of FINITE_SLICE values. */
#define FINITE_SLICE 16384
#define FINITE_TASKS 64
typedef struct FN(finite_job) {
    const real *x;
    int64_t size, slice;
    int ok[FINITE_TASKS]; /* one flag per task: no two tasks write the same word */
} FN(finite_job);

static void FN(finite_task)(void *ctx, int64_t t, int worker) {
    FN(finite_job) *f = (FN(finite_job) *)ctx;
    const int64_t lo = t * f->slice, hi = lo + f->slice < f->size ? lo + f->slice : f->size;
    (void)worker;
    f->ok[t] = FN(fnn_all_finite)(f->x + lo, hi - lo);
}

static int FN(finite_rows)(fnn_team *team, const real *x, int64_t size) {
    if (size <= FINITE_SLICE || fnn_team_size(team) == 1) return FN(fnn_all_finite)(x, size);
    FN(finite_job) f;
    f.x = x;
    f.size = size;
    int64_t tasks = (size + FINITE_SLICE - 1) / FINITE_SLICE;
    if (tasks > FINITE_TASKS) tasks = FINITE_TASKS;
    f.slice = (size + tasks - 1) / tasks;
    tasks = (size + f.slice - 1) / f.slice;
    fnn_team_run(team, tasks, FN(finite_task), &f);
    for (int64_t t = 0; t < tasks; t++)
        if (!f.ok[t]) return 0;
    return 1;
}

/* A whole array's check, as the Python layer's input validation asks for it: a training set is
 * hundreds of MB (MNIST: 188 MB, 10 ms in NumPy's sum on one core of the 2-core Zen 5 VM); from
 * FINITE_TEAM_MIN values it is shared by the threads. */
#define FINITE_TEAM_MIN ((int64_t)1 << 22)
typedef struct FN(finite_call) {
    const real *x;
    int64_t n;
} FN(finite_call);

static int FN(finite_body)(fnn_team *team, void *ctx) {
    const FN(finite_call) *f = (const FN(finite_call) *)ctx;
    return FN(finite_rows)(team, f->x, f->n);
}

int FN(fnn_finite)(const real *x, int64_t n) {
    if (n <= 0) return 1;
    if (n < FINITE_TEAM_MIN || fnn_get_num_threads() < 2) return FN(fnn_all_finite)(x, n);
    FN(finite_call) f = {x, n};
    return fnn_with_team(fnn_get_num_threads(), FN(finite_body), &f);
}

/* Profiling builds only (profile.h): FNN_FUSED_CHECK=0 checks the whole gradient in a pass of
 * its own after the products, as before the epilogue did it, to compare the two in one sitting. */
static int FN(fused_check)(void) { return (int)fnn_prof_knob("FNN_FUSED_CHECK", 1) != 0; }

/* The rest of the check that forward_backward's epilogues began (nonfinite, set by them): the
 * gradients no epilogue saw, from layer `lowest` up: biases, batch norm's scales and shifts. */
static int FN(rest_finite)(const real *grads, const fnn_net *net, int64_t lowest, _Atomic int *nonfinite) {
    if (atomic_load_explicit(nonfinite, memory_order_relaxed)) return 0; /* the team's join ordered it */
    for (int64_t l = lowest; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_DENSE) {
            if (!FN(fnn_all_finite)(grads + ly->b_off, ly->n_out)) return 0;
        } else if (ly->kind == FNN_LAYER_BATCHNORM) {
            if (!FN(fnn_all_finite)(grads + ly->w_off, ly->n_out) ||
                !FN(fnn_all_finite)(grads + ly->b_off, ly->n_out))
                return 0;
        }
    }
    return 1;
}

static int64_t FN(count_correct)(const fnn_net *net, const real *Z, const real *T,
                                 const int64_t *labels, int64_t nb) {
    const int64_t n = net->n_outputs;
    int64_t hits = 0;
    if (net->loss == FNN_LOSS_SOFTMAX_XENT || net->loss == FNN_LOSS_SK_LOG_LOSS) {
        for (int64_t i = 0; i < nb; i++) {
            const real *z = Z + i * n;
            int64_t best = 0;
            for (int64_t j = 1; j < n; j++)
                if (z[j] > z[best]) best = j;
            hits += best == labels[i];
        }
    } else if (net->loss == FNN_LOSS_SIGMOID_BCE || net->loss == FNN_LOSS_SK_BINARY_LOG_LOSS) {
        for (int64_t i = 0; i < nb * n; i++) hits += (Z[i] > 0) == (T[i] >= (real)0.5);
    }
    return hits;
}

#if REAL_IS_FLOAT
#define REAL_MAX FLT_MAX
#define REAL_EPS FLT_EPSILON
#else
#define REAL_MAX DBL_MAX
#define REAL_EPS DBL_EPSILON
#endif

/* max |x| over n values, or an infinity or a NaN when one is NaN or infinite (which then fails
 * sums_finite): the largest of the values' bits with the sign cleared (NaN > inf > every finite
 * value there). */
FNN_CLONES static double FN(abs_bound)(const real *x, int64_t n) {
    const FN(bits) most = FN(max_bits)(x, n, REAL_MAG);
    real v;
    memcpy(&v, &most, sizeof v);
    return (double)v;
}

/* 1 when every sum of nb products a * d with |a| <= ma and |d| <= md is finite however it is
 * rounded and ordered: its magnitude is at most nb ma md (1 + gamma), gamma = (nb + 1) u /
 * (1 - (nb + 1) u) for the products' and the sums' roundings (u = REAL_EPS / 2), at most
 * 2 (nb + 1) u when (nb + 1) u <= 1/4; twice that covers this bound's own rounding in double.
 * False for an infinite or NaN bound. */
static int FN(sums_finite)(int64_t nb, double ma, double md) {
    const double nu = (double)(nb + 1) * (REAL_EPS / 2);
    return nu <= 0.25 && (double)nb * ma * md * (1 + 4 * nu) <= REAL_MAX;
}

/* 1 when a dense layer's gradient over nb rows, in^T dZ and colsum dZ, is proved finite by
 * max|in| <= ma and max|dZ| <= md. */
static int FN(dense_grads_finite)(int64_t nb, double ma, double md) {
    return FN(sums_finite)(nb, ma, md) && FN(sums_finite)(nb, 1.0, md);
}

/* scikit-learn's alpha (opt->l2_loss): loss += 0.5 l2 |W|^2 / S and dW += l2 W / S on the weights
 * params[0:n_decay], S = the batch's sample-weight sum (rows without weights); S = 0: nothing.
 * |W|^2 is summed in chunks of L2_CHUNK values (more where that would pass L2_TASKS chunks), each
 * in 8 lanes (value i in lane i mod 8) added pairwise, the chunks' sums in chunk order: the same
 * result at any thread count and from every clone (a single running sum was a chain of 79 K
 * dependent additions a step for 784-100-10: 70 us, on one thread). */
#define L2_CHUNK 8192
#define L2_TASKS 256
typedef struct FN(l2_job) {
    const real *p;
    real *g; /* NULL: the sums alone (the online step adds c W in its epilogues) */
    real c;
    int64_t n, chunk;
    int want_most; /* the online step's bound needs max |p|; the general step checks the gradient */
    double sq[L2_TASKS], most[L2_TASKS]; /* one slot per task: no two tasks write the same word */
} FN(l2_job);

/* sum p[0:n]^2 in double (8 lanes, added pairwise); g (or NULL): g[i] += c p[i] on the way */
FNN_CLONES static double FN(l2_chunk)(const real *restrict p, real *restrict g, real c, int64_t n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            const double v = (double)p[i + k];
            lane[k] += v * v;
        }
    for (int k = 0; i + k < n; k++) {
        const double v = (double)p[i + k];
        lane[k] += v * v;
    }
    if (g)
        for (i = 0; i < n; i++) g[i] += c * p[i];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

static void FN(l2_task)(void *ctx, int64_t t, int worker) {
    FN(l2_job) *j = (FN(l2_job) *)ctx;
    const int64_t lo = t * j->chunk, hi = lo + j->chunk < j->n ? lo + j->chunk : j->n;
    (void)worker;
    j->sq[t] = FN(l2_chunk)(j->p + lo, j->g ? j->g + lo : NULL, j->c, hi - lo);
    if (j->want_most) j->most[t] = FN(abs_bound)(j->p + lo, hi - lo);
}

/* |params[0:n]|^2 and (most, or NULL: not wanted) max |params[0:n]|, NaN or an infinity where
 * one is, on the team; grads (or NULL) += c params on the way. */
static void FN(l2_scan)(fnn_team *team, const real *params, real *grads, real c, int64_t n, double *sq,
                        double *most) {
    FN(l2_job) j;
    j.p = params;
    j.g = grads;
    j.c = c;
    j.n = n;
    j.want_most = most != NULL;
    j.chunk = n / L2_TASKS + 1 > L2_CHUNK ? n / L2_TASKS + 1 : L2_CHUNK;
    const int64_t tasks = (n + j.chunk - 1) / j.chunk;
    fnn_team_run(team, tasks, FN(l2_task), &j);
    double s = 0, m = 0;
    for (int64_t t = 0; t < tasks; t++) {
        s += j.sq[t];
        if (most) m = isnan(j.most[t]) || j.most[t] > m ? j.most[t] : m;
    }
    *sq = s;
    if (most) *most = m;
}

/* The batch's sample-weight sum S (nb rows without weights). */
static double FN(weight_sum)(const real *sw, int64_t nb) {
    if (!sw) return (double)nb;
    double S = 0;
    for (int64_t i = 0; i < nb; i++) S += sw[i];
    return S;
}

/* The general step's l2_loss term: loss and grads[0:n_decay] (see above). */
static void FN(l2_loss_term)(fnn_team *team, double *loss, real *grads, const real *params,
                             const fnn_net *net, double l2, const real *sw, int64_t nb) {
    const double S = FN(weight_sum)(sw, nb);
    if (S == 0) return;
    double sq;
    FN(l2_scan)(team, params, grads, (real)(l2 / S), net->n_decay, &sq, NULL);
    *loss += 0.5 * l2 * sq / S;
}

/* dense_grads_finite with the l2_loss term: each weight gradient element is the sum plus
 * c p, |c p| <= cw = |c| max|p| (two more roundings, each covered by 2 u with room for the
 * bound's own in double). */
static int FN(l2_grads_finite)(int64_t nb, double ma, double md, double cw) {
    const double nu = (double)(nb + 1) * (REAL_EPS / 2), u4 = 2 * REAL_EPS;
    return nu <= 0.25 && ((double)nb * ma * md * (1 + 4 * nu) + cw * (1 + u4)) * (1 + u4) <= REAL_MAX &&
           FN(sums_finite)(nb, 1.0, md);
}

/* The online step's check, before anything changes: every dZ and every dense layer's input is
 * finite, and each element of each weight and bias gradient will be finite, as the general step's
 * check of the whole gradient makes sure. One row: the largest gradient element is
 * max|a| max|dZ| itself (rounded like the product the update forms), so the test is exact and
 * refuses what the general step refuses. nb rows: a sum of nb products, bounded by sums_finite;
 * where the bound fails the gradient may still be finite (a huge input in a row whose dZ is 0),
 * so it answers ONLINE_UNPROVEN and the step is taken the general way, which checks the gradient
 * itself. */
#define ONLINE_UNPROVEN 1 /* an internal status, never returned by a public call */
static int FN(online_check)(const FN(fnn_workspace) *ws, const fnn_net *net, const real *x, int64_t nb,
                            int64_t lowest, double cw) {
    for (int64_t l = lowest; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind != FNN_LAYER_DENSE) continue;
        const real *in = l > 0 ? ws->acts[l - 1] : x;
        const double md = FN(abs_bound)(ws->delta[l], nb * ly->n_out), ma = FN(abs_bound)(in, nb * ly->n_in);
        if (!isfinite(md) || !isfinite(ma)) return FNN_ENONFINITE;
        if (nb == 1) {
            if (!((real)ma * (real)md <= REAL_MAX)) return FNN_ENONFINITE; /* inf: the same product overflows */
        } else if (ws->l2_on ? !FN(l2_grads_finite)(nb, ma, md, cw) : !FN(dense_grads_finite)(nb, ma, md)) {
            return ONLINE_UNPROVEN;
        }
    }
    return FNN_OK;
}

/* Loss, and the flat gradient into ws->grads, of nb rows (training mode), with the l2_loss term.
 * online (see online_update): each dense layer's dZ is kept in ws->delta instead, and no weight
 * or bias gradient is formed. */
static int FN(forward_backward)(fnn_team *team, double *loss, int64_t *correct, FN(fnn_workspace) *ws,
                                const fnn_net *net, const real *params, const real *x,
                                const real *t, const int64_t *labels, const real *sw, int64_t nb,
                                int64_t step, double l2_loss, int online) {
    int st = FN(forward)(team, ws, net, params, NULL, x, nb, 1, step, NULL);
    if (st != FNN_OK) return st;
    const int64_t L = net->n_layers;
    real *g = ws->g0, *spare = ws->g1;
    const real *z = ws->acts[L - 1];
    st = FN(fnn_loss_forward_backward)(net->loss, loss, g, z, t, labels, sw, nb, net->n_outputs);
    if (st != FNN_OK) return st;
    if (correct) *correct = FN(count_correct)(net, z, t, labels, nb);
    if (!isfinite(*loss)) return FNN_ENONFINITE;
    FNN_MARK(FNN_PH_LOSS, L - 1);

    int64_t lowest = L; /* lowest layer with parameters: no input gradient needed below it */
    for (int64_t l = 0; l < L; l++)
        if (net->layers[l].kind == FNN_LAYER_DENSE || net->layers[l].kind == FNN_LAYER_BATCHNORM) {
            lowest = l;
            break;
        }
    /* Dense weight gradients are written once (beta = 0 below); the rest accumulate from zero. */
    real *grads = ws->grads;
    /* The whole gradient must be finite, or the step is refused. A dense layer's gradient is
     * in^T dZ and colsum dZ: when every input and dZ is finite, a bound on their largest
     * magnitudes (sums_finite) proves each element finite, from nb (n_in + n_out) values instead
     * of the n_params of the gradient (MNIST, batch 16: 25 K against 235 K). Used when those are
     * at most a quarter of the parameters, with no l2_loss term and no batch norm (whose
     * gradients are not such sums); where the bound does not hold, the gradient itself is checked,
     * so exactly the same steps are refused. */
    int bounded = !online && l2_loss == 0;
    int64_t scan = 0;
    for (int64_t l = lowest; l < L && bounded; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_BATCHNORM) bounded = 0;
        if (ly->kind == FNN_LAYER_DENSE) scan += nb * (ly->n_in + ly->n_out);
    }
    bounded = bounded && scan <= net->n_params / 4;
    /* Once the bound fails (or from the start), each dense weight gradient is checked by its
     * GEMM's epilogue, block by block while in cache (nonfinite), and the small rest (biases,
     * batch norm) at the end; those of the layers above, where the bound held, are finite. With
     * an l2_loss term, added after the products, the whole gradient is checked at the end. */
    _Atomic int nonfinite = 0;
    const FN(fnn_gemm_epi) check_epi = {NULL, NULL, 0, FNN_ACT_IDENTITY, 0, &nonfinite};
    for (int64_t l = lowest; l < L && !online; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_DENSE)
            memset(grads + ly->b_off, 0, (size_t)ly->n_out * sizeof(real));
        else if (ly->kind == FNN_LAYER_BATCHNORM) {
            memset(grads + ly->w_off, 0, (size_t)ly->n_out * sizeof(real));
            memset(grads + ly->b_off, 0, (size_t)ly->n_out * sizeof(real));
        }
    }
    int g_ready = 0; /* g already holds dZ: the layer above applied this layer's derivative */
    for (int64_t l = L - 1; l >= lowest; l--) {
        const fnn_layer *ly = &net->layers[l];
        const int64_t n = ly->n_out;
        const real *in = l > 0 ? ws->acts[l - 1] : x;
        switch (ly->kind) {
        case FNN_LAYER_DENSE:
            if (!g_ready) {
                st = FN(fnn_activation_backward)(ly->activation, g, g, ws->acts[l], nb, n, ly->alpha);
                if (st != FNN_OK) return st;
            }
            g_ready = 0;
            FNN_MARK(FNN_PH_ACT_BWD, l);
            /* dW = in^T g ; db += colsum g ; dX = g W^T */
            if (online) { /* dZ is there already where the product above wrote it */
                if (g != ws->delta[l]) memcpy(ws->delta[l], g, (size_t)(nb * n) * sizeof(real));
            } else {
                if (bounded) {
                    const double ma = FN(abs_bound)(in, nb * ly->n_in), md = FN(abs_bound)(g, nb * n);
                    bounded = FN(dense_grads_finite)(nb, ma, md);
                }
                const int check = !bounded && l2_loss == 0 && FN(fused_check)();
                st = FN(fnn_gemm_fused_team)(team, grads + ly->w_off, in, g, ly->n_in, n, nb, n, ly->n_in,
                                             n, 1, 0, 1.0, 0.0, ws->gemm_work, 0, check ? &check_epi : NULL);
                if (st != FNN_OK) return st;
                FNN_MARK(FNN_PH_DW_GEMM, l);
                FN(fnn_bias_backward)(grads + ly->b_off, g, nb, n, n);
                FNN_MARK(FNN_PH_BIAS_BWD, l);
            }
            if (l > lowest) { /* below a dense layer, its derivative in this GEMM's epilogue */
                const fnn_layer *lb = &net->layers[l - 1];
                const int fused = FN(act_in_epilogue)(lb);
                const FN(fnn_gemm_epi) epi = {NULL, ws->acts[l - 1], ly->n_in, lb->activation, lb->alpha};
                /* online, a dense layer's dZ goes where the update reads it (delta), not through a
                 * copy; g0 and g1 stay scratch: spare is whichever g is not */
                real *dst = online && lb->kind == FNN_LAYER_DENSE ? ws->delta[l - 1] : spare;
                st = FN(fnn_gemm_fused_team)(team, dst, g, params + ly->w_off, nb, ly->n_in, n, ly->n_in,
                                             n, n, 0, 1, 1.0, 0.0, ws->gemm_work, 0, fused ? &epi : NULL);
                if (st != FNN_OK) return st;
                g_ready = fused;
                FNN_MARK(FNN_PH_DX_GEMM, l);
                g = dst;
                spare = g == ws->g0 ? ws->g1 : ws->g0;
            }
            break;
        case FNN_LAYER_ACTIVATION:
            st = FN(fnn_activation_backward)(ly->activation, g, g, ws->acts[l], nb, n, ly->alpha);
            if (st != FNN_OK) return st;
            FNN_MARK(FNN_PH_ACT_BWD, l);
            break;
        case FNN_LAYER_DROPOUT:
            if (ly->rate > 0) FN(fnn_dropout_backward)(g, g, ws->aux[l], nb * n);
            FNN_MARK(FNN_PH_ACT_BWD, l);
            break;
        case FNN_LAYER_BATCHNORM:
            FN(fnn_batchnorm_backward)(g, grads + ly->w_off, grads + ly->b_off, g, ws->aux[l],
                                       ws->stats[l] + 2 * n, params + ly->w_off, nb, n);
            FNN_MARK(FNN_PH_ACT_BWD, l);
            break;
        default: return FNN_EINVAL;
        }
    }
    if (online) { /* with the l2_loss term: its loss here, c W added by the update's epilogues */
        double cw = 0;
        ws->l2_on = 0;
        const double S = l2_loss != 0 ? FN(weight_sum)(sw, nb) : 0;
        if (S != 0) {
            double sq, most;
            FN(l2_scan)(team, params, NULL, 0, net->n_decay, &sq, &most);
            *loss += 0.5 * l2_loss * sq / S;
            if (!isfinite(*loss)) return FNN_ENONFINITE;
            ws->l2c = (real)(l2_loss / S);
            ws->l2_on = 1;
            if (net->n_decay > 0) { /* an infinite c makes c W (or c 0) non-finite */
                if (!isfinite(ws->l2c)) return FNN_ENONFINITE;
                cw = fabs((double)ws->l2c) * most;
            }
        }
        return FN(online_check)(ws, net, x, nb, lowest, cw);
    }
    if (l2_loss != 0) {
        FN(l2_loss_term)(team, loss, grads, params, net, l2_loss, sw, nb);
        if (!isfinite(*loss)) return FNN_ENONFINITE;
    }
    /* teamed: on many cores the gradient lies in the caches of the threads that wrote it */
    if (!bounded) {
        const int whole = l2_loss != 0 || !FN(fused_check)(); /* no epilogue checked the weights */
        const int ok = whole ? FN(finite_rows)(team, grads, net->n_params)
                             : FN(rest_finite)(grads, net, lowest, &nonfinite);
        if (!ok) return FNN_ENONFINITE;
    }
    /* batch statistics are committed to the running ones after this: they must be finite too
     * (a float variance can overflow while the normalised values stay finite) */
    for (int64_t l = 0; l < L; l++)
        if (net->layers[l].kind == FNN_LAYER_BATCHNORM &&
            !FN(fnn_all_finite)(ws->stats[l], 2 * net->layers[l].n_out))
            return FNN_ENONFINITE;
    FNN_MARK(FNN_PH_CHECK, 0);
    return FNN_OK;
}

/* ---- The online step -----------------------------------------------------------------------
 * A batch of at most ONLINE_MAX_ROWS rows through Dense, Activation and Dropout layers (no batch
 * norm, no scikit-learn l2 loss term), with any optimizer: a dense layer's weight gradient is
 * in^T dZ, a sum of nb outer products, so each row of W gets its gradient row computed into a
 * per-thread buffer of n_out values (it stays in L1) and is updated at once: the flat gradient
 * is never written nor read back, and the optimizer streams each parameter and its slots once.
 * With plain SGD and no penalty, a row whose inputs are all zero (most of an MNIST image) would
 * not change and is not touched. forward_backward(online) checked everything first (online_check),
 * so the updates cannot fail half way. Batches of ONLINE_MAX_ROWS + 1 to online_rows rows take the
 * GEMM form (online_gemm_update), under the same check. */
static int FN(online_fits)(const fnn_net *net, const fnn_optim *opt, const FN(fnn_workspace) *ws,
                           int64_t nb) {
    if (nb > ws->online_rows || nb > FN(online_max_rows)() || (opt->l2_loss != 0 && nb <= ONLINE_MAX_ROWS))
        return 0;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_BATCHNORM) return 0;
        /* the l2_loss term reaches the weights alone (the epilogues): a layout whose penalised
         * prefix holds a bias (fastnn's own never does) takes the general step */
        if (ly->kind == FNN_LAYER_DENSE && opt->l2_loss != 0 && ly->b_off < net->n_decay) return 0;
    }
    return 1;
}

typedef struct FN(online_job) {
    const FN(fnn_opt_plan) *plan;
    const fnn_net *net;
    const fnn_layer *ly;
    FN(fnn_workspace) *ws;
    real *params, *slots;
    const real *in, *delta;
    int64_t nb, rows_per_task, row_tasks;
    int skip_zero;
    int *overflowed; /* set (relaxed atomic) by a task whose update made a finite value non-finite */
} FN(online_job);

#define ONLINE_CHUNK 16384 /* parameters per task */

/* row[0:n] = sum over r < nb of in[r * n_in] * d[r * n : r * n + n] (in: column i of the input) */
FNN_CLONES static void FN(outer_row)(real *restrict row, const real *restrict in, int64_t n_in,
                                     const real *restrict d, int64_t n, int64_t nb) {
    const real a0 = in[0];
    for (int64_t c = 0; c < n; c++) row[c] = a0 * d[c];
    for (int64_t r = 1; r < nb; r++) {
        const real a = in[r * n_in];
        const real *restrict dr = d + r * n;
        for (int64_t c = 0; c < n; c++) row[c] += a * dr[c];
    }
}

/* The same for ONLINE_BLOCK rows at once, row q of the block into rows[q * n : q * n + n], with the
 * same operations in the same order per element (the same bits as outer_row): 64 bytes of
 * columns of the ONLINE_BLOCK rows stay in registers (GCC's vector types: two AVX2 registers a row,
 * four SSE ones in the baseline clone) across the nb rows of d, each element of d read once per
 * block instead of once per row. */
#if defined(__GNUC__)
typedef real FN(vec32) __attribute__((vector_size(32)));
#define OB_V (32 / (int)sizeof(real)) /* lanes of a vector */
FNN_CLONES static void FN(outer_rows)(real *restrict rows, const real *restrict in, int64_t n_in,
                                      const real *restrict d, int64_t n, int64_t nb) {
    typedef FN(vec32) vec;
    int64_t c = 0;
    for (; c + 2 * OB_V <= n; c += 2 * OB_V) {
        vec acc[ONLINE_BLOCK][2], d0, d1;
        __builtin_memcpy(&d0, d + c, sizeof d0);
        __builtin_memcpy(&d1, d + c + OB_V, sizeof d1);
        _Pragma("GCC unroll 4") for (int q = 0; q < ONLINE_BLOCK; q++) {
            const real a = in[q];
            acc[q][0] = a * d0;
            acc[q][1] = a * d1;
        }
        for (int64_t r = 1; r < nb; r++) {
            __builtin_memcpy(&d0, d + r * n + c, sizeof d0);
            __builtin_memcpy(&d1, d + r * n + c + OB_V, sizeof d1);
            _Pragma("GCC unroll 4") for (int q = 0; q < ONLINE_BLOCK; q++) {
                const real a = in[r * n_in + q];
                acc[q][0] += a * d0;
                acc[q][1] += a * d1;
            }
        }
        _Pragma("GCC unroll 4") for (int q = 0; q < ONLINE_BLOCK; q++) {
            __builtin_memcpy(rows + q * n + c, &acc[q][0], sizeof d0);
            __builtin_memcpy(rows + q * n + c + OB_V, &acc[q][1], sizeof d1);
        }
    }
    for (; c < n; c++) /* the last columns, one at a time */
        for (int q = 0; q < ONLINE_BLOCK; q++) {
            real s = in[q] * d[c];
            for (int64_t r = 1; r < nb; r++) s += in[r * n_in + q] * d[r * n + c];
            rows[q * n + c] = s;
        }
}
#undef OB_V
#else
FNN_CLONES static void FN(outer_rows)(real *restrict rows, const real *restrict in, int64_t n_in,
                                      const real *restrict d, int64_t n, int64_t nb) {
    for (int q = 0; q < ONLINE_BLOCK; q++) FN(outer_row)(rows + q * n, in + q, n_in, d, n, nb);
}
#endif

/* Plain SGD (no momentum, penalty or decay: the plans whose update leaves a zero gradient's
 * parameter as it is) on the listed rows lo + list[0:cnt] of a layer's weights w (n_out = n
 * columns): each row's gradient is formed (outer_row; at batch 1 inline, a * d[c]) and applied
 * at once, p -= lr g, with the operations of outer_row and optimizers.c's sgd_range, so the same
 * bits as fnn_opt_plan_apply row by row, without its dispatch per row (MNIST at batch 1 lists
 * about 150 + 128 + 64 rows a step, of 256, 128 and 10 values: the calls cost as much as the
 * arithmetic). 1 when check and a changed value was left NaN or infinite (sgd_range's report). */
static inline __attribute__((always_inline)) FN(bits) FN(sgd_row)(real *restrict p, const real *restrict g,
                                                                   real a, const real *restrict d, int64_t n,
                                                                   real lr, const int outer, const int check) {
    FN(bits) most = 0;
    for (int64_t c = 0; c < n; c++) {
        const real gc = outer ? a * d[c] : g[c], now = p[c] - lr * gc;
        p[c] = now;
        if (check) {
            FN(bits) b;
            memcpy(&b, &now, sizeof b);
            b = gc != 0 ? b & REAL_MAG : 0;
            most = b > most ? b : most;
        }
    }
    return most;
}

FNN_CLONES static int FN(sgd_listed_rows)(real *restrict w, const int32_t *restrict list, int64_t cnt,
                                          int64_t lo, const real *restrict in, int64_t n_in,
                                          const real *restrict d, int64_t n, int64_t nb, real lr, int check,
                                          real *restrict row) {
    FN(bits) most = 0, b;
    for (int64_t t = 0; t < cnt; t++) {
        const int64_t r = lo + list[t];
        real *restrict p = w + r * n;
        if (nb == 1)
            b = check ? FN(sgd_row)(p, NULL, in[r], d, n, lr, 1, 1) : FN(sgd_row)(p, NULL, in[r], d, n, lr, 1, 0);
        else {
            FN(outer_row)(row, in + r, n_in, d, n, nb);
            b = check ? FN(sgd_row)(p, row, 0, NULL, n, lr, 0, 1) : FN(sgd_row)(p, row, 0, NULL, n, lr, 0, 0);
        }
        most = b > most ? b : most;
    }
    return most >= REAL_EXPO;
}

/* A dense layer's bias gradient, colsum of its nb x n_out dZ, into row, and its update: the
 * online step's forms both end a layer with it. 1 as fnn_opt_plan_apply answers. */
static int FN(bias_update)(const FN(fnn_opt_plan) *plan, real *params, real *slots, const fnn_net *net,
                           const fnn_layer *ly, const real *d, int64_t nb, real *row) {
    const int64_t n = ly->n_out;
    memset(row, 0, (size_t)n * sizeof(real));
    FN(fnn_bias_backward)(row, d, nb, n, n);
    return FN(fnn_opt_plan_apply)(plan, params, slots, net->n_params, net->n_decay, row, ly->b_off, ly->b_off + n);
}

/* Profiling builds only: FNN_SGD_ROWS=0 applies each listed row through fnn_opt_plan_apply, as before. */
static int FN(plain_sgd_rows)(void) { return (int)fnn_prof_knob("FNN_SGD_ROWS", 1) != 0; }

static void FN(online_flag)(const FN(online_job) *j, int bad) {
    if (bad) __atomic_store_n(j->overflowed, 1, __ATOMIC_RELAXED);
}

static void FN(online_task)(void *ctx, int64_t task, int worker) {
    const FN(online_job) *j = (const FN(online_job) *)ctx;
    const fnn_layer *ly = j->ly;
    const int64_t n = ly->n_out, n_in = ly->n_in, nb = j->nb, P = j->net->n_params;
    real *restrict row = j->ws->rows + (int64_t)worker * ONLINE_BLOCK * j->ws->width;
    const real *restrict d = j->delta;
    int bad = 0;
    if (task == j->row_tasks) { /* the bias */
        FN(online_flag)(j, FN(bias_update)(j->plan, j->params, j->slots, j->net, ly, d, nb, row));
        return;
    }
    const int64_t i0 = task * j->rows_per_task;
    const int64_t i1 = i0 + j->rows_per_task < n_in ? i0 + j->rows_per_task : n_in;
    if (j->skip_zero) { /* only rows met by a nonzero input, listed first without a branch per row
                           (MNIST's zeros follow no pattern a branch predictor learns: the test and
                           its branch took 15 % of a batch-1 SGD epoch) */
        int32_t list[ONLINE_LIST];
        for (int64_t lo = i0; lo < i1; lo += ONLINE_LIST) {
            const int64_t hi = lo + ONLINE_LIST < i1 ? lo + ONLINE_LIST : i1;
            int64_t cnt = 0;
            for (int64_t r = lo; r < hi; r++) {
                int any = 0;
                for (int64_t q = 0; q < nb; q++) any |= j->in[q * n_in + r] != 0;
                list[cnt] = (int32_t)(r - lo);
                cnt += any;
            }
            if (FN(plain_sgd_rows)())
                bad |= FN(sgd_listed_rows)(j->params + ly->w_off, list, cnt, lo, j->in, n_in, d, n, nb,
                                           j->plan->lr, j->plan->check, row);
            else
                for (int64_t t = 0; t < cnt; t++) {
                    const int64_t r = lo + list[t];
                    FN(outer_row)(row, j->in + r, n_in, d, n, nb);
                    bad |= FN(fnn_opt_plan_apply)(j->plan, j->params, j->slots, P, j->net->n_decay, row,
                                                  ly->w_off + r * n, ly->w_off + (r + 1) * n);
                }
        }
        FN(online_flag)(j, bad);
        return;
    }
    int64_t i = i0; /* every row is updated: ONLINE_BLOCK rows' gradients at a time, then the rest */
    for (; i + ONLINE_BLOCK <= i1; i += ONLINE_BLOCK) {
        FN(outer_rows)(row, j->in + i, n_in, d, n, nb);
        bad |= FN(fnn_opt_plan_apply)(j->plan, j->params, j->slots, P, j->net->n_decay, row,
                                      ly->w_off + i * n, ly->w_off + (i + ONLINE_BLOCK) * n);
    }
    for (; i < i1; i++) {
        FN(outer_row)(row, j->in + i, n_in, d, n, nb);
        bad |= FN(fnn_opt_plan_apply)(j->plan, j->params, j->slots, P, j->net->n_decay, row,
                                      ly->w_off + i * n, ly->w_off + (i + 1) * n);
    }
    FN(online_flag)(j, bad);
}

/* The dense layers' updates of one online step, in one job of the team: their tasks are
 * independent (every dZ was formed first), so one join serves them all, where a job per layer
 * joined three times a step in a 3-layer network. ONLINE_JOBS layers at most per job. */
#define ONLINE_JOBS 8
typedef struct FN(online_run) {
    FN(online_job) jobs[ONLINE_JOBS];
    int64_t first[ONLINE_JOBS + 1]; /* jobs[k]'s tasks are [first[k], first[k + 1]) */
    int n;
} FN(online_run);

static void FN(online_run_task)(void *ctx, int64_t task, int worker) {
    FN(online_run) *r = (FN(online_run) *)ctx;
    int k = 0;
    while (task >= r->first[k + 1]) k++;
    FN(online_task)(&r->jobs[k], task - r->first[k], worker);
}

/* Profiling builds only, to compare in one sitting: FNN_ONLINE_JOBS=1 runs a job per layer, as
 * before; FNN_ONLINE_CHUNK sets the parameters per task (16384, 8192 and 4096 measured alike on
 * the 2-core VM). */
static int FN(online_jobs)(void) {
    const int n = (int)fnn_prof_knob("FNN_ONLINE_JOBS", ONLINE_JOBS);
    return n >= 1 && n <= ONLINE_JOBS ? n : ONLINE_JOBS;
}

static int64_t FN(online_chunk)(void) {
    const int64_t n = (int64_t)fnn_prof_knob("FNN_ONLINE_CHUNK", ONLINE_CHUNK);
    return n >= 64 ? n : ONLINE_CHUNK;
}

/* The online step's GEMM form (more than ONLINE_MAX_ROWS rows): each dense layer's weight
 * gradient is the general step's product, in^T dZ on the team, and each block of it is updated
 * by the product's epilogue as soon as its sum is complete, in the cache of the core that
 * formed it (scikit-learn's l2_loss term, c W, added to the block first: epi.l2); the bias
 * after it. The flat gradient is not read back by an update pass of its own, and the step joins
 * its team once a layer instead of once more for the update. The same products with the same
 * blocks: the same bits as the general step. */
static int FN(online_gemm_update)(fnn_team *team, FN(fnn_workspace) *ws, const fnn_net *net,
                                  const FN(fnn_opt_plan) *plan, real *params, real *slots, const real *x,
                                  int64_t nb) {
    int overflowed = 0;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind != FNN_LAYER_DENSE) continue;
        const int64_t n = ly->n_out;
        const real *in = l > 0 ? ws->acts[l - 1] : x, *d = ws->delta[l];
        FN(fnn_gemm_epi) epi;
        memset(&epi, 0, sizeof epi);
        epi.act = FNN_ACT_IDENTITY;
        epi.plan = plan;
        epi.params = params;
        epi.slots = slots;
        epi.n_params = net->n_params;
        epi.n_decay = net->n_decay;
        epi.off = ly->w_off;
        epi.overflowed = &overflowed;
        epi.l2 = ws->l2_on;
        epi.l2c = ws->l2c;
        const int st = FN(fnn_gemm_fused_team)(team, ws->grads + ly->w_off, in, d, ly->n_in, n, nb, n, ly->n_in,
                                               n, 1, 0, 1.0, 0.0, ws->gemm_work, 0, &epi);
        if (st != FNN_OK) return st; /* cannot happen: the general step's call, checked dimensions */
        overflowed |= FN(bias_update)(plan, params, slots, net, ly, d, nb, ws->rows);
    }
    return overflowed ? FNN_EOVERFLOW : FNN_OK; /* the team's join orders the tasks' stores first */
}

static int FN(online_update)(fnn_team *team, FN(fnn_workspace) *ws, const fnn_net *net,
                              const fnn_optim *opt, real *params, real *slots, const real *x,
                              int64_t nb, double lr, int64_t t) {
    FN(fnn_opt_plan) plan;
    FN(fnn_opt_plan_init)(&plan, opt, lr, t);
    if (nb > ONLINE_MAX_ROWS) return FN(online_gemm_update)(team, ws, net, &plan, params, slots, x, nb);
    int overflowed = 0;
    FN(online_run) run;
    const int most = FN(online_jobs)();
    const int64_t chunk = FN(online_chunk)();
    run.n = 0;
    run.first[0] = 0;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_DENSE) {
            FN(online_job) *j = &run.jobs[run.n];
            j->plan = &plan; j->net = net; j->ly = ly; j->ws = ws; j->params = params; j->slots = slots;
            j->in = l > 0 ? ws->acts[l - 1] : x;
            j->delta = ws->delta[l];
            j->nb = nb;
            j->rows_per_task = chunk / ly->n_out > 0 ? chunk / ly->n_out : 1;
            j->row_tasks = (ly->n_in + j->rows_per_task - 1) / j->rows_per_task;
            j->skip_zero = FN(fnn_opt_plan_is_identity_at_zero)(&plan);
            j->overflowed = &overflowed;
            run.first[run.n + 1] = run.first[run.n] + j->row_tasks + 1; /* + 1: the bias */
            run.n++;
        }
        if (run.n > 0 && (run.n == most || l == net->n_layers - 1)) {
            fnn_team_run(fnn_team_size(team) > 1 ? team : NULL, run.first[run.n], FN(online_run_task), &run);
            run.n = 0;
        }
    }
    return overflowed ? FNN_EOVERFLOW : FNN_OK; /* the team's join orders the tasks' stores first */
}

static int FN(apply_update)(fnn_team *team, real *params, real *slots, const fnn_net *net, const fnn_optim *opt,
                            const real *grads, double lr, int64_t t) {
    FN(fnn_opt_plan) plan;
    FN(fnn_opt_plan_init)(&plan, opt, lr, t);
    return FN(fnn_opt_plan_run)(team, &plan, params, slots, net->n_params, net->n_decay, grads) ? FNN_EOVERFLOW
                                                                                                : FNN_OK;
}

/* One optimizer step on a gathered batch; nothing is changed unless it returns FNN_OK, except
 * FNN_EOVERFLOW: the update was applied and left a NaN or an infinity in the parameters or the
 * optimizer state (the counters and totals are left as they were; the caller restores what it
 * saved, or reports it). */
static int FN(step)(fnn_team *team, fnn_train_result *res, real *params, real *slots, real *state,
                    int64_t *counters, FN(fnn_workspace) *ws, const fnn_net *net,
                    const fnn_optim *opt, const real *x, const real *t, const int64_t *labels,
                    const real *sw, int64_t nb, int64_t epoch, int64_t samples0) {
    double loss = 0;
    int64_t correct = 0;
    const int64_t step = counters[FNN_CTR_STEP];
    int online = FN(online_fits)(net, opt, ws, nb);
    int st = FN(forward_backward)(team, &loss, &correct, ws, net, params, x, t, labels, sw, nb, step,
                                  opt->l2_loss, online);
    if (st == ONLINE_UNPROVEN) { /* the general step decides, from the gradient itself */
        online = 0;
        st = FN(forward_backward)(team, &loss, &correct, ws, net, params, x, t, labels, sw, nb, step,
                                  opt->l2_loss, 0);
    }
    if (st != FNN_OK) return st;
    const double lr = fnn_lr_at(opt, epoch, step, samples0);
    if (!isfinite((real)lr)) return FNN_ENONFINITE; /* a rate the dtype cannot hold: no step */
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind == FNN_LAYER_BATCHNORM) {
            const real *s = ws->stats[l];
            FN(fnn_batchnorm_running)(state + ly->s_off, state + ly->s_off + ly->n_out, s,
                                      s + ly->n_out, nb, ly->n_out, ly->momentum);
        }
    }
    FNN_MARK(FNN_PH_REST, 0);
    if (online)
        st = FN(online_update)(team, ws, net, opt, params, slots, x, nb, lr, step + 1);
    else
        st = FN(apply_update)(team, params, slots, net, opt, ws->grads, lr, step + 1);
    if (st != FNN_OK) return st;
    FNN_MARK(FNN_PH_UPDATE, 0);
    counters[FNN_CTR_STEP] = step + 1;
    counters[FNN_CTR_SAMPLES] += nb;
    const int sk_loss = net->loss == FNN_LOSS_SK_LOG_LOSS || net->loss == FNN_LOSS_SK_BINARY_LOG_LOSS ||
                        net->loss == FNN_LOSS_SK_SQUARED_ERROR || net->loss == FNN_LOSS_SK_POISSON;
    /* scikit-learn's losses: a batch counts by its rows */
    const double wsum = FN(weight_sum)(sk_loss ? NULL : sw, nb);
    res->batches += 1;
    res->samples += nb;
    res->loss_sum += loss * wsum;
    res->weight_sum += wsum;
    res->correct += correct;
    return FNN_OK;
}

/* 1 when the optimizer's scalars are ones its update can run with: finite rates and penalties,
 * decay factors in [0, 1), positive eps. */
static int FN(valid_optim)(const fnn_optim *o) {
    const double nonneg[] = {o->lr, o->l2, o->l1, o->weight_decay, o->l2_loss, o->lr_min, o->power_t};
    for (size_t i = 0; i < sizeof nonneg / sizeof nonneg[0]; i++)
        if (!(nonneg[i] >= 0 && isfinite(nonneg[i]))) return 0;
    const double unit[] = {o->momentum, o->beta1, o->beta2, o->rho};
    for (size_t i = 0; i < sizeof unit / sizeof unit[0]; i++)
        if (!(unit[i] >= 0 && unit[i] < 1)) return 0;
    return o->eps > 0 && isfinite(o->eps) && o->lr_scale > 0 && isfinite(o->lr_scale) &&
           isfinite(o->gamma) && o->gamma >= 0;
}

static int FN(check_net)(const fnn_net *net, const fnn_optim *opt, const FN(fnn_workspace) *ws) {
    if (!ws || ws->n_layers != net->n_layers) return FNN_EINVAL;
    if (opt && (opt->kind < FNN_OPT_SGD || opt->kind > FNN_OPT_RMSPROP)) return FNN_EINVAL;
    if (opt && opt->form != FNN_FORM_TORCH && opt->form != FNN_FORM_SKLEARN) return FNN_EINVAL;
    if (opt && opt->overflow_check != 0 && opt->overflow_check != 1) return FNN_EINVAL;
    if (opt && !FN(valid_optim)(opt)) return FNN_EINVAL;
    return FNN_OK;
}

/* Threads for a call on n rows: a team costs a fork and a join (and, on a busy machine, a wait
 * for a descheduled thread at the join), so calls with little work run on the caller alone. */
static int FN(threads_for)(const fnn_net *net, int64_t n) {
    const double work = (double)n * (double)net->n_params;
    if (work < (double)(1 << 21)) return 1;
    /* a short call after a pause: one thread, rather than wait for a sleeping worker (team.h,
     * fnn_team_recent); a call that follows another closely takes the team */
    return work < FNN_COLD_WORK && !fnn_team_recent() ? 1 : fnn_get_num_threads();
}

/* How many of x[0 .. n) are not 0, counted in 32-bit lanes (a vector compare and subtract). */
FNN_CLONES static double FN(nonzeros)(const real *x, int64_t n) {
    double total = 0;
    for (int64_t i0 = 0; i0 < n; i0 += INT64_C(1) << 30) {
        const int64_t i1 = n - i0 > (INT64_C(1) << 30) ? i0 + (INT64_C(1) << 30) : n;
        int32_t count = 0;
        for (int64_t i = i0; i < i1; i++) count += x[i] != 0;
        total += count;
    }
    return total;
}

/* A prediction's team: as threads_for, and for at most FNN_SKINNY_M rows also when the weights
 * the forward reads are many and another call ended just before (its workers are awake): then
 * its larger products are split across the threads (gemm.c, skinny_split), each reading a share
 * from its own core's cache. The bytes are counted as the skinny products read them, the first
 * layer's rows only where the input is nonzero (an MNIST digit is 80 % zeros). On the 2-core Zen
 * 3 VM (512 KB of L2 a core), 784-256-128-10 float, back-to-back calls: a dense row (912 KB read)
 * 20.2 -> 12.2-12.6 us with the team; an MNIST row (116 nonzero inputs, 250 KB) gained nothing
 * from it (4.4 -> 5.0 us), so it stays on one thread. */
static int FN(predict_threads)(const fnn_net *net, const real *X, int64_t n) {
    const int threads = fnn_get_num_threads();
    if (n > FNN_SKINNY_M || threads < 2) return FN(threads_for)(net, n);
    double bytes = 0;
    for (int64_t l = 0; l < net->n_layers; l++) {
        const fnn_layer *ly = &net->layers[l];
        if (ly->kind != FNN_LAYER_DENSE) continue;
        double rows = (double)n * (double)ly->n_in;
        if (l == 0) /* X is its input: the rows of its weights met by a nonzero input */
            rows = FN(nonzeros)(X, n * ly->n_in);
        bytes += rows * (double)ly->n_out * sizeof(real);
    }
    return bytes >= FNN_SKINNY_TEAM_BYTES && fnn_team_recent() ? threads : FN(threads_for)(net, n);
}

/* The public calls run their body inside a team (team.h): one set of threads per call, shared
 * by every GEMM and update of the call, with no barrier between them. */
typedef struct FN(call) {
    fnn_train_result *res;
    real *params, *slots, *state, *grads, *out;
    int64_t *counters, *perm;
    FN(fnn_workspace) *ws;
    const fnn_net *net;
    const fnn_optim *opt;
    const real *X, *T, *sw;
    const int64_t *labels;
    int64_t n, batch, epoch, step;
    int shuffle, link, check_x;
    fnn_check_fn check;
    void *check_ctx;
    double *loss;
} FN(call);

/* Gathering a batch's rows (scattered over X) is memory-bound: shared by the team, at most 32
 * rows a task, and two tasks a thread at least (rows from memory wait on its latency: the more
 * cores ask at once, the sooner a batch is in). */
typedef struct FN(gather_job) {
    const FN(call) *c;
    const int64_t *rows;
    int64_t nb, per_task;
} FN(gather_job);

#define GATHER_ROWS 32
#define GATHER_MIN_ROWS 4

static void FN(gather_task)(void *ctx, int64_t t, int worker) {
    const FN(gather_job) *g = (const FN(gather_job) *)ctx;
    const FN(call) *c = g->c;
    FN(fnn_workspace) *ws = c->ws;
    const int64_t din = c->net->n_inputs, dout = c->net->n_outputs;
    (void)worker;
    for (int64_t i = t * g->per_task; i < g->nb && i < (t + 1) * g->per_task; i++) {
        const int64_t r = g->rows[i];
        memcpy(ws->x + i * din, c->X + r * din, (size_t)din * sizeof(real));
        if (c->T) memcpy(ws->t + i * dout, c->T + r * dout, (size_t)dout * sizeof(real));
        if (c->labels) ws->labels[i] = c->labels[r];
        if (c->sw) ws->sw[i] = c->sw[r];
    }
}

static int FN(epoch_body)(fnn_team *team, void *ctx) {
    const FN(call) *c = (const FN(call) *)ctx;
    const fnn_net *net = c->net;
    FN(fnn_workspace) *ws = c->ws;
    const int64_t n = c->n, batch = c->batch;
    int64_t *perm = c->perm;
    FNN_MARK_BEGIN();
    if (c->shuffle == FNN_ORDER_SHUFFLE)
        fnn_shuffle(perm, fnn_rng_key(net->seed, FNN_RNG_SHUFFLE, (uint64_t)c->epoch), n);
    else if (c->shuffle == FNN_ORDER_IDENTITY)
        for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* FNN_ORDER_GIVEN: the caller's order, checked by fnn_train_epoch */
    const int64_t samples0 = c->counters[FNN_CTR_SAMPLES];
    const int64_t nt = fnn_team_size(team);
    for (int64_t b = 0, start = 0; start < n; b++, start += batch) {
        const int64_t nb = start + batch <= n ? batch : n - start;
        const int64_t share = (nb + 2 * nt - 1) / (2 * nt);
        FN(gather_job) g = {c, perm + start, nb,
                            share > GATHER_ROWS ? GATHER_ROWS : share < GATHER_MIN_ROWS ? GATHER_MIN_ROWS : share};
        FNN_MARK(FNN_PH_REST, 0);
        fnn_team_run(team, (nb + g.per_task - 1) / g.per_task, FN(gather_task), &g);
        FNN_MARK(FNN_PH_GATHER, 0);
        int st = FN(step)(team, c->res, c->params, c->slots, c->state, c->counters, ws, net, c->opt,
                          ws->x, c->T ? ws->t : NULL, c->labels ? ws->labels : NULL,
                          c->sw ? ws->sw : NULL, nb, c->epoch, samples0);
        if (st != FNN_OK) {
            c->res->bad_batch = b;
            return st;
        }
        if (c->check && c->check(c->check_ctx)) return FNN_EINTR;
    }
    return FNN_OK;
}

/* An epoch of plain SGD's online step (its sparse form: the rows of zero inputs are not touched)
 * on a network so small that a step is a few microseconds: one thread. The team joins several
 * times a step, and under SPARSE_TEAM_WORK multiply-adds a step the second core brought less than
 * the joins cost (2-core Zen 5 VM, batch 1, 784-h1-h2-10, epochs on 1 and 2 threads: 128-64
 * 9.0 and 10.7 ms, 256-128 17.1 and 19.3; 512-256 45.8 and 45.6, 1024-1024 138 and 110; batch
 * 2 of 256-128: 20.1 and 18.3). Adam and momentum update every parameter each step: they keep
 * the team (batch 1 of 256-128 with Adam: 139 ms on 1 thread, 96 on 2). Profiling builds:
 * FNN_SPARSE_ONE_THREAD=0 keeps the team. */
#define SPARSE_TEAM_WORK ((double)(1 << 18))
static int FN(sparse_epoch)(const fnn_net *net, const fnn_optim *opt, const FN(fnn_workspace) *ws, int64_t batch) {
    if (!(int)fnn_prof_knob("FNN_SPARSE_ONE_THREAD", 1) || batch > ONLINE_MAX_ROWS ||
        (double)batch * (double)net->n_params >= SPARSE_TEAM_WORK || !FN(online_fits)(net, opt, ws, batch))
        return 0;
    FN(fnn_opt_plan) plan;
    FN(fnn_opt_plan_init)(&plan, opt, opt->lr, 1);
    return FN(fnn_opt_plan_is_identity_at_zero)(&plan);
}

int FN(fnn_train_epoch)(fnn_train_result *res, real *params, real *slots, real *state,
                        int64_t *counters, int64_t *perm, FN(fnn_workspace) *ws,
                        const fnn_net *net, const fnn_optim *opt, const real *X, const real *T,
                        const int64_t *labels, const real *sw, int64_t n, int64_t batch,
                        int shuffle, int64_t epoch, fnn_check_fn check, void *ctx) {
    memset(res, 0, sizeof *res);
    res->bad_batch = -1;
    int st = FN(check_net)(net, opt, ws);
    if (st != FNN_OK) return st;
    if (batch < 1 || batch > ws->batch || n < 0) return FNN_EINVAL;
    if (shuffle != FNN_ORDER_IDENTITY && shuffle != FNN_ORDER_SHUFFLE && shuffle != FNN_ORDER_GIVEN)
        return FNN_EINVAL;
    if (shuffle == FNN_ORDER_GIVEN) /* one pass over n integers: nothing next to an epoch */
        for (int64_t i = 0; i < n; i++)
            if (perm[i] < 0 || perm[i] >= n) return FNN_EINVAL;
    FN(call) c;
    memset(&c, 0, sizeof c);
    c.res = res; c.params = params; c.slots = slots; c.state = state; c.counters = counters;
    c.perm = perm; c.ws = ws; c.net = net; c.opt = opt; c.X = X; c.T = T; c.labels = labels;
    c.sw = sw; c.n = n; c.batch = batch; c.shuffle = shuffle; c.epoch = epoch; c.check = check;
    c.check_ctx = ctx;
    const int threads = FN(sparse_epoch)(net, opt, ws, batch) ? 1 : fnn_get_num_threads();
    return fnn_with_team(threads, FN(epoch_body), &c);
}

static int FN(step_body)(fnn_team *team, void *ctx) {
    const FN(call) *c = (const FN(call) *)ctx;
    FNN_MARK_BEGIN();
    int st = FN(step)(team, c->res, c->params, c->slots, c->state, c->counters, c->ws, c->net,
                      c->opt, c->X, c->T, c->labels, c->sw, c->n, c->epoch,
                      c->counters[FNN_CTR_SAMPLES]);
    if (st != FNN_OK) c->res->bad_batch = 0;
    return st;
}

int FN(fnn_train_step)(fnn_train_result *res, real *params, real *slots, real *state,
                       int64_t *counters, FN(fnn_workspace) *ws, const fnn_net *net,
                       const fnn_optim *opt, const real *X, const real *T, const int64_t *labels,
                       const real *sw, int64_t n, int64_t epoch) {
    memset(res, 0, sizeof *res);
    res->bad_batch = -1;
    int st = FN(check_net)(net, opt, ws);
    if (st != FNN_OK) return st;
    if (n < 1 || n > ws->batch) return FNN_EINVAL;
    FN(call) c;
    memset(&c, 0, sizeof c);
    c.res = res; c.params = params; c.slots = slots; c.state = state; c.counters = counters;
    c.ws = ws; c.net = net; c.opt = opt; c.X = X; c.T = T; c.labels = labels; c.sw = sw; c.n = n;
    c.epoch = epoch;
    return fnn_with_team(FN(threads_for)(net, n), FN(step_body), &c);
}

static int FN(gradient_body)(fnn_team *team, void *ctx) {
    const FN(call) *c = (const FN(call) *)ctx;
    int st = FN(forward_backward)(team, c->loss, NULL, c->ws, c->net, c->params, c->X, c->T,
                                  c->labels, c->sw, c->n, c->step, 0.0, 0);
    if (st == FNN_OK || st == FNN_ENONFINITE)
        memcpy(c->grads, c->ws->grads, (size_t)c->net->n_params * sizeof(real));
    return st;
}

int FN(fnn_gradient)(double *loss, real *grads, const real *params, FN(fnn_workspace) *ws,
                     const fnn_net *net, const real *X, const real *T, const int64_t *labels,
                     const real *sw, int64_t n, int64_t step) {
    int st = FN(check_net)(net, NULL, ws);
    if (st != FNN_OK) return st;
    if (n < 1 || n > ws->batch) return FNN_EINVAL;
    FN(call) c;
    memset(&c, 0, sizeof c);
    c.loss = loss; c.grads = grads; c.params = (real *)params; c.ws = ws; c.net = net; c.X = X;
    c.T = T; c.labels = labels; c.sw = sw; c.n = n; c.step = step;
    return fnn_with_team(FN(threads_for)(net, n), FN(gradient_body), &c);
}

/* The loss's link (or a copy) of a chunk's outputs, rows [r0, r1). */
static void FN(link_rows)(const FN(call) *c, real *o, const real *z, int64_t r0, int64_t r1) {
    const int64_t dout = c->net->n_outputs, nb = r1 - r0;
    const int loss = c->net->loss;
    o += r0 * dout;
    z += r0 * dout;
    if (c->link && (loss == FNN_LOSS_SOFTMAX_XENT || loss == FNN_LOSS_SK_LOG_LOSS))
        FN(fnn_softmax_forward)(o, z, nb, dout);
    else if (c->link && (loss == FNN_LOSS_SIGMOID_BCE || loss == FNN_LOSS_SK_BINARY_LOG_LOSS))
        FN(fnn_sigmoid_forward)(o, z, nb * dout);
    else if (c->link && loss == FNN_LOSS_SK_POISSON)
        for (int64_t i = 0; i < nb * dout; i++) o[i] = (real)exp((double)z[i]);
    else
        memcpy(o, z, (size_t)(nb * dout) * sizeof(real));
}

/* The link of a chunk is row by row: shared by the team in slices of LINK_ROWS rows. */
#define LINK_ROWS 128
typedef struct FN(link_job) {
    const FN(call) *c;
    real *o;
    const real *z;
    int64_t nb;
} FN(link_job);

static void FN(link_task)(void *ctx, int64_t t, int worker) {
    const FN(link_job) *j = (const FN(link_job) *)ctx;
    const int64_t r0 = t * LINK_ROWS, r1 = r0 + LINK_ROWS < j->nb ? r0 + LINK_ROWS : j->nb;
    (void)worker;
    FN(link_rows)(j->c, j->o, j->z, r0, r1);
}

static int FN(predict_body)(fnn_team *team, void *ctx) {
    const FN(call) *c = (const FN(call) *)ctx;
    const fnn_net *net = c->net;
    FN(fnn_workspace) *ws = c->ws;
    const int64_t din = net->n_inputs, dout = net->n_outputs;
    FNN_MARK_BEGIN();
    for (int64_t start = 0, nb; start < c->n; start += nb) {
        /* chunks of ws->batch rows, but never a last one of FNN_SKINNY_M rows or fewer after a
         * full one (the chunk before it gives up rows): then each row's bits do not depend on
         * the chunk size, which the Python layer sets from the thread count */
        const int64_t left = c->n - start;
        nb = left <= ws->batch ? left
             : left - ws->batch <= FNN_SKINNY_M && ws->batch > 2 * FNN_SKINNY_M ? ws->batch - FNN_SKINNY_M
             : ws->batch;
        const real *x = c->X + start * din;
        /* check_x: through the first layer's output where forward can, so that a chunk of X is
         * read from memory once, not twice (predict_proba of 10,000 MNIST rows, 784-256-128-10,
         * 2-core Zen 5 VM, alternating processes: 11.3-11.4 -> 10.9-11.1 ms); only a nonfinite
         * output, which a finite x can give too (an overflow, a weight set to NaN by hand),
         * sends x to the check itself */
        _Atomic int suspect = 0;
        const int fused_check = c->check_x && FN(checks_x)(net);
        if (c->check_x && !fused_check && !FN(finite_rows)(team, x, nb * din)) return FNN_ENONFINITE;
        int st = FN(forward)(team, ws, net, c->params, c->state, x, nb, 0, 0, fused_check ? &suspect : NULL);
        if (st != FNN_OK) return st;
        if (atomic_load_explicit(&suspect, memory_order_relaxed) && !FN(finite_rows)(team, x, nb * din))
            return FNN_ENONFINITE; /* the team's join ordered the flag */
        FN(link_job) j = {c, c->out + start * dout, ws->acts[net->n_layers - 1], nb};
        fnn_team_run(team, (nb + LINK_ROWS - 1) / LINK_ROWS, FN(link_task), &j);
        if (start + nb < c->n && c->check && c->check(c->check_ctx)) return FNN_EINTR;
    }
    return FNN_OK;
}

int FN(fnn_predict)(real *out, const real *params, const real *state, FN(fnn_workspace) *ws,
                    const fnn_net *net, const real *X, int64_t n, int link, int check_x,
                    fnn_check_fn check, void *ctx) {
    int st = FN(check_net)(net, NULL, ws);
    if (st != FNN_OK) return st;
    if (n < 0) return FNN_EINVAL;
    FN(call) c;
    memset(&c, 0, sizeof c);
    c.out = out; c.params = (real *)params; c.state = (real *)state; c.ws = ws; c.net = net;
    c.X = X; c.n = n; c.link = link; c.check_x = check_x; c.check = check; c.check_ctx = ctx;
    return fnn_with_team(FN(predict_threads)(net, X, n), FN(predict_body), &c);
}

#undef REAL_MAX
#undef REAL_EPS
#undef REAL_EXPO
#undef REAL_MAG
#endif
