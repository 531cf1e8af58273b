/* supernode.c - the SuperNode actor: Fleet client with reconnects, acks, bundles and the ClientApp.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "actors/clientapp/clientapp.h"
#include "actors/frameq.h"
#include "actors/outbox.h"
#include "actors/params.h"
#include "actors/protocol.h"
#include "actors/supernode/executor.h"
#include "runtime/bundle.h"
#include "runtime/codec.h"
#include "runtime/context.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/u64map.h"
#include "transport/secure.h"
#include "transport/stream.h"
#include "transport/transport.h"

#include "supernode.h"

enum { SN_TIMER_HEARTBEAT = 1, SN_TIMER_RECONNECT = 2 };
enum { SN_JOB_BUNDLE = 1 };

#define PT_NODE_KEY_BYTES 32
#ifndef PT_BUNDLE_HASH_MAX
#define PT_BUNDLE_HASH_MAX 64 /* hex SHA-256 */
#endif

enum run_state { RUN_FETCHING, RUN_BUNDLE, RUN_LOADING, RUN_READY, RUN_FAILED };

typedef struct sn_run {
    uint64_t run_id;
    enum run_state state;
    char bundle_hash[PT_BUNDLE_HASH_MAX + 1];
    char app_dir[4096];
    pt_run_config_t *config;
    petal_context_t *ctx; /* this node's context in the run */
    pt_executor_t *exec;  /* runs the ClientApp (thread or child process) */
    char error[512];
} sn_run_t;

/* A reply waiting for the SuperLink's acknowledgement. */
typedef struct sn_unacked {
    uint64_t instruction_id;
    petal_message_t *reply;
    struct sn_unacked *next;
} sn_unacked_t;

typedef struct sn_job {
    pt_job_t job;
    pt_supernode_t *sn;
    char hash[PT_BUNDLE_HASH_MAX + 1];
    pt_buf_t *bundle;
    char app_dir[4096];
    char error[512];
    int rc;
} sn_job_t;

struct pt_supernode {
    atomic_uint refs;
    pt_runtime_t *rt;
    pt_actor_t *actor;
    pt_supernode_opts_t opts;
    char address[256];
    char cache_dir[4096];
    char self_exe[4096];
    uint8_t key[PT_NODE_KEY_BYTES];
    petal_recorddict_t *node_config; /* "config" holder */
    pt_conn_t *conn;
    int welcomed;
    uint64_t node_id;
    pt_outbox_t outbox;
    pt_timer_t *heartbeat, *reconnect;
    double heartbeat_interval;
    uint32_t attempts;         /* failed connection attempts in a row */
    uint64_t first_failure_ms; /* when the current outage began */
    pt_u64map_t runs;          /* run id -> sn_run_t* */
    pt_frameq_t queue;         /* instructions waiting for the ClientApp */
    int busy;                  /* an instruction is being executed */
    uint64_t busy_instruction;
    sn_unacked_t *unacked; /* replies not yet acknowledged, oldest first */
    pt_u64map_t done;      /* instruction ids answered and acknowledged -> (void*)1 */
    int stopping;
    int exit_status;
    char refusal[300]; /* why the SuperLink refused this connection ("" if it did not) */
    uint8_t pin[PT_KEY_PUBLIC_BYTES]; /* the SuperLink's key (secure channel) */
    char pin_source[512];
    char pin_mismatch[800]; /* set by check_pin: the node stops */
};

static void connect_now(pt_supernode_t *sn);
static void pump(pt_supernode_t *sn);

/* ---- Small helpers -------------------------------------------------------------------------- */

static void
send_frame(pt_supernode_t *sn, pt_frame_t *f)
{
    if (sn->conn == NULL) {
        pt_msg_free(&f->hdr);
        return;
    }
    pt_outbox_send(&sn->outbox, sn->conn, f);
}

static void
send_reply_frame(pt_supernode_t *sn, petal_message_t *reply)
{
    pt_frame_t *f = pt_frame_alloc(PT_FLEET_REPLY, pt_message_hold(reply));
    if (f == NULL) {
        pt_message_release(reply);
        return;
    }
    send_frame(sn, f);
}

/* A reply the wire cannot carry (an array over 4 GiB - 1 bytes, or a message over
 * --max-message-size) would fail at every send and its instruction would wait for the round
 * timeout: answer with an error reply that says why instead. The check encodes headers only
 * (arrays are referenced), so it is cheap. */
