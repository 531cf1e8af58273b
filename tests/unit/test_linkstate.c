/* test_linkstate.c - one LinkState suite run against both backends, plus SQLite restarts. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "actors/superlink/linkstate.h"
#include "runtime/message.h"

#define ERR_CAP 512
#define RESTART_REASON "the SuperLink restarted while the run was running"

static const char hash_a[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
static const char hash_b[] = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

/* ---- Backends ------------------------------------------------------------------------------- */

static char g_dir[256]; /* a fresh directory per test */
static char g_path[300];

static void
setup(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof(g_dir), "%s/petal-linkstate-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/linkstate.db", g_dir);
}

static void
teardown(void)
{
    DIR *d = opendir(g_dir);
    if (d != NULL) {
        struct dirent *e;
        char p[600];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(p, sizeof(p), "%s/%s", g_dir, e->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    rmdir(g_dir);
}

static pt_linkstate_t *
open_memory(void)
{
    pt_linkstate_t *ls = NULL;
    ck_assert_int_eq(pt_linkstate_memory_alloc(&ls), 0);
    return ls;
}

static pt_linkstate_t *
open_sqlite(void)
{
    pt_linkstate_t *ls = NULL;
    char err[ERR_CAP] = "";
    int rc = pt_linkstate_sqlite_open(g_path, &ls, err, sizeof(err));
    ck_assert_msg(rc == 0, "open %s: %s", g_path, err);
    return ls;
}

typedef struct backend {
    const char *name;
    pt_linkstate_t *(*open)(void);
} backend_t;

static const backend_t backends[] = {
    {"memory", open_memory},
    {"sqlite", open_sqlite},
};
#define N_BACKENDS ((int)(sizeof(backends) / sizeof(backends[0])))

static pt_linkstate_t *
backend_open(int i)
{
    ck_assert_int_lt(i, N_BACKENDS);
    return backends[i].open();
}

/* ---- Helpers -------------------------------------------------------------------------------- */

/* A RecordDict "holder" with a ConfigRecord "config" holding every value type. */
static petal_recorddict_t *
config_holder(void)
{
    static const int64_t li[] = {INT64_MIN, -1, 0, INT64_MAX};
    static const uint64_t lu[] = {0, 1, UINT64_MAX};
    static const double ld[] = {0.5, -0.0, INFINITY, 1e-300};
    static const uint8_t lb[] = {1, 0, 1};
    static const char *const lsv[] = {"a", "", "ünï ✓"};
    static const char raw[] = {0, 1, 2, (char)0xff, 0};
    petal_recorddict_t *d = petal_recorddict_alloc();
    ck_assert_ptr_nonnull(d);
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");
    petal_value_t v;
    v = petal_value_i64(-42);
    ck_assert_int_eq(petal_configrecord_set(c, "num-rounds", &v), 0);
    v = petal_value_u64(UINT64_MAX);
    ck_assert_int_eq(petal_configrecord_set(c, "u64", &v), 0);
    v = petal_value_f64(0.125);
    ck_assert_int_eq(petal_configrecord_set(c, "lr", &v), 0);
    v = petal_value_bool(1);
    ck_assert_int_eq(petal_configrecord_set(c, "flag", &v), 0);
    v = petal_value_str("réseau", strlen("réseau"));
    ck_assert_int_eq(petal_configrecord_set(c, "name", &v), 0);
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, sizeof(raw), {.bytes = raw}};
    ck_assert_int_eq(petal_configrecord_set(c, "raw", &v), 0);
    v = (petal_value_t){PETAL_VALUE_INT64_LIST, 0, 4, {.i64s = li}};
    ck_assert_int_eq(petal_configrecord_set(c, "li", &v), 0);
    v = (petal_value_t){PETAL_VALUE_UINT64_LIST, 0, 3, {.u64s = lu}};
    ck_assert_int_eq(petal_configrecord_set(c, "lu", &v), 0);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 4, {.f64s = ld}};
    ck_assert_int_eq(petal_configrecord_set(c, "ld", &v), 0);
    v = (petal_value_t){PETAL_VALUE_BOOL_LIST, 0, 3, {.bools = lb}};
    ck_assert_int_eq(petal_configrecord_set(c, "lb", &v), 0);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 3, {.strs = lsv}};
    ck_assert_int_eq(petal_configrecord_set(c, "ls", &v), 0);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 0, {.f64s = NULL}};
    ck_assert_int_eq(petal_configrecord_set(c, "empty", &v), 0);
    return d;
}

static size_t
elem_size(uint32_t type)
{
    switch (type) {
    case PETAL_VALUE_INT64_LIST:
    case PETAL_VALUE_UINT64_LIST:
    case PETAL_VALUE_DOUBLE_LIST:
        return 8;
    case PETAL_VALUE_BOOL_LIST:
    case PETAL_VALUE_STRING:
    case PETAL_VALUE_BYTES:
        return 1;
    default:
        return 0;
    }
}

