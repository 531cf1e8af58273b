/* simulation.c - virtual SuperNodes: Fleet client, lazy contexts, ClientApp calls on the pool. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/clientapp/clientapp.h"
#include "actors/frameq.h"
#include "actors/outbox.h"
#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/context.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/u64map.h"
#include "transport/transport.h"

#include "simulation.h"

enum { SIM_JOB_CALL = 1, SIM_JOB_LOAD = 2 };

enum run_state { RUN_FETCHING, RUN_LOADING, RUN_READY, RUN_FAILED };

typedef struct sim_run {
    uint64_t run_id;
    enum run_state state;
    char *app_dir;
    pt_run_config_t *config;
    pt_clientapp_t *app;
    pt_frameq_t waiting; /* instructions that arrived before READY */
    char error[512];
} sim_run_t;

/* One virtual node: 24 bytes until it is first used. */
typedef struct sim_node {
    petal_context_t *ctx; /* for ctx_run */
    pt_frame_t *queued;   /* instructions waiting while the node is busy (rare) */
    uint32_t ctx_run;     /* index + 1 into runs_by_index, 0 = none */
    uint32_t busy;
} sim_node_t;

struct pt_simulation {
    atomic_uint refs; /* creator + actor + each job in flight */
    pt_runtime_t *rt;
    pt_actor_t *actor;
    pt_conn_t *conn;
    pt_outbox_t outbox;
    char fleet_address[256];
    uint64_t num_nodes;
    uint64_t first_node; /* 0 until welcomed */
    sim_node_t *nodes;
    pt_u64map_t runs;     /* run id -> sim_run_t* */
    sim_run_t **run_list; /* every run, for contexts' ctx_run index */
    uint32_t num_runs;
    pt_frameq_t backlog; /* over max_inflight */
    uint32_t inflight, max_inflight;
    int stopping;
    atomic_uint_fast64_t executed, failed, contexts;
};

typedef struct sim_job {
    pt_job_t job;
    pt_simulation_t *sim;
    sim_run_t *run;
    uint64_t node_index;
    pt_frame_t *frame;
    petal_message_t *reply;
    int rc;
} sim_job_t;

static void sim_release(pt_simulation_t *s);

/* ---- Replies ------------------------------------------------------------------------------------
 */

static void
send_reply(pt_simulation_t *s, petal_message_t *reply)
{
    pt_frame_t *f = pt_frame_alloc(PT_FLEET_REPLY, reply);
    if (f == NULL) {
        petal_message_free(reply);
        return;
    }
    if (s->conn == NULL) {
        pt_msg_free(&f->hdr);
        return;
    }
    pt_outbox_send(&s->outbox, s->conn, f);
}

static void
reply_error(pt_simulation_t *s, pt_frame_t *f, int code, const char *reason)
{
    petal_message_t *r = pt_message_alloc_error_reply(f->msg, code, reason);
    if (r != NULL) {
        send_reply(s, r);
    }
    atomic_fetch_add(&s->failed, 1);
    pt_msg_free(&f->hdr);
}

/* ---- ClientApp calls
 * ----------------------------------------------------------------------------- */

static void
job_free(pt_msg_t *m)
{
    sim_job_t *j = (sim_job_t *)m;
    if (j->frame != NULL) {
        pt_msg_free(&j->frame->hdr);
    }
    petal_message_free(j->reply);
    pt_simulation_t *s = j->sim;
    free(j);
    sim_release(s);
}

static void
call_work(pt_job_t *job)
{
    sim_job_t *j = (sim_job_t *)job;
    sim_node_t *node = &j->sim->nodes[j->node_index];
    j->reply = pt_clientapp_handle(j->run->app, node->ctx, j->frame->msg);
}

static int
ensure_context(pt_simulation_t *s, sim_run_t *run, uint64_t index)
{
    sim_node_t *node = &s->nodes[index];
    uint32_t run_index = 0;
    for (uint32_t i = 0; i < s->num_runs; i++) {
        if (s->run_list[i] == run) {
            run_index = i + 1;
        }
    }
    if (node->ctx != NULL && node->ctx_run == run_index) {
        return 0;
    }
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *nc =
        holder ? petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME) : NULL;
    if (nc == NULL || pt_params_set_i64(nc, "partition-id", (int64_t)index) != 0 ||
        pt_params_set_i64(nc, "num-partitions", (int64_t)s->num_nodes) != 0) {
        petal_recorddict_free(holder);
        return PETAL_ENOMEM;
    }
    petal_context_t *ctx =
        pt_context_alloc(run->run_id, s->first_node + index, run->config, holder);
    if (ctx == NULL) {
        petal_recorddict_free(holder);
        return PETAL_ENOMEM;
    }
    if (node->ctx != NULL) {
        pt_context_free(node->ctx); /* a newer run replaces the node's old context */
    } else {
        atomic_fetch_add(&s->contexts, 1);
    }
    node->ctx = ctx;
    node->ctx_run = run_index;
    return 0;
}

