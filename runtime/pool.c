/* pool.c - Petal's worker pool: jobs that reply to actors, and data-parallel loops. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "log.h"
#include "pool.h"

#define POOL_MAX_WORKERS 1024

/*
 * One mutex guards the job queue and the list of parallel-for tasks; workers sleep on work_cv.
 * A parallel-for task lives on its caller's stack: workers join it as helpers (at most
 * `helpers_wanted` of them), claim indices with an atomic counter, and the caller waits on
 * pf_cv until no helper is still inside before returning.
 */
typedef struct pf_task {
    struct pf_task *next;
    void (*fn)(uint32_t i, void *arg);
    void *arg;
    uint32_t n;
    atomic_uint next_i;
    uint32_t helpers_wanted;  /* under mu */
    uint32_t helpers_running; /* under mu */
    int listed;               /* under mu: still in pool->pf_head */
} pf_task_t;

typedef struct worker {
    pt_pool_t *pool;
    uv_thread_t thread;
    char name[24];
} worker_t;

struct pt_pool {
    uv_mutex_t mu;
    uv_cond_t work_cv;
    uv_cond_t pf_cv;
    pt_job_t *head; /* linked through hdr.next */
    pt_job_t *tail;
    pf_task_t *pf_head;
    uint32_t queued;
    uint32_t running;
    int closed_submit;
    int stopping;
    void (*idle_cb)(void *ctx);
    void *ctx;
    uint32_t nworkers;
    worker_t *workers;
};

static void
pf_run(pf_task_t *t)
{
    for (;;) {
        uint32_t i = atomic_fetch_add_explicit(&t->next_i, 1, memory_order_relaxed);

        if (i >= t->n) {
            break;
        }
        t->fn(i, t->arg);
    }
}

static void
pf_unlist(pt_pool_t *p, pf_task_t *t)
{
    pf_task_t **pp = &p->pf_head;

    while (*pp != NULL && *pp != t) {
        pp = &(*pp)->next;
    }
    if (*pp == t) {
        *pp = t->next;
    }
    t->listed = 0;
}

static void
job_finish(pt_job_t *job)
{
    pt_actor_t *to = job->reply_to;

    /* After a successful send the job belongs to the actor: do not touch it again. */
    if (to == NULL || pt_actor_send(to, &job->hdr) != 0) {
        pt_msg_free(&job->hdr);
    }
}

static void
worker_main(void *arg)
{
    worker_t *w = arg;
    pt_pool_t *p = w->pool;

    pt_log_set_name(w->name);
    uv_mutex_lock(&p->mu);
    for (;;) {
        if (p->pf_head != NULL) {
            pf_task_t *t = p->pf_head;

            t->helpers_running++;
            if (--t->helpers_wanted == 0) {
                pf_unlist(p, t);
            }
            uv_mutex_unlock(&p->mu);
            pf_run(t);
            uv_mutex_lock(&p->mu);
            if (--t->helpers_running == 0) {
                uv_cond_broadcast(&p->pf_cv);
            }
            continue;
        }
        if (p->head != NULL) {
            pt_job_t *job = p->head;
            int notify;

            p->head = (pt_job_t *)job->hdr.next;
            if (p->head == NULL) {
                p->tail = NULL;
            }
            job->hdr.next = NULL;
            p->queued--;
            p->running++;
            uv_mutex_unlock(&p->mu);
            job->work(job);
            job_finish(job);
            uv_mutex_lock(&p->mu);
            p->running--;
            notify = p->closed_submit && p->queued == 0 && p->running == 0;
            if (notify && p->idle_cb != NULL) {
                uv_mutex_unlock(&p->mu);
                p->idle_cb(p->ctx);
                uv_mutex_lock(&p->mu);
            }
            continue;
        }
        if (p->stopping) {
            break;
        }
        uv_cond_wait(&p->work_cv, &p->mu);
    }
    uv_mutex_unlock(&p->mu);
}

int
pt_pool_alloc(uint32_t workers, void (*idle_cb)(void *ctx), void *ctx, pt_pool_t **out)
{
    pt_pool_t *p;
    uint32_t started = 0;
    int r;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    if (workers == 0) {
        workers = uv_available_parallelism();
    }
    if (workers == 0) {
        workers = 1;
    }
    if (workers > POOL_MAX_WORKERS) {
        return PETAL_EINVAL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return PETAL_ENOMEM;
    }
    p->workers = calloc(workers, sizeof(*p->workers));
    if (p->workers == NULL) {
        r = PETAL_ENOMEM;
        goto fail_free;
    }
    p->idle_cb = idle_cb;
    p->ctx = ctx;
    r = uv_mutex_init(&p->mu);
    if (r != 0) {
        goto fail_free;
    }
    r = uv_cond_init(&p->work_cv);
    if (r != 0) {
        goto fail_mu;
    }
    r = uv_cond_init(&p->pf_cv);
    if (r != 0) {
        goto fail_cv;
    }
    for (started = 0; started < workers; started++) {
        worker_t *w = &p->workers[started];

        w->pool = p;
        snprintf(w->name, sizeof(w->name), "worker-%u", (unsigned)started + 1);
        r = uv_thread_create(&w->thread, worker_main, w);
        if (r != 0) {
            goto fail_threads;
        }
    }
    p->nworkers = workers;
    *out = p;
    return 0;

fail_threads:
    uv_mutex_lock(&p->mu);
    p->stopping = 1;
    uv_cond_broadcast(&p->work_cv);
    uv_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < started; i++) {
        uv_thread_join(&p->workers[i].thread);
    }
    uv_cond_destroy(&p->pf_cv);
