/* superlink.c - the SuperLink actor: registers nodes, pushes instructions, routes replies. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "transport/secure.h"
#include "transport/stream.h"

#include "superlink_internal.h"

#define MISSED_HEARTBEATS 3 /* a keyed node silent this many intervals is offline */
/* LinkState key of a node on the secure channel: this prefix, then its 32-byte public key (a
 * plain node's "node-key" is 64 hex digits, so the two never collide). */
#define SECURE_KEY_PREFIX "ed25519:"

static atomic_uint_fast64_t last_message_id;

/* Ids start at the current time in microseconds, so a SuperLink restarted on its database never
 * reuses an id stored by the previous process (which made far fewer than one per microsecond). */
static void
seed_message_ids(void)
{
    uint_fast64_t zero = 0;
    uint64_t now_us = (uint64_t)(pt_now_seconds() * 1e6);
    atomic_compare_exchange_strong(&last_message_id, &zero, now_us);
}

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

int
pt_superlink_addresses(pt_superlink_t *sl, char *fleet, size_t fleet_cap, char *control,
                       size_t control_cap)
{
    int rc = pt_listener_addr(sl->listener, fleet, fleet_cap);
    if (rc == 0 && control != NULL) {
        if (sl->control_listener != NULL) {
            rc = pt_listener_addr(sl->control_listener, control, control_cap);
        } else if (control_cap > 0) {
            control[0] = '\0';
        }
    }
    return rc;
}

void
pt_sl_conn_send(link_conn_t *lc, pt_frame_t *f)
{
    pt_outbox_send(&lc->outbox, lc->conn, f);
}

void
pt_sl_send_error(link_conn_t *lc, int code, const char *reason)
{
    petal_configrecord_t *p;
    pt_frame_t *f = lc->control ? pt_params_frame(PT_CONTROL_ERROR, "control.error", &p)
                                : pt_params_frame(PT_FLEET_ERROR, "fleet.error", &p);
    if (f == NULL) {
        return;
    }
    pt_params_set_i64(p, "code", code);
    pt_params_set_str(p, "reason", reason);
    pt_sl_conn_send(lc, f);
}

static double
grace_seconds(const pt_superlink_t *sl)
{
    return MISSED_HEARTBEATS * sl->opts.heartbeat_interval;
}

/* ---- Pending instructions ------------------------------------------------------------------ */

static uint64_t
pending_of_node(const pt_superlink_t *sl, uint64_t node_id)
{
    return node_id != 0 ? (uint64_t)(uintptr_t)pt_u64map_get(&sl->pending_per_node, node_id) : 0;
}

/* Records that message_id waits for a reply from ref->dst_node. */
static int
pending_put(pt_superlink_t *sl, uint64_t message_id, pending_ref_t *ref)
{
    uint64_t n = pending_of_node(sl, ref->dst_node);
    int rc = pt_u64map_put(&sl->pending, message_id, ref);
    if (rc == 0 && ref->dst_node != 0) {
        rc = pt_u64map_put(&sl->pending_per_node, ref->dst_node, (void *)(uintptr_t)(n + 1));
        if (rc != 0) {
            pt_u64map_del(&sl->pending, message_id);
        }
    }
    return rc;
}

/* Forgets message_id; its reference (or NULL when it was not pending) goes to the caller. */
static pending_ref_t *
pending_take(pt_superlink_t *sl, uint64_t message_id)
{
    pending_ref_t *ref = pt_u64map_del(&sl->pending, message_id);
    if (ref != NULL && ref->dst_node != 0) {
        uint64_t n = pending_of_node(sl, ref->dst_node);
        if (n <= 1) {
            pt_u64map_del(&sl->pending_per_node, ref->dst_node);
        } else {
            /* Replacing a present key does not allocate. */
            pt_u64map_put(&sl->pending_per_node, ref->dst_node, (void *)(uintptr_t)(n - 1));
        }
    }
    return ref;
}

/* ---- Replies --------------------------------------------------------------------------------- */