static void dispatch(pt_simulation_t *s, pt_frame_t *f);

static void
start_call(pt_simulation_t *s, sim_run_t *run, uint64_t index, pt_frame_t *f)
{
    if (ensure_context(s, run, index) != 0) {
        reply_error(s, f, PETAL_E_UNKNOWN, "out of memory creating the node's context");
        return;
    }
    sim_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        reply_error(s, f, PETAL_E_UNKNOWN, "out of memory");
        return;
    }
    j->job.hdr.type = SIM_JOB_CALL;
    j->job.hdr.free = job_free;
    j->job.work = call_work;
    j->job.reply_to = s->actor;
    j->sim = s;
    j->run = run;
    j->node_index = index;
    j->frame = f;
    atomic_fetch_add(&s->refs, 1);
    s->nodes[index].busy = 1;
    s->inflight++;
    if (pt_pool_submit(s->rt, &j->job) != 0) {
        s->nodes[index].busy = 0;
        s->inflight--;
        j->frame = NULL;
        job_free(&j->job.hdr);
        reply_error(s, f, PETAL_E_UNKNOWN, "the worker pool is shutting down");
    }
}

static void
on_call_done(pt_simulation_t *s, sim_job_t *j)
{
    sim_node_t *node = &s->nodes[j->node_index];
    node->busy = 0;
    s->inflight--;
    atomic_fetch_add(&s->executed, 1);
    if (j->reply == NULL) {
        j->reply = pt_message_alloc_error_reply(j->frame->msg, PETAL_E_UNKNOWN,
                                                "out of memory building the reply");
    }
    if (j->reply != NULL) {
        if (petal_message_error_code(j->reply) != 0) {
            atomic_fetch_add(&s->failed, 1);
        }
        send_reply(s, j->reply);
        j->reply = NULL;
    }
    /* Next for this node, then whatever waited for a free slot. */
    if (node->queued != NULL) {
        pt_frame_t *f = node->queued;
        node->queued = (pt_frame_t *)f->hdr.next;
        f->hdr.next = NULL;
        dispatch(s, f);
    }
    while (s->inflight < s->max_inflight && s->backlog.head != NULL) {
        dispatch(s, pt_frameq_pop(&s->backlog));
    }
}

/* ---- Runs
 * ---------------------------------------------------------------------------------------- */

static void
load_work(pt_job_t *job)
{
    sim_job_t *j = (sim_job_t *)job;
    sim_run_t *run = j->run;
    j->rc = pt_clientapp_load(run->app_dir, pt_run_config_get(run->config), &run->app, run->error,
                              sizeof(run->error));
}

static void
on_load_done(pt_simulation_t *s, sim_job_t *j)
{
    sim_run_t *run = j->run;
    if (j->rc != 0) {
        run->state = RUN_FAILED;
        PT_ERROR("run %llu: cannot load the ClientApp: %s", (unsigned long long)run->run_id,
                 run->error);
    } else {
        run->state = RUN_READY;
    }
    pt_frame_t *f;
    while ((f = pt_frameq_pop(&run->waiting)) != NULL) {
        dispatch(s, f);
    }
}

static sim_run_t *
run_get_or_fetch(pt_simulation_t *s, uint64_t run_id)
{
    sim_run_t *run = pt_u64map_get(&s->runs, run_id);
    if (run != NULL) {
        return run;
    }
    run = calloc(1, sizeof(*run));
    sim_run_t **list = realloc(s->run_list, (s->num_runs + 1) * sizeof(*list));
    if (list != NULL) {
        s->run_list = list;
    }
    if (run == NULL || list == NULL || pt_u64map_put(&s->runs, run_id, run) != 0) {
        free(run);
        return NULL;
    }
    s->run_list[s->num_runs++] = run;
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
    pt_outbox_send(&s->outbox, s->conn, f);
    return run;
}

