/* fastnn.h — the C API of fastnn's kernels and training engine.
 *
 * Conventions (every function below follows them):
 *   - row-major matrices, explicit leading dimensions, int64_t sizes;
 *   - arguments are outputs, then inputs, then sizes, then strides, then scalars;
 *   - every kernel exists for float (suffix _f32) and double (suffix _f64): this header declares
 *     the type-generic prototypes once in fastnn_api.h and instantiates them twice;
 *   - `_forward` overwrites its output; `_backward` overwrites input gradients (which may alias the
 *     upstream gradient where stated) and ADDS into parameter gradients (dW, db, dgamma, dbeta);
 *   - functions that can fail return an fnn_status; nothing here prints, exits or allocates inside
 *     a hot loop.
 */
#ifndef FASTNN_H
#define FASTNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum fnn_status {
    FNN_OK = 0,
    FNN_EINVAL = -1,      /* bad argument (size, enum value) */
    FNN_ENOMEM = -2,      /* allocation failed */
    FNN_EINTR = -3,       /* interrupted by the caller's check callback */
    FNN_ENONFINITE = -4,  /* a loss or gradient was NaN or infinite */
    FNN_EUNSUPPORTED = -5, /* kernel not available on this CPU / build */
    FNN_EOVERFLOW = -6     /* a training step's update left a NaN or an infinity in the parameters
                              or the optimizer state; that update was applied */
} fnn_status;

/* Activations. Derivatives are written from the activation's OUTPUT y (scikit-learn style). */
typedef enum fnn_activation {
    FNN_ACT_IDENTITY = 0,
    FNN_ACT_RELU = 1,
    FNN_ACT_LEAKY_RELU = 2,
    FNN_ACT_SIGMOID = 3,
    FNN_ACT_TANH = 4,
    FNN_ACT_SOFTMAX = 5
} fnn_activation;

typedef enum fnn_loss {
    FNN_LOSS_SOFTMAX_XENT = 0, /* integer labels, softmax cross-entropy on logits */
    FNN_LOSS_SIGMOID_BCE = 1,  /* targets in [0,1], sigmoid binary cross-entropy on logits */
    FNN_LOSS_MSE = 2,          /* real targets, mean squared error */
    /* scikit-learn's MLP losses (sklearn/neural_network/_base.py, 1.9), link fused as above:
     * per-sample losses SUMMED over outputs, probabilities clipped to [eps, 1 - eps] in the value
     * (eps = machine epsilon of the type), gradient dL/dZ = (link(Z) - T) w_i / sum w. */
    FNN_LOSS_SK_LOG_LOSS = 3,         /* integer labels, softmax, -log clip(p_label) */
    FNN_LOSS_SK_BINARY_LOG_LOSS = 4,  /* targets in [0,1], sigmoid, -sum_j t log p + (1-t) log(1-p) */
    FNN_LOSS_SK_SQUARED_ERROR = 5,    /* real targets, identity; value 0.5 mean_j (z - t)^2 but
                                         gradient (z - t) w_i / sum w, as scikit-learn's (its
                                         gradient is that of 0.5 sum_j: they differ by n outputs) */
    FNN_LOSS_SK_POISSON = 6           /* targets >= 0, exp link p = e^z;
                                         half Poisson deviance sum_j t log(t/p) - t + p */
    /* (and a training call's RESULT counts batches by rows under these: see fnn_train_result) */
} fnn_loss;

typedef enum fnn_layer_kind {
    FNN_LAYER_DENSE = 0,      /* y = act(x @ W + b), W is (n_in, n_out) */
    FNN_LAYER_ACTIVATION = 1, /* y = act(x) */
    FNN_LAYER_DROPOUT = 2,    /* inverted dropout, identity at inference */
    FNN_LAYER_BATCHNORM = 3   /* per-feature batch normalisation with learned scale/shift */
} fnn_layer_kind;

typedef enum fnn_optimizer {
    FNN_OPT_SGD = 0,    /* momentum, nesterov */
    FNN_OPT_ADAM = 1,   /* AdamW when weight_decay > 0 (decoupled) */
    FNN_OPT_RMSPROP = 2
} fnn_optimizer;