static petal_message_t *
sendable(petal_message_t *r)
{
    char why[256] = "";
    int rc = pt_stream_check_message(r, why, sizeof(why));
    if (rc == 0) {
        return r;
    }
    char reason[400];
    snprintf(reason, sizeof(reason),
             "the ClientApp's reply cannot be sent: %s (%llu bytes of arrays in all)", why,
             (unsigned long long)(petal_message_content(r)
                                      ? pt_recorddict_array_bytes(petal_message_content(r))
                                      : 0));
    PT_ERROR("%s", reason);
    petal_message_t *err =
        pt_message_alloc_error(pt_message_md_const(r), PETAL_E_CLIENT_APP_RAISED_EXCEPTION, reason);
    if (err == NULL) {
        return r;
    }
    petal_message_free(r);
    return err;
}

/* Queues the reply until acknowledged, and sends it now if connected. Takes `reply`. */
static void
reply(pt_supernode_t *sn, uint64_t instruction_id, petal_message_t *r)
{
    r = sendable(r);
    sn_unacked_t *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        petal_message_free(r);
        return;
    }
    u->instruction_id = instruction_id;
    u->reply = r;
    sn_unacked_t **p = &sn->unacked;
    while (*p != NULL) {
        p = &(*p)->next;
    }
    *p = u;
    if (sn->welcomed) {
        send_reply_frame(sn, r);
    }
}

static void
reply_error(pt_supernode_t *sn, pt_frame_t *f, int code, const char *reason)
{
    uint64_t id = pt_message_md(f->msg)->message_id;
    petal_message_t *r = pt_message_alloc_error_reply(f->msg, code, reason);
    pt_msg_free(&f->hdr);
    if (r != NULL) {
        reply(sn, id, r);
    }
}

/* ---- Runs and bundles -------------------------------------------------------------------------
 */

static void
run_free(sn_run_t *run)
{
    pt_executor_free(run->exec);
    pt_context_free(run->ctx);
    if (run->config != NULL) {
        pt_run_config_release(run->config);
    }
    free(run);
}

static void run_failed(pt_supernode_t *sn, sn_run_t *run, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
run_failed(pt_supernode_t *sn, sn_run_t *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    run->state = RUN_FAILED;
    vsnprintf(run->error, sizeof(run->error), fmt, ap);
    va_end(ap);
    PT_ERROR("run %llu: %s", (unsigned long long)run->run_id, run->error);
    pump(sn);
}

static void
on_exec_done(pt_supernode_t *sn, pt_exec_done_t *d)
{
    if (d->loaded) {
        uint64_t key;
        void *val;
        for (size_t it = 0; pt_u64map_next(&sn->runs, &it, &key, &val);) {
            sn_run_t *run = val;
            if (run->exec != d->exec || run->state != RUN_LOADING) {
                continue;
            }
            if (pt_executor_error(run->exec)[0] != '\0') {
                run_failed(sn, run, "%s", pt_executor_error(run->exec));
            } else {
                run->state = RUN_READY;
                PT_INFO("run %llu: ClientApp ready (%s isolation)", (unsigned long long)run->run_id,
                        sn->opts.isolation == PT_ISOLATION_PROCESS ? "process" : "thread");
                pump(sn);
            }
        }
        return;
    }
    sn->busy = 0;
    if (d->reply != NULL) {
        reply(sn, d->instruction_id, d->reply);
        d->reply = NULL;
    }
    pump(sn);
}

static void
run_load(pt_supernode_t *sn, sn_run_t *run)
{
    char err[512];
    petal_recorddict_t *nc = pt_recorddict_clone(sn->node_config);
    run->ctx = nc ? pt_context_alloc(run->run_id, sn->node_id, run->config, nc) : NULL;
    if (run->ctx == NULL) {
        petal_recorddict_free(nc);
        run_failed(sn, run, "out of memory creating the node's context");
        return;
    }
    int rc = pt_executor_start(sn->rt, sn->actor, sn->opts.isolation, run->app_dir,
                               pt_run_config_get(run->config), sn->self_exe, &run->exec, err,
                               sizeof(err));
    if (rc != 0) {
        run_failed(sn, run, "%s", err);
        return;
    }
    run->state = RUN_LOADING; /* until the executor says it loaded */
}

static void
bundle_work(pt_job_t *job)
{
    sn_job_t *j = (sn_job_t *)job;
    /* Hash, structure, signature and publisher are all checked before anything is written. */
    j->rc = pt_bundle_cache_get_trusted(j->sn->cache_dir, j->hash, pt_buf_data(j->bundle),
                                        pt_buf_len(j->bundle), j->sn->opts.trusted_publishers,
                                        j->app_dir, sizeof(j->app_dir), j->error, sizeof(j->error));
}

static void
job_free(pt_msg_t *m)
{
    sn_job_t *j = (sn_job_t *)m;
    if (j->bundle != NULL) {
        pt_buf_release(j->bundle);
    }
    free(j);
}

static void
on_bundle_done(pt_supernode_t *sn, sn_job_t *j)
{
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&sn->runs, &it, &key, &val);) {
        sn_run_t *run = val;
        if (run->state != RUN_BUNDLE || strcmp(run->bundle_hash, j->hash) != 0) {
            continue;
        }
        if (j->rc != 0) {
            run_failed(sn, run, "the app bundle was refused: %s", j->error);
            continue;
        }
        snprintf(run->app_dir, sizeof(run->app_dir), "%s", j->app_dir);
        run_load(sn, run);
    }
}

