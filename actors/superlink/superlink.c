/* superlink.c - the SuperLink actor: registers nodes, pushes instructions, routes replies. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/outbox.h"
#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/u64map.h"
#include "transport/transport.h"

#include "superlink.h"

/* Loop-thread state of one connection (a SuperNode, or the simulation's virtual nodes). */
typedef struct link_conn {
    pt_conn_t *conn;
    uint64_t first_node, count; /* node ids [first, first + count) once registered */
    pt_outbox_t outbox;         /* frames waiting for PT_MSG_CONN_WRITABLE */
    struct link_conn *next;
} link_conn_t;

/* Where the reply to an instruction goes. */
typedef struct pending_ref {
    pt_waiter_t *waiter; /* a reference */
    uint64_t slot;
    uint64_t dst_node;
} pending_ref_t;

typedef struct run_entry {
    uint64_t run_id;
    pt_serverapp_t *serverapp;
    pt_run_observer_t *observer;
} run_entry_t;

struct pt_superlink {
    pt_runtime_t *rt;
    pt_actor_t *actor;
    pt_linkstate_t *ls;
    pt_listener_t *listener;
    pt_superlink_opts_t opts;
    char fleet_address[256];
    link_conn_t *conns;
    link_conn_t **node_conn; /* node id - 1 -> its connection (NULL when offline) */
    uint64_t node_conn_cap;
    pt_u64map_t pending; /* message id -> pending_ref_t* */
    pt_u64map_t runs;    /* run id -> run_entry_t* */
    uint64_t running_runs;
    pt_timer_t *ttl_timer;
};

static atomic_uint_fast64_t last_message_id;

uint64_t
pt_superlink_new_message_id(void)
{
    return atomic_fetch_add_explicit(&last_message_id, 1, memory_order_relaxed) + 1;
}

static void
sl_msg_free(pt_msg_t *m)
{
    free(m);
}

void *
pt_sl_msg_alloc(uint32_t type, size_t size)
{
    pt_msg_t *m = calloc(1, size);
    if (m != NULL) {
        m->type = type;
        m->free = sl_msg_free;
    }
    return m;
}

pt_actor_t *
pt_superlink_actor(pt_superlink_t *sl)
{
    return sl->actor;
}

/* ---- Frames ---------------------------------------------------------------------------------- */

static void
conn_send(link_conn_t *lc, pt_frame_t *f)
{
    pt_outbox_send(&lc->outbox, lc->conn, f);
}

/* ---- Replies ------------------------------------------------------------------------------- */

/* Delivers an error reply for an instruction that cannot be answered by its node. */
static void
deliver_error(pending_ref_t *ref, const petal_message_t *instr, int code, const char *reason)
{
    petal_message_t *err = pt_message_alloc_error_reply(instr, code, reason);
    if (err != NULL) {
        pt_waiter_deliver(ref->waiter, ref->slot, err);
    }
}

static void
pending_drop(pt_superlink_t *sl, uint64_t message_id, int code, const char *reason)
{
    pending_ref_t *ref = pt_u64map_del(&sl->pending, message_id);
    petal_message_t *instr = sl->ls->ops->msg_take(sl->ls, message_id);
    if (ref != NULL && instr != NULL) {
        deliver_error(ref, instr, code, reason);
    }
    if (instr != NULL) {
        pt_message_release(instr);
    }
    if (ref != NULL) {
        pt_waiter_release(ref->waiter);
        free(ref);
    }
}

static void
on_reply(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    if (f->msg == NULL) {
        PT_WARN("reply frame without a message from %s; ignored", pt_conn_peer(lc->conn));
        return;
    }
    petal_metadata_t *md = pt_message_md(f->msg);
    if (md->src_node_id < lc->first_node || md->src_node_id >= lc->first_node + lc->count) {
        PT_WARN("reply from %s claims node %llu, which is not one of its nodes; ignored",
                pt_conn_peer(lc->conn), (unsigned long long)md->src_node_id);
        return;
    }
    pending_ref_t *ref = pt_u64map_del(&sl->pending, md->reply_to_message_id);
    petal_message_t *instr = sl->ls->ops->msg_take(sl->ls, md->reply_to_message_id);
    if (ref == NULL || instr == NULL || ref->dst_node != md->src_node_id) {
        PT_DEBUG("reply to unknown or expired message %llu from node %llu; dropped",
                 (unsigned long long)md->reply_to_message_id, (unsigned long long)md->src_node_id);
        if (ref != NULL) { /* a node answering for another: put the reference back */
            pt_u64map_put(&sl->pending, md->reply_to_message_id, ref);
        }
        if (instr != NULL) {
            sl->ls->ops->msg_put(sl->ls, instr);
            pt_message_release(instr);
        }
        return;
    }
    sl->ls->ops->node_set_online(sl->ls, md->src_node_id, 1, pt_now_seconds());
    md->run_id = pt_message_md(instr)->run_id;
    pt_message_release(instr);
    pt_waiter_deliver(ref->waiter, ref->slot, f->msg);
    f->msg = NULL;
    pt_waiter_release(ref->waiter);
    free(ref);
}