/* Form of the optimizer updates (fnn_optim.form). */
typedef enum fnn_optim_form {
    FNN_FORM_TORCH = 0,  /* PyTorch's: v = mu v + g; p -= lr v. Adam: eps outside the corrected sqrt(v) */
    FNN_FORM_SKLEARN = 1 /* scikit-learn's (_stochastic_optimizers.py): v = mu v - lr g;
                            p += nesterov ? mu v - lr g : v. Adam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t),
                            p -= lr_t m / (sqrt(v) + eps) */
} fnn_optim_form;

/* Row order of an epoch (the `shuffle` argument of fnn_train_epoch). */
typedef enum fnn_order {
    FNN_ORDER_IDENTITY = 0, /* rows 0 .. n-1; perm is overwritten with them */
    FNN_ORDER_SHUFFLE = 1,  /* the engine's shuffle of the epoch (below); perm is overwritten */
    FNN_ORDER_GIVEN = 2     /* the caller's perm[0:n], read only: every entry must be in [0, n)
                               (checked before anything changes: FNN_EINVAL otherwise) */
} fnn_order;

typedef enum fnn_schedule {
    FNN_LR_CONSTANT = 0,    /* lr */
    FNN_LR_STEP = 1,        /* lr * gamma^floor(epoch / step_size) */
    FNN_LR_EXPONENTIAL = 2, /* lr * gamma^epoch */
    FNN_LR_COSINE = 3,      /* lr_min + (lr - lr_min) (1 + cos(pi min(t, T) / T)) / 2, t = step,
                               T = total_steps (T <= 0: lr) */
    FNN_LR_INVSCALING = 4,  /* lr / (samples_seen + 1)^power_t, samples seen before this call */
    FNN_LR_ADAPTIVE = 5     /* lr; the caller lowers lr_scale on plateaus */
} fnn_schedule;
/* fnn_lr_at returns lr_scale times the schedule's rate, whatever the schedule (the caller's
 * ReduceLROnPlateau, or the adaptive schedule, lowers lr_scale). */

/* Random numbers: one counter-based generator (splitmix64's finaliser evaluated at any position).
 *   mix(z)            = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
 *                       z *= 0x94D049BB133111EB; z ^ (z >> 31)
 *   key(seed,kind,ix) = mix(mix(seed + G * (kind + 1)) ^ (ix * 0xD1B54A32D192ED03))
 *   u64(key, ctr)     = mix(key + G * (ctr + 1))            G = 0x9E3779B97F4A7C15
 *   uniform           = (u64 >> 11) * 2^-53, in [0, 1)
 * Streams: shuffle of epoch e uses key(seed, 1, e); dropout of layer l at optimizer step t uses
 * key(seed, 16 + l, t) with ctr = row * width + column.
 * Shuffle is Fisher-Yates: for i = n-1 .. 1: j = u64(key, i) % (i + 1); swap(perm[i], perm[j]). */
#define FNN_RNG_SHUFFLE 1
#define FNN_RNG_DROPOUT 16
uint64_t fnn_rng_key(uint64_t seed, uint64_t kind, uint64_t index);
uint64_t fnn_rng_u64(uint64_t key, uint64_t ctr);
void fnn_rng_uniform(double *out, uint64_t key, uint64_t ctr0, int64_t n);
void fnn_shuffle(int64_t *perm, uint64_t key, int64_t n);

/* A layer of the training engine. Offsets index the flat parameter buffer (params) or the flat
 * state buffer (running statistics of batch norm). */
typedef struct fnn_layer {
    int32_t kind;       /* fnn_layer_kind */
    int32_t activation; /* fnn_activation: applied after a dense layer, or the activation layer */
    int64_t n_in, n_out;
    int64_t w_off, b_off; /* dense: W (n_in x n_out), b (n_out); batchnorm: gamma, beta */
    int64_t s_off;        /* batchnorm: running mean (n_out) then running var (n_out) */
    double alpha;         /* leaky relu slope */
    double rate;          /* dropout probability of dropping a unit */
    double momentum, eps; /* batchnorm: running = (1-momentum) running + momentum batch */
} fnn_layer;

