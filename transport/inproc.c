/* inproc.c - the in-process transport: frames handed by pointer between actors' mailboxes. */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../runtime/log.h"
#include "transport.h"

/*
 * Everything runs on the loop thread of the runtime, except the registry of named listeners,
 * which is shared by every runtime of the process (keyed by runtime) and so takes a mutex.
 *
 * A connection is a pair of inproc_conn, one per side, pointing at each other. send() checks
 * the receiving owner's mailbox against its high-water mark, then pushes the frame itself (no
 * copy, arrays shared by reference) into it; one mailbox per owner keeps the order. After
 * PETAL_EAGAIN the sending side watches the receiving owner (pt_actor_watch_drain) and gets
 * PT_MSG_CONN_WRITABLE once that mailbox has drained to half the mark.
 *
 * Lifetime: each side has an embedded DOWN event whose free callback frees that side. close()
 * unlinks both sides at once and queues both DOWN events, so each owner sees DOWN exactly once,
 * after every frame that was sent to it before. Each side also watches its owner
 * (pt_actor_watch_stop): a side never outlives its owner. When the owner has handled
 * PT_MSG_STOP, a side still up is taken down (the peer gets DOWN) and freed; so is a side whose
 * DOWN the stopping owner refused. Listeners likewise close when their owner stops.
 */

#define SCHEME "inproc://"
#define ADDR_MAX 128

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct inproc_listener {
    struct pt_listener_base base;
    pt_runtime_t *rt;
    struct inproc_listener *next;
    pt_actor_watch_t owner_stop; /* a listener never outlives its owner */
    char addr[ADDR_MAX];
} inproc_listener_t;

typedef struct inproc_conn {
    struct pt_conn_base base;
    pt_runtime_t *rt;
    struct inproc_conn *peer; /* NULL once down */
    int closed;               /* no more sends; DOWN queued (or refused by a stopping owner) */
    pt_actor_t *watched;      /* the owner that owner_watch is registered on */
    pt_actor_watch_t owner_watch;
    pt_actor_watch_t drain; /* on the peer's owner after EAGAIN */
    pt_conn_event_t down;
} inproc_conn_t;

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static inproc_listener_t *registry;

static int
check_addr(const char *addr)
{
    size_t n;

    if (addr == NULL || strncmp(addr, SCHEME, strlen(SCHEME)) != 0) {
        return PETAL_EINVAL;
    }
    n = strlen(addr);
    if (n == strlen(SCHEME) || n >= ADDR_MAX) {
        return PETAL_EINVAL;
    }
    return 0;
}

/* Under registry_mu. */
static inproc_listener_t *
registry_find(pt_runtime_t *rt, const char *addr)
{
    for (inproc_listener_t *l = registry; l != NULL; l = l->next) {
        if (l->rt == rt && strcmp(l->addr, addr) == 0) {
            return l;
        }
    }
    return NULL;
}

static void listener_free(inproc_listener_t *l);

static void
on_listener_owner_stopped(pt_actor_watch_t *w, int stopped)
{
    (void)stopped;
    listener_free(CONTAINER_OF(w, inproc_listener_t, owner_stop));
}

static int
inproc_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out)
{
    inproc_listener_t *l;
    int r = check_addr(addr);

    if (r != 0) {
        return r;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return PETAL_ENOMEM;
    }
    l->base.ops = &pt_inproc_ops;
    l->base.owner = owner;
    l->rt = rt;
    snprintf(l->addr, sizeof(l->addr), "%s", addr);
    pthread_mutex_lock(&registry_mu);
    if (registry_find(rt, addr) != NULL) {
        pthread_mutex_unlock(&registry_mu);
        free(l);
        return UV_EADDRINUSE;
    }
    l->next = registry;
    registry = l;
    pthread_mutex_unlock(&registry_mu);
    r = pt_actor_watch_stop(owner, &l->owner_stop, on_listener_owner_stopped);
    if (r != 0) {
        listener_free(l);
        return r;
    }
    *out = (pt_listener_t *)l;
    return 0;
}

static int
inproc_listener_addr(pt_listener_t *pl, char *buf, size_t cap)
{
    inproc_listener_t *l = (inproc_listener_t *)pl;
    size_t n = strlen(l->addr);

    if (n >= cap) {
        return UV_ENOBUFS;
    }
    memcpy(buf, l->addr, n + 1);
    return 0;
}

