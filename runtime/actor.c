/* actor.c - the actor runtime: one libuv loop, MPSC mailboxes, a run queue, timers, watches. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "actor.h"
#include "log.h"
#include "pool.h"

/*
 * Threads
 *   loop thread:  pt_runtime_run, every handler, timers, watches, the run queue (no locks).
 *   any thread:   pt_runtime_alloc/free (not concurrently with run), pt_runtime_shutdown,
 *                 pt_actor_spawn, pt_actor_send, pt_actor_stop, pt_actor_queued/over_hwm,
 *                 pt_pool_submit, pt_pool_parallel_for.
 *
 * Mailbox: an intrusive Vyukov MPSC queue (producers exchange `head`, the loop pops at `tail`)
 * plus one atomic word `state` = CLOSED bit | number of messages counted in the mailbox.
 * A sender first reserves (CAS: fails when CLOSED), then pushes, and schedules the actor iff
 * its reservation moved the count from 0 to 1. The loop subtracts what it handled at the end of
 * a turn and requeues the actor iff the count is still non-zero. So an actor is in the run
 * queue (or running) exactly when its count is non-zero, and it is scheduled exactly once.
 *
 * Scheduling: on the loop thread an actor goes straight to the run queue; from other threads
 * it goes to the inject list (mutex) and, when that list was empty, uv_async_send wakes the
 * loop (wakeups coalesce; the async callback drains the whole list). A uv_idle_t is active
 * while the run queue is non-empty, so the loop polls without blocking and the idle callback
 * runs up to TURNS_PER_TICK actor turns per loop iteration; an actor that still has messages
 * after `batch` goes to the back of the run queue.
 *
 * Stop: pt_actor_stop sets CLOSED and pushes the actor's embedded STOP message. Messages that
 * were reserved before CLOSED may land behind STOP in the queue, so the loop sets STOP aside and
 * delivers it when the count reaches zero: STOP is always the last message. Then timers are
 * stopped, watches fire, and the actor struct moves to a zombie list that pt_runtime_free
 * releases, so pt_actor_send on a stopped actor stays safe and returns PETAL_ECLOSED.
 */

#define STATE_CLOSED (UINT64_C(1) << 63)
#define STATE_COUNT(s) ((s) & ~STATE_CLOSED)
#define DEFAULT_BATCH 64
#define DEFAULT_HWM 4096
#define TURNS_PER_TICK 256

struct pt_actor {
    /* Producer side. */
    _Alignas(64) _Atomic uint64_t state;
    pt_msg_t *mb_head; /* accessed with __atomic builtins */
    /* Loop side. */
    _Alignas(64) pt_msg_t *mb_tail;
    pt_msg_t mb_stub;
    pt_runtime_t *rt;
    pt_actor_handler_fn handler;
    void *st;
    char *name;
    pt_msg_t stop_msg;
    int stop_seen;
    int dead;
    pt_actor_t *run_next;    /* run queue (loop thread) */
    pt_actor_t *inject_next; /* inject list (rt->inject_mu) */
    pt_actor_t *list_next;   /* live or zombie list (rt->actors_mu) */
    pt_actor_t **list_pprev;
    pt_timer_t *timers; /* loop thread */
    pt_actor_watch_t *drain_watches;
    pt_actor_watch_t *stop_watches;
};

struct pt_timer {
    uv_timer_t h;
    pt_actor_t *owner;
    pt_timer_msg_t msg; /* the one tick that can be in flight */
    pt_timer_t *next;
    pt_timer_t **pprev;
    int msg_busy; /* msg is queued or being handled */
    int stopped;
    int closed;
};

struct pt_runtime {
    uv_loop_t loop;
    uv_async_t async;
    uv_idle_t idle;
    pt_pool_t *pool;
    uint32_t batch;
    uint32_t hwm;
    /* Loop thread only. */
    pt_actor_t *runq_head;
    pt_actor_t *runq_tail;
    uint32_t runq_len;
    int running;
    int shutdown_done;
    int finishing;
    /* Cross-thread wakeups. */
    uv_mutex_t inject_mu;
    pt_actor_t *inject_head;
    pt_actor_t *inject_tail;
    int async_closed;
    /* Actors. */
    uv_mutex_t actors_mu;
    pt_actor_t *live;
    pt_actor_t *zombies;
    uint32_t nlive;
    atomic_int shutdown_req;
};

static _Thread_local pt_runtime_t *tls_loop_rt;

