/* team.h — work sharing for the kernels, built on OpenMP threads but without OpenMP barriers
 * between jobs.
 *
 * fnn_with_team(n, body, ctx) runs body(team, ctx) on the calling thread while n - 1 OpenMP
 * threads wait for jobs. fnn_team_run(team, n_tasks, fn, ctx) publishes a job of independent
 * tasks: the caller takes tasks itself, idle workers take the others, and the call returns once
 * every task is done. The caller never waits for a worker that has not started a task, so on a
 * busy machine (a worker descheduled by the OS) the caller simply does more of the work itself
 * instead of stalling at a barrier; on a quiet one the workers spin briefly between jobs and pick
 * up the next job within microseconds. Without OpenMP, or with n == 1, tasks run inline.
 * In a process forked after a team ran, every team runs on its calling thread (GNU OpenMP cannot
 * start one there). Task results must not depend on which thread runs a task (tasks own disjoint
 * outputs and `worker` only selects scratch memory), so results never depend on the thread count. */
#ifndef FASTNN_TEAM_H
#define FASTNN_TEAM_H
#include <stdint.h>

typedef struct fnn_team fnn_team;
typedef void (*fnn_task_fn)(void *ctx, int64_t task, int worker);

/* Run body(team, ctx) with up to n_threads threads; returns body's result. */
int fnn_with_team(int n_threads, int (*body)(fnn_team *team, void *ctx), void *ctx);
/* Run fn(ctx, t, worker) for t in [0, n_tasks); team may be NULL (inline, worker 0). */
void fnn_team_run(fnn_team *team, int64_t n_tasks, fnn_task_fn fn, void *ctx);
/* Threads in the team (1 for NULL): the size of per-worker scratch to provide. */
int fnn_team_size(const fnn_team *team);
/* 1 when a call of fnn_with_team ended within the last FNN_TEAM_RECENT_NS (or without OpenMP):
 * a team started now finds its workers still awake. A short call started after a pause runs on
 * one thread (network.c, threads_for): waking a sleeping worker can cost milliseconds. */
#define FNN_TEAM_RECENT_NS 2000000
int fnn_team_recent(void);

#endif
