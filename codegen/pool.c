/*
 * pool.c — the worker pool of pool.h. A loop is published as a job: its
 * descriptor (function, context, task count) and a claim counter whose high
 * 32 bits are the job's number and low 32 bits the next task. Every thread
 * claims tasks with one atomic add and stops at a claim of another job or
 * past the end; the caller runs tasks too, then waits only for the tasks
 * others claimed (a worker that wakes late finds nothing left). Workers spin
 * on the job number for a short while, then sleep on a condition variable;
 * they are never stopped (they sleep between loops, as OpenBLAS's do).
 */
#include "codegen/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* -DKILN_POOL_PROFILE: per task function, at exit on stderr: calls, tasks,
 * wall µs a call, the tasks' summed µs, the longest task's, and the µs
 * since the previous loop ended (the serial code before it). */
#ifdef KILN_POOL_PROFILE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static int64_t prof_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}
typedef struct { void *fn; int64_t calls, n, wall, work, gap, maxtask; } prof_ent;
static prof_ent prof[64];
static int prof_n;
static int64_t prof_last;
static _Atomic int64_t prof_work_acc, prof_max_acc;
static void prof_dump(void) {
    fprintf(stderr, "pool profile: fn calls n wall_us/call work_us/call maxtask_us gap_before_us/call\n");
    for (int i = 0; i < prof_n; i++) {
        prof_ent *e = &prof[i];
        double c = (double)e->calls;
        fprintf(stderr, "pool %p %lld %lld %.1f %.1f %.1f %.1f\n", e->fn, (long long)e->calls, (long long)e->n,
                e->wall / c / 1e3, e->work / c / 1e3, e->maxtask / c / 1e3, e->gap / c / 1e3);
    }
}
static prof_ent *prof_get(void *fn) {
    for (int i = 0; i < prof_n; i++) if (prof[i].fn == fn) return &prof[i];
    if (!prof_n) atexit(prof_dump);
    if (prof_n == 64) return &prof[63];
    prof[prof_n].fn = fn;
    return &prof[prof_n++];
}
#endif

enum { POOL_MAX = 256, POOL_SPIN = 4000 };