/* ---- Messages ------------------------------------------------------------------------------ */

/* Any thread; NULL is a no-op. */
void
pt_msg_free(pt_msg_t *m)
{
    if (m != NULL && m->free != NULL) {
        m->free(m);
    }
}

static void
stop_msg_free(pt_msg_t *m)
{
    (void)m; /* embedded in the actor */
}

/* ---- Mailbox (Vyukov intrusive MPSC) -------------------------------------------------------- */

static void
mb_init(pt_actor_t *a)
{
    a->mb_stub.next = NULL;
    a->mb_head = &a->mb_stub;
    a->mb_tail = &a->mb_stub;
}

static void
mb_push(pt_actor_t *a, pt_msg_t *m)
{
    pt_msg_t *prev;

    __atomic_store_n(&m->next, NULL, __ATOMIC_RELAXED);
    prev = __atomic_exchange_n(&a->mb_head, m, __ATOMIC_ACQ_REL);
    __atomic_store_n(&prev->next, m, __ATOMIC_RELEASE);
}

/* Loop thread. NULL when empty, or while a producer is between its exchange and its link (the
 * count then stays non-zero and the actor is simply run again). */
static pt_msg_t *
mb_pop(pt_actor_t *a)
{
    pt_msg_t *tail = a->mb_tail;
    pt_msg_t *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);

    if (tail == &a->mb_stub) {
        if (next == NULL) {
            return NULL;
        }
        a->mb_tail = next;
        tail = next;
        next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
    }
    if (next != NULL) {
        a->mb_tail = next;
        return tail;
    }
    if (tail != __atomic_load_n(&a->mb_head, __ATOMIC_ACQUIRE)) {
        return NULL;
    }
    mb_push(a, &a->mb_stub);
    next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    if (next != NULL) {
        a->mb_tail = next;
        return tail;
    }
    return NULL;
}

/* ---- Scheduling ----------------------------------------------------------------------------- */

static void on_idle(uv_idle_t *h);

static void
runq_push(pt_runtime_t *rt, pt_actor_t *a)
{
    a->run_next = NULL;
    if (rt->runq_tail != NULL) {
        rt->runq_tail->run_next = a;
    } else {
        rt->runq_head = a;
    }
    rt->runq_tail = a;
    rt->runq_len++;
    if (!uv_is_active((uv_handle_t *)&rt->idle) && !rt->finishing) {
        uv_idle_start(&rt->idle, on_idle);
    }
}

static pt_actor_t *
runq_pop(pt_runtime_t *rt)
{
    pt_actor_t *a = rt->runq_head;

    if (a != NULL) {
        rt->runq_head = a->run_next;
        if (rt->runq_head == NULL) {
            rt->runq_tail = NULL;
        }
        a->run_next = NULL;
        rt->runq_len--;
    }
    return a;
}

/* Any thread: wakes the loop unless it has finished. */
static void
rt_wake(void *ctx)
{
    pt_runtime_t *rt = ctx;

    uv_mutex_lock(&rt->inject_mu);
    if (!rt->async_closed) {
        uv_async_send(&rt->async);
    }
    uv_mutex_unlock(&rt->inject_mu);
}

static void
schedule(pt_actor_t *a)
{
    pt_runtime_t *rt = a->rt;
    int was_empty;

    if (tls_loop_rt == rt) {
        runq_push(rt, a);
        return;
    }
    uv_mutex_lock(&rt->inject_mu);
    a->inject_next = NULL;
    was_empty = rt->inject_head == NULL;
    if (rt->inject_tail != NULL) {
        rt->inject_tail->inject_next = a;
    } else {
        rt->inject_head = a;
    }
    rt->inject_tail = a;
    if (was_empty && !rt->async_closed) {
        uv_async_send(&rt->async);
    }
    uv_mutex_unlock(&rt->inject_mu);
}

/* ---- Timers --------------------------------------------------------------------------------- */

static void
timer_maybe_free(pt_timer_t *t)
{
    if (t->stopped && t->closed && !t->msg_busy) {
        free(t);
    }
}

static void
timer_msg_free(pt_msg_t *m)
{
    pt_timer_t *t = ((pt_timer_msg_t *)m)->timer;

    t->msg_busy = 0;
    timer_maybe_free(t);
}

static void
on_timer_close(uv_handle_t *h)
{
    pt_timer_t *t = h->data;

    t->closed = 1;
    timer_maybe_free(t);
}

