/* linkstate_memory.c - the in-memory LinkState: compact node table, run list, pending map. */
#include <stdlib.h>
#include <string.h>

#include "runtime/message.h"
#include "runtime/u64map.h"

#include "linkstate.h"

/* Nodes are numbered from 1 and stored densely (an idle node costs sizeof(pt_node_rec_t)). */
typedef struct mem_run {
    pt_run_rec_t rec;
    char *app_dir;
    petal_recorddict_t *config_holder;
    char *reason;
} mem_run_t;

typedef struct mem_linkstate {
    pt_linkstate_t base;
    pt_node_rec_t *nodes;
    uint64_t num_nodes, cap_nodes;
    mem_run_t **runs;
    uint64_t num_runs;
    pt_u64map_t pending; /* message id -> petal_message_t* */
} mem_linkstate_t;

const char *
pt_run_status_name(int status, int result)
{
    switch (status) {
    case PT_RUN_PENDING:
        return "pending";
    case PT_RUN_STARTING:
        return "starting";
    case PT_RUN_RUNNING:
        return "running";
    case PT_RUN_FINISHED:
        switch (result) {
        case PT_RUN_COMPLETED:
            return "finished:completed";
        case PT_RUN_FAILED:
            return "finished:failed";
        case PT_RUN_STOPPED:
            return "finished:stopped";
        default:
            return "finished";
        }
    default:
        return "unknown";
    }
}

static void
mem_free(pt_linkstate_t *ls)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    for (uint64_t i = 0; i < m->num_runs; i++) {
        free(m->runs[i]->app_dir);
        free(m->runs[i]->reason);
        petal_recorddict_free(m->runs[i]->config_holder);
        free(m->runs[i]);
    }
    free(m->runs);
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&m->pending, &it, &key, &val);) {
        pt_message_release(val);
    }
    pt_u64map_fini(&m->pending);
    free(m->nodes);
    free(m);
}

static int
mem_nodes_create(pt_linkstate_t *ls, uint64_t count, double now, uint64_t *first)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    if (count == 0 || count > UINT32_MAX) {
        return PETAL_EINVAL;
    }
    if (m->num_nodes + count > m->cap_nodes) {
        uint64_t cap = m->cap_nodes ? m->cap_nodes : 64;
        while (cap < m->num_nodes + count) {
            cap *= 2;
        }
        pt_node_rec_t *nodes = realloc(m->nodes, cap * sizeof(*nodes));
        if (nodes == NULL) {
            return PETAL_ENOMEM;
        }
        m->nodes = nodes;
        m->cap_nodes = cap;
    }
    for (uint64_t i = 0; i < count; i++) {
        pt_node_rec_t *n = &m->nodes[m->num_nodes + i];
        n->node_id = m->num_nodes + i + 1;
        n->last_seen = now;
        n->online = 1;
    }
    *first = m->num_nodes + 1;
    m->num_nodes += count;
    return 0;
}

static pt_node_rec_t *
node_at(mem_linkstate_t *m, uint64_t node_id)
{
    if (node_id == 0 || node_id > m->num_nodes) {
        return NULL;
    }
    return &m->nodes[node_id - 1];
}

static int
mem_node_get(pt_linkstate_t *ls, uint64_t node_id, pt_node_rec_t *out)
{
    pt_node_rec_t *n = node_at((mem_linkstate_t *)ls, node_id);
    if (n == NULL) {
        return PETAL_ENOENT;
    }
    *out = *n;
    return 0;
}

static int
mem_node_set_online(pt_linkstate_t *ls, uint64_t node_id, int online, double now)
{
    pt_node_rec_t *n = node_at((mem_linkstate_t *)ls, node_id);
    if (n == NULL) {
        return PETAL_ENOENT;
    }
    n->online = online ? 1 : 0;
    n->last_seen = now;
    return 0;
}

static int64_t
mem_node_ids_online(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    uint64_t k = 0;
    for (uint64_t i = 0; i < m->num_nodes; i++) {
        if (m->nodes[i].online) {
            if (k < cap) {
                ids[k] = m->nodes[i].node_id;
            }
            k++;
        }
    }
    return (int64_t)k;
}

static mem_run_t *
run_find(mem_linkstate_t *m, uint64_t run_id)
{
    if (run_id == 0 || run_id > m->num_runs) {
        return NULL;
    }
    return m->runs[run_id - 1];
}