/* Unregisters and frees; also run when the owner stops without closing its listener. */
static void
listener_free(inproc_listener_t *l)
{
    pt_actor_unwatch(&l->owner_stop);
    pthread_mutex_lock(&registry_mu);
    for (inproc_listener_t **pp = &registry; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    pthread_mutex_unlock(&registry_mu);
    free(l);
}

static void
inproc_listener_close(pt_listener_t *pl)
{
    listener_free((inproc_listener_t *)pl);
}

/* ---- Connections ---------------------------------------------------------------------------- */

static void on_owner_stopped(pt_actor_watch_t *w, int stopped);

static void
conn_free(inproc_conn_t *c)
{
    pt_actor_unwatch(&c->drain);
    pt_actor_unwatch(&c->owner_watch);
    free(c);
}

static void
on_down_freed(pt_msg_t *m)
{
    conn_free(CONTAINER_OF(m, inproc_conn_t, down.hdr));
}

/* A new side owned by `owner`; NULL with *err set when out of memory or the owner stopped. */
static inproc_conn_t *
conn_new(pt_runtime_t *rt, pt_actor_t *owner, const char *addr, int *err)
{
    inproc_conn_t *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        *err = PETAL_ENOMEM;
        return NULL;
    }
    c->base.ops = &pt_inproc_ops;
    c->base.owner = owner;
    snprintf(c->base.peer, sizeof(c->base.peer), "%s", addr);
    c->rt = rt;
    c->watched = owner;
    *err = pt_actor_watch_stop(owner, &c->owner_watch, on_owner_stopped);
    if (*err != 0) {
        free(c); /* the owner has stopped already */
        return NULL;
    }
    return c;
}

static void
ev_free(pt_msg_t *m)
{
    free(m);
}

static pt_conn_event_t *
event_new(uint32_t type, inproc_conn_t *c, int status)
{
    pt_conn_event_t *ev = calloc(1, sizeof(*ev));

    if (ev == NULL) {
        return NULL;
    }
    ev->hdr.type = type;
    ev->hdr.free = ev_free;
    ev->conn = (pt_conn_t *)c;
    ev->status = status;
    return ev;
}

/* Marks one side down and hands it its DOWN event; it must already be unlinked. If the owner
 * is stopping and refuses the event, the owner watch frees the side once STOP was handled
 * (until then the owner's STOP handler may still call pt_conn_close on it). */
static void
conn_down(inproc_conn_t *c, int status, const char *reason)
{
    if (c->closed) {
        return;
    }
    c->closed = 1;
    pt_actor_unwatch(&c->drain);
    c->down.hdr.type = PT_MSG_CONN_DOWN;
    c->down.hdr.free = on_down_freed;
    c->down.conn = (pt_conn_t *)c;
    c->down.status = status;
    snprintf(c->down.reason, sizeof(c->down.reason), "%s", reason);
    (void)pt_actor_send(c->base.owner, &c->down.hdr);
}

/* Takes both sides down; `c` is the side whose owner acted (or noticed). */
static void
conn_teardown(inproc_conn_t *c, const char *mine, const char *theirs)
{
    inproc_conn_t *p = c->peer;

    c->peer = NULL;
    if (p != NULL) {
        p->peer = NULL;
        conn_down(p, PETAL_ECLOSED, theirs);
    }
    conn_down(c, PETAL_ECLOSED, mine);
}

/* The actor we watched has handled STOP. A side never outlives its owner: if it was still up,
 * the peer gets DOWN now. If the side was handed to another actor, watch that one instead. */
static void
on_owner_stopped(pt_actor_watch_t *w, int stopped)
{
    inproc_conn_t *c = CONTAINER_OF(w, inproc_conn_t, owner_watch);

    (void)stopped;
    if (c->base.owner != c->watched) {
        c->watched = c->base.owner;
        if (pt_actor_watch_stop(c->watched, &c->owner_watch, on_owner_stopped) == 0) {
            return;
        }
    }
    if (!c->closed) {
        conn_teardown(c, "actor stopped", "peer actor stopped");
    }
    conn_free(c);
}