static void
on_timer(uv_timer_t *h)
{
    pt_timer_t *t = h->data;

    if (t->stopped || t->msg_busy) {
        return; /* a tick is still waiting in the mailbox: do not pile them up */
    }
    t->msg_busy = 1;
    t->msg.hdr.next = NULL;
    t->msg.hdr.type = PT_MSG_TIMER;
    t->msg.hdr.flags = 0;
    t->msg.hdr.free = timer_msg_free;
    t->msg.timer = t;
    if (pt_actor_send(t->owner, &t->msg.hdr) != 0) {
        t->msg_busy = 0;
    }
}

int
pt_timer_start(pt_actor_t *owner, uint64_t ms, uint64_t repeat_ms, uint64_t tag, pt_timer_t **out)
{
    pt_timer_t *t;
    int r;

    if (owner == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (owner->dead || (atomic_load(&owner->state) & STATE_CLOSED) != 0) {
        return PETAL_ECLOSED;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return PETAL_ENOMEM;
    }
    r = uv_timer_init(&owner->rt->loop, &t->h);
    if (r != 0) {
        free(t);
        return r;
    }
    t->h.data = t;
    t->owner = owner;
    t->msg.tag = tag;
    r = uv_timer_start(&t->h, on_timer, ms, repeat_ms);
    if (r != 0) {
        t->stopped = 1;
        uv_close((uv_handle_t *)&t->h, on_timer_close);
        return r;
    }
    t->next = owner->timers;
    if (t->next != NULL) {
        t->next->pprev = &t->next;
    }
    t->pprev = &owner->timers;
    owner->timers = t;
    *out = t;
    return 0;
}

/* Loop thread; call once per timer. A tick already in the mailbox is dropped, not delivered. */
void
pt_timer_stop(pt_timer_t *t)
{
    if (t == NULL || t->stopped) {
        return;
    }
    t->stopped = 1;
    if (t->pprev != NULL) {
        *t->pprev = t->next;
        if (t->next != NULL) {
            t->next->pprev = t->pprev;
        }
        t->pprev = NULL;
    }
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, on_timer_close);
}

uint64_t
pt_runtime_now_ms(pt_runtime_t *rt)
{
    return uv_now(&rt->loop);
}

/* ---- Watches -------------------------------------------------------------------------------- */

static void
watch_add(pt_actor_watch_t **list, pt_actor_watch_t *w,
          void (*cb)(pt_actor_watch_t *w, int stopped))
{
    w->cb = cb;
    w->next = *list;
    if (w->next != NULL) {
        w->next->pprev = &w->next;
    }
    w->pprev = list;
    *list = w;
}

void
pt_actor_unwatch(pt_actor_watch_t *w)
{
    if (w == NULL || w->pprev == NULL) {
        return;
    }
    *w->pprev = w->next;
    if (w->next != NULL) {
        w->next->pprev = w->pprev;
    }
    w->next = NULL;
    w->pprev = NULL;
}

static void
watch_fire_all(pt_actor_watch_t **list, int stopped)
{
    while (*list != NULL) {
        pt_actor_watch_t *w = *list;

        pt_actor_unwatch(w);
        w->cb(w, stopped);
    }
}

int
pt_actor_watch_drain(pt_actor_t *a, pt_actor_watch_t *w,
                     void (*cb)(pt_actor_watch_t *w, int stopped))
{
    if (a == NULL || w == NULL || cb == NULL) {
        return PETAL_EINVAL;
    }
    if (a->dead) {
        return PETAL_ECLOSED;
    }
    if (w->pprev != NULL) {
        return PETAL_EEXIST;
    }
    if (STATE_COUNT(atomic_load(&a->state)) <= a->rt->hwm / 2) {
        return 1;
    }
    watch_add(&a->drain_watches, w, cb);
    return 0;
}

int
pt_actor_watch_stop(pt_actor_t *a, pt_actor_watch_t *w,
                    void (*cb)(pt_actor_watch_t *w, int stopped))
{
    if (a == NULL || w == NULL || cb == NULL) {
        return PETAL_EINVAL;
    }
    if (a->dead) {
        return PETAL_ECLOSED;
    }
    if (w->pprev != NULL) {
        return PETAL_EEXIST;
    }
    watch_add(&a->stop_watches, w, cb);
    return 0;
}

/* ---- Actors --------------------------------------------------------------------------------- */