static int
mem_run_create(pt_linkstate_t *ls, const char *app_dir, petal_recorddict_t *config_holder,
               double now, uint64_t *run_id)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    mem_run_t *r = calloc(1, sizeof(*r));
    mem_run_t **runs = realloc(m->runs, (m->num_runs + 1) * sizeof(*runs));
    if (r == NULL || runs == NULL) {
        free(r);
        if (runs != NULL) {
            m->runs = runs;
        }
        return PETAL_ENOMEM;
    }
    m->runs = runs;
    r->app_dir = strdup(app_dir ? app_dir : "");
    r->reason = strdup("");
    if (r->app_dir == NULL || r->reason == NULL) {
        free(r->app_dir);
        free(r->reason);
        free(r);
        return PETAL_ENOMEM;
    }
    r->config_holder = config_holder;
    r->rec.run_id = m->num_runs + 1;
    r->rec.status = PT_RUN_PENDING;
    r->rec.created_at = now;
    m->runs[m->num_runs++] = r;
    *run_id = r->rec.run_id;
    return 0;
}

static int
mem_run_get(pt_linkstate_t *ls, uint64_t run_id, pt_run_rec_t *out)
{
    mem_run_t *r = run_find((mem_linkstate_t *)ls, run_id);
    if (r == NULL) {
        return PETAL_ENOENT;
    }
    *out = r->rec;
    out->app_dir = r->app_dir;
    out->reason = r->reason;
    out->run_config = petal_recorddict_config(r->config_holder, "config");
    return 0;
}

static int
mem_run_set_status(pt_linkstate_t *ls, uint64_t run_id, int status, int result, const char *reason,
                   double now)
{
    mem_run_t *r = run_find((mem_linkstate_t *)ls, run_id);
    if (r == NULL) {
        return PETAL_ENOENT;
    }
    if (r->rec.status == PT_RUN_FINISHED) {
        return PETAL_ESTATE; /* finished is final */
    }
    if (reason != NULL) {
        char *copy = strdup(reason);
        if (copy == NULL) {
            return PETAL_ENOMEM;
        }
        free(r->reason);
        r->reason = copy;
    }
    r->rec.status = status;
    r->rec.result = status == PT_RUN_FINISHED ? result : PT_RUN_NONE;
    if (status == PT_RUN_RUNNING) {
        r->rec.started_at = now;
    } else if (status == PT_RUN_FINISHED) {
        r->rec.finished_at = now;
    }
    return 0;
}

static int
mem_msg_put(pt_linkstate_t *ls, petal_message_t *msg)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    uint64_t id = pt_message_md(msg)->message_id;
    if (pt_u64map_get(&m->pending, id) != NULL) {
        return PETAL_EEXIST;
    }
    int rc = pt_u64map_put(&m->pending, id, msg);
    if (rc == 0) {
        pt_message_hold(msg);
    }
    return rc;
}

static petal_message_t *
mem_msg_take(pt_linkstate_t *ls, uint64_t message_id)
{
    return pt_u64map_del(&((mem_linkstate_t *)ls)->pending, message_id);
}

static int64_t
mem_msg_expire(pt_linkstate_t *ls, double now, void (*expired)(void *ctx, petal_message_t *m),
               void *ctx)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    uint64_t *ids = NULL;
    size_t n = 0, cap = 0;
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&m->pending, &it, &key, &val);) {
        const petal_metadata_t *md = pt_message_md_const(val);
        if (md->created_at + md->ttl >= now) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            uint64_t *nids = realloc(ids, ncap * sizeof(*nids));
            if (nids == NULL) {
                break; /* the rest expires on the next sweep */
            }
            ids = nids;
            cap = ncap;
        }
        ids[n++] = key;
    }
    for (size_t i = 0; i < n; i++) {
        expired(ctx, pt_u64map_del(&m->pending, ids[i]));
    }
    free(ids);
    return (int64_t)n;
}

static uint64_t
mem_msg_pending(pt_linkstate_t *ls)
{
    return ((mem_linkstate_t *)ls)->pending.count;
}

static const pt_linkstate_ops_t memory_ops = {
    .free = mem_free,
    .nodes_create = mem_nodes_create,
    .node_get = mem_node_get,
    .node_set_online = mem_node_set_online,
    .node_ids_online = mem_node_ids_online,
    .run_create = mem_run_create,
    .run_get = mem_run_get,
    .run_set_status = mem_run_set_status,
    .msg_put = mem_msg_put,
    .msg_take = mem_msg_take,
    .msg_expire = mem_msg_expire,
    .msg_pending = mem_msg_pending,
};

int
pt_linkstate_memory_alloc(pt_linkstate_t **out)
{
    mem_linkstate_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    m->base.ops = &memory_ops;
    pt_u64map_init(&m->pending);
    *out = &m->base;
    return 0;
}