/* ---- Fleet ---------------------------------------------------------------------------------- */

static int
node_conn_reserve(pt_superlink_t *sl, uint64_t last_node)
{
    if (last_node <= sl->node_conn_cap) {
        return 0;
    }
    uint64_t cap = sl->node_conn_cap ? sl->node_conn_cap : 64;
    while (cap < last_node) {
        cap *= 2;
    }
    link_conn_t **nc = realloc(sl->node_conn, cap * sizeof(*nc));
    if (nc == NULL) {
        return PETAL_ENOMEM;
    }
    memset(nc + sl->node_conn_cap, 0, (cap - sl->node_conn_cap) * sizeof(*nc));
    sl->node_conn = nc;
    sl->node_conn_cap = cap;
    return 0;
}

static void
send_fleet_error(link_conn_t *lc, int code, const char *reason)
{
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_ERROR, "fleet.error", &p);
    if (f == NULL) {
        return;
    }
    pt_params_set_i64(p, "code", code);
    pt_params_set_str(p, "reason", reason);
    conn_send(lc, f);
}

static void
on_hello(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    int64_t count = 1;
    int prc = pt_params_i64(pt_frame_params(f), "virtual-nodes", &count);
    if ((prc != 0 && prc != PETAL_ENOENT) || count < 1 || count > (int64_t)UINT32_MAX) {
        send_fleet_error(lc, PETAL_EINVAL, "hello: virtual-nodes must be an integer >= 1");
        return;
    }
    if (lc->count != 0) {
        send_fleet_error(lc, PETAL_ESTATE, "hello: this connection is registered already");
        return;
    }
    uint64_t first;
    double now = pt_now_seconds();
    int rc = sl->ls->ops->nodes_create(sl->ls, (uint64_t)count, now, &first);
    if (rc == 0) {
        rc = node_conn_reserve(sl, first + (uint64_t)count - 1);
    }
    if (rc != 0) {
        send_fleet_error(lc, rc, "hello: cannot register nodes");
        return;
    }
    lc->first_node = first;
    lc->count = (uint64_t)count;
    for (uint64_t i = 0; i < lc->count; i++) {
        sl->node_conn[first - 1 + i] = lc;
    }
    petal_configrecord_t *p;
    pt_frame_t *w = pt_params_frame(PT_FLEET_WELCOME, "fleet.welcome", &p);
    if (w == NULL) {
        return;
    }
    pt_params_set_i64(p, "node-id", (int64_t)first);
    pt_params_set_i64(p, "count", count);
    pt_params_set_f64(p, "heartbeat-interval", sl->opts.heartbeat_interval);
    conn_send(lc, w);
    PT_INFO("registered %lld node(s) from %s (node ids %llu..%llu)", (long long)count,
            pt_conn_peer(lc->conn), (unsigned long long)first,
            (unsigned long long)(first + (uint64_t)count - 1));
}