static void
on_run_info(pt_simulation_t *s, pt_frame_t *f)
{
    const petal_configrecord_t *p = pt_frame_params(f);
    int64_t run_id;
    const char *app_dir;
    sim_run_t *run;
    if (pt_params_i64(p, "run-id", &run_id) != 0 || pt_params_str(p, "app-dir", &app_dir) != 0 ||
        (run = pt_u64map_get(&s->runs, (uint64_t)run_id)) == NULL || run->state != RUN_FETCHING) {
        PT_WARN("unexpected run frame from the SuperLink; ignored");
        return;
    }
    /* The run config travels as the "config" record; keep it as the contexts' shared one. */
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
    run->app_dir = ok ? strdup(app_dir) : NULL;
    run->config = run->app_dir ? pt_run_config_alloc(holder) : NULL;
    if (run->config == NULL) {
        petal_recorddict_free(holder);
        run->state = RUN_FAILED;
        snprintf(run->error, sizeof(run->error), "out of memory keeping the run config");
        on_load_done(s, &(sim_job_t){.run = run, .rc = PETAL_ENOMEM});
        return;
    }
    sim_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL) {
        run->state = RUN_FAILED;
        snprintf(run->error, sizeof(run->error), "out of memory");
        on_load_done(s, &(sim_job_t){.run = run, .rc = PETAL_ENOMEM});
        return;
    }
    run->state = RUN_LOADING;
    j->job.hdr.type = SIM_JOB_LOAD;
    j->job.hdr.free = job_free;
    j->job.work = load_work;
    j->job.reply_to = s->actor;
    j->sim = s;
    j->run = run;
    atomic_fetch_add(&s->refs, 1);
    if (pt_pool_submit(s->rt, &j->job) != 0) {
        job_free(&j->job.hdr);
    }
}

/* Routes one instruction: to its run, its node, and the pool. */
static void
dispatch(pt_simulation_t *s, pt_frame_t *f)
{
    const petal_metadata_t *md = pt_message_md_const(f->msg);
    if (s->first_node == 0 || md->dst_node_id < s->first_node ||
        md->dst_node_id >= s->first_node + s->num_nodes) {
        reply_error(s, f, PETAL_E_NODE_UNAVAILABLE, "no such virtual node here");
        return;
    }
    uint64_t index = md->dst_node_id - s->first_node;
    sim_run_t *run = run_get_or_fetch(s, md->run_id);
    if (run == NULL) {
        reply_error(s, f, PETAL_E_UNKNOWN, "out of memory");
        return;
    }
    switch (run->state) {
    case RUN_FETCHING:
    case RUN_LOADING:
        pt_frameq_push(&run->waiting, f);
        return;
    case RUN_FAILED:
        reply_error(s, f, PETAL_E_LOAD_CLIENT_APP_EXCEPTION, run->error);
        return;
    case RUN_READY:
        break;
    }
    sim_node_t *node = &s->nodes[index];
    if (node->busy) {
        f->hdr.next = NULL;
        pt_frame_t **p = &node->queued;
        while (*p != NULL) {
            p = (pt_frame_t **)&(*p)->hdr.next;
        }
        *p = f;
        return;
    }
    if (s->inflight >= s->max_inflight) {
        pt_frameq_push(&s->backlog, f);
        return;
    }
    start_call(s, run, index, f);
}

/* ---- Fleet
 * ----------------------------------------------------------------------------------------- */

static void
on_welcome(pt_simulation_t *s, pt_frame_t *f)
{
    const petal_configrecord_t *p = pt_frame_params(f);
    int64_t first, count;
    if (pt_params_i64(p, "node-id", &first) != 0 || pt_params_i64(p, "count", &count) != 0 ||
        first < 1 || (uint64_t)count != s->num_nodes) {
        PT_ERROR("the SuperLink's welcome is malformed; closing");
        pt_conn_close(s->conn);
        return;
    }
    s->first_node = (uint64_t)first;
    PT_INFO("%llu virtual SuperNodes registered", (unsigned long long)s->num_nodes);
}

static void
on_frame(pt_simulation_t *s, pt_frame_t *f)
{
    if (f->version != PT_PROTOCOL_VERSION) {
        PT_ERROR("the SuperLink speaks protocol version %u, this node %u", f->version,
                 PT_PROTOCOL_VERSION);
        pt_msg_free(&f->hdr);
        return;
    }
    switch (f->kind) {
    case PT_FLEET_WELCOME:
        on_welcome(s, f);
        break;
    case PT_FLEET_INSTRUCTION:
        if (f->msg == NULL || petal_message_content(f->msg) == NULL) {
            PT_WARN("instruction without content from the SuperLink; ignored");
            break;
        }
        dispatch(s, f);
        return; /* dispatch owns f */
    case PT_FLEET_RUN:
        on_run_info(s, f);
        break;
    case PT_FLEET_HEARTBEAT:
        break;
    case PT_FLEET_ERROR: {
        const char *reason = "?";
        pt_params_str(pt_frame_params(f), "reason", &reason);
        PT_ERROR("the SuperLink refused: %s", reason);
        break;
    }
    default:
        PT_WARN("unknown frame kind 0x%04x from the SuperLink; ignored", f->kind);
        break;
    }
    pt_msg_free(&f->hdr);
}

static void
send_hello(pt_simulation_t *s)
{
    petal_configrecord_t *p;
    pt_frame_t *f = pt_params_frame(PT_FLEET_HELLO, "fleet.hello", &p);
    if (f == NULL || pt_params_set_i64(p, "virtual-nodes", (int64_t)s->num_nodes) != 0) {
        if (f != NULL) {
            pt_msg_free(&f->hdr);
        }
        PT_ERROR("out of memory saying hello");
        return;
    }
    pt_outbox_send(&s->outbox, s->conn, f);
}