int
pt_actor_spawn(pt_runtime_t *rt, const char *name, pt_actor_handler_fn handler, void *state,
               pt_actor_t **out)
{
    pt_actor_t *a = NULL;
    int r;

    if (rt == NULL || handler == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (posix_memalign((void **)&a, 64, sizeof(*a)) != 0) {
        return PETAL_ENOMEM;
    }
    memset(a, 0, sizeof(*a));
    a->name = strdup(name != NULL ? name : "actor");
    if (a->name == NULL) {
        r = PETAL_ENOMEM;
        goto fail;
    }
    atomic_init(&a->state, 0);
    mb_init(a);
    a->rt = rt;
    a->handler = handler;
    a->st = state;
    a->stop_msg.type = PT_MSG_STOP;
    a->stop_msg.free = stop_msg_free;

    uv_mutex_lock(&rt->actors_mu);
    if (atomic_load(&rt->shutdown_req)) {
        uv_mutex_unlock(&rt->actors_mu);
        r = PETAL_ECLOSED;
        goto fail;
    }
    a->list_next = rt->live;
    if (a->list_next != NULL) {
        a->list_next->list_pprev = &a->list_next;
    }
    a->list_pprev = &rt->live;
    rt->live = a;
    rt->nlive++;
    uv_mutex_unlock(&rt->actors_mu);
    *out = a;
    return 0;

fail:
    free(a->name);
    free(a);
    return r;
}

void *
pt_actor_state(pt_actor_t *a)
{
    return a->st;
}

const char *
pt_actor_name(pt_actor_t *a)
{
    return a->name;
}

pt_runtime_t *
pt_actor_runtime(pt_actor_t *a)
{
    return a->rt;
}

int
pt_actor_send(pt_actor_t *to, pt_msg_t *m)
{
    uint64_t s;

    if (to == NULL || m == NULL) {
        return PETAL_EINVAL;
    }
    s = atomic_load_explicit(&to->state, memory_order_relaxed);
    do {
        if ((s & STATE_CLOSED) != 0) {
            return PETAL_ECLOSED;
        }
    } while (!atomic_compare_exchange_weak_explicit(&to->state, &s, s + 1, memory_order_acq_rel,
                                                    memory_order_relaxed));
    mb_push(to, m);
    if (s == 0) {
        schedule(to);
    }
    return 0;
}

uint64_t
pt_actor_queued(pt_actor_t *a)
{
    return STATE_COUNT(atomic_load_explicit(&a->state, memory_order_relaxed));
}

int
pt_actor_over_hwm(pt_actor_t *a)
{
    return pt_actor_queued(a) > a->rt->hwm;
}

void
pt_actor_stop(pt_actor_t *a)
{
    uint64_t s;

    if (a == NULL) {
        return;
    }
    s = atomic_load_explicit(&a->state, memory_order_relaxed);
    do {
        if ((s & STATE_CLOSED) != 0) {
            return;
        }
    } while (!atomic_compare_exchange_weak_explicit(&a->state, &s, (s | STATE_CLOSED) + 1,
                                                    memory_order_acq_rel, memory_order_relaxed));
    mb_push(a, &a->stop_msg);
    if (s == 0) {
        schedule(a);
    }
}

static void maybe_finish(pt_runtime_t *rt);

/* Loop thread, or pt_runtime_free for actors that never got to run their STOP. */
static void
actor_retire(pt_actor_t *a)
{
    pt_runtime_t *rt = a->rt;

    a->dead = 1;
    while (a->timers != NULL) {
        pt_timer_stop(a->timers);
    }
    watch_fire_all(&a->drain_watches, 1);
    watch_fire_all(&a->stop_watches, 1);
    uv_mutex_lock(&rt->actors_mu);
    *a->list_pprev = a->list_next;
    if (a->list_next != NULL) {
        a->list_next->list_pprev = a->list_pprev;
    }
    a->list_next = rt->zombies;
    if (a->list_next != NULL) {
        a->list_next->list_pprev = &a->list_next;
    }
    a->list_pprev = &rt->zombies;
    rt->zombies = a;
    rt->nlive--;
    uv_mutex_unlock(&rt->actors_mu);
}

static int
is_stopped_tick(pt_msg_t *m)
{
    return m->type == PT_MSG_TIMER && m->free == timer_msg_free &&
           ((pt_timer_msg_t *)m)->timer->stopped;
}

/* Loop thread: one turn of `a`, at most rt->batch messages. */
static void
actor_turn(pt_runtime_t *rt, pt_actor_t *a)
{
    uint64_t k = 0;
    uint64_t left;

    pt_log_set_name(a->name);
    while (k < rt->batch) {
        pt_msg_t *m = mb_pop(a);

        if (m == NULL) {
            break;
        }
        k++;
        if (m == &a->stop_msg) {
            a->stop_seen = 1;
            continue;
        }
        if (is_stopped_tick(m)) {
            pt_msg_free(m);
            continue;
        }
        a->handler(a, m);
    }
    left = STATE_COUNT(atomic_fetch_sub_explicit(&a->state, k, memory_order_acq_rel) - k);
    if (a->drain_watches != NULL && left <= rt->hwm / 2) {
        watch_fire_all(&a->drain_watches, 0);
    }
    if (left > 0) {
        runq_push(rt, a);
    } else if (a->stop_seen) {
        a->handler(a, &a->stop_msg);
        actor_retire(a);
        maybe_finish(rt);
    }
}

/* ---- The loop ------------------------------------------------------------------------------- */

static void
on_idle(uv_idle_t *h)
{
    pt_runtime_t *rt = h->data;

    for (int turns = 0; turns < TURNS_PER_TICK; turns++) {
        pt_actor_t *a = runq_pop(rt);

        if (a == NULL) {
            break;
        }
        actor_turn(rt, a);
    }
    pt_log_set_name("loop");
    if (rt->runq_head == NULL) {
        uv_idle_stop(&rt->idle);
    }
}

static void
on_close_noop(uv_handle_t *h)
{
    (void)h;
}

/* Loop thread: ends the loop once shutdown was processed, every actor has stopped and the pool
 * is idle. The loop returns when the remaining handles (async, idle) have closed. */
static void
maybe_finish(pt_runtime_t *rt)
{
    uint32_t nlive;

    if (rt->finishing || !rt->shutdown_done) {
        return;
    }
    uv_mutex_lock(&rt->actors_mu);
    nlive = rt->nlive;
    uv_mutex_unlock(&rt->actors_mu);
    if (nlive > 0 || !pt_pool_idle(rt->pool)) {
        return; /* an actor's STOP or the pool's idle callback calls again */
    }
    rt->finishing = 1;
    uv_mutex_lock(&rt->inject_mu);
    rt->async_closed = 1;
    uv_mutex_unlock(&rt->inject_mu);
    uv_close((uv_handle_t *)&rt->async, on_close_noop);
    uv_idle_stop(&rt->idle);
    uv_close((uv_handle_t *)&rt->idle, on_close_noop);
}

static void
on_async(uv_async_t *h)
{
    pt_runtime_t *rt = h->data;
    pt_actor_t *list;

    uv_mutex_lock(&rt->inject_mu);
    list = rt->inject_head;
    rt->inject_head = NULL;
    rt->inject_tail = NULL;
    uv_mutex_unlock(&rt->inject_mu);
    while (list != NULL) {
        pt_actor_t *next = list->inject_next;

        list->inject_next = NULL;
        runq_push(rt, list);
        list = next;
    }
    if (atomic_load(&rt->shutdown_req) && !rt->shutdown_done) {
        rt->shutdown_done = 1;
        uv_mutex_lock(&rt->actors_mu);
        for (pt_actor_t *a = rt->live; a != NULL; a = a->list_next) {
            pt_actor_stop(a);
        }
        uv_mutex_unlock(&rt->actors_mu);
    }
    maybe_finish(rt);
}

pt_pool_t *
pt_runtime_pool(pt_runtime_t *rt)
{
    return rt->pool;
}

int
pt_runtime_alloc(const pt_runtime_opts_t *opts, pt_runtime_t **out)
{
    pt_runtime_opts_t o = {0};
    pt_runtime_t *rt;
    int r;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    if (opts != NULL) {
        o = *opts;
    }
    rt = calloc(1, sizeof(*rt));
    if (rt == NULL) {
        return PETAL_ENOMEM;
    }
    rt->batch = o.batch != 0 ? o.batch : DEFAULT_BATCH;
    rt->hwm = o.mailbox_hwm != 0 ? o.mailbox_hwm : DEFAULT_HWM;
    atomic_init(&rt->shutdown_req, 0);
    r = uv_loop_init(&rt->loop);
    if (r != 0) {
        goto fail_rt;
    }
    r = uv_mutex_init(&rt->inject_mu);
    if (r != 0) {
        goto fail_loop;
    }
    r = uv_mutex_init(&rt->actors_mu);
    if (r != 0) {
        goto fail_inject;
    }
    r = uv_async_init(&rt->loop, &rt->async, on_async);
    if (r != 0) {
        goto fail_actors;
    }
    rt->async.data = rt;
    r = uv_idle_init(&rt->loop, &rt->idle);
    if (r != 0) {
        goto fail_async;
    }
    rt->idle.data = rt;
    r = pt_pool_alloc(o.workers, rt_wake, rt, &rt->pool);
    if (r != 0) {
        goto fail_idle;
    }
    *out = rt;
    return 0;

fail_idle:
    uv_close((uv_handle_t *)&rt->idle, NULL);
fail_async:
    uv_close((uv_handle_t *)&rt->async, NULL);
    uv_run(&rt->loop, UV_RUN_NOWAIT);
fail_actors:
    uv_mutex_destroy(&rt->actors_mu);
fail_inject:
    uv_mutex_destroy(&rt->inject_mu);
fail_loop:
    uv_loop_close(&rt->loop);
fail_rt:
    free(rt);
    return r;
}

int
pt_runtime_run(pt_runtime_t *rt)
{
    pt_runtime_t *prev;

    if (rt == NULL) {
        return PETAL_EINVAL;
    }
    if (rt->running || rt->finishing) {
        return PETAL_ESTATE;
    }
    prev = tls_loop_rt;
    rt->running = 1;
    tls_loop_rt = rt;
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    tls_loop_rt = prev;
    rt->running = 0;
    return 0;
}

void
pt_runtime_shutdown(pt_runtime_t *rt)
{
    if (rt == NULL || atomic_exchange(&rt->shutdown_req, 1)) {
        return;
    }
    pt_pool_close_submit(rt->pool);
    rt_wake(rt);
}

static void
drain_mailbox(pt_actor_t *a)
{
    pt_msg_t *m;

    while ((m = mb_pop(a)) != NULL) {
        if (m != &a->stop_msg) {
            pt_msg_free(m);
        }
    }
}

int
pt_runtime_free(pt_runtime_t *rt)
{
    pt_runtime_t *prev;
    pt_actor_t *a;
    int r;

    if (rt == NULL) {
        return 0;
    }
    /* 1. No more sends: close every mailbox that is still open. */
    uv_mutex_lock(&rt->actors_mu);
    rt->shutdown_done = 1;
    atomic_store(&rt->shutdown_req, 1);
    for (a = rt->live; a != NULL; a = a->list_next) {
        atomic_fetch_or(&a->state, STATE_CLOSED);
    }
    uv_mutex_unlock(&rt->actors_mu);
    /* 2. Let queued jobs run (their replies now fail and free them), join the workers. */
    pt_pool_free(rt->pool);
    rt->pool = NULL;
    /* 3. Actors that never handled STOP (the loop did not run to the end): free their mail,
     *    stop their timers and fire their watches. */
    prev = tls_loop_rt;
    tls_loop_rt = rt;
    while (rt->live != NULL) {
        a = rt->live;
        drain_mailbox(a);
        actor_retire(a);
    }
    for (a = rt->zombies; a != NULL; a = a->list_next) {
        drain_mailbox(a);
    }
    tls_loop_rt = prev;
    if (!rt->finishing) {
        rt->finishing = 1;
        rt->async_closed = 1;
        uv_close((uv_handle_t *)&rt->async, on_close_noop);
        uv_close((uv_handle_t *)&rt->idle, on_close_noop);
    }
    /* 4. Run the close callbacks, then close the loop. */
    uv_run(&rt->loop, UV_RUN_NOWAIT);
    r = uv_loop_close(&rt->loop);
    if (r != 0) {
        PT_ERROR("runtime: the event loop still has open handles (%s)", uv_strerror(r));
    }
    while (rt->zombies != NULL) {
        a = rt->zombies;
        rt->zombies = a->list_next;
        free(a->name);
        free(a);
    }
    uv_mutex_destroy(&rt->actors_mu);
    uv_mutex_destroy(&rt->inject_mu);
    free(rt);
    return r;
}

void *
pt_runtime_loop(pt_runtime_t *rt)
{
    return &rt->loop;
}

uint32_t
pt_runtime_workers(pt_runtime_t *rt)
{
    return rt->pool != NULL ? pt_pool_size(rt->pool) : 0;
}

int
pt_runtime_on_loop(pt_runtime_t *rt)
{
    return rt != NULL && tls_loop_rt == rt;
}