static void
on_bundle(pt_supernode_t *sn, pt_frame_t *f)
{
    const char *hash = NULL;
    pt_params_str(pt_frame_params(f), "bundle-hash", &hash);
    const petal_arrayrecord_t *ar =
        petal_recorddict_arrays(petal_message_content(f->msg), PT_BUNDLE_RECORD);
    const petal_array_t *a = ar ? petal_arrayrecord_get(ar, "bytes") : NULL;
    if (hash == NULL || strlen(hash) != PT_BUNDLE_HASH_MAX || a == NULL ||
        petal_array_dtype(a) != PETAL_DTYPE_UINT8) {
        PT_WARN("malformed bundle frame from the SuperLink; ignored");
        return;
    }
    sn_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        return;
    }
    /* The bytes stay in the received frame's buffer; the job holds a reference. */
    j->bundle = pt_array_buf(a);
    pt_buf_hold(j->bundle);
    if (pt_array_offset(a) != 0 || pt_buf_len(j->bundle) != petal_array_nbytes(a)) {
        pt_buf_t *copy = pt_buf_alloc(petal_array_nbytes(a), 0);
        if (copy == NULL) {
            job_free(&j->job.hdr);
            return;
        }
        memcpy(pt_buf_data(copy), petal_array_data(a), petal_array_nbytes(a));
        pt_buf_release(j->bundle);
        j->bundle = copy;
    }
    snprintf(j->hash, sizeof(j->hash), "%s", hash);
    j->sn = sn;
    j->job.hdr.type = SN_JOB_BUNDLE;
    j->job.hdr.free = job_free;
    j->job.work = bundle_work;
    j->job.reply_to = sn->actor;
    if (pt_pool_submit(sn->rt, &j->job) != 0) {
        job_free(&j->job.hdr);
    }
}