/* Same names in the same order with the same types and values (bit-for-bit). */
static void
assert_config_equal(const petal_configrecord_t *a, const petal_configrecord_t *b)
{
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(petal_configrecord_count(a), petal_configrecord_count(b));
    for (uint64_t i = 0; i < petal_configrecord_count(a); i++) {
        const char *na, *nb;
        petal_value_t va, vb;
        ck_assert_int_eq(petal_configrecord_at(a, i, &na, &va), 0);
        ck_assert_int_eq(petal_configrecord_at(b, i, &nb, &vb), 0);
        ck_assert_str_eq(na, nb);
        ck_assert_uint_eq(va.type, vb.type);
        ck_assert_uint_eq(va.len, vb.len);
        if (va.type == PETAL_VALUE_STRING_LIST) {
            for (uint64_t j = 0; j < va.len; j++) {
                ck_assert_str_eq(va.as.strs[j], vb.as.strs[j]);
            }
        } else if (elem_size(va.type) > 0) {
            if (va.len > 0) {
                ck_assert_int_eq(memcmp(va.as.bytes, vb.as.bytes, va.len * elem_size(va.type)), 0);
            }
        } else if (va.type == PETAL_VALUE_BOOL) {
            ck_assert_int_eq(va.as.boolean, vb.as.boolean);
        } else {
            ck_assert_int_eq(memcmp(&va.as, &vb.as, 8), 0);
        }
    }
}

/* Content with arrays of several dtypes (one not a multiple of 8 bytes) and metrics. */
static petal_recorddict_t *
sample_content(unsigned seed)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "params");
    uint64_t shape2[] = {16, 33};
    uint64_t shape1[] = {7};
    petal_array_t *x = petal_arrayrecord_add(a, "w", PETAL_DTYPE_FLOAT32, 2, shape2);
    float *f = petal_array_data_mut(x);
    for (uint64_t i = 0; i < 16 * 33; i++) {
        f[i] = (float)(i * 0.5 + seed);
    }
    x = petal_arrayrecord_add(a, "odd", PETAL_DTYPE_UINT8, 1, shape1);
    memcpy(petal_array_data_mut(x), "abcdefg", 7);
    x = petal_arrayrecord_add(a, "b", PETAL_DTYPE_INT64, 1, shape1);
    for (int i = 0; i < 7; i++) {
        ((int64_t *)petal_array_data_mut(x))[i] = -i * (int64_t)seed;
    }
    petal_value_t v = petal_value_f64(seed + 0.25);
    petal_metricrecord_set(petal_recorddict_add_metrics(d, "metrics"), "loss", &v);
    return d;
}

static petal_message_t *
make_msg(uint64_t id, uint64_t dst, double created_at, double ttl, unsigned seed)
{
    petal_message_t *m = petal_message_alloc(sample_content(seed), "train", dst, "round-1", ttl);
    ck_assert_ptr_nonnull(m);
    petal_metadata_t *md = pt_message_md(m);
    md->message_id = id;
    md->run_id = 7;
    md->created_at = created_at;
    return m;
}

static void
assert_msg_equal(const petal_message_t *a, const petal_message_t *b)
{
    const petal_metadata_t *x = pt_message_md_const(a);
    const petal_metadata_t *y = pt_message_md_const(b);
    ck_assert_uint_eq(x->message_id, y->message_id);
    ck_assert_uint_eq(x->run_id, y->run_id);
    ck_assert_uint_eq(x->dst_node_id, y->dst_node_id);
    ck_assert_uint_eq(x->src_node_id, y->src_node_id);
    ck_assert(x->ttl == y->ttl);
    ck_assert(x->created_at == y->created_at);
    ck_assert_str_eq(x->group_id, y->group_id);
    ck_assert_str_eq(x->message_type, y->message_type);
    ck_assert(pt_recorddict_equal(petal_message_content(a), petal_message_content(b)));
}

/* ---- Nodes ---------------------------------------------------------------------------------- */