fail_cv:
    uv_cond_destroy(&p->work_cv);
fail_mu:
    uv_mutex_destroy(&p->mu);
fail_free:
    free(p->workers);
    free(p);
    return r;
}

uint32_t
pt_pool_size(const pt_pool_t *p)
{
    return p->nworkers;
}

void
pt_pool_close_submit(pt_pool_t *p)
{
    uv_mutex_lock(&p->mu);
    p->closed_submit = 1;
    uv_mutex_unlock(&p->mu);
}

int
pt_pool_idle(pt_pool_t *p)
{
    int idle;

    uv_mutex_lock(&p->mu);
    idle = p->queued == 0 && p->running == 0;
    uv_mutex_unlock(&p->mu);
    return idle;
}

int
pt_pool_push(pt_pool_t *p, pt_job_t *job)
{
    uv_mutex_lock(&p->mu);
    if (p->closed_submit || p->stopping) {
        uv_mutex_unlock(&p->mu);
        return PETAL_ECLOSED;
    }
    job->hdr.next = NULL;
    if (p->tail != NULL) {
        p->tail->hdr.next = &job->hdr;
    } else {
        p->head = job;
    }
    p->tail = job;
    p->queued++;
    uv_cond_signal(&p->work_cv);
    uv_mutex_unlock(&p->mu);
    return 0;
}

void
pt_pool_run_parallel(pt_pool_t *p, uint32_t n, void (*fn)(uint32_t i, void *arg), void *arg)
{
    pf_task_t t = {0};

    if (n == 0 || fn == NULL) {
        return;
    }
    if (n == 1 || p == NULL || p->nworkers == 0) {
        for (uint32_t i = 0; i < n; i++) {
            fn(i, arg);
        }
        return;
    }
    t.fn = fn;
    t.arg = arg;
    t.n = n;
    atomic_init(&t.next_i, 0);
    t.helpers_wanted = n - 1 < p->nworkers ? n - 1 : p->nworkers;

    uv_mutex_lock(&p->mu);
    t.next = NULL;
    {
        pf_task_t **pp = &p->pf_head;

        while (*pp != NULL) {
            pp = &(*pp)->next;
        }
        *pp = &t;
    }
    t.listed = 1;
    uv_cond_broadcast(&p->work_cv);
    uv_mutex_unlock(&p->mu);

    pf_run(&t);

    uv_mutex_lock(&p->mu);
    if (t.listed) {
        pf_unlist(p, &t);
    }
    while (t.helpers_running > 0) {
        uv_cond_wait(&p->pf_cv, &p->mu);
    }
    uv_mutex_unlock(&p->mu);
}

void
pt_pool_free(pt_pool_t *p)
{
    if (p == NULL) {
        return;
    }
    uv_mutex_lock(&p->mu);
    p->stopping = 1;
    p->closed_submit = 1;
    uv_cond_broadcast(&p->work_cv);
    uv_mutex_unlock(&p->mu);
    for (uint32_t i = 0; i < p->nworkers; i++) {
        uv_thread_join(&p->workers[i].thread);
    }
    uv_cond_destroy(&p->pf_cv);
    uv_cond_destroy(&p->work_cv);
    uv_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

/* ---- The public entry points (actor.h) ------------------------------------------------------ */

/* Any thread. The job must have `work` set; hdr.free must free it (it runs if the reply cannot
 * be delivered, or after work when reply_to is NULL). */
int
pt_pool_submit(pt_runtime_t *rt, pt_job_t *job)
{
    if (rt == NULL || job == NULL || job->work == NULL) {
        return PETAL_EINVAL;
    }
    return pt_pool_push(pt_runtime_pool(rt), job);
}

void
pt_pool_parallel_for(pt_runtime_t *rt, uint32_t n, void (*fn)(uint32_t i, void *arg), void *arg)
{
    pt_pool_run_parallel(rt != NULL ? pt_runtime_pool(rt) : NULL, n, fn, arg);
}