static void
on_run_info(pt_supernode_t *sn, pt_frame_t *f)
{
    const petal_configrecord_t *p = pt_frame_params(f);
    int64_t run_id;
    const char *hash = "", *app_dir = "";
    sn_run_t *run;
    if (pt_params_i64(p, "run-id", &run_id) != 0 ||
        (run = pt_u64map_get(&sn->runs, (uint64_t)run_id)) == NULL || run->state != RUN_FETCHING) {
        PT_WARN("unexpected run frame from the SuperLink; ignored");
        return;
    }
    pt_params_str(p, "bundle-hash", &hash);
    pt_params_str(p, "app-dir", &app_dir);
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *cfg =
        holder ? petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME) : NULL;
    const petal_configrecord_t *src =
        petal_recorddict_config(petal_message_content(f->msg), PT_RUN_CONFIG);
    const char *name;
    petal_value_t v;
    int ok = cfg != NULL;
    for (uint64_t i = 0; ok && src != NULL && i < petal_configrecord_count(src); i++) {
        ok = petal_configrecord_at(src, i, &name, &v) == 0 &&
             petal_configrecord_set(cfg, name, &v) == 0;
    }
    run->config = ok ? pt_run_config_alloc(holder) : NULL;
    if (run->config == NULL) {
        petal_recorddict_free(holder);
        run_failed(sn, run, "out of memory keeping the run config");
        return;
    }
    if (hash[0] == '\0' && sn->opts.trusted_publishers != NULL) {
        run_failed(sn, run,
                   "the app bundle was refused: bundle is not signed (the run names the local "
                   "app directory '%.200s'; --trusted-publishers requires signed bundles)",
                   app_dir);
        return;
    }
    if (hash[0] == '\0') {
        /* A run of a local app directory (same machine, tests): no bundle to fetch. */
        snprintf(run->app_dir, sizeof(run->app_dir), "%s", app_dir);
        run_load(sn, run);
        return;
    }
    if (strlen(hash) != PT_BUNDLE_HASH_MAX) {
        run_failed(sn, run, "the SuperLink sent a malformed bundle hash '%s'", hash);
        return;
    }
    snprintf(run->bundle_hash, sizeof(run->bundle_hash), "%s", hash);
    /* Cached (and, with trusted publishers, recorded as signed by one): no need to fetch. Any
     * other answer fetches the bytes, whose check gives the definitive one. */
    char why[512];
    if (pt_bundle_cache_get_trusted(sn->cache_dir, hash, NULL, 0, sn->opts.trusted_publishers,
                                    run->app_dir, sizeof(run->app_dir), why, sizeof(why)) == 0) {
        run_load(sn, run);
        return;
    }
    run->state = RUN_BUNDLE;
    petal_configrecord_t *q;
    pt_frame_t *g = pt_params_frame(PT_FLEET_GET_BUNDLE, "fleet.get-bundle", &q);
    if (g == NULL || pt_params_set_str(q, "bundle-hash", hash) != 0) {
        if (g != NULL) {
            pt_msg_free(&g->hdr);
        }
        run_failed(sn, run, "out of memory asking for the bundle");
        return;
    }
    send_frame(sn, g);
}

static sn_run_t *
run_get_or_fetch(pt_supernode_t *sn, uint64_t run_id)
{
    sn_run_t *run = pt_u64map_get(&sn->runs, run_id);
    if (run != NULL) {
        return run;
    }
    run = calloc(1, sizeof(*run));
    if (run == NULL || pt_u64map_put(&sn->runs, run_id, run) != 0) {
        free(run);
        return NULL;
    }
    run->run_id = run_id;
    run->state = RUN_FETCHING;
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_GET_RUN, "fleet.get-run", &p);
    if (f == NULL || pt_params_set_i64(p, "run-id", (int64_t)run_id) != 0) {
        if (f != NULL) {
            pt_msg_free(&f->hdr);
        }
        run->state = RUN_FAILED;
        snprintf(run->error, sizeof(run->error), "out of memory asking for the run");
        return run;
    }
    send_frame(sn, f);
    return run;
}

/* ---- Instructions -------------------------------------------------------------------------------
 */

/* Runs queued instructions one at a time, in arrival order, once their run is ready. */
static void
pump(pt_supernode_t *sn)
{
    while (!sn->busy && sn->queue.head != NULL) {
        pt_frame_t *f = sn->queue.head;
        const petal_metadata_t *md = pt_message_md_const(f->msg);
        sn_run_t *run = run_get_or_fetch(sn, md->run_id);
        if (run == NULL) {
            reply_error(sn, pt_frameq_pop(&sn->queue), PETAL_E_UNKNOWN, "out of memory");
            continue;
        }
        if (run->state == RUN_FAILED) {
            int code = strstr(run->error, "bundle") != NULL ? PETAL_E_INVALID_BUNDLE
                                                            : PETAL_E_LOAD_CLIENT_APP_EXCEPTION;
            reply_error(sn, pt_frameq_pop(&sn->queue), code, run->error);
            continue;
        }
        if (run->state != RUN_READY) {
            return; /* waits for its run; later ones wait behind it to keep the order */
        }
        f = pt_frameq_pop(&sn->queue);
        sn->busy = 1;
        sn->busy_instruction = md->message_id;
        int rc = pt_executor_submit(run->exec, run->ctx, f);
        if (rc != 0) {
            sn->busy = 0;
            reply_error(sn, f, PETAL_E_UNKNOWN, "cannot run the ClientApp");
        }
    }
}