START_TEST(test_nodes_create_consecutive)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t first = 0, second = 0;
    pt_node_rec_t n;
    ck_assert_int_eq(ls->ops->nodes_create(ls, 3, 100.0, &first), 0);
    ck_assert_uint_eq(first, 1);
    ck_assert_int_eq(ls->ops->nodes_create(ls, 2, 101.0, &second), 0);
    ck_assert_uint_eq(second, 4);
    for (uint64_t id = 1; id <= 5; id++) {
        ck_assert_int_eq(ls->ops->node_get(ls, id, &n), 0);
        ck_assert_uint_eq(n.node_id, id);
        ck_assert_uint_eq(n.online, 1);
        ck_assert(n.last_seen == (id <= 3 ? 100.0 : 101.0));
    }
    ck_assert_int_eq(ls->ops->node_get(ls, 0, &n), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->node_get(ls, 6, &n), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->nodes_create(ls, 0, 1.0, &first), PETAL_EINVAL);
    ck_assert_uint_eq(first, 1); /* not written on error */
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_node_register)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t first, alice = 0, again = 0, bob = 0, x;
    int is_new = -1;
    const uint8_t k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'};
    uint8_t big[PT_NODE_KEY_MAX + 1];
    memset(big, 7, sizeof(big));
    ck_assert_int_eq(ls->ops->nodes_create(ls, 2, 1.0, &first), 0);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"alice", 5, 2.0, &alice, &is_new),
                     0);
    ck_assert_int_eq(is_new, 1);
    ck_assert_uint_eq(alice, 3); /* the same id space as nodes_create */
    ck_assert_int_eq(ls->ops->node_set_online(ls, alice, 0, 3.0), 0);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"alice", 5, 4.0, &again, &is_new),
                     0);
    ck_assert_int_eq(is_new, 0);
    ck_assert_uint_eq(again, alice);
    pt_node_rec_t n;
    ck_assert_int_eq(ls->ops->node_get(ls, alice, &n), 0);
    ck_assert_uint_eq(n.online, 1); /* registering again brings it back online */
    ck_assert(n.last_seen == 4.0);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"bob", 3, 5.0, &bob, &is_new), 0);
    ck_assert_int_eq(is_new, 1);
    ck_assert_uint_eq(bob, 4);
    /* binary keys: bytes after a NUL count */
    ck_assert_int_eq(ls->ops->node_register(ls, k1, sizeof(k1), 6.0, &x, &is_new), 0);
    ck_assert_int_eq(is_new, 1);
    ck_assert_uint_eq(x, 5);
    ck_assert_int_eq(ls->ops->node_register(ls, k2, sizeof(k2), 6.0, &x, &is_new), 0);
    ck_assert_int_eq(is_new, 1);
    ck_assert_uint_eq(x, 6);
    ck_assert_int_eq(ls->ops->node_register(ls, k1, sizeof(k1), 6.0, &x, &is_new), 0);
    ck_assert_uint_eq(x, 5);
    /* many keys (the in-memory table grows) keep their ids */
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "node-%d", i);
        ck_assert_int_eq(
            ls->ops->node_register(ls, (const uint8_t *)key, strlen(key), 7.0, &x, &is_new), 0);
        ck_assert_uint_eq(x, 7 + (uint64_t)i);
    }
    snprintf(key, sizeof(key), "node-%d", 123);
    ck_assert_int_eq(
        ls->ops->node_register(ls, (const uint8_t *)key, strlen(key), 8.0, &x, &is_new), 0);
    ck_assert_uint_eq(x, 130);
    ck_assert_int_eq(is_new, 0);
    x = 999;
    ck_assert_int_eq(ls->ops->node_register(ls, big, 0, 1.0, &x, &is_new), PETAL_EINVAL);
    ck_assert_int_eq(ls->ops->node_register(ls, big, sizeof(big), 1.0, &x, &is_new), PETAL_EINVAL);
    ck_assert_int_eq(ls->ops->node_register(ls, big, PT_NODE_KEY_MAX, 1.0, &x, &is_new), 0);
    ck_assert_uint_eq(x, 207);
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_node_online_and_list)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t first, ids[8];
    pt_node_rec_t recs[8];
    ck_assert_int_eq(ls->ops->nodes_create(ls, 5, 10.0, &first), 0);
    ck_assert_int_eq(ls->ops->node_set_online(ls, 2, 0, 11.0), 0);
    ck_assert_int_eq(ls->ops->node_set_online(ls, 4, 0, 12.0), 0);
    ck_assert_int_eq(ls->ops->node_set_online(ls, 9, 0, 12.0), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->node_ids_online(ls, ids, 8), 3);
    ck_assert_uint_eq(ids[0], 1);
    ck_assert_uint_eq(ids[1], 3);
    ck_assert_uint_eq(ids[2], 5);
    ck_assert_int_eq(ls->ops->node_ids_online(ls, ids, 1), 3); /* the count, beyond cap */
    ck_assert_int_eq(ls->ops->node_ids_online(ls, NULL, 0), 3);
    ck_assert_int_eq(ls->ops->node_list(ls, recs, 8), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(recs[i].node_id, (uint64_t)i + 1);
        ck_assert_uint_eq(recs[i].online, i == 1 || i == 3 ? 0 : 1);
    }
    ck_assert(recs[1].last_seen == 11.0);
    ck_assert(recs[3].last_seen == 12.0);
    ck_assert(recs[4].last_seen == 10.0);
    ck_assert_int_eq(ls->ops->node_list(ls, recs, 2), 5);
    ck_assert_int_eq(ls->ops->node_set_online(ls, 2, 1, 13.0), 0);
    ck_assert_int_eq(ls->ops->node_ids_online(ls, ids, 8), 4);
    ck_assert_uint_eq(ids[1], 2);
    ls->ops->free(ls);
}
END_TEST

/* ---- Runs ----------------------------------------------------------------------------------- */

