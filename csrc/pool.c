/* pool.c: a persistent pool of worker threads, created lazily, reset in a fork() child.
 *
 * Starting and joining a POSIX thread per call costs more than a medium-sized call takes
 * (bench/README.md, "Design measurements"), so workers are started once and kept. Between jobs a worker spins for
 * SG_SPIN_NS (a call that follows soon finds it awake, as PyTorch's OpenMP threads are), then
 * sleeps on a condition variable until the next job.
 *
 * A job is `count` numbered tasks. The current job's tasks are handed out through one atomic
 * ticket, (count << 32) | next: a thread claims task `next` by advancing it with a
 * compare-and-swap. The caller claims tasks like any worker, so a job never waits for a sleeping
 * worker to wake up: whatever is unclaimed when the caller finishes its own task, it runs next.
 * Which thread runs a task never changes what the task computes (dispatch.c gives each task a
 * fixed block of rows), so results do not depend on how many workers took part.
 *
 * Lifetime of a job's description (task, ctx): written by the caller before the release store
 * that publishes the ticket, read by a worker only after a successful claim (acquire), and not
 * rewritten before the caller has seen every claimed task finish (`done`, release/acquire). A
 * claim that races with the next job's ticket claims a real task of that job, and then reads
 * that job's description: stale claims are harmless by construction.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "pool.h"
#include "softmax_grad.h"

/* How long an idle worker spins before it sleeps: long enough to bridge the gap between calls
 * in a loop, short enough that an idle process gives its CPUs back quickly. */
#ifndef SG_SPIN_NS
#define SG_SPIN_NS 200000
#endif
/* Rounds of the spin that only pause (a few microseconds) before it starts yielding. */
#ifndef SG_SPIN_PAUSES
#define SG_SPIN_PAUSES 256
#endif

static struct {
    pthread_mutex_t submit; /* one job at a time; a caller that finds it taken runs inline */
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    _Atomic uint64_t ticket; /* (count << 32) | next task to claim, of the current job */
    _Atomic size_t done;     /* tasks of the current job that have finished */
    _Atomic int sleepers;    /* workers blocked (or about to block) on `wake` */
    int workers;             /* workers started; read and written under `submit` */
    sg_task_fn task;         /* the current job, see the lifetime note at the top */
    void *ctx;
} sg_pool = {
    .submit = PTHREAD_MUTEX_INITIALIZER,
    .sleep_lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
};

static inline void sg_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t sg_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int sg_has_work(uint64_t ticket) { return (ticket & 0xffffffffu) < (ticket >> 32); }

/* Claim the next task of the current job into *k; 0 when every task is taken. */
static int sg_claim(size_t *k)
{
    uint64_t t = atomic_load_explicit(&sg_pool.ticket, memory_order_acquire);
    while (sg_has_work(t)) {
        if (atomic_compare_exchange_weak_explicit(&sg_pool.ticket, &t, t + 1,
                                                  memory_order_acq_rel, memory_order_acquire)) {
            *k = (size_t)(t & 0xffffffffu);
            return 1;
        }
    }
    return 0;
}

/* Run claimed tasks until none is left. */
static void sg_work(void)
{
    size_t k;
    while (sg_claim(&k)) {
        sg_pool.task(sg_pool.ctx, k);
        atomic_fetch_add_explicit(&sg_pool.done, 1, memory_order_release);
    }
}

/* Spin, then sleep, until the ticket shows an unclaimed task. The spin yields the CPU after its
 * first SG_SPIN_PAUSES rounds: a worker that waits longer than a call's gap gives its core to any
 * other runnable thread (oversubscribed pools, other processes) and still wakes within one
 * scheduler round. The sleepers count and the ticket are both sequentially consistent: a worker
 * raises `sleepers` and then reads the ticket, the caller writes the ticket and then reads
 * `sleepers`, so at least one of them sees the other and no wake-up is lost. */