static int
already_seen(pt_supernode_t *sn, uint64_t id)
{
    if (pt_u64map_get(&sn->done, id) != NULL || (sn->busy && sn->busy_instruction == id)) {
        return 1;
    }
    for (sn_unacked_t *u = sn->unacked; u != NULL; u = u->next) {
        if (u->instruction_id == id) {
            return 1; /* its reply is on its way (again, after the reconnect) */
        }
    }
    for (pt_frame_t *q = sn->queue.head; q != NULL; q = (pt_frame_t *)q->hdr.next) {
        if (pt_message_md(q->msg)->message_id == id) {
            return 1;
        }
    }
    return 0;
}

static void
on_instruction(pt_supernode_t *sn, pt_frame_t *f)
{
    if (f->msg == NULL || petal_message_content(f->msg) == NULL) {
        PT_WARN("instruction without content from the SuperLink; ignored");
        pt_msg_free(&f->hdr);
        return;
    }
    const petal_metadata_t *md = pt_message_md_const(f->msg);
    if (md->dst_node_id != sn->node_id) {
        PT_WARN("instruction for node %llu arrived at node %llu; refused",
                (unsigned long long)md->dst_node_id, (unsigned long long)sn->node_id);
        reply_error(sn, f, PETAL_E_NODE_UNAVAILABLE, "instruction sent to the wrong node");
        return;
    }
    if (already_seen(sn, md->message_id)) {
        PT_DEBUG("instruction %llu delivered again; answered once",
                 (unsigned long long)md->message_id);
        pt_msg_free(&f->hdr);
        return;
    }
    pt_frameq_push(&sn->queue, f);
    pump(sn);
}

static void
on_ack(pt_supernode_t *sn, pt_frame_t *f)
{
    int64_t id;
    if (pt_params_i64(pt_frame_params(f), "message-id", &id) != 0) {
        return;
    }
    for (sn_unacked_t **p = &sn->unacked; *p != NULL; p = &(*p)->next) {
        if ((*p)->instruction_id == (uint64_t)id) {
            sn_unacked_t *u = *p;
            *p = u->next;
            pt_message_release(u->reply);
            free(u);
            pt_u64map_put(&sn->done, (uint64_t)id, (void *)1);
            return;
        }
    }
}

/* ---- Connection
 * ----------------------------------------------------------------------------------- */

static void
send_hello(pt_supernode_t *sn)
{
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_HELLO, "fleet.hello", &p);
    char hex[2 * PT_NODE_KEY_BYTES + 1];
    sodium_bin2hex(hex, sizeof(hex), sn->key, sizeof(sn->key));
    /* On the secure channel the SuperLink knows the node by its authenticated key. */
    if (f == NULL || (sn->opts.identity == NULL && pt_params_set_str(p, "node-key", hex) != 0)) {
        if (f != NULL) {
            pt_msg_free(&f->hdr);
        }
        return;
    }
    /* The node config travels as its own ConfigRecord. */
    petal_configrecord_t *nc =
        petal_recorddict_add_config(pt_message_content_mut(f->msg), "node-config");
    const petal_configrecord_t *src = petal_recorddict_config(sn->node_config, "config");
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0; nc != NULL && src != NULL && i < petal_configrecord_count(src); i++) {
        if (petal_configrecord_at(src, i, &name, &v) == 0) {
            petal_configrecord_set(nc, name, &v);
        }
    }
    pt_conn_send(sn->conn, f) == 0 ? (void)0 : pt_msg_free(&f->hdr);
}

static void
on_welcome(pt_supernode_t *sn, pt_frame_t *f)
{
    const petal_configrecord_t *p = pt_frame_params(f);
    int64_t id;
    double hb = 30;
    if (pt_params_i64(p, "node-id", &id) != 0 || id < 1) {
        PT_ERROR("the SuperLink's welcome is malformed; closing");
        pt_conn_close(sn->conn);
        return;
    }
    pt_params_f64(p, "heartbeat-interval", &hb);
    if (sn->node_id != 0 && sn->node_id != (uint64_t)id) {
        PT_WARN("the SuperLink gave node id %lld, was %llu", (long long)id,
                (unsigned long long)sn->node_id);
    }
    sn->node_id = (uint64_t)id;
    sn->welcomed = 1;
    sn->attempts = 0;
    sn->first_failure_ms = 0;
    sn->heartbeat_interval = hb > 0.05 ? hb : 30;
    PT_INFO("registered with the SuperLink at %s as node %llu", sn->address,
            (unsigned long long)sn->node_id);
    if (sn->heartbeat == NULL) {
        uint64_t ms = (uint64_t)(sn->heartbeat_interval * 1000.0);
        pt_timer_start(sn->actor, ms, ms, SN_TIMER_HEARTBEAT, &sn->heartbeat);
    }
    /* Replies the SuperLink has not acknowledged go again (it drops duplicates). */
    for (sn_unacked_t *u = sn->unacked; u != NULL; u = u->next) {
        send_reply_frame(sn, pt_message_hold(u->reply));
        pt_message_release(u->reply);
    }
}