static void
on_peer_drained(pt_actor_watch_t *w, int stopped)
{
    inproc_conn_t *c = CONTAINER_OF(w, inproc_conn_t, drain);
    pt_conn_event_t *ev;

    if (c->closed) {
        return;
    }
    if (stopped) {
        conn_teardown(c, "peer actor stopped", "actor stopped");
        return;
    }
    ev = event_new(PT_MSG_CONN_WRITABLE, c, 0);
    if (ev == NULL) {
        pt_log(PETAL_LOG_ERROR, "inproc %s: out of memory for a WRITABLE event; closing",
               c->base.peer);
        conn_teardown(c, "out of memory", "peer out of memory");
        return;
    }
    if (pt_actor_send(c->base.owner, &ev->hdr) != 0) {
        ev_free(&ev->hdr);
    }
}

static int
inproc_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out)
{
    inproc_conn_t *cd = NULL;
    inproc_conn_t *cl = NULL;
    pt_conn_event_t *up_d = NULL;
    pt_conn_event_t *up_l = NULL;
    inproc_listener_t *l;
    pt_actor_t *lowner = NULL;
    int r = check_addr(addr);

    if (r != 0) {
        return r;
    }
    pthread_mutex_lock(&registry_mu);
    l = registry_find(rt, addr);
    if (l != NULL) {
        lowner = l->base.owner;
    }
    pthread_mutex_unlock(&registry_mu);
    if (lowner == NULL) {
        return UV_ECONNREFUSED;
    }
    cd = conn_new(rt, owner, addr, &r);
    if (cd == NULL) {
        return r;
    }
    cl = conn_new(rt, lowner, addr, &r);
    if (cl == NULL) {
        r = r == PETAL_ECLOSED ? UV_ECONNREFUSED : r;
        goto fail;
    }
    up_d = event_new(PT_MSG_CONN_UP, cd, 0);
    up_l = event_new(PT_MSG_CONN_UP, cl, 0);
    if (up_d == NULL || up_l == NULL) {
        r = PETAL_ENOMEM;
        goto fail;
    }
    cd->peer = cl;
    cl->peer = cd;
    if (pt_actor_send(lowner, &up_l->hdr) != 0) {
        r = UV_ECONNREFUSED; /* the listener's actor is stopping */
        goto fail;
    }
    if (pt_actor_send(owner, &up_d->hdr) != 0) {
        /* The listening side already knows its conn: take it down properly. */
        ev_free(&up_d->hdr);
        cd->peer = NULL;
        cl->peer = NULL;
        conn_down(cl, PETAL_ECLOSED, "dialer stopped");
        conn_free(cd);
        return PETAL_ECLOSED;
    }
    *out = (pt_conn_t *)cd;
    return 0;

fail:
    free(up_d);
    free(up_l);
    if (cl != NULL) {
        conn_free(cl);
    }
    conn_free(cd);
    return r;
}

static int
inproc_send(pt_conn_t *pc, pt_frame_t *f)
{
    inproc_conn_t *c = (inproc_conn_t *)pc;
    inproc_conn_t *p = c->peer;
    pt_actor_t *to;

    if (c->closed || p == NULL) {
        return PETAL_ECLOSED;
    }
    to = p->base.owner;
    if (pt_actor_over_hwm(to)) {
        int r = c->drain.pprev != NULL ? 0 : pt_actor_watch_drain(to, &c->drain, on_peer_drained);

        if (r == 0) {
            return PETAL_EAGAIN;
        }
        if (r != 1) {
            conn_teardown(c, "peer actor stopped", "actor stopped");
            return PETAL_ECLOSED;
        }
        /* r == 1: drained in the meantime; send. */
    }
    f->conn = (pt_conn_t *)p;
    f->hdr.type = PT_MSG_FRAME;
    if (pt_actor_send(to, &f->hdr) != 0) {
        f->conn = NULL;
        conn_teardown(c, "peer actor stopped", "actor stopped");
        return PETAL_ECLOSED;
    }
    return 0;
}

static void
inproc_close(pt_conn_t *pc)
{
    inproc_conn_t *c = (inproc_conn_t *)pc;

    if (c->closed) {
        return;
    }
    conn_teardown(c, "closed", "closed by peer");
}

const pt_tran_ops_t pt_inproc_ops = {
    .scheme = "inproc",
    .listen = inproc_listen,
    .listener_addr = inproc_listener_addr,
    .listener_close = inproc_listener_close,
    .dial = inproc_dial,
    .send = inproc_send,
    .close = inproc_close,
};