static void sg_wait_for_work(void)
{
    const int64_t start = sg_now_ns();
    for (unsigned i = 1;; ++i) {
        if (sg_has_work(atomic_load_explicit(&sg_pool.ticket, memory_order_relaxed)))
            return;
        if (i < SG_SPIN_PAUSES)
            sg_cpu_relax();
        else
            sched_yield();
        if (i % 64 == 0 && sg_now_ns() - start > SG_SPIN_NS)
            break;
    }
    pthread_mutex_lock(&sg_pool.sleep_lock);
    atomic_fetch_add(&sg_pool.sleepers, 1);
    while (!sg_has_work(atomic_load(&sg_pool.ticket)))
        pthread_cond_wait(&sg_pool.wake, &sg_pool.sleep_lock);
    atomic_fetch_sub(&sg_pool.sleepers, 1);
    pthread_mutex_unlock(&sg_pool.sleep_lock);
}

static void *sg_worker(void *arg)
{
    (void)arg;
    for (;;) {
        sg_wait_for_work();
        sg_work();
    }
    return NULL;
}

/* ---- fork: the child has no workers; it starts its own on first need ------------------------- */

static void sg_prefork(void)
{
    pthread_mutex_lock(&sg_pool.submit); /* no job in flight across the fork */
    pthread_mutex_lock(&sg_pool.sleep_lock);
}

static void sg_postfork_parent(void)
{
    pthread_mutex_unlock(&sg_pool.sleep_lock);
    pthread_mutex_unlock(&sg_pool.submit);
}

static void sg_postfork_child(void)
{
    sg_pool.workers = 0;
    atomic_store(&sg_pool.sleepers, 0);
    atomic_store(&sg_pool.ticket, 0);
    atomic_store(&sg_pool.done, 0);
    /* The parent's sleepers were waiting on `wake`; the child's copy must not remember them. */
    pthread_cond_init(&sg_pool.wake, NULL);
    pthread_mutex_unlock(&sg_pool.sleep_lock);
    pthread_mutex_unlock(&sg_pool.submit);
}

static pthread_once_t sg_atfork_once = PTHREAD_ONCE_INIT;

static void sg_register_atfork(void)
{
    pthread_atfork(sg_prefork, sg_postfork_parent, sg_postfork_child);
}

/* Start workers (under `submit`) until there are `want`; stops early if a thread cannot be made. */
static void sg_grow(int want)
{
    if (sg_pool.workers >= want)
        return;
    pthread_once(&sg_atfork_once, sg_register_atfork);
    /* Workers block every signal, so signals keep going to the threads that handle them. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    while (sg_pool.workers < want) {
        pthread_t tid;
        if (pthread_create(&tid, &attr, sg_worker, NULL) != 0)
            break;
        ++sg_pool.workers;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void sg_pool_run(sg_task_fn task, void *ctx, size_t count)
{
    if (count <= 1 || pthread_mutex_trylock(&sg_pool.submit) != 0) {
        for (size_t k = 0; k < count; ++k)
            task(ctx, k);
        return;
    }
    sg_grow((int)(count < SG_MAX_THREADS ? count : SG_MAX_THREADS) - 1);
    sg_pool.task = task;
    sg_pool.ctx = ctx;
    atomic_store_explicit(&sg_pool.done, 0, memory_order_relaxed);
    atomic_store(&sg_pool.ticket, (uint64_t)count << 32); /* publishes task and ctx */
    const int sleepers = atomic_load(&sg_pool.sleepers);
    if (sleepers > 0) {
        pthread_mutex_lock(&sg_pool.sleep_lock);
        for (int i = 0; i < sleepers && (size_t)i + 1 < count; ++i)
            pthread_cond_signal(&sg_pool.wake);
        pthread_mutex_unlock(&sg_pool.sleep_lock);
    }
    sg_work();
    /* Every task is claimed; wait for the ones other threads are still running. Yield now and
     * then: on a busy machine the thread running the last task may need this CPU. */
    for (unsigned i = 1; atomic_load_explicit(&sg_pool.done, memory_order_acquire) != count; ++i) {
        sg_cpu_relax();
        if (i % 1024 == 0)
            sched_yield();
    }
    pthread_mutex_unlock(&sg_pool.submit);
}

int sg_pool_workers(void)
{
    pthread_mutex_lock(&sg_pool.submit);
    const int workers = sg_pool.workers;
    pthread_mutex_unlock(&sg_pool.submit);
    return workers;
}
