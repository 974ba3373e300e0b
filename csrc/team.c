/* team.c — see team.h. One job at a time per team; a job is (fn, ctx, n_tasks) plus a ticket
 * word holding (generation << 32 | next task), claimed with compare-and-swap so that a worker
 * still holding an old job can never take a task of a newer one. */
#define _POSIX_C_SOURCE 200809L /* sched_yield, nanosleep under -std=c11 */
#include "team.h"
#include <stdatomic.h>
#include <stddef.h>
#include "fastnn.h"
#ifdef _OPENMP
#include <omp.h>
#include <sched.h>
#include <time.h>
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <signal.h>
#define FNN_FORK_GUARD 1
#endif
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

/* Denormals: every thread of a team computes with flush-to-zero and denormals-are-zero (as XLA
 * does). Adam's moments of never-updated weights (MNIST's border pixels) decay into the denormal
 * range after a few hundred steps, where x86 arithmetic is ~100x slower; flushing changes results
 * only below 1.2e-38 (float) / 2.2e-308 (double). The caller's mode is restored on return. */
typedef struct { unsigned int csr; } fp_mode;

static fp_mode fp_enter(void) {
    fp_mode m = {0};
#if defined(__x86_64__) || defined(_M_X64)
    m.csr = _mm_getcsr();
    _mm_setcsr(m.csr | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
#endif
    return m;
}

static void fp_leave(fp_mode m) {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_setcsr(m.csr);
#else
    (void)m;
#endif
}

/* Publishing a job is a seqlock: close the finished generation (next = CLOSED, so nobody can
 * claim under it any more), release fence, write the job fields, then store the new generation
 * with next = 0 (release). A worker reads the generation, the fields, then (acquire fence) the
 * ticket again: if it read fields of a newer job, it sees the closed or a newer ticket and claims
 * nothing; claims themselves are CAS on the ticket, so they name their generation. */
#define CLOSED 0xFFFFFFFFu

struct fnn_team {
    int size;
    _Atomic uint64_t ticket; /* generation << 32 | next task index */
    _Atomic int64_t done;    /* tasks finished in the current job */
    _Atomic int quit;
    _Atomic(fnn_task_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int64_t n_tasks;
};

int fnn_team_size(const fnn_team *team) { return team ? team->size : 1; }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Take and run tasks of generation `gen` until none is left. */
static void work_on(fnn_team *t, uint64_t gen, fnn_task_fn fn, void *ctx, int64_t n, int worker) {
    uint64_t tk = atomic_load_explicit(&t->ticket, memory_order_acquire);
    for (;;) {
        const uint64_t next = tk & 0xFFFFFFFFu;
        if ((tk >> 32) != (gen & 0xFFFFFFFFu) || next == CLOSED || (int64_t)next >= n) return;
        if (atomic_compare_exchange_weak_explicit(&t->ticket, &tk, tk + 1, memory_order_acq_rel,
                                                  memory_order_acquire)) {
            fn(ctx, (int64_t)(tk & 0xFFFFFFFFu), worker);
            atomic_fetch_add_explicit(&t->done, 1, memory_order_release);
            tk = atomic_load_explicit(&t->ticket, memory_order_acquire);
        }
    }
}

void fnn_team_run(fnn_team *t, int64_t n_tasks, fnn_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (!t || t->size <= 1 || n_tasks == 1) {
        for (int64_t i = 0; i < n_tasks; i++) fn(ctx, i, 0);
        return;
    }
    const uint64_t old = atomic_load_explicit(&t->ticket, memory_order_relaxed) >> 32;
    const uint64_t gen = (old + 1) & 0xFFFFFFFFu;
    atomic_store_explicit(&t->ticket, (old << 32) | CLOSED, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&t->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&t->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&t->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    atomic_store_explicit(&t->ticket, gen << 32, memory_order_release);
    work_on(t, gen, fn, ctx, n_tasks, 0);
    /* only tasks already started by a worker remain: wait for those */
    for (unsigned spins = 0; atomic_load_explicit(&t->done, memory_order_acquire) < n_tasks; spins++) {
        cpu_relax();
#ifdef _OPENMP
        if (spins > 4096) sched_yield();
#else
        (void)spins; /* no workers without OpenMP: the loop ends at once */
#endif
    }
}

#ifdef _OPENMP
static void worker_loop(fnn_team *t, int worker) {
    const fp_mode saved = fp_enter();
    uint64_t seen = 0; /* a team starts at generation 0: join whatever job is already out */
    unsigned idle = 0;
    for (;;) {
        const uint64_t tk = atomic_load_explicit(&t->ticket, memory_order_acquire);
        const uint64_t gen = tk >> 32;
        if (gen != seen) {
            seen = gen;
            idle = 0;
            /* read the job, then check it is still this generation (seqlock) */
            fnn_task_fn fn = atomic_load_explicit(&t->fn, memory_order_relaxed);
            void *ctx = atomic_load_explicit(&t->ctx, memory_order_relaxed);
            const int64_t n = atomic_load_explicit(&t->n_tasks, memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if ((atomic_load_explicit(&t->ticket, memory_order_relaxed) >> 32) == gen)
                work_on(t, gen, fn, ctx, n, worker);
            continue;
        }
        if (atomic_load_explicit(&t->quit, memory_order_acquire)) {
            fp_leave(saved);
            return;
        }
        /* wait: spin ~50 us, then yield, then nap, so an idle team costs little CPU */
        if (++idle < 20000) {
            cpu_relax();
        } else if (idle < 40000) {
            sched_yield();
        } else {
            struct timespec nap = {0, 50000};
            nanosleep(&nap, NULL);
        }
    }
}
#endif

#ifdef FNN_FORK_GUARD
/* A process forked after an OpenMP team ran: the child has one thread, but GNU OpenMP's pool
 * still counts the parent's, and the child's first parallel region waits for them for ever
 * (a multiprocessing "fork" pool that predicts would hang). Such a child runs every team on its
 * calling thread: results never depend on the thread count. */
static pthread_once_t fork_guard_once = PTHREAD_ONCE_INIT;
static volatile sig_atomic_t forked_after_team = 0;
static void child_after_fork(void) { forked_after_team = 1; }
static void register_fork_guard(void) { pthread_atfork(NULL, NULL, child_after_fork); }
#endif

/* Calls of this process: when the last one ended (CLOCK_MONOTONIC ns), and how many ran a team of
 * several threads. A worker that has slept since its last team wakes slowly: the call's end
 * waits for it (OpenMP's region barrier), and on a VM whose idle vCPU is halted that took a
 * median 5.8 ms on the 2-core Zen 3 VM, where a prediction of 16 MNIST rows takes 0.12 ms on two
 * threads and 0.6 on one. GNU OpenMP's workers spin a while after a region (milliseconds) before
 * they sleep: calls that follow each other closely find them awake. */
#ifdef _OPENMP
static _Atomic int64_t last_call_end = INT64_MIN / 2;
static _Atomic int64_t teams_started = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif

int fnn_team_recent(void) {
#ifdef _OPENMP
    return now_ns() - atomic_load_explicit(&last_call_end, memory_order_relaxed) < FNN_TEAM_RECENT_NS;
#else
    return 1;
#endif
}

int64_t fnn_teams_started(void) {
#ifdef _OPENMP
    return atomic_load_explicit(&teams_started, memory_order_relaxed);
#else
    return 0;
#endif
}

static int with_team(int n_threads, int (*body)(fnn_team *, void *), void *ctx);

int fnn_with_team(int n_threads, int (*body)(fnn_team *, void *), void *ctx) {
    const int result = with_team(n_threads, body, ctx);
#ifdef _OPENMP
    atomic_store_explicit(&last_call_end, now_ns(), memory_order_relaxed);
#endif
    return result;
}

static int with_team(int n_threads, int (*body)(fnn_team *, void *), void *ctx) {
    fnn_team team;
    team.size = 1;
    atomic_init(&team.ticket, 0);
    atomic_init(&team.done, 0);
    atomic_init(&team.quit, 0);
    atomic_init(&team.fn, NULL);
    atomic_init(&team.ctx, NULL);
    atomic_init(&team.n_tasks, 0);
    const fp_mode saved = fp_enter();
    int result = FNN_OK;
#ifdef FNN_FORK_GUARD
    if (n_threads > 1) {
        pthread_once(&fork_guard_once, register_fork_guard); /* before the first team starts */
        if (forked_after_team) n_threads = 1;
    }
#endif
#ifdef _OPENMP
    if (n_threads > 1) {
        team.size = n_threads;
        atomic_fetch_add_explicit(&teams_started, 1, memory_order_relaxed);
#pragma omp parallel num_threads(n_threads)
        {
            if (omp_get_thread_num() == 0) {
                team.size = omp_get_num_threads(); /* the runtime may give fewer */
                result = body(&team, ctx);
                atomic_store_explicit(&team.quit, 1, memory_order_release);
            } else {
                worker_loop(&team, omp_get_thread_num());
            }
        }
        fp_leave(saved);
        return result;
    }
#else
    (void)n_threads;
#endif
    result = body(&team, ctx);
    fp_leave(saved);
    return result;
}
