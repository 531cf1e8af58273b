/* linkstate_memory.c - the in-memory LinkState: compact node table, runs, pending map, bundles. */
#include <stdlib.h>
#include <string.h>

#include "runtime/message.h"
#include "runtime/u64map.h"

#include "linkstate.h"

/*
 * Nodes are numbered from 1 and stored densely: an idle node costs sizeof(pt_node_rec_t) (24
 * bytes) and nothing else, so `petal sim` can hold a million of them. A node registered with a
 * key also has an entry in a small open-addressing table from key to node id.
 */
typedef struct mem_run {
    pt_run_rec_t rec;
    char *app_dir;
    char *bundle_hash;
    petal_recorddict_t *config_holder;
    char *reason;
    char **lines; /* the run's log */
    uint64_t num_lines, cap_lines;
} mem_run_t;

typedef struct mem_key {
    uint64_t node_id;
    uint64_t hash;
    size_t len;
    uint8_t key[];
} mem_key_t;

typedef struct mem_bundle {
    char hash[PT_BUNDLE_HASH_LEN + 1];
    pt_buf_t *buf;
} mem_bundle_t;

typedef struct mem_linkstate {
    pt_linkstate_t base;
    pt_node_rec_t *nodes;
    uint64_t num_nodes, cap_nodes;
    mem_key_t **keys; /* open addressing, power-of-two capacity */
    size_t num_keys, cap_keys;
    mem_run_t **runs;
    uint64_t num_runs;
    pt_u64map_t pending; /* message id -> petal_message_t* (held) */
    mem_bundle_t *bundles;
    size_t num_bundles;
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

/* 64 lower-case hex digits. */
static int
valid_hash(const char *hash)
{
    size_t i = 0;
    for (; hash[i] != '\0'; i++) {
        char c = hash[i];
        if (i >= PT_BUNDLE_HASH_LEN || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return i == PT_BUNDLE_HASH_LEN;
}

static void
mem_free(pt_linkstate_t *ls)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    for (uint64_t i = 0; i < m->num_runs; i++) {
        mem_run_t *r = m->runs[i];
        for (uint64_t j = 0; j < r->num_lines; j++) {
            free(r->lines[j]);
        }
        free(r->lines);
        free(r->app_dir);
        free(r->bundle_hash);
        free(r->reason);
        petal_recorddict_free(r->config_holder);
        free(r);
    }
    free(m->runs);
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&m->pending, &it, &key, &val);) {
        pt_message_release(val);
    }
    pt_u64map_fini(&m->pending);
    for (size_t i = 0; i < m->cap_keys; i++) {
        free(m->keys[i]);
    }
    free(m->keys);
    for (size_t i = 0; i < m->num_bundles; i++) {
        pt_buf_release(m->bundles[i].buf);
    }
    free(m->bundles);
    free(m->nodes);
    free(m);
}

/* ---- Nodes ------------------------------------------------------------------------------------
 */

/* Appends `count` online nodes; the first new id in *first. */
static int
nodes_append(mem_linkstate_t *m, uint64_t count, double now, uint64_t *first)
{
    if (count == 0 || count > UINT32_MAX) {
        return PETAL_EINVAL;
    }
    uint64_t need = m->num_nodes + count;
    if (need > m->cap_nodes) {
        /* grow by half (not double) and never past what one big request needs, so that a
         * million nodes created at once cost 24 bytes each */
        uint64_t cap = m->cap_nodes + m->cap_nodes / 2;
        if (cap < 64) {
            cap = 64;
        }
        if (cap < need) {
            cap = need;
        }
        if (cap > SIZE_MAX / sizeof(pt_node_rec_t)) {
            return PETAL_ENOMEM;
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
    m->num_nodes = need;
    return 0;
}

static int
mem_nodes_create(pt_linkstate_t *ls, uint64_t count, double now, uint64_t *first)
{
    return nodes_append((mem_linkstate_t *)ls, count, now, first);
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

static int64_t
mem_node_list(pt_linkstate_t *ls, pt_node_rec_t *out, uint64_t cap)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    uint64_t n = m->num_nodes < cap ? m->num_nodes : cap;
    if (n > 0) {
        memcpy(out, m->nodes, n * sizeof(*out));
    }
    return (int64_t)m->num_nodes;
}

static uint64_t
key_hash(const uint8_t *key, size_t len)
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h = (h ^ key[i]) * 1099511628211ull;
    }
    return h;
}

/* The slot holding `key`, or the empty slot where it would go (cap_keys > 0). */
static size_t
key_slot(const mem_linkstate_t *m, const uint8_t *key, size_t len, uint64_t h)
{
    size_t mask = m->cap_keys - 1;
    size_t s = (size_t)h & mask;
    while (m->keys[s] != NULL) {
        const mem_key_t *k = m->keys[s];
        if (k->hash == h && k->len == len && memcmp(k->key, key, len) == 0) {
            break;
        }
        s = (s + 1) & mask;
    }
    return s;
}