static void
on_get_run(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    petal_value_t v;
    int64_t run_id = 0;
    pt_run_rec_t run;
    if (pt_params_i64(pt_frame_params(f), "run-id", &run_id) != 0 ||
        sl->ls->ops->run_get(sl->ls, (uint64_t)run_id, &run) != 0) {
        send_fleet_error(lc, PETAL_ENOENT, "get-run: unknown run id");
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = pt_params_frame(PT_FLEET_RUN, "fleet.run", &p);
    if (r == NULL) {
        return;
    }
    pt_params_set_i64(p, "run-id", run_id);
    pt_params_set_str(p, "app-dir", run.app_dir);
    petal_configrecord_t *cfg =
        petal_recorddict_add_config(pt_message_content_mut(r->msg), PT_RUN_CONFIG);
    if (cfg == NULL) {
        pt_msg_free(&r->hdr);
        return;
    }
    const char *name;
    for (uint64_t i = 0; i < petal_configrecord_count(run.run_config); i++) {
        if (petal_configrecord_at(run.run_config, i, &name, &v) == 0) {
            petal_configrecord_set(cfg, name, &v);
        }
    }
    conn_send(lc, r);
}

static void
nodes_offline(pt_superlink_t *sl, link_conn_t *lc)
{
    double now = pt_now_seconds();
    for (uint64_t i = 0; i < lc->count; i++) {
        sl->ls->ops->node_set_online(sl->ls, lc->first_node + i, 0, now);
        sl->node_conn[lc->first_node - 1 + i] = NULL;
    }
    /* Instructions still out on these nodes will never be answered. */
    uint64_t *ids = NULL;
    size_t n = 0;
    uint64_t key;
    void *val;
    ids = malloc((sl->pending.count + 1) * sizeof(*ids));
    for (size_t it = 0; ids != NULL && pt_u64map_next(&sl->pending, &it, &key, &val);) {
        pending_ref_t *ref = val;
        if (ref->dst_node >= lc->first_node && ref->dst_node < lc->first_node + lc->count) {
            ids[n++] = key;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pending_drop(sl, ids[i], PETAL_E_NODE_UNAVAILABLE, "the node disconnected");
    }
    free(ids);
}

static void
on_frame(pt_superlink_t *sl, pt_frame_t *f)
{
    link_conn_t *lc = pt_conn_data(f->conn);
    if (lc == NULL) {
        return;
    }
    if (f->version != PT_PROTOCOL_VERSION) {
        PT_WARN("frame of protocol version %u from %s refused (this SuperLink speaks %u)",
                f->version, pt_conn_peer(lc->conn), PT_PROTOCOL_VERSION);
        send_fleet_error(lc, PETAL_EVERSION, "unsupported protocol version");
        pt_conn_close(lc->conn);
        return;
    }
    if (lc->count == 0 && f->kind != PT_FLEET_HELLO) {
        PT_WARN("frame kind 0x%04x from %s before hello; closing", f->kind, pt_conn_peer(lc->conn));
        pt_conn_close(lc->conn);
        return;
    }
    switch (f->kind) {
    case PT_FLEET_HELLO:
        on_hello(sl, lc, f);
        break;
    case PT_FLEET_REPLY:
        on_reply(sl, lc, f);
        break;
    case PT_FLEET_GET_RUN:
        on_get_run(sl, lc, f);
        break;
    case PT_FLEET_HEARTBEAT: {
        double now = pt_now_seconds();
        for (uint64_t i = 0; i < lc->count; i++) {
            sl->ls->ops->node_set_online(sl->ls, lc->first_node + i, 1, now);
        }
        break;
    }
    case PT_FLEET_GOODBYE:
        PT_INFO("%s said goodbye", pt_conn_peer(lc->conn));
        pt_conn_close(lc->conn);
        break;
    default:
        PT_WARN("unknown frame kind 0x%04x from %s; closing", f->kind, pt_conn_peer(lc->conn));
        send_fleet_error(lc, PETAL_EPROTO, "unknown frame kind");
        pt_conn_close(lc->conn);
        break;
    }
}

static void
on_conn_up(pt_superlink_t *sl, pt_conn_event_t *ev)
{
    link_conn_t *lc = calloc(1, sizeof(*lc));
    if (lc == NULL) {
        pt_conn_close(ev->conn);
        return;
    }
    lc->conn = ev->conn;
    lc->next = sl->conns;
    sl->conns = lc;
    pt_conn_set_data(ev->conn, lc);
    PT_DEBUG("connection from %s", pt_conn_peer(ev->conn));
}

static void
on_conn_down(pt_superlink_t *sl, pt_conn_event_t *ev)
{
    link_conn_t *lc = pt_conn_data(ev->conn);
    if (lc == NULL) {
        return;
    }
    pt_conn_set_data(ev->conn, NULL);
    if (lc->count > 0) {
        PT_INFO("%s disconnected (%s); %llu node(s) offline", pt_conn_peer(ev->conn),
                ev->reason[0] ? ev->reason : petal_strerror(ev->status),
                (unsigned long long)lc->count);
        nodes_offline(sl, lc);
    }
    pt_outbox_clear(&lc->outbox);
    for (link_conn_t **p = &sl->conns; *p != NULL; p = &(*p)->next) {
        if (*p == lc) {
            *p = lc->next;
            break;
        }
    }
    free(lc);
}

/* ---- Grid side ------------------------------------------------------------------------------- */

static void
on_push(pt_superlink_t *sl, pt_sl_push_t *p)
{
    double now = pt_now_seconds();
    for (uint64_t i = 0; i < p->n; i++) {
        petal_message_t *m = p->msgs[i];
        p->msgs[i] = NULL;
        petal_metadata_t *md = pt_message_md(m);
        if (md->message_id == 0) {
            md->message_id = pt_superlink_new_message_id();
        }
        md->run_id = p->run_id;
        md->src_node_id = PETAL_SERVER_NODE_ID;
        if (md->created_at == 0) {
            md->created_at = now;
        }
        pt_waiter_set_id(p->waiter, i, md->message_id);
        pending_ref_t *ref = calloc(1, sizeof(*ref));
        link_conn_t *lc = md->dst_node_id >= 1 && md->dst_node_id <= sl->node_conn_cap
                              ? sl->node_conn[md->dst_node_id - 1]
                              : NULL;
        if (ref == NULL) {
            petal_message_t *err =
                pt_message_alloc_error_reply(m, PETAL_E_UNKNOWN, "SuperLink out of memory");
            if (err != NULL) {
                pt_waiter_deliver(p->waiter, i, err);
            }
            pt_message_release(m);
            continue;
        }
        ref->waiter = p->waiter;
        pt_waiter_hold(p->waiter);
        ref->slot = i;
        ref->dst_node = md->dst_node_id;
        if (lc == NULL) {
            deliver_error(ref, m, PETAL_E_NODE_UNAVAILABLE,
                          "the destination node is unknown or offline");
            pt_waiter_release(ref->waiter);
            free(ref);
            pt_message_release(m);
            continue;
        }
        if (sl->ls->ops->msg_put(sl->ls, m) != 0) {
            deliver_error(ref, m, PETAL_E_UNKNOWN, "SuperLink out of memory");
            pt_waiter_release(ref->waiter);
            free(ref);
            pt_message_release(m);
            continue;
        }
        if (pt_u64map_put(&sl->pending, md->message_id, ref) != 0) {
            pt_message_release(sl->ls->ops->msg_take(sl->ls, md->message_id));
            deliver_error(ref, m, PETAL_E_UNKNOWN, "SuperLink out of memory");
            pt_waiter_release(ref->waiter);
            free(ref);
            pt_message_release(m);
            continue;
        }
        pt_frame_t *f = pt_frame_alloc(PT_FLEET_INSTRUCTION, m);
        if (f == NULL) {
            pending_drop(sl, md->message_id, PETAL_E_UNKNOWN, "SuperLink out of memory");
            pt_message_release(m);
            continue;
        }
        conn_send(lc, f); /* the frame owns our reference to m; LinkState holds another */
    }
}

static void
on_cancel(pt_superlink_t *sl, pt_sl_cancel_t *c)
{
    /* Forget the waiter's outstanding instructions: their replies are no longer awaited. */
    uint64_t *ids = malloc((sl->pending.count + 1) * sizeof(*ids));
    size_t n = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; ids != NULL && pt_u64map_next(&sl->pending, &it, &key, &val);) {
        if (((pending_ref_t *)val)->waiter == c->waiter) {
            ids[n++] = key;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pending_drop(sl, ids[i], PETAL_E_REPLY_MESSAGE_UNAVAILABLE, "no longer awaited");
    }
    free(ids);
}

static void
on_node_ids(pt_superlink_t *sl, pt_sl_node_ids_t *q)
{
    q->result = sl->ls->ops->node_ids_online(sl->ls, q->ids, q->cap);
    pthread_mutex_lock(q->sync->mu);
    q->sync->done = 1;
    pthread_cond_broadcast(q->sync->cv);
    pthread_mutex_unlock(q->sync->mu);
}

/* ---- Runs --------------------------------------------------------------------------------------
 */

static void
on_start_run(pt_superlink_t *sl, pt_sl_start_run_t *s)
{
    uint64_t run_id;
    double now = pt_now_seconds();
    int rc = sl->ls->ops->run_create(sl->ls, s->app_dir, s->config_holder, now, &run_id);
    if (rc != 0) {
        PT_ERROR("cannot create a run for %s: %s", s->app_dir, petal_strerror(rc));
        return;
    }
    s->config_holder = NULL; /* LinkState owns it now */
    pt_run_rec_t run;
    sl->ls->ops->run_get(sl->ls, run_id, &run);
    sl->ls->ops->run_set_status(sl->ls, run_id, PT_RUN_STARTING, PT_RUN_NONE, NULL, now);
    run_entry_t *re = calloc(1, sizeof(*re));
    if (re == NULL || pt_u64map_put(&sl->runs, run_id, re) != 0) {
        free(re);
        sl->ls->ops->run_set_status(sl->ls, run_id, PT_RUN_FINISHED, PT_RUN_FAILED, "out of memory",
                                    now);
        return;
    }
    re->run_id = run_id;
    re->observer = s->observer;
    rc = pt_serverapp_start(sl->rt, sl->actor, run_id, run.app_dir, run.run_config, s->observer,
                            &re->serverapp);
    if (rc != 0) {
        pt_u64map_del(&sl->runs, run_id);
        free(re);
        sl->ls->ops->run_set_status(sl->ls, run_id, PT_RUN_FINISHED, PT_RUN_FAILED,
                                    "cannot start the ServerApp", now);
        PT_ERROR("run %llu: cannot start the ServerApp: %s", (unsigned long long)run_id,
                 petal_strerror(rc));
        if (sl->opts.exit_when_idle && sl->running_runs == 0) {
            pt_runtime_shutdown(sl->rt);
        }
        return;
    }
    sl->running_runs++;
    sl->ls->ops->run_set_status(sl->ls, run_id, PT_RUN_RUNNING, PT_RUN_NONE, NULL, now);
    PT_INFO("run %llu started (app %s)", (unsigned long long)run_id, run.app_dir);
}

static void
on_run_done(pt_superlink_t *sl, pt_sl_run_done_t *d)
{
    run_entry_t *re = pt_u64map_del(&sl->runs, d->run_id);
    if (re == NULL) {
        return;
    }
    pt_serverapp_join(re->serverapp);
    sl->ls->ops->run_set_status(sl->ls, d->run_id, PT_RUN_FINISHED, d->result, d->reason,
                                pt_now_seconds());
    if (re->observer != NULL && re->observer->on_done != NULL) {
        re->observer->on_done(re->observer->ctx, d->run_id, d->result, d->reason);
    }
    free(re);
    PT_INFO("run %llu %s%s%s", (unsigned long long)d->run_id,
            pt_run_status_name(PT_RUN_FINISHED, d->result), d->reason[0] ? ": " : "", d->reason);
    sl->running_runs--;
    if (sl->opts.exit_when_idle && sl->running_runs == 0) {
        pt_runtime_shutdown(sl->rt);
    }
}

static void
expired_cb(void *ctx, petal_message_t *instr)
{
    pt_superlink_t *sl = ctx;
    uint64_t id = pt_message_md(instr)->message_id;
    pending_ref_t *ref = pt_u64map_del(&sl->pending, id);
    if (ref != NULL) {
        deliver_error(ref, instr, PETAL_E_MESSAGE_UNAVAILABLE,
                      "the instruction expired (its ttl passed) before a reply arrived");
        pt_waiter_release(ref->waiter);
        free(ref);
    }
    pt_message_release(instr);
}

/* ---- The actor ---------------------------------------------------------------------------------
 */

static void
superlink_stop(pt_superlink_t *sl)
{
    if (sl->ttl_timer != NULL) {
        pt_timer_stop(sl->ttl_timer);
    }
    if (sl->listener != NULL) {
        const pt_tran_ops_t *ops = ((struct pt_listener_base *)sl->listener)->ops;
        ops->listener_close(sl->listener);
    }
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&sl->runs, &it, &key, &val);) {
        run_entry_t *re = val;
        pt_serverapp_join(re->serverapp); /* its main returned or will time out */
        free(re);
    }
    pt_u64map_fini(&sl->runs);
    for (size_t it = 0; pt_u64map_next(&sl->pending, &it, &key, &val);) {
        pending_ref_t *ref = val;
        pt_waiter_release(ref->waiter);
        free(ref);
    }
    pt_u64map_fini(&sl->pending);
    while (sl->conns != NULL) {
        link_conn_t *lc = sl->conns;
        sl->conns = lc->next;
        pt_outbox_clear(&lc->outbox);
        pt_conn_set_data(lc->conn, NULL);
        pt_conn_close(lc->conn);
        free(lc);
    }
    sl->ls->ops->free(sl->ls);
    free(sl->node_conn);
    free(sl);
}