typedef struct fnn_optim {
    int32_t kind; /* fnn_optimizer */
    int32_t nesterov;
    double lr, momentum, beta1, beta2, eps, rho;
    double l2, l1;        /* coupled penalties added to the gradient of params[0:n_decay] */
    double weight_decay;  /* decoupled (AdamW / SGDW): p -= lr * weight_decay * p on params[0:n_decay] */
    int32_t schedule;     /* fnn_schedule */
    double gamma, power_t, lr_min, lr_scale;
    int64_t step_size, total_steps;
    double l2_loss;       /* scikit-learn's alpha: an L2 term of the objective, per batch of
                             sample-weight sum S (its row count without weights):
                             loss += 0.5 l2_loss |W|^2 / S, dL/dW += l2_loss W / S on the weights
                             W = params[0:n_decay], in the reported loss too (S = 0: no term) */
    int32_t form;         /* fnn_optim_form of the sgd and adam updates (rmsprop has one form) */
    int32_t overflow_check; /* 1: a step whose update leaves a NaN or an infinity in the parameters
                               or the optimizer state ends the call with FNN_EOVERFLOW (that step
                               applied; about a tenth of the update's time); 0: not looked for
                               (fit checks the state after each epoch and goes back to its start) */
} fnn_optim;

typedef struct fnn_net {
    int32_t n_layers;
    const fnn_layer *layers;
    int32_t loss;     /* fnn_loss */
    int64_t n_inputs, n_outputs;
    int64_t n_params; /* weights first: params[0:n_decay] are the decayed weights */
    int64_t n_decay;
    int64_t n_state;  /* running statistics */
    uint64_t seed;
} fnn_net;

/* Counters the engine advances, owned by the caller: [0] optimizer steps taken, [1] samples seen. */
enum { FNN_CTR_STEP = 0, FNN_CTR_SAMPLES = 1, FNN_N_COUNTERS = 2 };

/* Result of a training call. */
typedef struct fnn_train_result {
    int64_t batches;   /* batches fully applied */
    int64_t samples;   /* samples in those batches */
    double loss_sum;   /* sum over applied batches of (batch mean loss * batch weight sum) */
    double weight_sum; /* sum of sample weights over applied batches */
    int64_t correct;   /* classification hits (argmax for softmax, per output for sigmoid) */
    int64_t bad_batch; /* FNN_ENONFINITE: index of the batch whose loss/gradient was not finite */
} fnn_train_result;
/* Under scikit-learn's losses (FNN_LOSS_SK_*) a batch counts by its rows, not its weight sum, in
 * loss_sum and weight_sum: loss_sum / weight_sum is scikit-learn's loss_ (accumulated_loss / n),
 * sample weights acting inside each batch only. */

/* Check callback, called between batches (training) or chunks (inference): return nonzero to
 * stop with FNN_EINTR. */
typedef int (*fnn_check_fn)(void *ctx);

double fnn_lr_at(const fnn_optim *opt, int64_t epoch, int64_t step, int64_t samples_seen);

/* CPU features and the GEMM kernel table (dispatch.c). */
const char *fnn_arch_name(void);           /* kernel in use: "avx512", "avx2", "ref" */
int fnn_arch_available(const char *name);  /* 1 when that kernel can run on this CPU */
int fnn_set_arch(const char *name);        /* FNN_OK or FNN_EUNSUPPORTED; not while GEMMs run */
const char *fnn_arch_list(void);           /* space-separated kernels compiled in */
int fnn_arch_request(void); /* FASTNN_ARCH: FNN_OK (unset, or used), FNN_EINVAL (names no kernel),
                               FNN_EUNSUPPORTED (a kernel this CPU cannot run); ignored unless FNN_OK */
int fnn_openmp_enabled(void);
int fnn_get_num_threads(void);            /* threads the calling thread's next call uses */
int fnn_max_threads(void);             /* fixed upper bound: omp_get_num_procs() */
void fnn_set_num_threads(int n);           /* process-wide count; n <= 0: the usable CPUs */
void fnn_set_cpu_cap(int n);               /* CPUs this process may use (affinity, cgroup quota):
                                              caps the default count; 0: omp_get_num_procs() */
int fnn_get_cpu_cap(void);                 /* the usable CPUs the default count is capped at */
int fnn_profile_read(double *out, int size, int reset); /* profile.h: phases, or 0 unless built to profile */
int fnn_get_thread_limit(void);            /* the calling thread's own cap, 0: none */
int64_t fnn_teams_started(void);           /* calls so far that ran on several threads (for tests) */
void fnn_set_thread_limit(int n);

#define FNN_SELF "fastnn_api.h" /* its prototypes for float (_f32) and double (_f64) */
#include "instantiate.h"
#undef FNN_SELF

#ifdef __cplusplus
}
#endif
#endif /* FASTNN_H */