static void
on_frame(pt_supernode_t *sn, pt_frame_t *f)
{
    if (f->version != PT_PROTOCOL_VERSION) {
        PT_ERROR("the SuperLink speaks protocol version %u, this SuperNode %u", f->version,
                 PT_PROTOCOL_VERSION);
        pt_conn_close(sn->conn);
        pt_msg_free(&f->hdr);
        return;
    }
    switch (f->kind) {
    case PT_FLEET_WELCOME:
        on_welcome(sn, f);
        break;
    case PT_FLEET_INSTRUCTION:
        on_instruction(sn, f);
        return; /* owns f */
    case PT_FLEET_RUN:
        on_run_info(sn, f);
        break;
    case PT_FLEET_BUNDLE:
        on_bundle(sn, f);
        break;
    case PT_FLEET_ACK:
        on_ack(sn, f);
        break;
    case PT_FLEET_HEARTBEAT:
        break;
    case PT_FLEET_ERROR: {
        const char *reason = "?";
        pt_params_str(pt_frame_params(f), "reason", &reason);
        PT_ERROR("the SuperLink refused: %s", reason);
        if (!sn->welcomed && sn->conn != NULL) {
            /* Refused before registering (a limit, a bad hello): back off and try again. */
            snprintf(sn->refusal, sizeof(sn->refusal), "refused: %s", reason);
            pt_conn_close(sn->conn);
        }
        break;
    }
    default:
        PT_WARN("unknown frame kind 0x%04x from the SuperLink; ignored", f->kind);
        break;
    }
    pt_msg_free(&f->hdr);
}

static uint64_t
backoff_ms(uint32_t attempt)
{
    /* 0.5 s, 1 s, 2 s, ... capped at 30 s, each with up to 50% jitter. */
    uint64_t base = 500u << (attempt < 6 ? attempt : 6);
    if (base > 30000) {
        base = 30000;
    }
    return base / 2 + randombytes_uniform((uint32_t)(base / 2 + 1));
}

static void
schedule_reconnect(pt_supernode_t *sn, const char *why)
{
    uint64_t now = pt_runtime_now_ms(sn->rt);
    if (sn->first_failure_ms == 0) {
        sn->first_failure_ms = now;
    }
    sn->attempts++;
    int out_of_retries = sn->opts.max_retries > 0 && sn->attempts > sn->opts.max_retries;
    int out_of_time = sn->opts.max_wait_time > 0 &&
                      (double)(now - sn->first_failure_ms) / 1000.0 > sn->opts.max_wait_time;
    if (out_of_retries || out_of_time) {
        PT_ERROR("giving up on the SuperLink at %s after %u attempt(s): %s", sn->address,
                 sn->attempts - 1, why);
        sn->exit_status = 1;
        pt_runtime_shutdown(sn->rt);
        return;
    }
    uint64_t ms = backoff_ms(sn->attempts - 1);
    PT_WARN("cannot connect to the SuperLink at %s (%s); retrying in %.1f s", sn->address, why,
            (double)ms / 1000.0);
    if (sn->reconnect != NULL) {
        pt_timer_stop(sn->reconnect);
    }
    pt_timer_start(sn->actor, ms, 0, SN_TIMER_RECONNECT, &sn->reconnect);
}

/* The secure channel's authorize callback on the dialling side: is this the pinned SuperLink? */
static int
check_pin(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap)
{
    pt_supernode_t *sn = ctx;
    if (sodium_memcmp(peer_pk, sn->pin, PT_KEY_PUBLIC_BYTES) == 0) {
        return 0;
    }
    char actual[PT_KEY_FPR_SIZE], expected[PT_KEY_FPR_SIZE];
    pt_key_fingerprint(peer_pk, actual);
    pt_key_fingerprint(sn->pin, expected);
    snprintf(sn->pin_mismatch, sizeof(sn->pin_mismatch),
             "the SuperLink at %.200s is not the pinned one: expected key %s (%.300s), got %s; "
             "not talking to it (if its key changed on purpose, copy its new petal.pub there)",
             sn->address, expected, sn->pin_source, actual);
    snprintf(why, cap, "server key %s is not the pinned %s", actual, expected);
    return PETAL_EPROTO;
}

