/* pool.h: the persistent worker pool that dispatch.c splits calls over. Internal: cffi never sees
 * this file (the pool-size query it exports is declared in softmax_grad.h).
 */
#ifndef SG_POOL_H
#define SG_POOL_H

#include <stddef.h>

/* The most threads one call may use: the calling thread plus SG_MAX_THREADS - 1 workers. */
#define SG_MAX_THREADS 64

/* One job: task(ctx, k) for every k in [0, count). */
typedef void (*sg_task_fn)(void *ctx, size_t k);

/* Run task(ctx, 0) ... task(ctx, count - 1), count <= SG_MAX_THREADS, and return when all have
 * finished. The calling thread takes part; each task runs exactly once, on whichever thread
 * claims it first, so a task's result must not depend on the thread that runs it. Workers are
 * started on first need (at most count - 1 of them) and kept. If the pool is busy with another
 * caller's job, or a worker cannot be started, the calling thread runs the remaining tasks itself:
 * the same tasks, the same results. */
void sg_pool_run(sg_task_fn task, void *ctx, size_t count);

#endif /* SG_POOL_H */