START_TEST(test_run_lifecycle)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t id = 0, id2 = 0;
    pt_run_rec_t r;
    ck_assert_int_eq(ls->ops->run_create(ls, "/apps/quickstart", NULL, config_holder(), 50.0, &id),
                     0);
    ck_assert_uint_eq(id, 1);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    ck_assert_uint_eq(r.run_id, 1);
    ck_assert_int_eq(r.status, PT_RUN_PENDING);
    ck_assert_int_eq(r.result, PT_RUN_NONE);
    ck_assert_str_eq(r.app_dir, "/apps/quickstart");
    ck_assert_str_eq(r.reason, "");
    ck_assert_str_eq(r.bundle_hash, "");
    ck_assert(r.created_at == 50.0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "pending");

    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_STARTING, PT_RUN_NONE, NULL, 51.0), 0);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "starting");
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_RUNNING, PT_RUN_NONE, NULL, 52.0), 0);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "running");
    ck_assert(r.started_at == 52.0);
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_FINISHED, PT_RUN_COMPLETED, NULL, 60.0),
                     0);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "finished:completed");
    ck_assert(r.finished_at == 60.0);
    ck_assert(r.started_at == 52.0);
    /* finished is final */
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_RUNNING, PT_RUN_NONE, NULL, 61.0),
                     PETAL_ESTATE);
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_FINISHED, PT_RUN_FAILED, "late", 61.0),
                     PETAL_ESTATE);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "finished:completed");
    ck_assert_str_eq(r.reason, "");

    /* a failure keeps its reason; a bundle run keeps its hash */
    ck_assert_int_eq(ls->ops->run_create(ls, "/var/lib/petal/apps/x", hash_a, NULL, 70.0, &id2), 0);
    ck_assert_uint_eq(id2, 2);
    ck_assert_int_eq(ls->ops->run_set_status(ls, id2, PT_RUN_FINISHED, PT_RUN_FAILED,
                                             "the ServerApp raised: boom", 71.0),
                     0);
    ck_assert_int_eq(ls->ops->run_get(ls, id2, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "finished:failed");
    ck_assert_str_eq(r.reason, "the ServerApp raised: boom");
    ck_assert_str_eq(r.bundle_hash, hash_a);
    ck_assert_ptr_null(r.run_config);

    ck_assert_int_eq(ls->ops->run_get(ls, 3, &r), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->run_get(ls, 0, &r), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->run_set_status(ls, 3, PT_RUN_RUNNING, 0, NULL, 1.0), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->run_set_status(ls, 1, 9, 0, NULL, 1.0) != 0, 1);
    /* a bad bundle hash fails and the holder is still taken (the sanitizer build checks) */
    ck_assert_int_eq(ls->ops->run_create(ls, "/x", "ABC", config_holder(), 1.0, &id2),
                     PETAL_EINVAL);
    ck_assert_uint_eq(id2, 2);
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_run_ids)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t id, ids[4] = {0};
    ck_assert_int_eq(ls->ops->run_ids(ls, ids, 4), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ls->ops->run_create(ls, "/a", NULL, NULL, 1.0, &id), 0);
    }
    ck_assert_int_eq(ls->ops->run_ids(ls, ids, 4), 3);
    ck_assert_uint_eq(ids[0], 1);
    ck_assert_uint_eq(ids[1], 2);
    ck_assert_uint_eq(ids[2], 3);
    memset(ids, 0, sizeof(ids));
    ck_assert_int_eq(ls->ops->run_ids(ls, ids, 2), 3);
    ck_assert_uint_eq(ids[1], 2);
    ck_assert_uint_eq(ids[2], 0);
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_run_config_round_trip)
{
    pt_linkstate_t *ls = backend_open(_i);
    petal_recorddict_t *expect = config_holder();
    uint64_t id;
    pt_run_rec_t r;
    ck_assert_int_eq(ls->ops->run_create(ls, "/a", NULL, config_holder(), 1.0, &id), 0);
    ck_assert_int_eq(ls->ops->run_get(ls, id, &r), 0);
    assert_config_equal(r.run_config, petal_recorddict_config(expect, "config"));
    /* app_dir and run_config stay valid across status changes (superlink.c relies on it) */
    const petal_configrecord_t *cfg = r.run_config;
    const char *app_dir = r.app_dir;
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_STARTING, 0, NULL, 2.0), 0);
    ck_assert_int_eq(ls->ops->run_set_status(ls, id, PT_RUN_RUNNING, 0, NULL, 2.0), 0);
    ck_assert_str_eq(app_dir, "/a");
    assert_config_equal(cfg, petal_recorddict_config(expect, "config"));
    petal_value_t v;
    ck_assert_int_eq(petal_configrecord_get(cfg, "num-rounds", &v), 0);
    ck_assert_int_eq(v.as.i64, -42);
    petal_recorddict_free(expect);
    ls->ops->free(ls);
}
END_TEST

/* ---- Messages ------------------------------------------------------------------------------- */

