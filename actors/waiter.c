/* waiter.c - a mutex/condvar queue of replies with per-slot bookkeeping. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "waiter.h"

struct pt_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint refs;
    uint64_t n;
    uint64_t *ids;          /* message id per slot */
    uint8_t *answered;      /* per slot */
    petal_message_t **ring; /* capacity n: each slot is delivered at most once */
    uint64_t head, tail;    /* ring positions (mod n) */
    uint64_t num_answered;
    int cancelled;
};

uint64_t
pt_waiter_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

pt_waiter_t *
pt_waiter_alloc(uint64_t n)
{
    pt_waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }
    uint64_t cap = n ? n : 1;
    w->ids = calloc(cap, sizeof(*w->ids));
    w->answered = calloc(cap, 1);
    w->ring = calloc(cap, sizeof(*w->ring));
    if (w->ids == NULL || w->answered == NULL || w->ring == NULL) {
        goto fail;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->refs, 1);
    w->n = n;
    return w;
fail:
    free(w->ids);
    free(w->answered);
    free(w->ring);
    free(w);
    return NULL;
}

void
pt_waiter_hold(pt_waiter_t *w)
{
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed);
}

void
pt_waiter_release(pt_waiter_t *w)
{
    if (w == NULL || atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    while (w->head != w->tail) {
        petal_message_free(w->ring[w->head % w->n]);
        w->head++;
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w->ids);
    free(w->answered);
    free(w->ring);
    free(w);
}

uint64_t
pt_waiter_count(const pt_waiter_t *w)
{
    return w->n;
}

void
pt_waiter_set_id(pt_waiter_t *w, uint64_t slot, uint64_t message_id)
{
    pthread_mutex_lock(&w->mu);
    if (slot < w->n) {
        w->ids[slot] = message_id;
    }
    pthread_mutex_unlock(&w->mu);
}

void
pt_waiter_deliver(pt_waiter_t *w, uint64_t slot, petal_message_t *reply)
{
    pthread_mutex_lock(&w->mu);
    if (slot >= w->n || w->answered[slot] || w->cancelled) {
        pthread_mutex_unlock(&w->mu);
        petal_message_free(reply);
        return;
    }
    w->answered[slot] = 1;
    w->num_answered++;
    w->ring[w->tail % w->n] = reply;
    w->tail++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

petal_message_t *
pt_waiter_next(pt_waiter_t *w, uint64_t deadline_ms)
{
    struct timespec ts = {.tv_sec = (time_t)(deadline_ms / 1000),
                          .tv_nsec = (long)(deadline_ms % 1000) * 1000000L};
    petal_message_t *m = NULL;
    pthread_mutex_lock(&w->mu);
    while (w->head == w->tail) {
        if (w->cancelled || pt_waiter_now_ms() >= deadline_ms ||
            pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0) {
            if (w->head == w->tail) {
                goto out;
            }
        }
    }
    m = w->ring[w->head % w->n];
    w->head++;
out:
    pthread_mutex_unlock(&w->mu);
    return m;
}

uint64_t
pt_waiter_answered(pt_waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t k = w->num_answered;
    pthread_mutex_unlock(&w->mu);
    return k;
}

uint64_t
pt_waiter_cancel(pt_waiter_t *w, uint64_t *ids, uint64_t *slots)
{
    uint64_t k = 0;
    pthread_mutex_lock(&w->mu);
    w->cancelled = 1;
    pthread_cond_broadcast(&w->cv); /* a waiting pt_waiter_next returns what is queued, then NULL */
    for (uint64_t i = 0; i < w->n; i++) {
        if (!w->answered[i]) {
            if (ids != NULL) {
                ids[k] = w->ids[i];
            }
            if (slots != NULL) {
                slots[k] = i;
            }
            k++;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return k;
}