static void
superlink_handle(pt_actor_t *self, pt_msg_t *m)
{
    pt_superlink_t *sl = pt_actor_state(self);
    switch (m->type) {
    case PT_MSG_FRAME:
        on_frame(sl, (pt_frame_t *)m);
        break;
    case PT_MSG_CONN_UP:
        on_conn_up(sl, (pt_conn_event_t *)m);
        break;
    case PT_MSG_CONN_DOWN:
        on_conn_down(sl, (pt_conn_event_t *)m);
        break;
    case PT_MSG_CONN_WRITABLE: {
        link_conn_t *lc = pt_conn_data(((pt_conn_event_t *)m)->conn);
        if (lc != NULL) {
            pt_outbox_flush(&lc->outbox, lc->conn);
        }
        break;
    }
    case PT_MSG_TIMER:
        if (sl->ls->ops->msg_pending(sl->ls) > 0) {
            sl->ls->ops->msg_expire(sl->ls, pt_now_seconds(), expired_cb, sl);
        }
        break;
    case PT_SL_START_RUN: {
        pt_sl_start_run_t *s = (pt_sl_start_run_t *)m;
        on_start_run(sl, s);
        free(s->app_dir);
        petal_recorddict_free(s->config_holder);
        break;
    }
    case PT_SL_NODE_IDS:
        on_node_ids(sl, (pt_sl_node_ids_t *)m);
        return; /* the sender owns and frees this one */
    case PT_SL_PUSH: {
        pt_sl_push_t *p = (pt_sl_push_t *)m;
        on_push(sl, p);
        pt_waiter_release(p->waiter);
        free(p->msgs);
        break;
    }
    case PT_SL_CANCEL: {
        pt_sl_cancel_t *c = (pt_sl_cancel_t *)m;
        on_cancel(sl, c);
        pt_waiter_release(c->waiter);
        break;
    }
    case PT_SL_RUN_DONE:
        on_run_done(sl, (pt_sl_run_done_t *)m);
        break;
    case PT_MSG_STOP:
        pt_msg_free(m);
        superlink_stop(sl);
        return;
    default:
        PT_WARN("superlink: unexpected message type %u", m->type);
        break;
    }
    pt_msg_free(m);
}