START_TEST(test_msg_round_trip)
{
    pt_linkstate_t *ls = backend_open(_i);
    petal_message_t *m = make_msg(41, 3, 1000.0, 30.0, 5);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 0);
    ck_assert_int_eq(ls->ops->msg_put(ls, m), 0);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 1);
    ck_assert_ptr_null(ls->ops->msg_take(ls, 42));
    petal_message_t *got = ls->ops->msg_take(ls, 41);
    ck_assert_ptr_nonnull(got);
    assert_msg_equal(got, m);
    const petal_array_t *w =
        petal_arrayrecord_get(petal_recorddict_arrays(petal_message_content(got), "params"), "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(petal_array_numel(w), 16 * 33);
    ck_assert(((const float *)petal_array_data(w))[100] == (float)(100 * 0.5 + 5));
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 0);
    ck_assert_ptr_null(ls->ops->msg_take(ls, 41));
    ck_assert_ptr_null(ls->ops->msg_take(ls, 0));
    pt_message_release(got);
    pt_message_release(m);
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_msg_duplicate_id)
{
    pt_linkstate_t *ls = backend_open(_i);
    petal_message_t *a = make_msg(9, 1, 1.0, 10.0, 1);
    petal_message_t *b = make_msg(9, 2, 2.0, 10.0, 2);
    ck_assert_int_eq(ls->ops->msg_put(ls, a), 0);
    ck_assert_int_eq(ls->ops->msg_put(ls, b), PETAL_EEXIST);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 1);
    petal_message_t *got = ls->ops->msg_take(ls, 9);
    ck_assert_ptr_nonnull(got);
    ck_assert_uint_eq(pt_message_md(got)->dst_node_id, 1); /* the first one stayed */
    pt_message_release(got);
    pt_message_release(a);
    pt_message_release(b);
    ls->ops->free(ls);
}
END_TEST

typedef struct seen {
    uint64_t ids[16];
    int n;
    pt_linkstate_t *ls; /* for callbacks that call back into the LinkState */
} seen_t;

static void
on_expired(void *ctx, petal_message_t *m)
{
    seen_t *s = ctx;
    ck_assert_int_lt(s->n, 16);
    s->ids[s->n++] = pt_message_md(m)->message_id;
    ck_assert_uint_eq(pt_message_md(m)->dst_node_id, 2);
    pt_message_release(m); /* the callback owns it */
}

START_TEST(test_msg_expire)
{
    pt_linkstate_t *ls = backend_open(_i);
    seen_t s = {0};
    petal_message_t *m[3] = {make_msg(1, 2, 100.0, 10.0, 1), make_msg(2, 2, 100.0, 50.0, 2),
                             make_msg(3, 2, 105.0, 1.0, 3)};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ls->ops->msg_put(ls, m[i]), 0);
        pt_message_release(m[i]);
    }
    ck_assert_int_eq(ls->ops->msg_expire(ls, 105.5, on_expired, &s), 0);
    ck_assert_int_eq(s.n, 0);
    ck_assert_int_eq(ls->ops->msg_expire(ls, 107.0, on_expired, &s), 1);
    ck_assert_int_eq(s.n, 1);
    ck_assert_uint_eq(s.ids[0], 3);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 2);
    ck_assert_int_eq(ls->ops->msg_expire(ls, 111.0, on_expired, &s), 1);
    ck_assert_uint_eq(s.ids[1], 1);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 1);
    ck_assert_ptr_null(ls->ops->msg_take(ls, 1));
    petal_message_t *left = ls->ops->msg_take(ls, 2);
    ck_assert_ptr_nonnull(left);
    pt_message_release(left);
    ck_assert_int_eq(ls->ops->msg_expire(ls, 1e12, on_expired, &s), 0);
    ls->ops->free(ls);
}
END_TEST

static void
on_for_node(void *ctx, petal_message_t *m)
{
    seen_t *s = ctx;
    ck_assert_int_lt(s->n, 16);
    s->ids[s->n++] = pt_message_md(m)->message_id;
    ck_assert_uint_eq(pt_message_md(m)->dst_node_id, 5);
    ck_assert_uint_eq(pt_recorddict_array_bytes(petal_message_content(m)), 16 * 33 * 4 + 7 + 7 * 8);
}

static void
on_any(void *ctx, petal_message_t *m)
{
    seen_t *s = ctx;
    ck_assert_int_lt(s->n, 16);
    s->ids[s->n++] = pt_message_md(m)->message_id;
}

/* Takes each message from inside the callback (re-delivery may answer at once). */
static void
on_for_node_take(void *ctx, petal_message_t *m)
{
    seen_t *s = ctx;
    s->ids[s->n++] = pt_message_md(m)->message_id;
    petal_message_t *t = s->ls->ops->msg_take(s->ls, pt_message_md(m)->message_id);
    ck_assert_ptr_nonnull(t);
    pt_message_release(t);
    ck_assert_uint_eq(pt_message_md(m)->dst_node_id, 5); /* m still valid */
}