static int
keys_grow(mem_linkstate_t *m)
{
    size_t cap = m->cap_keys ? m->cap_keys * 2 : 16;
    mem_key_t **keys = calloc(cap, sizeof(*keys));
    if (keys == NULL) {
        return PETAL_ENOMEM;
    }
    for (size_t i = 0; i < m->cap_keys; i++) {
        mem_key_t *k = m->keys[i];
        if (k != NULL) {
            size_t s = (size_t)k->hash & (cap - 1);
            while (keys[s] != NULL) {
                s = (s + 1) & (cap - 1);
            }
            keys[s] = k;
        }
    }
    free(m->keys);
    m->keys = keys;
    m->cap_keys = cap;
    return 0;
}

static int
mem_node_register(pt_linkstate_t *ls, const uint8_t *key, size_t key_len, double now,
                  uint64_t *node_id, int *is_new)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    if (key == NULL || key_len == 0 || key_len > PT_NODE_KEY_MAX) {
        return PETAL_EINVAL;
    }
    uint64_t h = key_hash(key, key_len);
    if (m->cap_keys > 0) {
        mem_key_t *k = m->keys[key_slot(m, key, key_len, h)];
        if (k != NULL) {
            pt_node_rec_t *n = node_at(m, k->node_id);
            n->online = 1;
            n->last_seen = now;
            *node_id = k->node_id;
            *is_new = 0;
            return 0;
        }
    }
    if ((m->num_keys + 1) * 4 > m->cap_keys * 3) {
        int rc = keys_grow(m);
        if (rc != 0) {
            return rc;
        }
    }
    mem_key_t *k = malloc(sizeof(*k) + key_len);
    if (k == NULL) {
        return PETAL_ENOMEM;
    }
    uint64_t id;
    int rc = nodes_append(m, 1, now, &id);
    if (rc != 0) {
        free(k);
        return rc;
    }
    k->node_id = id;
    k->hash = h;
    k->len = key_len;
    memcpy(k->key, key, key_len);
    m->keys[key_slot(m, key, key_len, h)] = k;
    m->num_keys++;
    *node_id = id;
    *is_new = 1;
    return 0;
}

/* ---- Runs -------------------------------------------------------------------------------------
 */

static mem_run_t *
run_find(mem_linkstate_t *m, uint64_t run_id)
{
    if (run_id == 0 || run_id > m->num_runs) {
        return NULL;
    }
    return m->runs[run_id - 1];
}

static int
mem_run_create(pt_linkstate_t *ls, const char *app_dir, const char *bundle_hash,
               petal_recorddict_t *config_holder, double now, uint64_t *run_id)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    mem_run_t *r = NULL;
    int rc = PETAL_ENOMEM;
    if (bundle_hash != NULL && !valid_hash(bundle_hash)) {
        rc = PETAL_EINVAL;
        goto fail;
    }
    mem_run_t **runs = realloc(m->runs, (m->num_runs + 1) * sizeof(*runs));
    if (runs == NULL) {
        goto fail;
    }
    m->runs = runs;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        goto fail;
    }
    r->app_dir = strdup(app_dir ? app_dir : "");
    r->bundle_hash = strdup(bundle_hash ? bundle_hash : "");
    r->reason = strdup("");
    if (r->app_dir == NULL || r->bundle_hash == NULL || r->reason == NULL) {
        goto fail;
    }
    r->config_holder = config_holder;
    r->rec.run_id = m->num_runs + 1;
    r->rec.status = PT_RUN_PENDING;
    r->rec.created_at = now;
    m->runs[m->num_runs++] = r;
    *run_id = r->rec.run_id;
    return 0;
fail:
    if (r != NULL) {
        free(r->app_dir);
        free(r->bundle_hash);
        free(r->reason);
        free(r);
    }
    petal_recorddict_free(config_holder);
    return rc;
}