int
pt_superlink_start(pt_runtime_t *rt, const pt_superlink_opts_t *opts, pt_linkstate_t *ls,
                   pt_superlink_t **out)
{
    pt_superlink_t *sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        return PETAL_ENOMEM;
    }
    sl->rt = rt;
    sl->opts = *opts;
    if (sl->opts.heartbeat_interval <= 0) {
        sl->opts.heartbeat_interval = 30;
    }
    snprintf(sl->fleet_address, sizeof(sl->fleet_address), "%s",
             opts->fleet_address ? opts->fleet_address : "inproc://fleet");
    sl->opts.fleet_address = sl->fleet_address;
    pt_u64map_init(&sl->pending);
    pt_u64map_init(&sl->runs);
    int rc = pt_actor_spawn(rt, "superlink", superlink_handle, sl, &sl->actor);
    if (rc != 0) {
        free(sl);
        return rc;
    }
    rc = pt_listen(rt, sl->fleet_address, sl->actor, &sl->listener);
    if (rc != 0) {
        PT_ERROR("cannot listen on %s: %s", sl->fleet_address, petal_strerror(rc));
        sl->ls = ls;
        pt_actor_stop(sl->actor); /* frees sl and ls */
        return rc;
    }
    sl->ls = ls;
    rc = pt_timer_start(sl->actor, 1000, 1000, PT_SL_TTL_SWEEP, &sl->ttl_timer);
    if (rc != 0) {
        sl->ttl_timer = NULL;
    }
    *out = sl;
    return 0;
}