START_TEST(test_msg_for_node)
{
    pt_linkstate_t *ls = backend_open(_i);
    seen_t s = {0};
    /* (id, created_at): oldest first, ties by id */
    petal_message_t *m[5] = {make_msg(10, 5, 3.0, 100, 1), make_msg(11, 5, 1.0, 100, 2),
                             make_msg(12, 6, 0.5, 100, 3), make_msg(14, 5, 2.0, 100, 4),
                             make_msg(13, 5, 2.0, 100, 5)};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ls->ops->msg_put(ls, m[i]), 0);
        pt_message_release(m[i]);
    }
    ck_assert_int_eq(ls->ops->msg_for_node(ls, 5, on_for_node, &s), 4);
    ck_assert_int_eq(s.n, 4);
    ck_assert_uint_eq(s.ids[0], 11);
    ck_assert_uint_eq(s.ids[1], 13);
    ck_assert_uint_eq(s.ids[2], 14);
    ck_assert_uint_eq(s.ids[3], 10);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 5); /* nothing removed */
    ck_assert_int_eq(ls->ops->msg_for_node(ls, 7, on_for_node, &s), 0);
    memset(&s, 0, sizeof(s));
    s.ls = ls;
    ck_assert_int_eq(ls->ops->msg_for_node(ls, 5, on_for_node_take, &s), 4);
    ck_assert_uint_eq(s.ids[0], 11);
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 1);
    ls->ops->free(ls); /* frees the one left */
}
END_TEST

/* ---- Logs and bundles ----------------------------------------------------------------------- */

typedef struct lines {
    uint64_t idx[8];
    char text[8][64];
    int n;
} lines_t;

static void
on_line(void *ctx, uint64_t index, const char *line)
{
    lines_t *l = ctx;
    ck_assert_int_lt(l->n, 8);
    l->idx[l->n] = index;
    snprintf(l->text[l->n], sizeof(l->text[0]), "%s", line);
    l->n++;
}

START_TEST(test_logs)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint64_t r1, r2;
    lines_t l = {0};
    ck_assert_int_eq(ls->ops->run_create(ls, "/a", NULL, NULL, 1.0, &r1), 0);
    ck_assert_int_eq(ls->ops->run_create(ls, "/b", NULL, NULL, 1.0, &r2), 0);
    ck_assert_int_eq(ls->ops->log_read(ls, r1, 0, on_line, &l), 0);
    ck_assert_int_eq(l.n, 0);
    ck_assert_int_eq(ls->ops->log_append(ls, r1, "round 1: loss 0.9"), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, r2, "other run"), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, r1, "round 2: loss 0.5 ✓"), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, r1, ""), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, 99, "x"), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->log_read(ls, r1, 0, on_line, &l), 3);
    ck_assert_int_eq(l.n, 3);
    ck_assert_uint_eq(l.idx[0], 0);
    ck_assert_str_eq(l.text[0], "round 1: loss 0.9");
    ck_assert_uint_eq(l.idx[1], 1);
    ck_assert_str_eq(l.text[1], "round 2: loss 0.5 ✓");
    ck_assert_str_eq(l.text[2], "");
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(ls->ops->log_read(ls, r1, 1, on_line, &l), 3);
    ck_assert_int_eq(l.n, 2);
    ck_assert_uint_eq(l.idx[0], 1);
    memset(&l, 0, sizeof(l));
    ck_assert_int_eq(ls->ops->log_read(ls, r1, 5, on_line, &l), 5);
    ck_assert_int_eq(l.n, 0);
    ck_assert_int_eq(ls->ops->log_read(ls, r2, 0, on_line, &l), 1);
    ck_assert_str_eq(l.text[0], "other run");
    ck_assert_int_eq(ls->ops->log_read(ls, 99, 0, on_line, &l), PETAL_ENOENT);
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_bundles)
{
    pt_linkstate_t *ls = backend_open(_i);
    uint8_t data[3000];
    pt_buf_t *b = NULL;
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)(i * 7);
    }
    ck_assert_int_eq(ls->ops->bundle_get(ls, hash_a, &b), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->bundle_put(ls, hash_a, data, sizeof(data)), 0);
    ck_assert_int_eq(ls->ops->bundle_put(ls, hash_a, "other", 5), 0); /* stored: a no-op */
    ck_assert_int_eq(ls->ops->bundle_get(ls, hash_a, &b), 0);
    ck_assert_uint_eq(pt_buf_len(b), sizeof(data));
    ck_assert_int_eq(memcmp(pt_buf_data(b), data, sizeof(data)), 0);
    pt_buf_release(b);
    ck_assert_int_eq(ls->ops->bundle_get(ls, hash_b, &b), PETAL_ENOENT);
    ck_assert_int_eq(ls->ops->bundle_put(ls, "0123", data, 4), PETAL_EINVAL);
    ck_assert_int_eq(ls->ops->bundle_get(ls, "../etc/passwd", &b), PETAL_EINVAL);
    ls->ops->free(ls);
}
END_TEST

/* ---- SQLite only ---------------------------------------------------------------------------- */

