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
#endif

struct fnn_team {
    int size;
    _Atomic uint64_t ticket; /* generation << 32 | next task index */
    _Atomic int64_t done;    /* tasks finished in the current job */
    _Atomic int quit;
    fnn_task_fn fn;
    void *ctx;
    int64_t n_tasks;
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
        if ((tk >> 32) != (gen & 0xFFFFFFFFu) || (int64_t)(tk & 0xFFFFFFFFu) >= n) return;
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
    /* publish: fields first, then the new generation with next = 0 (release) */
    const uint64_t gen = ((atomic_load_explicit(&t->ticket, memory_order_relaxed) >> 32) + 1) & 0xFFFFFFFFu;
    t->fn = fn;
    t->ctx = ctx;
    t->n_tasks = n_tasks;
    atomic_store_explicit(&t->done, 0, memory_order_relaxed);
    atomic_store_explicit(&t->ticket, gen << 32, memory_order_release);
    work_on(t, gen, fn, ctx, n_tasks, 0);
    /* only tasks already started by a worker remain: wait for those */
    for (unsigned spins = 0; atomic_load_explicit(&t->done, memory_order_acquire) < n_tasks; spins++) {
        cpu_relax();
#ifdef _OPENMP
        if (spins > 4096) sched_yield();
#endif
    }
}

#ifdef _OPENMP
static void worker_loop(fnn_team *t, int worker) {
    uint64_t seen = atomic_load_explicit(&t->ticket, memory_order_acquire) >> 32;
    unsigned idle = 0;
    for (;;) {
        const uint64_t tk = atomic_load_explicit(&t->ticket, memory_order_acquire);
        const uint64_t gen = tk >> 32;
        if (gen != seen) {
            seen = gen;
            idle = 0;
            /* read the job, then check it is still this generation (seqlock style) */
            fnn_task_fn fn = t->fn;
            void *ctx = t->ctx;
            const int64_t n = t->n_tasks;
            if ((atomic_load_explicit(&t->ticket, memory_order_acquire) >> 32) == gen)
                work_on(t, gen, fn, ctx, n, worker);
            continue;
        }
        if (atomic_load_explicit(&t->quit, memory_order_acquire)) return;
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

int fnn_with_team(int n_threads, int (*body)(fnn_team *, void *), void *ctx) {
    fnn_team team;
    team.size = 1;
    atomic_init(&team.ticket, 0);
    atomic_init(&team.done, 0);
    atomic_init(&team.quit, 0);
    team.fn = NULL;
    team.ctx = NULL;
    team.n_tasks = 0;
#ifdef _OPENMP
    if (n_threads > 1) {
        int result = FNN_OK;
        team.size = n_threads;
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
        return result;
    }
#else
    (void)n_threads;
#endif
    return body(&team, ctx);
}