static void
connect_now(pt_supernode_t *sn)
{
    pt_conn_t *c;
    int rc;
    if (sn->opts.identity != NULL) {
        pt_secure_opts_t so = {.identity = sn->opts.identity,
                               .authorize = check_pin,
                               .ctx = sn,
                               .handshake_timeout = sn->opts.handshake_timeout,
                               .ciphers = sn->opts.ciphers};
        rc = pt_dial_secure(sn->rt, sn->address, sn->actor, &so, &c);
    } else {
        rc = pt_dial(sn->rt, sn->address, sn->actor, &c);
    }
    if (rc != 0) {
        schedule_reconnect(sn, petal_strerror(rc));
    }
}

static void
on_down(pt_supernode_t *sn, pt_conn_event_t *ev)
{
    if (sn->conn != NULL && ev->conn != sn->conn) {
        return; /* an older connection */
    }
    sn->conn = NULL;
    sn->welcomed = 0;
    pt_outbox_clear(&sn->outbox);
    if (sn->heartbeat != NULL) {
        pt_timer_stop(sn->heartbeat);
        sn->heartbeat = NULL;
    }
    if (sn->pin_mismatch[0] != '\0' && !sn->stopping) {
        PT_ERROR("%s", sn->pin_mismatch);
        sn->exit_status = 1;
        sn->stopping = 1;
        pt_runtime_shutdown(sn->rt);
        return;
    }
    if (!sn->stopping) {
        char why[600];
        snprintf(why, sizeof(why), "%s",
                 sn->refusal[0] ? sn->refusal
                                : (ev->reason[0] ? ev->reason : petal_strerror(ev->status)));
        sn->refusal[0] = '\0';
        schedule_reconnect(sn, why);
    }
}

/* ---- The actor ----------------------------------------------------------------------------------
 */

static void
sn_free(pt_supernode_t *sn)
{
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&sn->runs, &it, &key, &val);) {
        run_free(val);
    }
    pt_u64map_fini(&sn->runs);
    pt_u64map_fini(&sn->done);
    pt_frameq_clear(&sn->queue);
    while (sn->unacked != NULL) {
        sn_unacked_t *u = sn->unacked;
        sn->unacked = u->next;
        pt_message_release(u->reply);
        free(u);
    }
    petal_recorddict_free(sn->node_config);
    free(sn);
}

void
pt_supernode_release(pt_supernode_t *sn)
{
    if (sn != NULL && atomic_fetch_sub(&sn->refs, 1) == 1) {
        sn_free(sn);
    }
}

int
pt_supernode_exit_status(const pt_supernode_t *sn)
{
    return sn->exit_status;
}

static void
goodbye(pt_supernode_t *sn)
{
    if (sn->conn == NULL) {
        return;
    }
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_GOODBYE, "fleet.goodbye", &p);
    if (f != NULL && pt_conn_send(sn->conn, f) != 0) {
        pt_msg_free(&f->hdr);
    }
}

static void
sn_handle(pt_actor_t *self, pt_msg_t *m)
{
    pt_supernode_t *sn = pt_actor_state(self);
    switch (m->type) {
    case PT_MSG_FRAME:
        on_frame(sn, (pt_frame_t *)m);
        return;
    case PT_MSG_CONN_UP:
        sn->conn = ((pt_conn_event_t *)m)->conn;
        send_hello(sn);
        break;
    case PT_MSG_CONN_DOWN:
        on_down(sn, (pt_conn_event_t *)m);
        break;
    case PT_MSG_CONN_WRITABLE:
        if (sn->conn != NULL) {
            pt_outbox_flush(&sn->outbox, sn->conn);
        }
        break;
    case PT_MSG_TIMER: {
        pt_timer_msg_t *t = (pt_timer_msg_t *)m;
        if (t->tag == SN_TIMER_RECONNECT) {
            sn->reconnect = NULL;
            connect_now(sn);
        } else if (t->tag == SN_TIMER_HEARTBEAT && sn->welcomed) {
            petal_configrecord_t *p;
            pt_frame_t *f = pt_params_frame(PT_FLEET_HEARTBEAT, "fleet.heartbeat", &p);
            if (f != NULL) {
                send_frame(sn, f);
            }
        }
        break;
    }
    case SN_JOB_BUNDLE:
        on_bundle_done(sn, (sn_job_t *)m);
        break;
    case PT_EXEC_DONE:
        on_exec_done(sn, (pt_exec_done_t *)m);
        break;
    case PT_MSG_STOP:
        sn->stopping = 1;
        goodbye(sn);
        if (sn->heartbeat != NULL) {
            pt_timer_stop(sn->heartbeat);
        }
        if (sn->reconnect != NULL) {
            pt_timer_stop(sn->reconnect);
        }
        pt_outbox_clear(&sn->outbox);
        if (sn->conn != NULL) {
            pt_conn_close(sn->conn);
            sn->conn = NULL;
        }
        pt_msg_free(m);
        pt_supernode_release(sn);
        return;
    default:
        PT_WARN("supernode: unexpected message type %u", m->type);
        break;
    }
    pt_msg_free(m);
}