START_TEST(test_sqlite_restart_keeps_state)
{
    pt_linkstate_t *ls = open_sqlite();
    uint64_t alice, bob, first, run_done_id, run_live, x;
    int is_new;
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"alice", 5, 1.0, &alice, &is_new),
                     0);
    ck_assert_int_eq(ls->ops->nodes_create(ls, 3, 1.0, &first), 0);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"bob", 3, 1.0, &bob, &is_new), 0);
    ck_assert_int_eq(ls->ops->run_create(ls, "/a", NULL, config_holder(), 2.0, &run_done_id), 0);
    ck_assert_int_eq(ls->ops->run_set_status(ls, run_done_id, PT_RUN_FINISHED, PT_RUN_STOPPED,
                                             "stopped by the user", 3.0),
                     0);
    ck_assert_int_eq(ls->ops->run_create(ls, "/b", hash_b, config_holder(), 4.0, &run_live), 0);
    ck_assert_int_eq(ls->ops->run_set_status(ls, run_live, PT_RUN_RUNNING, 0, NULL, 5.0), 0);
    petal_message_t *m1 = make_msg(100, alice, 6.0, 3600.0, 1);
    petal_message_t *m2 = make_msg(101, bob, 7.0, 3600.0, 2);
    ck_assert_int_eq(ls->ops->msg_put(ls, m1), 0);
    ck_assert_int_eq(ls->ops->msg_put(ls, m2), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, run_live, "line 0"), 0);
    ck_assert_int_eq(ls->ops->log_append(ls, run_live, "line 1"), 0);
    ck_assert_int_eq(ls->ops->bundle_put(ls, hash_b, "bundle-bytes", 12), 0);
    ls->ops->free(ls);

    ls = open_sqlite();
    /* nodes: same ids for the same keys, all offline until they come back */
    pt_node_rec_t recs[8];
    ck_assert_int_eq(ls->ops->node_list(ls, recs, 8), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_uint_eq(recs[i].node_id, (uint64_t)i + 1);
        ck_assert_uint_eq(recs[i].online, 0);
    }
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"bob", 3, 9.0, &x, &is_new), 0);
    ck_assert_int_eq(is_new, 0);
    ck_assert_uint_eq(x, bob);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"alice", 5, 9.0, &x, &is_new), 0);
    ck_assert_int_eq(is_new, 0);
    ck_assert_uint_eq(x, alice);
    ck_assert_int_eq(ls->ops->node_register(ls, (const uint8_t *)"carol", 5, 9.0, &x, &is_new), 0);
    ck_assert_int_eq(is_new, 1);
    ck_assert_uint_eq(x, 6);
    ck_assert_int_eq(ls->ops->nodes_create(ls, 2, 9.0, &first), 0);
    ck_assert_uint_eq(first, 7);
    /* runs: a finished one unchanged, the running one failed with the restart reason */
    uint64_t ids[4];
    ck_assert_int_eq(ls->ops->run_ids(ls, ids, 4), 2);
    pt_run_rec_t r;
    ck_assert_int_eq(ls->ops->run_get(ls, run_done_id, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "finished:stopped");
    ck_assert_str_eq(r.reason, "stopped by the user");
    ck_assert(r.finished_at == 3.0);
    ck_assert_int_eq(ls->ops->run_get(ls, run_live, &r), 0);
    ck_assert_str_eq(pt_run_status_name(r.status, r.result), "finished:failed");
    ck_assert_str_eq(r.reason, RESTART_REASON);
    ck_assert_str_eq(r.app_dir, "/b");
    ck_assert_str_eq(r.bundle_hash, hash_b);
    ck_assert(r.created_at == 4.0);
    ck_assert(r.started_at == 5.0);
    ck_assert(r.finished_at > 5.0);
    petal_recorddict_t *expect = config_holder();
    assert_config_equal(r.run_config, petal_recorddict_config(expect, "config"));
    petal_recorddict_free(expect);
    uint64_t run3;
    ck_assert_int_eq(ls->ops->run_create(ls, "/c", NULL, NULL, 10.0, &run3), 0);
    ck_assert_uint_eq(run3, 3);
    /* pending messages */
    ck_assert_uint_eq(ls->ops->msg_pending(ls), 2);
    seen_t s = {0};
    ck_assert_int_eq(ls->ops->msg_for_node(ls, alice, on_any, &s), 1);
    ck_assert_uint_eq(s.ids[0], 100);
    petal_message_t *got = ls->ops->msg_take(ls, 101);
    ck_assert_ptr_nonnull(got);
    assert_msg_equal(got, m2);
    pt_message_release(got);
    got = ls->ops->msg_take(ls, 100);
    ck_assert_ptr_nonnull(got);
    assert_msg_equal(got, m1);
    pt_message_release(got);
    /* logs continue numbering */
    ck_assert_int_eq(ls->ops->log_append(ls, run_live, "line 2"), 0);
    lines_t l = {0};
    ck_assert_int_eq(ls->ops->log_read(ls, run_live, 0, on_line, &l), 3);
    ck_assert_str_eq(l.text[0], "line 0");
    ck_assert_str_eq(l.text[2], "line 2");
    /* bundles */
    pt_buf_t *b;
    ck_assert_int_eq(ls->ops->bundle_get(ls, hash_b, &b), 0);
    ck_assert_uint_eq(pt_buf_len(b), 12);
    ck_assert_int_eq(memcmp(pt_buf_data(b), "bundle-bytes", 12), 0);
    pt_buf_release(b);
    ls->ops->free(ls);
    pt_message_release(m1);
    pt_message_release(m2);
}
END_TEST

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 200; i++) {
        fputs(text, f);
    }
    fclose(f);
}

