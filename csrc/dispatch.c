/* dispatch.c — pick the GEMM kernel table entry once, newest ISA first.
 * FASTNN_ARCH=ref|avx2|avx512 overrides the choice. A name that is no kernel (names are exact:
 * "AVX2" is none) or a kernel the CPU cannot run is ignored, and fnn_arch_request() says which,
 * so that the Python layer can warn (C never prints).
 * The choice is made when the extension is imported (fnn_arch_name is called then), before any
 * thread can race on it; fnn_set_arch switches it for tests and must not run beside a GEMM.
 * Threads: fnn_set_num_threads sets the count every fastnn parallel region uses, whatever Python
 * thread calls it (unlike omp_set_num_threads, which is per calling thread). */
#include <stdlib.h>
#include <string.h>
#include "fastnn.h"
#include "gemm_kernels.h"
#include "profile.h"
#ifdef _OPENMP
#include <omp.h>
#endif

const fnn_arch *const fnn_all_archs[] = {
#ifdef FNN_HAVE_X86_KERNELS
    &fnn_arch_avx512,
    &fnn_arch_avx2,
#endif
    &fnn_arch_ref,
    NULL,
};

static const fnn_arch *active = NULL;
static int request = FNN_OK; /* what became of FASTNN_ARCH: see fnn_arch_request */
static int n_threads = 0; /* 0: not set yet */

#ifdef FNN_PROFILE
/* A profiling build's knobs FNN_MC, FNN_KC, FNN_NC (float) and FNN_DMC, FNN_DKC, FNN_DNC (double):
 * the picked kernel's cache blocks, read once when it is picked, to compare them on a machine in
 * one sitting (a process per setting). fnn_gemm_work_size_for sizes for the active entry too. */
static fnn_arch tuned;
static int64_t block_knob(const char *name, int64_t dflt, int64_t unit) {
    const int64_t v = (int64_t)fnn_prof_knob(name, 0);
    return v <= 0 ? dflt : (v + unit - 1) / unit * unit;
}
static const fnn_arch *tune(const fnn_arch *a) {
    if (!a) return a;
    tuned = *a;
    tuned.f32.mc = block_knob("FNN_MC", a->f32.mc, a->f32.mr);
    tuned.f32.kc = block_knob("FNN_KC", a->f32.kc, 1);
    tuned.f32.nc = block_knob("FNN_NC", a->f32.nc, a->f32.nr);
    tuned.f64.mc = block_knob("FNN_DMC", a->f64.mc, a->f64.mr);
    tuned.f64.kc = block_knob("FNN_DKC", a->f64.kc, 1);
    tuned.f64.nc = block_knob("FNN_DNC", a->f64.nc, a->f64.nr);
    return &tuned;
}
#define FNN_TUNED(a) tune(a)
#else
#define FNN_TUNED(a) (a)
#endif

static int runnable(const fnn_arch *a) { return a->available == NULL || a->available(); }

static const fnn_arch *find(const char *name) {
    for (const fnn_arch *const *a = fnn_all_archs; *a; a++)
        if (strcmp((*a)->name, name) == 0) return *a;
    return NULL;
}

const fnn_arch *fnn_active_arch(void) {
    if (active) return active;
    const char *env = getenv("FASTNN_ARCH");
    const fnn_arch *pick = NULL;
    if (env && *env) {
        pick = find(env);
        request = !pick ? FNN_EINVAL : runnable(pick) ? FNN_OK : FNN_EUNSUPPORTED;
        if (request != FNN_OK) pick = NULL;
    }
    if (!pick)
        for (const fnn_arch *const *a = fnn_all_archs; *a && !pick; a++)
            if (runnable(*a)) pick = *a;
    active = FNN_TUNED(pick);
    return active;
}

const char *fnn_arch_name(void) { return fnn_active_arch()->name; }

int fnn_arch_request(void) {
    fnn_active_arch();
    return request;
}

int fnn_arch_available(const char *name) {
    const fnn_arch *a = find(name);
    return a != NULL && runnable(a);
}

int fnn_set_arch(const char *name) {
    const fnn_arch *a = find(name);
    if (!a || !runnable(a)) return FNN_EUNSUPPORTED;
    active = FNN_TUNED(a);
    return FNN_OK;
}

const char *fnn_arch_list(void) {
    static char buf[128];
    if (!buf[0])
        for (const fnn_arch *const *a = fnn_all_archs; *a; a++) {
            if (buf[0]) strcat(buf, " ");
            strcat(buf, (*a)->name);
        }
    return buf;
}

int fnn_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* Upper bound on threads: GEMM workspaces are sized for it once, so it never changes. */
int fnn_max_threads(void) {
#ifdef _OPENMP
    static int most = 0;
    if (most <= 0) {
        most = omp_get_num_procs();
        if (omp_get_max_threads() > most) most = omp_get_max_threads();
        if (most > 256) most = 256;
        if (most < 1) most = 1;
    }
    return most;
#else
    return 1;
#endif
}

/* The calling thread's own cap (0: none), below the process-wide count: an estimator's n_threads,
 * or a worker's limit, without changing what other threads use. */
#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && !defined(__STDC_NO_THREADS__)
static _Thread_local int thread_limit = 0;
#else
static __thread int thread_limit = 0;
#endif

/* The CPUs this process may use (fastnn/_engine/cpus.py reads the affinity mask and the cgroup
 * quota and sets it when the engine loads; 0 until then: omp_get_num_procs(), which is the
 * affinity mask's count in libgomp). The default count never exceeds it, so OMP_NUM_THREADS=64 in
 * a 2-CPU container runs 2 threads; an explicit fnn_set_num_threads(n) is honoured up to
 * fnn_max_threads(). */
static int cpu_cap = 0;
static int explicit_count = 0; /* fnn_set_num_threads(n > 0) was called */

int fnn_get_cpu_cap(void) {
    int u = 1;
#ifdef _OPENMP
    u = cpu_cap > 0 ? cpu_cap : omp_get_num_procs();
    if (u > fnn_max_threads()) u = fnn_max_threads();
#endif
    return u < 1 ? 1 : u;
}

void fnn_set_cpu_cap(int n) {
    cpu_cap = n > 0 ? n : 0;
    if (!explicit_count) n_threads = 0; /* the default is worked out again on next use */
}

int fnn_get_num_threads(void) {
#ifdef _OPENMP
    if (n_threads <= 0) {
        int n = omp_get_max_threads();
        if (n > fnn_get_cpu_cap()) n = fnn_get_cpu_cap();
        n_threads = n < 1 ? 1 : n;
    }
    return thread_limit > 0 && thread_limit < n_threads ? thread_limit : n_threads;
#else
    return 1;
#endif
}

int fnn_get_thread_limit(void) { return thread_limit; }

void fnn_set_thread_limit(int n) { thread_limit = n > 0 ? n : 0; }

void fnn_set_num_threads(int n) {
    const int most = fnn_max_threads();
    explicit_count = n > 0;
    n_threads = n > 0 ? (n < most ? n : most) : fnn_get_cpu_cap();
}