static int64_t
mem_run_ids(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    for (uint64_t i = 0; i < m->num_runs && i < cap; i++) {
        ids[i] = m->runs[i]->rec.run_id;
    }
    return (int64_t)m->num_runs;
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
    out->bundle_hash = r->bundle_hash;
    out->run_config = r->config_holder ? petal_recorddict_config(r->config_holder, "config") : NULL;
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
    if (status < PT_RUN_PENDING || status > PT_RUN_FINISHED || result < PT_RUN_NONE ||
        result > PT_RUN_STOPPED) {
        return PETAL_EINVAL;
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

/* ---- Messages ---------------------------------------------------------------------------------
 */

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
    if (message_id == 0) {
        return NULL;
    }
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
        if (!(md->created_at + md->ttl < now)) {
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

/* Oldest first: by created_at, then by message id (ids grow with time). */
static int
cmp_age(const void *a, const void *b)
{
    const petal_metadata_t *x = pt_message_md_const(*(petal_message_t *const *)a);
    const petal_metadata_t *y = pt_message_md_const(*(petal_message_t *const *)b);
    if (x->created_at != y->created_at) {
        return x->created_at < y->created_at ? -1 : 1;
    }
    return x->message_id < y->message_id ? -1 : x->message_id > y->message_id;
}

static int64_t
mem_msg_for_node(pt_linkstate_t *ls, uint64_t node_id, void (*cb)(void *ctx, petal_message_t *m),
                 void *ctx)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    petal_message_t **list = NULL;
    size_t n = 0, cap = 0;
    uint64_t key;
    void *val;
    /* a scan of every pending instruction: this runs once per reconnect, not per message */
    for (size_t it = 0; pt_u64map_next(&m->pending, &it, &key, &val);) {
        if (pt_message_md_const(val)->dst_node_id != node_id) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            petal_message_t **nl = realloc(list, ncap * sizeof(*nl));
            if (nl == NULL) {
                for (size_t i = 0; i < n; i++) {
                    pt_message_release(list[i]);
                }
                free(list);
                return PETAL_ENOMEM;
            }
            list = nl;
            cap = ncap;
        }
        list[n++] = pt_message_hold(val); /* stays valid if the callback takes it */
    }
    if (n > 1) {
        qsort(list, n, sizeof(*list), cmp_age);
    }
    for (size_t i = 0; i < n; i++) {
        cb(ctx, list[i]);
        pt_message_release(list[i]);
    }
    free(list);
    return (int64_t)n;
}

/* ---- Logs -------------------------------------------------------------------------------------
 */

static int
mem_log_append(pt_linkstate_t *ls, uint64_t run_id, const char *line)
{
    mem_run_t *r = run_find((mem_linkstate_t *)ls, run_id);
    if (r == NULL) {
        return PETAL_ENOENT;
    }
    if (line == NULL) {
        return PETAL_EINVAL;
    }
    if (r->num_lines == r->cap_lines) {
        uint64_t cap = r->cap_lines ? r->cap_lines * 2 : 16;
        char **lines = realloc(r->lines, cap * sizeof(*lines));
        if (lines == NULL) {
            return PETAL_ENOMEM;
        }
        r->lines = lines;
        r->cap_lines = cap;
    }
    char *copy = strdup(line);
    if (copy == NULL) {
        return PETAL_ENOMEM;
    }
    r->lines[r->num_lines++] = copy;
    return 0;
}

static int64_t
mem_log_read(pt_linkstate_t *ls, uint64_t run_id, uint64_t from,
             void (*cb)(void *ctx, uint64_t index, const char *line), void *ctx)
{
    mem_run_t *r = run_find((mem_linkstate_t *)ls, run_id);
    if (r == NULL) {
        return PETAL_ENOENT;
    }
    if (from > INT64_MAX) {
        return PETAL_EINVAL;
    }
    uint64_t i = from;
    /* re-read num_lines each time: the callback may append */
    for (; i < r->num_lines; i++) {
        cb(ctx, i, r->lines[i]);
    }
    return (int64_t)i;
}

/* ---- Bundles ----------------------------------------------------------------------------------
 */

static mem_bundle_t *
bundle_find(mem_linkstate_t *m, const char *hash)
{
    for (size_t i = 0; i < m->num_bundles; i++) {
        if (strcmp(m->bundles[i].hash, hash) == 0) {
            return &m->bundles[i];
        }
    }
    return NULL;
}

static int
mem_bundle_put(pt_linkstate_t *ls, const char *hash, const void *data, size_t len)
{
    mem_linkstate_t *m = (mem_linkstate_t *)ls;
    if (hash == NULL || !valid_hash(hash) || data == NULL || len == 0) {
        return PETAL_EINVAL;
    }
    if (bundle_find(m, hash) != NULL) {
        return 0;
    }
    mem_bundle_t *b = realloc(m->bundles, (m->num_bundles + 1) * sizeof(*b));
    if (b == NULL) {
        return PETAL_ENOMEM;
    }
    m->bundles = b;
    pt_buf_t *buf = pt_buf_alloc(len, 0);
    if (buf == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(pt_buf_data(buf), data, len);
    b = &m->bundles[m->num_bundles++];
    memcpy(b->hash, hash, sizeof(b->hash));
    b->buf = buf;
    return 0;
}

static int
mem_bundle_get(pt_linkstate_t *ls, const char *hash, pt_buf_t **out)
{
    if (hash == NULL || !valid_hash(hash)) {
        return PETAL_EINVAL;
    }
    mem_bundle_t *b = bundle_find((mem_linkstate_t *)ls, hash);
    if (b == NULL) {
        return PETAL_ENOENT;
    }
    pt_buf_hold(b->buf);
    *out = b->buf;
    return 0;
}

static const pt_linkstate_ops_t memory_ops = {
    .free = mem_free,
    .nodes_create = mem_nodes_create,
    .node_get = mem_node_get,
    .node_set_online = mem_node_set_online,
    .node_ids_online = mem_node_ids_online,
    .node_register = mem_node_register,
    .node_list = mem_node_list,
    .run_create = mem_run_create,
    .run_ids = mem_run_ids,
    .run_get = mem_run_get,
    .run_set_status = mem_run_set_status,
    .msg_put = mem_msg_put,
    .msg_take = mem_msg_take,
    .msg_expire = mem_msg_expire,
    .msg_pending = mem_msg_pending,
    .msg_for_node = mem_msg_for_node,
    .log_append = mem_log_append,
    .log_read = mem_log_read,
    .bundle_put = mem_bundle_put,
    .bundle_get = mem_bundle_get,
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