START_TEST(test_sqlite_not_a_database)
{
    pt_linkstate_t *ls = NULL;
    char err[ERR_CAP] = "";
    write_file(g_path, "this is a text file, not a database\n");
    int rc = pt_linkstate_sqlite_open(g_path, &ls, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(ls);
    ck_assert_msg(strstr(err, g_path) != NULL, "error does not name the file: %s", err);
    ck_assert_msg(strstr(err, "not a database") != NULL, "unclear error: %s", err);

    /* a directory, and a file in a directory that does not exist */
    rc = pt_linkstate_sqlite_open(g_dir, &ls, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(err, g_dir) != NULL, "error does not name the directory: %s", err);
    char missing[400];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/ls.db", g_dir);
    rc = pt_linkstate_sqlite_open(missing, &ls, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(err, missing) != NULL, "error does not name the file: %s", err);
}
END_TEST

/* Runs SQL on the file with SQLite directly (not through the LinkState). */
static void
exec_sql(const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(g_path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "?");
    sqlite3_close(db);
}

START_TEST(test_sqlite_foreign_database)
{
    pt_linkstate_t *ls = NULL;
    char err[ERR_CAP] = "";
    exec_sql("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)");
    int rc = pt_linkstate_sqlite_open(g_path, &ls, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(ls);
    ck_assert_msg(strstr(err, g_path) != NULL && strstr(err, "not a Petal") != NULL,
                  "unclear error: %s", err);
}
END_TEST

START_TEST(test_sqlite_newer_schema_refused)
{
    pt_linkstate_t *ls = open_sqlite();
    ls->ops->free(ls);
    exec_sql("UPDATE schema_version SET version = 99");
    ls = NULL;
    char err[ERR_CAP] = "";
    int rc = pt_linkstate_sqlite_open(g_path, &ls, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(ls);
    ck_assert_msg(strstr(err, g_path) != NULL, "error does not name the file: %s", err);
    ck_assert_msg(strstr(err, "99") != NULL && strstr(err, "newer") != NULL, "unclear error: %s",
                  err);
    /* the file was left as it was */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open(g_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT version FROM schema_version", -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), 99);
    sqlite3_finalize(st);
    sqlite3_close(db);
}
END_TEST

START_TEST(test_sqlite_one_process_per_file)
{
    pt_linkstate_t *ls = open_sqlite(), *second = NULL;
    char err[ERR_CAP] = "";
    uint64_t first;
    ck_assert_int_eq(ls->ops->nodes_create(ls, 1, 1.0, &first), 0);
    int rc = pt_linkstate_sqlite_open(g_path, &second, err, sizeof(err));
    ck_assert_int_ne(rc, 0);
    ck_assert_ptr_null(second);
    ck_assert_msg(strstr(err, g_path) != NULL && strstr(err, "in use") != NULL, "unclear error: %s",
                  err);
    /* the first one is unaffected, and a reader (as `sqlite3 FILE .backup` is) still works */
    ck_assert_int_eq(ls->ops->nodes_create(ls, 1, 1.0, &first), 0);
    ck_assert_uint_eq(first, 2);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open(g_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM nodes", -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
    ls->ops->free(ls);
    /* after closing, the file opens again */
    ls = open_sqlite();
    ls->ops->free(ls);
}
END_TEST

START_TEST(test_sqlite_wal_mode)
{
    pt_linkstate_t *ls = open_sqlite();
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open(g_path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
    ls->ops->free(ls);
}
END_TEST

/* ---- Suite ---------------------------------------------------------------------------------- */

static Suite *
linkstate_suite(void)
{
    Suite *s = suite_create("linkstate");
    TCase *tc = tcase_create("both backends");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_nodes_create_consecutive, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_node_register, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_node_online_and_list, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_run_lifecycle, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_run_ids, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_run_config_round_trip, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_msg_round_trip, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_msg_duplicate_id, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_msg_expire, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_msg_for_node, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_logs, 0, N_BACKENDS);
    tcase_add_loop_test(tc, test_bundles, 0, N_BACKENDS);
    suite_add_tcase(s, tc);

    tc = tcase_create("sqlite");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_sqlite_restart_keeps_state);
    tcase_add_test(tc, test_sqlite_not_a_database);
    tcase_add_test(tc, test_sqlite_foreign_database);
    tcase_add_test(tc, test_sqlite_newer_schema_refused);
    tcase_add_test(tc, test_sqlite_one_process_per_file);
    tcase_add_test(tc, test_sqlite_wal_mode);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(linkstate_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