static void
sim_free(pt_simulation_t *s)
{
    for (uint64_t i = 0; i < s->num_nodes; i++) {
        pt_context_free(s->nodes[i].ctx);
        for (pt_frame_t *f = s->nodes[i].queued; f != NULL;) {
            pt_frame_t *next = (pt_frame_t *)f->hdr.next;
            pt_msg_free(&f->hdr);
            f = next;
        }
    }
    free(s->nodes);
    for (uint32_t i = 0; i < s->num_runs; i++) {
        sim_run_t *run = s->run_list[i];
        pt_clientapp_free(run->app);
        if (run->config != NULL) {
            pt_run_config_release(run->config);
        }
        pt_frameq_clear(&run->waiting);
        free(run->app_dir);
        free(run);
    }
    free(s->run_list);
    pt_u64map_fini(&s->runs);
    pt_frameq_clear(&s->backlog);
    free(s);
}

static void
sim_release(pt_simulation_t *s)
{
    if (atomic_fetch_sub(&s->refs, 1) == 1) {
        sim_free(s);
    }
}

void
pt_simulation_release(pt_simulation_t *s)
{
    if (s != NULL) {
        sim_release(s);
    }
}

static void
sim_handle(pt_actor_t *self, pt_msg_t *m)
{
    pt_simulation_t *s = pt_actor_state(self);
    switch (m->type) {
    case PT_MSG_FRAME:
        on_frame(s, (pt_frame_t *)m);
        return;
    case PT_MSG_CONN_UP:
        s->conn = ((pt_conn_event_t *)m)->conn;
        send_hello(s);
        break;
    case PT_MSG_CONN_DOWN: {
        pt_conn_event_t *ev = (pt_conn_event_t *)m;
        if (!s->stopping) {
            PT_WARN("connection to the SuperLink lost: %s",
                    ev->reason[0] ? ev->reason : petal_strerror(ev->status));
        }
        pt_outbox_clear(&s->outbox);
        s->conn = NULL;
        break;
    }
    case PT_MSG_CONN_WRITABLE:
        if (s->conn != NULL) {
            pt_outbox_flush(&s->outbox, s->conn);
        }
        break;
    case SIM_JOB_CALL:
        on_call_done(s, (sim_job_t *)m);
        break;
    case SIM_JOB_LOAD:
        on_load_done(s, (sim_job_t *)m);
        break;
    case PT_MSG_STOP:
        s->stopping = 1;
        pt_outbox_clear(&s->outbox);
        if (s->conn != NULL) {
            pt_conn_close(s->conn);
            s->conn = NULL;
        }
        pt_msg_free(m);
        sim_release(s); /* the actor's reference */
        return;
    default:
        PT_WARN("simulation: unexpected message type %u", m->type);
        break;
    }
    pt_msg_free(m);
}

int
pt_simulation_start(pt_runtime_t *rt, const pt_simulation_opts_t *opts, pt_simulation_t **out)
{
    if (opts->num_nodes == 0 || opts->num_nodes > UINT32_MAX) {
        return PETAL_EINVAL;
    }
    pt_simulation_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PETAL_ENOMEM;
    }
    s->nodes = calloc(opts->num_nodes, sizeof(*s->nodes));
    if (s->nodes == NULL) {
        free(s);
        return PETAL_ENOMEM;
    }
    atomic_init(&s->refs, 2); /* the creator's and the actor's */
    s->rt = rt;
    s->num_nodes = opts->num_nodes;
    s->max_inflight = opts->max_inflight ? opts->max_inflight : 4 * pt_runtime_workers(rt);
    snprintf(s->fleet_address, sizeof(s->fleet_address), "%s",
             opts->fleet_address ? opts->fleet_address : "inproc://fleet");
    pt_u64map_init(&s->runs);
    int rc = pt_actor_spawn(rt, "simulation", sim_handle, s, &s->actor);
    if (rc != 0) {
        free(s->nodes);
        free(s);
        return rc;
    }
    pt_conn_t *conn;
    rc = pt_dial(rt, s->fleet_address, s->actor, &conn);
    if (rc != 0) {
        PT_ERROR("cannot reach the SuperLink at %s: %s", s->fleet_address, petal_strerror(rc));
        pt_actor_stop(s->actor); /* drops the actor's reference */
        sim_release(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
pt_simulation_stats(pt_simulation_t *s, pt_simulation_stats_t *out)
{
    out->executed = atomic_load(&s->executed);
    out->failed = atomic_load(&s->failed);
    out->contexts = atomic_load(&s->contexts);
}