/* Delivers an error reply for an instruction that cannot be answered by its node. */
static void
deliver_error(pending_ref_t *ref, const petal_message_t *instr, int code, const char *reason)
{
    petal_message_t *err = pt_message_alloc_error_reply(instr, code, reason);
    if (err != NULL) {
        pt_waiter_deliver(ref->waiter, ref->slot, err);
    }
}

/* An instruction that is refused before it is queued: its error reply goes to the waiter, and
 * the reference and the message are let go. */
static void
refuse_instruction(pending_ref_t *ref, petal_message_t *instr, int code, const char *reason)
{
    deliver_error(ref, instr, code, reason);
    pt_waiter_release(ref->waiter);
    free(ref);
    pt_message_release(instr);
}

static void
pending_drop(pt_superlink_t *sl, uint64_t message_id, int code, const char *reason)
{
    pending_ref_t *ref = pending_take(sl, message_id);
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
send_ack(link_conn_t *lc, uint64_t instruction_id)
{
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_ACK, "fleet.ack", &p);
    if (f == NULL) {
        return;
    }
    pt_params_set_i64(p, "message-id", (int64_t)instruction_id);
    pt_sl_conn_send(lc, f);
}

static void
on_reply(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    if (f->msg == NULL) {
        PT_WARN("reply frame without a message from %s; ignored", pt_conn_peer(lc->conn));
        return;
    }
    petal_metadata_t *md = pt_message_md(f->msg);
    uint64_t to = md->reply_to_message_id;
    if (md->src_node_id < lc->first_node || md->src_node_id >= lc->first_node + lc->count) {
        PT_WARN("reply from %s claims node %llu, which is not one of its nodes; ignored",
                pt_conn_peer(lc->conn), (unsigned long long)md->src_node_id);
        return;
    }
    pending_ref_t *ref = pt_u64map_get(&sl->pending, to);
    if (ref == NULL || ref->dst_node != md->src_node_id) {
        /* Answered already (a reply sent again after a reconnect), expired, or not its own. */
        PT_DEBUG("reply to unknown or expired message %llu from node %llu; dropped",
                 (unsigned long long)to, (unsigned long long)md->src_node_id);
        if (lc->keyed && ref == NULL) {
            /* Nobody waits for it (answered already, or its run ended with an earlier SuperLink
             * process): forget the stored instruction and let the node forget its reply. */
            petal_message_t *stale = sl->ls->ops->msg_take(sl->ls, to);
            if (stale != NULL) {
                pt_message_release(stale);
            }
            send_ack(lc, to);
        }
        return;
    }
    pending_take(sl, to);
    petal_message_t *instr = sl->ls->ops->msg_take(sl->ls, to);
    if (instr != NULL) {
        md->run_id = pt_message_md(instr)->run_id;
        pt_message_release(instr);
    }
    pt_waiter_deliver(ref->waiter, ref->slot, f->msg);
    f->msg = NULL;
    pt_waiter_release(ref->waiter);
    free(ref);
    if (lc->keyed) {
        send_ack(lc, to);
    }
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

static link_conn_t *
conn_of_node(pt_superlink_t *sl, uint64_t node_id)
{
    return node_id >= 1 && node_id <= sl->node_conn_cap ? sl->node_conn[node_id - 1] : NULL;
}

typedef struct redeliver {
    pt_superlink_t *sl;
    link_conn_t *lc;
} redeliver_t;

static void
redeliver_cb(void *ctx, petal_message_t *m)
{
    redeliver_t *r = ctx;
    link_conn_t *lc = r->lc;
    /* Only instructions someone still waits for: those of runs that ended (say, with an
     * earlier SuperLink process) stay stored until their TTL, but are not executed again. */
    if (pt_u64map_get(&r->sl->pending, pt_message_md(m)->message_id) == NULL) {
        return;
    }
    pt_frame_t *f = pt_frame_alloc(PT_FLEET_INSTRUCTION, pt_message_hold(m));
    if (f == NULL) {
        pt_message_release(m);
        return;
    }
    pt_sl_conn_send(lc, f);
}

static void
welcome(pt_superlink_t *sl, link_conn_t *lc)
{
    petal_configrecord_t *p;
    pt_frame_t *w = pt_params_frame(PT_FLEET_WELCOME, "fleet.welcome", &p);
    if (w == NULL) {
        return;
    }
    pt_params_set_i64(p, "node-id", (int64_t)lc->first_node);
    pt_params_set_i64(p, "count", (int64_t)lc->count);
    pt_params_set_f64(p, "heartbeat-interval", sl->opts.heartbeat_interval);
    pt_sl_conn_send(lc, w);
}

static void
on_hello(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    const petal_configrecord_t *params = pt_frame_params(f);
    const char *key = NULL;
    int64_t count = 1;
    int prc = pt_params_i64(params, "virtual-nodes", &count);
    if ((prc != 0 && prc != PETAL_ENOENT) || count < 1 || count > (int64_t)UINT32_MAX) {
        pt_sl_send_error(lc, PETAL_EINVAL, "hello: virtual-nodes must be an integer >= 1");
        return;
    }
    if (lc->count != 0) {
        pt_sl_send_error(lc, PETAL_ESTATE, "hello: this connection is registered already");
        return;
    }
    double now = pt_now_seconds();
    uint64_t first;
    int rc;
    uint8_t pk[PT_KEY_PUBLIC_BYTES] = {0};
    if (pt_conn_is_secure(lc->conn)) {
        /* The authenticated public key is the node's identity; a "node-key" is ignored. */
        uint8_t id[sizeof(SECURE_KEY_PREFIX) - 1 + PT_KEY_PUBLIC_BYTES];
        int is_new = 0;
        if (count != 1 || pt_conn_peer_key(lc->conn, pk) != 0) {
            pt_sl_send_error(lc, PETAL_EINVAL,
                             count != 1 ? "hello: a SuperNode with a key registers one node"
                                        : "hello: no authenticated key on this connection");
            return;
        }
        memcpy(id, SECURE_KEY_PREFIX, sizeof(SECURE_KEY_PREFIX) - 1);
        memcpy(id + sizeof(SECURE_KEY_PREFIX) - 1, pk, sizeof(pk));
        rc = sl->ls->ops->node_register(sl->ls, id, sizeof(id), now, &first, &is_new);
        lc->keyed = 1;
    } else if (pt_params_str(params, "node-key", &key) == 0) {
        int is_new = 0;
        size_t len = strlen(key);
        if (len == 0 || len > PT_NODE_KEY_MAX * 2) {
            pt_sl_send_error(lc, PETAL_EINVAL, "hello: node-key must be 1 to 128 characters");
            return;
        }
        rc = sl->ls->ops->node_register(sl->ls, (const uint8_t *)key,
                                        len > PT_NODE_KEY_MAX ? PT_NODE_KEY_MAX : len, now, &first,
                                        &is_new);
        count = 1;
        lc->keyed = 1;
    } else {
        rc = sl->ls->ops->nodes_create(sl->ls, (uint64_t)count, now, &first);
    }
    if (rc == 0) {
        rc = node_conn_reserve(sl, first + (uint64_t)count - 1);
    }
    if (rc != 0) {
        pt_sl_send_error(lc, rc, "hello: cannot register the node(s)");
        return;
    }
    if (lc->keyed) {
        link_conn_t *old = sl->node_conn[first - 1];
        if (old != NULL && old != lc) {
            /* The node came back on a new connection: the old one is dead or half-open. */
            PT_INFO("node %llu reconnected from %s; closing its old connection %s",
                    (unsigned long long)first, pt_conn_peer(lc->conn), pt_conn_peer(old->conn));
            old->count = 0; /* its node is not offline: it lives on here */
            pt_conn_close(old->conn);
        }
    }
    lc->first_node = first;
    lc->count = (uint64_t)count;
    for (uint64_t i = 0; i < lc->count; i++) {
        sl->node_conn[first - 1 + i] = lc;
    }
    welcome(sl, lc);
    if (lc->keyed) {
        redeliver_t r = {sl, lc};
        char fpr[PT_KEY_FPR_SIZE] = "";
        if (pt_conn_is_secure(lc->conn)) {
            pt_key_fingerprint(pk, fpr);
        }
        int64_t n = sl->ls->ops->msg_for_node(sl->ls, first, redeliver_cb, &r);
        PT_INFO("node %llu registered from %s%s%s%s", (unsigned long long)first,
                pt_conn_peer(lc->conn), fpr[0] ? " with key " : "", fpr,
                n > 0 ? " (pending instructions sent again)" : "");
    } else {
        PT_INFO("registered %lld node(s) from %s (node ids %llu..%llu)", (long long)count,
                pt_conn_peer(lc->conn), (unsigned long long)first,
                (unsigned long long)(first + (uint64_t)count - 1));
    }
}

static void
on_get_run(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    petal_value_t v;
    int64_t run_id = 0;
    pt_run_rec_t run;
    if (pt_params_i64(pt_frame_params(f), "run-id", &run_id) != 0 ||
        sl->ls->ops->run_get(sl->ls, (uint64_t)run_id, &run) != 0) {
        pt_sl_send_error(lc, PETAL_ENOENT, "get-run: unknown run id");
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = pt_params_frame(PT_FLEET_RUN, "fleet.run", &p);
    if (r == NULL) {
        return;
    }
    pt_params_set_i64(p, "run-id", run_id);
    pt_params_set_str(p, "app-dir", run.bundle_hash && run.bundle_hash[0] ? "" : run.app_dir);
    pt_params_set_str(p, "bundle-hash", run.bundle_hash ? run.bundle_hash : "");
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
    pt_sl_conn_send(lc, r);
}

static void
on_get_bundle(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    const char *hash = NULL;
    pt_buf_t *bytes = NULL;
    if (pt_params_str(pt_frame_params(f), "bundle-hash", &hash) != 0 ||
        sl->ls->ops->bundle_get(sl->ls, hash, &bytes) != 0) {
        pt_sl_send_error(lc, PETAL_ENOENT, "get-bundle: unknown bundle");
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *r = pt_params_frame(PT_FLEET_BUNDLE, "fleet.bundle", &p);
    petal_arrayrecord_t *ar =
        r ? petal_recorddict_add_arrays(pt_message_content_mut(r->msg), PT_BUNDLE_RECORD) : NULL;
    uint64_t shape[1] = {pt_buf_len(bytes)};
    if (ar == NULL || pt_params_set_str(p, "bundle-hash", hash) != 0 ||
        pt_arrayrecord_add_view(ar, "bytes", PETAL_DTYPE_UINT8, 1, shape, bytes, 0) == NULL) {
        if (r != NULL) {
            pt_msg_free(&r->hdr);
        }
        pt_buf_release(bytes);
        pt_sl_send_error(lc, PETAL_ENOMEM, "get-bundle: out of memory");
        return;
    }
    pt_buf_release(bytes); /* the array holds its own reference */
    pt_sl_conn_send(lc, r);
}

static void
nodes_gone(pt_superlink_t *sl, link_conn_t *lc)
{
    double now = pt_now_seconds();
    for (uint64_t i = 0; i < lc->count; i++) {
        sl->ls->ops->node_set_online(sl->ls, lc->first_node + i, 0, now);
        sl->node_conn[lc->first_node - 1 + i] = NULL;
    }
    if (lc->keyed) {
        return; /* its instructions wait for a reconnect, up to the grace period */
    }
    /* Virtual nodes never come back: their instructions will not be answered. */
    uint64_t *ids = malloc((sl->pending.count + 1) * sizeof(*ids));
    size_t n = 0;
    uint64_t key;
    void *val;
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
on_fleet_frame(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f)
{
    if (lc->count == 0 && f->kind != PT_FLEET_HELLO) {
        PT_WARN("frame kind 0x%04x from %s before hello; closing", f->kind, pt_conn_peer(lc->conn));
        pt_sl_send_error(lc, PETAL_EPROTO, "say hello first");
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
    case PT_FLEET_GET_BUNDLE:
        on_get_bundle(sl, lc, f);
        break;
    case PT_FLEET_HEARTBEAT:
        for (uint64_t i = 0; i < lc->count; i++) {
            sl->ls->ops->node_set_online(sl->ls, lc->first_node + i, 1, lc->last_seen);
        }
        break;
    case PT_FLEET_GOODBYE:
        PT_INFO("node(s) on %s said goodbye", pt_conn_peer(lc->conn));
        pt_conn_close(lc->conn);
        break;
    default:
        PT_WARN("unknown fleet frame kind 0x%04x from %s; closing", f->kind,
                pt_conn_peer(lc->conn));
        pt_sl_send_error(lc, PETAL_EPROTO, "unknown frame kind");
        pt_conn_close(lc->conn);
        break;
    }
}

static void
on_frame(pt_superlink_t *sl, pt_frame_t *f)
{
    link_conn_t *lc = pt_conn_data(f->conn);
    if (lc == NULL || lc->refused) {
        return; /* a refused connection was told why; nothing it sends is read */
    }
    lc->last_seen = pt_now_seconds();
    if (f->version != PT_PROTOCOL_VERSION) {
        PT_WARN("frame of protocol version %u from %s refused (this SuperLink speaks %u)",
                f->version, pt_conn_peer(lc->conn), PT_PROTOCOL_VERSION);
        pt_sl_send_error(lc, PETAL_EVERSION, "unsupported protocol version");
        pt_conn_close(lc->conn);
        return;
    }
    if (lc->control) {
        pt_sl_control_frame(sl, lc, f);
    } else {
        on_fleet_frame(sl, lc, f);
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
    lc->last_seen = pt_now_seconds();
    /* Connections accepted on the control listener are CLI sessions. */
    lc->control = sl->control_listener != NULL && ev->listener == sl->control_listener;
    lc->next = sl->conns;
    sl->conns = lc;
    pt_conn_set_data(ev->conn, lc);
    uint64_t *open = lc->control ? &sl->control_conns : &sl->fleet_conns;
    uint64_t max = lc->control ? sl->opts.max_control_connections : sl->opts.max_connections;
    if (max > 0 && *open >= max) {
        /* Told why; the peer closes (a CLI ends, a SuperNode backs off), or the sweep does. */
        char reason[200];
        snprintf(reason, sizeof(reason),
                 "too many connections: the SuperLink has %llu %s connections open, its limit "
                 "(--max-%sconnections %llu); try again later",
                 (unsigned long long)*open, lc->control ? "control" : "fleet",
                 lc->control ? "control-" : "", (unsigned long long)max);
        PT_WARN("%s connection from %s refused: %llu open, the limit is %llu",
                lc->control ? "control" : "fleet", pt_conn_peer(ev->conn),
                (unsigned long long)*open, (unsigned long long)max);
        lc->refused = 1;
        pt_sl_send_error(lc, PETAL_EAGAIN, reason);
        return;
    }
    (*open)++;
    PT_DEBUG("%s connection from %s", lc->control ? "control" : "fleet", pt_conn_peer(ev->conn));
}

/* Refused connections whose peer did not close them within 2 s are closed here. */
static void
close_refused(pt_superlink_t *sl)
{
    double now = pt_now_seconds();
    for (link_conn_t *lc = sl->conns; lc != NULL; lc = lc->next) {
        if (lc->refused && now - lc->last_seen > 2.0) {
            pt_conn_close(lc->conn);
        }
    }
}

static void
on_conn_down(pt_superlink_t *sl, pt_conn_event_t *ev)
{
    link_conn_t *lc = pt_conn_data(ev->conn);
    if (lc == NULL) {
        return;
    }
    pt_conn_set_data(ev->conn, NULL);
    if (!lc->refused) {
        uint64_t *open = lc->control ? &sl->control_conns : &sl->fleet_conns;
        *open -= *open > 0;
    }
    if (lc->count > 0) {
        PT_INFO("%s disconnected (%s); %llu node(s) offline", pt_conn_peer(ev->conn),
                ev->reason[0] ? ev->reason : petal_strerror(ev->status),
                (unsigned long long)lc->count);
        nodes_gone(sl, lc);
    }
    if (lc->control) {
        pt_sl_control_conn_down(sl, lc);
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

/* Keyed nodes silent for the grace period are offline; their instructions fail. */
static void
check_liveness(pt_superlink_t *sl)
{
    double now = pt_now_seconds(), grace = grace_seconds(sl);
    for (link_conn_t *lc = sl->conns; lc != NULL; lc = lc->next) {
        if (lc->keyed && lc->count > 0 && now - lc->last_seen > grace) {
            PT_WARN("node %llu missed %d heartbeats; closing its connection",
                    (unsigned long long)lc->first_node, MISSED_HEARTBEATS);
            pt_conn_close(lc->conn);
        }
    }
    uint64_t *ids = malloc((sl->pending.count + 1) * sizeof(*ids));
    size_t n = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; ids != NULL && pt_u64map_next(&sl->pending, &it, &key, &val);) {
        pending_ref_t *ref = val;
        pt_node_rec_t node;
        if (conn_of_node(sl, ref->dst_node) == NULL &&
            (sl->ls->ops->node_get(sl->ls, ref->dst_node, &node) != 0 ||
             now - node.last_seen > grace)) {
            ids[n++] = key;
        }
    }
    for (size_t i = 0; i < n; i++) {
        pending_drop(sl, ids[i], PETAL_E_NODE_UNAVAILABLE,
                     "the node went offline and did not come back");
    }
    free(ids);
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
        link_conn_t *lc = conn_of_node(sl, md->dst_node_id);
        pt_node_rec_t node;
        int reachable = lc != NULL || (sl->ls->ops->node_get(sl->ls, md->dst_node_id, &node) == 0 &&
                                       now - node.last_seen <= grace_seconds(sl) &&
                                       md->dst_node_id <= sl->node_conn_cap);
        if (!reachable) {
            refuse_instruction(ref, m, PETAL_E_NODE_UNAVAILABLE,
                               "the destination node is unknown or offline");
            continue;
        }
        uint64_t limit = sl->opts.max_pending_per_node;
        if (limit > 0 && pending_of_node(sl, md->dst_node_id) >= limit) {
            char reason[256];
            snprintf(reason, sizeof(reason),
                     "node %llu already has %llu instructions waiting for a reply, the "
                     "SuperLink's limit (--max-pending-per-node %llu); this one was not queued",
                     (unsigned long long)md->dst_node_id,
                     (unsigned long long)pending_of_node(sl, md->dst_node_id),
                     (unsigned long long)limit);
            PT_WARN("run %llu: %s", (unsigned long long)p->run_id, reason);
            refuse_instruction(ref, m, PETAL_E_MESSAGE_UNAVAILABLE, reason);
            continue;
        }
        char why[256] = "";
        if (pt_stream_check_message(m, why, sizeof(why)) != 0) {
            /* Neither stored nor queued: every later send would fail the same way, and the
             * ServerApp would wait for the message's TTL. */
            char reason[400];
            snprintf(reason, sizeof(reason), "the instruction cannot be sent to node %llu: %s",
                     (unsigned long long)md->dst_node_id, why);
            PT_WARN("run %llu: %s", (unsigned long long)p->run_id, reason);
            refuse_instruction(ref, m, PETAL_E_MESSAGE_UNAVAILABLE, reason);
            continue;
        }
        if (sl->ls->ops->msg_put(sl->ls, m) != 0) {
            refuse_instruction(ref, m, PETAL_E_UNKNOWN, "SuperLink cannot store the instruction");
            continue;
        }
        if (pending_put(sl, md->message_id, ref) != 0) {
            pt_message_release(sl->ls->ops->msg_take(sl->ls, md->message_id));
            refuse_instruction(ref, m, PETAL_E_UNKNOWN, "SuperLink out of memory");
            continue;
        }
        if (lc == NULL) {
            pt_message_release(m); /* stored: sent when the node reconnects */
            continue;
        }
        pt_frame_t *f = pt_frame_alloc(PT_FLEET_INSTRUCTION, m);
        if (f == NULL) {
            pending_drop(sl, md->message_id, PETAL_E_UNKNOWN, "SuperLink out of memory");
            pt_message_release(m);
            continue;
        }
        /* The frame owns our reference to m; LinkState holds another. */
        int rc = pt_outbox_send(&lc->outbox, lc->conn, f);
        if (rc != 0) {
            char reason[160];
            snprintf(reason, sizeof(reason), "the instruction cannot be sent to node %llu: %s",
                     (unsigned long long)md->dst_node_id, petal_strerror(rc));
            pending_drop(sl, md->message_id, PETAL_E_MESSAGE_UNAVAILABLE, reason);
        }
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

static void
on_start_run(pt_superlink_t *sl, pt_sl_start_run_t *s)
{
    char err[512];
    uint64_t run_id;
    petal_recorddict_t *holder = s->config_holder;
    s->config_holder = NULL;
    if (pt_sl_run_start(sl, s->app_dir, NULL, holder, s->observer, &run_id, err, sizeof(err)) !=
        0) {
        PT_ERROR("cannot start a run of %s: %s", s->app_dir, err);
        if (s->observer != NULL && s->observer->on_done != NULL) {
            s->observer->on_done(s->observer->ctx, 0, PT_RUN_FAILED, err);
        }
        if (sl->opts.exit_when_idle && sl->running_runs == 0) {
            pt_runtime_shutdown(sl->rt);
        }
    }
}

static void
expired_cb(void *ctx, petal_message_t *instr)
{
    pt_superlink_t *sl = ctx;
    uint64_t id = pt_message_md(instr)->message_id;
    pending_ref_t *ref = pending_take(sl, id);
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
    if (sl->liveness_timer != NULL) {
        pt_timer_stop(sl->liveness_timer);
    }
    if (sl->listener != NULL) {
        pt_listener_close(sl->listener);
    }
    if (sl->control_listener != NULL) {
        pt_listener_close(sl->control_listener);
    }
    pt_sl_runs_free(sl);
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&sl->pending, &it, &key, &val);) {
        pending_ref_t *ref = val;
        pt_waiter_release(ref->waiter);
        free(ref);
    }
    pt_u64map_fini(&sl->pending);
    pt_u64map_fini(&sl->pending_per_node);
    while (sl->conns != NULL) {
        link_conn_t *lc = sl->conns;
        sl->conns = lc->next;
        pt_outbox_clear(&lc->outbox);
        pt_conn_set_data(lc->conn, NULL);
        pt_conn_close(lc->conn);
        free(lc);
    }
    while (sl->followers != NULL) {
        log_follower_t *f = sl->followers;
        sl->followers = f->next;
        free(f);
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
        if (((pt_timer_msg_t *)m)->tag == PT_SL_TTL_SWEEP) {
            close_refused(sl);
            if (sl->ls->ops->msg_pending(sl->ls) > 0) {
                sl->ls->ops->msg_expire(sl->ls, pt_now_seconds(), expired_cb, sl);
            }
        } else {
            check_liveness(sl);
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
        pt_sl_run_done(sl, (pt_sl_run_done_t *)m);
        break;
    case PT_SL_LOG: {
        pt_sl_log_t *l = (pt_sl_log_t *)m;
        pt_sl_run_log(sl, l->run_id, "%s", l->line);
        break;
    }
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

/* Listens on addr: with the secure channel when the SuperLink has an identity (except inproc,
 * which never leaves the process), the fleet authorizing SuperNode keys, the control address
 * operator keys. */
static int
listen_on(pt_superlink_t *sl, const char *addr, int control, pt_listener_t **out)
{
    if (sl->opts.identity == NULL || strncmp(addr, "inproc://", 9) == 0) {
        return pt_listen(sl->rt, addr, sl->actor, out);
    }
    const pt_keylist_t *allowed = control ? sl->opts.operators : sl->opts.allow_nodes;
    pt_secure_opts_t so = {.identity = sl->opts.identity,
                           .authorize = allowed != NULL ? pt_keylist_authorize : NULL,
                           .ctx = (void *)allowed,
                           .handshake_timeout = sl->opts.handshake_timeout,
                           .ciphers = sl->opts.ciphers,
                           /* A connection in its handshake counts against the limit too. */
                           .max_handshakes = control ? sl->opts.max_control_connections
                                                     : sl->opts.max_connections};
    return pt_listen_secure(sl->rt, addr, sl->actor, &so, out);
}

int
pt_superlink_start(pt_runtime_t *rt, const pt_superlink_opts_t *opts, pt_linkstate_t *ls,
                   pt_superlink_t **out)
{
    pt_superlink_t *sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        ls->ops->free(ls);
        return PETAL_ENOMEM;
    }
    sl->rt = rt;
    sl->ls = ls;
    sl->opts = *opts;
    if (sl->opts.heartbeat_interval <= 0) {
        sl->opts.heartbeat_interval = 30;
    }
    snprintf(sl->fleet_address, sizeof(sl->fleet_address), "%s",
             opts->fleet_address ? opts->fleet_address : "inproc://fleet");
    sl->opts.fleet_address = sl->fleet_address;
    snprintf(sl->control_address, sizeof(sl->control_address), "%s",
             opts->control_address ? opts->control_address : "");
    sl->opts.control_address = opts->control_address ? sl->control_address : NULL;
    if (opts->cache_dir != NULL) {
        snprintf(sl->cache_dir, sizeof(sl->cache_dir), "%s", opts->cache_dir);
    } else {
        const char *base = getenv("XDG_CACHE_HOME");
        snprintf(sl->cache_dir, sizeof(sl->cache_dir), "%s%s/petal/superlink-bundles",
                 base ? base : (getenv("HOME") ? getenv("HOME") : "/tmp"), base ? "" : "/.cache");
    }
    sl->opts.cache_dir = sl->cache_dir;
    if (opts->serverapp_exe != NULL) {
        snprintf(sl->serverapp_exe, sizeof(sl->serverapp_exe), "%s", opts->serverapp_exe);
        sl->opts.serverapp_exe = sl->serverapp_exe;
    }
    pt_u64map_init(&sl->pending);
    pt_u64map_init(&sl->pending_per_node);
    pt_u64map_init(&sl->runs);
    seed_message_ids();
    int rc = pt_actor_spawn(rt, "superlink", superlink_handle, sl, &sl->actor);
    if (rc != 0) {
        ls->ops->free(ls);
        free(sl);
        return rc;
    }
    rc = listen_on(sl, sl->fleet_address, 0, &sl->listener);
    if (rc != 0) {
        PT_ERROR("cannot listen on %s: %s", sl->fleet_address, petal_strerror(rc));
        pt_actor_stop(sl->actor); /* frees sl and ls */
        return rc;
    }
    if (sl->opts.control_address != NULL) {
        rc = listen_on(sl, sl->control_address, 1, &sl->control_listener);
        if (rc != 0) {
            PT_ERROR("cannot listen on %s: %s", sl->control_address, petal_strerror(rc));
            pt_actor_stop(sl->actor);
            return rc;
        }
    }
    if (pt_timer_start(sl->actor, 1000, 1000, PT_SL_TTL_SWEEP, &sl->ttl_timer) != 0) {
        sl->ttl_timer = NULL;
    }
    uint64_t ms = (uint64_t)(sl->opts.heartbeat_interval * 1000.0);
    if (pt_timer_start(sl->actor, ms, ms, 0, &sl->liveness_timer) != 0) {
        sl->liveness_timer = NULL;
    }
    *out = sl;
    return 0;
}