int
pt_supernode_start(pt_runtime_t *rt, const pt_supernode_opts_t *opts, pt_supernode_t **out)
{
    pt_supernode_t *sn = calloc(1, sizeof(*sn));
    if (sn == NULL) {
        return PETAL_ENOMEM;
    }
    atomic_init(&sn->refs, 2); /* the creator's and the actor's */
    sn->rt = rt;
    sn->opts = *opts;
    snprintf(sn->address, sizeof(sn->address), "%s", opts->superlink_address);
    sn->opts.superlink_address = sn->address;
    if (opts->cache_dir != NULL) {
        snprintf(sn->cache_dir, sizeof(sn->cache_dir), "%s", opts->cache_dir);
    } else if (getenv("XDG_CACHE_HOME") != NULL) {
        snprintf(sn->cache_dir, sizeof(sn->cache_dir), "%s/petal/bundles",
                 getenv("XDG_CACHE_HOME"));
    } else {
        snprintf(sn->cache_dir, sizeof(sn->cache_dir), "%s/.cache/petal/bundles",
                 getenv("HOME") ? getenv("HOME") : "/tmp");
    }
    sn->opts.cache_dir = sn->cache_dir;
    snprintf(sn->self_exe, sizeof(sn->self_exe), "%s", opts->self_exe ? opts->self_exe : "");
    sn->opts.self_exe = sn->self_exe;
    if (opts->identity != NULL) {
        if (opts->superlink_pk == NULL) {
            free(sn);
            return PETAL_EINVAL;
        }
        memcpy(sn->pin, opts->superlink_pk, sizeof(sn->pin));
        snprintf(sn->pin_source, sizeof(sn->pin_source), "%s",
                 opts->superlink_pk_source ? opts->superlink_pk_source : "the pinned key");
        sn->opts.superlink_pk = sn->pin;
        sn->opts.superlink_pk_source = sn->pin_source;
    }
    sn->opts.node_key = NULL; /* not kept: only its hash below */
    /* The node key: a hash of the name given, or random for this process. */
    if (opts->node_key != NULL) {
        crypto_generichash(sn->key, sizeof(sn->key), (const unsigned char *)opts->node_key,
                           strlen(opts->node_key), NULL, 0);
    } else {
        randombytes_buf(sn->key, sizeof(sn->key));
    }
    pt_u64map_init(&sn->runs);
    pt_u64map_init(&sn->done);
    sn->node_config = petal_recorddict_alloc();
    petal_configrecord_t *nc =
        sn->node_config ? petal_recorddict_add_config(sn->node_config, "config") : NULL;
    const char *name;
    petal_value_t v;
    for (uint64_t i = 0;
         nc != NULL && opts->node_config != NULL && i < petal_configrecord_count(opts->node_config);
         i++) {
        if (petal_configrecord_at(opts->node_config, i, &name, &v) == 0) {
            petal_configrecord_set(nc, name, &v);
        }
    }
    sn->opts.node_config = NULL;
    if (nc == NULL) {
        petal_recorddict_free(sn->node_config);
        free(sn);
        return PETAL_ENOMEM;
    }
    int rc = pt_actor_spawn(rt, "supernode", sn_handle, sn, &sn->actor);
    if (rc != 0) {
        petal_recorddict_free(sn->node_config);
        free(sn);
        return rc;
    }
    connect_now(sn);
    *out = sn;
    return 0;
}