static struct {
    pthread_mutex_t call; /* one loop at a time */
    pthread_mutex_t mu;
    pthread_cond_t wake, done_cv;
    int threads; /* in effect, the caller's included */
    int started; /* workers created */
    _Atomic(kiln_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_int_fast64_t n;
    atomic_uint_fast64_t claim; /* job << 32 | next task */
    atomic_int_fast64_t done;   /* tasks finished in the current job */
    atomic_uint job;            /* the current job's number */
    atomic_int_fast64_t width;  /* threads, read without the lock (kiln_pool_width) */
} g_pool = {.call = PTHREAD_MUTEX_INITIALIZER,
            .mu = PTHREAD_MUTEX_INITIALIZER,
            .wake = PTHREAD_COND_INITIALIZER,
            .done_cv = PTHREAD_COND_INITIALIZER,
            .threads = 1,
            .width = 1};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Set (non-NULL) while this thread runs a task: a parallel loop inside a
 * task (a convolution chunk's GEMM, lower_conv.c) runs on this thread
 * alone. A pthread key, not _Thread_local: TLS in a shared object calls
 * __tls_get_addr, and AOT libraries need only libc and libm. Without the
 * key (creation failed) every loop runs serially. */
static pthread_key_t g_task_key;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;
static bool g_key_ok;

/* Each thread's scratch (kiln_pool_scratch): a block and its size, freed
 * when the thread exits. */
typedef struct scratch {
    void *p;
    int64_t bytes;
} scratch;
static pthread_key_t g_scratch_key;
static bool g_scratch_ok;

static void scratch_free(void *v) {
    scratch *s = v;
    free(s->p);
    free(s);
}

static void key_init(void) {
    g_key_ok = pthread_key_create(&g_task_key, NULL) == 0;
    g_scratch_ok = pthread_key_create(&g_scratch_key, scratch_free) == 0;
}

void *kiln_pool_scratch(int64_t bytes) {
    pthread_once(&g_key_once, key_init);
    if (!g_scratch_ok || bytes < 0 || bytes > ((int64_t)1 << 47)) return NULL;
    scratch *s = pthread_getspecific(g_scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(g_scratch_key, s)) {
            free(s);
            return NULL;
        }
    }
    if (s->bytes < bytes || !s->p) {
        size_t n = ((size_t)bytes + 63) / 64 * 64;
        void *p = aligned_alloc(64, n ? n : 64);
        if (!p) return NULL;
        free(s->p);
        s->p = p;
        s->bytes = bytes;
    }
    return s->p;
}

static void set_in_task(bool on) {
    if (g_key_ok) pthread_setspecific(g_task_key, on ? (void *)&g_key_ok : NULL);
}

/* Claims and runs tasks of the current job until none is left. */
static void run_tasks(void) {
    for (;;) {
        uint_fast64_t v = atomic_fetch_add(&g_pool.claim, 1);
        uint32_t job = (uint32_t)(v >> 32);
        int64_t i = (int64_t)(v & 0xffffffffu);
        kiln_task_fn fn = atomic_load(&g_pool.fn);
        void *ctx = atomic_load(&g_pool.ctx);
        int64_t n = atomic_load(&g_pool.n);
        /* A claim on a finished job (the descriptor may be a newer one's). */
        if ((uint32_t)(atomic_load(&g_pool.claim) >> 32) != job || i >= n) return;
        set_in_task(true);
#ifdef KILN_POOL_PROFILE
        int64_t t0 = prof_ns();
#endif
        fn(ctx, i);
#ifdef KILN_POOL_PROFILE
        int64_t dt = prof_ns() - t0;
        atomic_fetch_add(&prof_work_acc, dt);
        int64_t m = atomic_load(&prof_max_acc);
        while (dt > m && !atomic_compare_exchange_weak(&prof_max_acc, &m, dt)) {}
#endif
        set_in_task(false);
        if (atomic_fetch_add(&g_pool.done, 1) + 1 == n) {
            pthread_mutex_lock(&g_pool.mu);
            pthread_cond_signal(&g_pool.done_cv);
            pthread_mutex_unlock(&g_pool.mu);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    unsigned seen = 0;
    for (;;) {
        for (int s = 0; s < POOL_SPIN && atomic_load(&g_pool.job) == seen; s++) cpu_relax();
        if (atomic_load(&g_pool.job) == seen) {
            pthread_mutex_lock(&g_pool.mu);
            while (atomic_load(&g_pool.job) == seen) pthread_cond_wait(&g_pool.wake, &g_pool.mu);
            pthread_mutex_unlock(&g_pool.mu);
        }
        seen = atomic_load(&g_pool.job);
        run_tasks();
    }
    return NULL;
}

int kiln_pool_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    pthread_mutex_lock(&g_pool.call);
    while (g_pool.started < n - 1) {
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &a, worker, NULL);
        pthread_attr_destroy(&a);
        if (rc) break;
        g_pool.started++;
    }
    /* Every started worker takes part in a parallel loop: after a larger
     * count, any count >= 2 keeps them all (1 runs loops on the caller). */
    g_pool.threads = n == 1 ? 1 : g_pool.started + 1;
    atomic_store(&g_pool.width, g_pool.threads);
    int r = g_pool.threads;
    pthread_mutex_unlock(&g_pool.call);
    return r;
}

int kiln_pool_threads(void) {
    pthread_mutex_lock(&g_pool.call);
    int r = g_pool.threads;
    pthread_mutex_unlock(&g_pool.call);
    return r;
}

int64_t kiln_pool_width(void) {
    pthread_once(&g_key_once, key_init);
    if (!g_key_ok || pthread_getspecific(g_task_key)) return 1;
    return atomic_load_explicit(&g_pool.width, memory_order_relaxed);
}

void kiln_parallel_for(kiln_task_fn fn, void *ctx, int64_t n) {
    if (n <= 0) return;
    pthread_once(&g_key_once, key_init);
    if (!g_key_ok || pthread_getspecific(g_task_key)) {
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        return;
    }
#ifdef KILN_POOL_PROFILE
    int64_t pt0 = prof_ns();
    prof_ent *pe = prof_get((void *)fn);
    pe->calls++;
    pe->n += n;
    if (prof_last) pe->gap += pt0 - prof_last;
    atomic_store(&prof_work_acc, 0);
    atomic_store(&prof_max_acc, 0);
#define PROF_END()                                                              \
    do {                                                                        \
        int64_t pt1 = prof_ns();                                                \
        pe->wall += pt1 - pt0;                                                  \
        pe->work += atomic_load(&prof_work_acc);                                \
        pe->maxtask += atomic_load(&prof_max_acc);                              \
        prof_last = pt1;                                                        \
    } while (0)
#else
#define PROF_END() ((void)0)
#endif
    pthread_mutex_lock(&g_pool.call);
    if (g_pool.threads <= 1 || n == 1 || n > 0x7fffffff) {
        pthread_mutex_unlock(&g_pool.call);
        set_in_task(true);
        for (int64_t i = 0; i < n; i++) fn(ctx, i);
        set_in_task(false);
        PROF_END();
        return;
    }
    unsigned job = atomic_load(&g_pool.job) + 1;
    atomic_store(&g_pool.fn, fn);
    atomic_store(&g_pool.ctx, ctx);
    atomic_store(&g_pool.n, n);
    atomic_store(&g_pool.done, 0);
    atomic_store(&g_pool.claim, (uint_fast64_t)job << 32);
    pthread_mutex_lock(&g_pool.mu);
    atomic_store(&g_pool.job, job);
    pthread_cond_broadcast(&g_pool.wake);
    pthread_mutex_unlock(&g_pool.mu);
    run_tasks();
    for (int s = 0; s < POOL_SPIN && atomic_load(&g_pool.done) < n; s++) cpu_relax();
    if (atomic_load(&g_pool.done) < n) {
        pthread_mutex_lock(&g_pool.mu);
        while (atomic_load(&g_pool.done) < n) pthread_cond_wait(&g_pool.done_cv, &g_pool.mu);
        pthread_mutex_unlock(&g_pool.mu);
    }
    pthread_mutex_unlock(&g_pool.call);
    PROF_END();
}
