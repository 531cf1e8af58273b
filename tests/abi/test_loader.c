/* test_loader.c - the plugin loader: broken plugins fail clearly; the frozen v1 plugins work. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/grid.h"
#include "runtime/message.h"
#include "runtime/plugin.h"

#ifndef ABI_BAD_DIR
#error "ABI_BAD_DIR must name the directory of the bad plugins"
#endif
#ifndef ABI_V1_DIR
#error "ABI_V1_DIR must name build/plugins/abi_v1"
#endif

#define V1_CLIENT ABI_V1_DIR "/client.so"
#define V1_SERVER ABI_V1_DIR "/server.so"

static pt_plugin_t *const SENTINEL = (pt_plugin_t *)&SENTINEL;

static void
assert_contains(const char *text, const char *part)
{
    ck_assert_msg(strstr(text, part) != NULL, "expected \"%s\" in \"%s\"", part, text);
}

/* ---- broken plugins ---------------------------------------------------------------------- */

static const struct bad_case {
    const char *file;
    uint32_t expect_kind;
    int rc;
    const char *says;
} bad_cases[] = {
    {"no_entry.so", PETAL_PLUGIN_CLIENT, PETAL_EABI, "no entry point petal_plugin_entry_v1 in "},
    {"entry_eabi.so", PETAL_PLUGIN_CLIENT, PETAL_EABI, "refused host ABI v1"},
    {"abi_v2.so", PETAL_PLUGIN_CLIENT, PETAL_EABI, "was built for ABI v2"},
    {"entry_eplugin.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN, "plugin init failed: plugin failed"},
    {"entry_positive.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN, "returned 3"},
    {"server_kind.so", PETAL_PLUGIN_CLIENT, PETAL_EINVAL,
     "is a ServerApp plugin, but a ClientApp plugin was expected"},
    {"null_ops.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN, "returned no client ops"},
    {"small_ops.so", PETAL_PLUGIN_CLIENT, PETAL_EABI, "struct_size is 16"},
    {"ops_abi3.so", PETAL_PLUGIN_CLIENT, PETAL_EABI, "abi_version is 3"},
    {"no_handler.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN, "has no train, evaluate or query"},
    {"unknown_kind.so", 0, PETAL_EPLUGIN, "unknown kind 9"},
    {"undefined_sym.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN,
     "undefined symbol: petal_function_that_does_not_exist"},
    {"text/client.so", PETAL_PLUGIN_CLIENT, PETAL_EPLUGIN, "not a shared object"},
    {"client_expected.so", PETAL_PLUGIN_CLIENT, -ENOENT, "No such file or directory"},
};
#define N_BAD_CASES (int)(sizeof(bad_cases) / sizeof(bad_cases[0]))

START_TEST(test_bad_plugin)
{
    const struct bad_case *c = &bad_cases[_i];
    char path[512];
    char err[512];
    pt_plugin_t *p = SENTINEL;
    snprintf(path, sizeof(path), "%s/%s", ABI_BAD_DIR, c->file);

    int rc = pt_plugin_load(path, c->expect_kind, &p, err, sizeof(err));
    ck_assert_msg(rc == c->rc, "%s: rc %d (%s), expected %d; err: %s", c->file, rc,
                  petal_strerror(rc), c->rc, err);
    ck_assert_ptr_eq(p, SENTINEL); /* out untouched on failure */
    assert_contains(err, path);
    assert_contains(err, c->says);
    ck_assert_ptr_null(strchr(err, '\n'));
}
END_TEST

START_TEST(test_missing_file_message)
{
    char err[256];
    pt_plugin_t *p = SENTINEL;
    int rc =
        pt_plugin_load("/nonexistent-petal/client.so", PETAL_PLUGIN_CLIENT, &p, err, sizeof(err));
    ck_assert_int_eq(rc, -ENOENT);
    ck_assert_str_eq(err, "cannot open plugin /nonexistent-petal/client.so: No such file or "
                          "directory");
}
END_TEST

START_TEST(test_no_entry_message)
{
    char err[512];
    pt_plugin_t *p = SENTINEL;
    ck_assert_int_eq(pt_plugin_load(ABI_BAD_DIR "/no_entry.so", 0, &p, err, sizeof(err)),
                     PETAL_EABI);
    ck_assert_msg(
        strncmp(err, "no entry point petal_plugin_entry_v1 in " ABI_BAD_DIR "/no_entry.so",
                strlen("no entry point petal_plugin_entry_v1 in " ABI_BAD_DIR "/no_entry.so")) == 0,
        "%s", err);
}
END_TEST

START_TEST(test_directory_and_bad_arguments)
{
    char err[256];
    pt_plugin_t *p = SENTINEL;
    ck_assert_int_eq(pt_plugin_load(ABI_BAD_DIR, 0, &p, err, sizeof(err)), -EISDIR);
    assert_contains(err, "Is a directory");
    ck_assert_int_eq(pt_plugin_load(NULL, 0, &p, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_int_eq(pt_plugin_load("", 0, &p, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_int_eq(pt_plugin_load(V1_CLIENT, 7, &p, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_int_eq(pt_plugin_load(V1_CLIENT, 0, NULL, err, sizeof(err)), PETAL_EINVAL);
    ck_assert_int_eq(pt_plugin_load("/nonexistent-petal/x.so", 0, &p, NULL, 0), -ENOENT);
    ck_assert_ptr_eq(p, SENTINEL);
}
END_TEST

START_TEST(test_name_without_slash_is_a_file_not_a_library_search)
{
    char err[256];
    char cwd[1024];
    pt_plugin_t *p = NULL;
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(ABI_V1_DIR), 0);
    /* libc.so.6 exists on the library path, but not here: never dlopen's search */
    ck_assert_int_eq(pt_plugin_load("libc.so.6", 0, &p, err, sizeof(err)), -ENOENT);
    ck_assert_int_eq(pt_plugin_load("client.so", PETAL_PLUGIN_CLIENT, &p, err, sizeof(err)), 0);
    ck_assert_str_eq(pt_plugin_path(p), "client.so");
    pt_plugin_unload(p);
    ck_assert_int_eq(chdir(cwd), 0);
}
END_TEST

START_TEST(test_server_kind_loads_as_server_or_any)
{
    char err[256];
    pt_plugin_t *a = NULL, *b = NULL;
    ck_assert_int_eq(
        pt_plugin_load(ABI_BAD_DIR "/server_kind.so", PETAL_PLUGIN_SERVER, &a, err, sizeof(err)),
        0);
    ck_assert_int_eq(pt_plugin_load(ABI_BAD_DIR "/server_kind.so", 0, &b, err, sizeof(err)), 0);
    ck_assert_uint_eq(pt_plugin_info(a)->kind, PETAL_PLUGIN_SERVER);
    ck_assert(pt_plugin_info(b)->server->main != NULL);
    ck_assert_ptr_null(pt_plugin_info(b)->client);
    pt_plugin_unload(a);
    pt_plugin_unload(b);
}
END_TEST

/* ---- the frozen v1 ClientApp --------------------------------------------------------------- */

static petal_recorddict_t *
holder_from(const char *spec)
{
    char err[256];
    petal_recorddict_t *h = petal_recorddict_alloc();
    petal_configrecord_t *c = petal_recorddict_add_config(h, PT_CONFIG_HOLDER_NAME);
    ck_assert_msg(pt_config_parse_overrides(spec, NULL, c, err, sizeof(err)) == 0, "%s", err);
    return h;
}

static petal_message_t *
train_message(uint64_t node)
{
    petal_recorddict_t *content = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(content, "arrays");
    uint64_t shape[2] = {2, 3};
    petal_array_t *w = petal_arrayrecord_add(ar, "w", PETAL_DTYPE_FLOAT32, 2, shape);
    ck_assert_ptr_nonnull(w);
    float *d = petal_array_data_mut(w);
    for (int i = 0; i < 6; i++) {
        d[i] = (float)i - 1.5f;
    }
    uint64_t shape2[1] = {2};
    petal_array_t *n = petal_arrayrecord_add(ar, "n", PETAL_DTYPE_INT32, 1, shape2);
    int32_t *nd = petal_array_data_mut(n);
    nd[0] = 7;
    nd[1] = -8;
    petal_message_t *m = petal_message_alloc(content, "train", node, "1", 60.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

static int64_t
metric_i64(const petal_recorddict_t *d, const char *rec, const char *name)
{
    petal_value_t v;
    int64_t x = 0;
    const petal_metricrecord_t *m = petal_recorddict_metrics(d, rec);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(petal_metricrecord_get(m, name, &v), 0);
    if (v.type == PETAL_VALUE_UINT64) {
        return (int64_t)v.as.u64;
    }
    ck_assert_int_eq(petal_value_as_i64(&v, &x), 0);
    return x;
}

typedef struct v1_client {
    pt_plugin_t *plugin;
    const petal_client_ops_t *ops;
    void *app;
    pt_run_config_t *run_config;
} v1_client_t;

static void
v1_client_open(v1_client_t *c, const char *run_config)
{
    char err[512];
    memset(c, 0, sizeof(*c));
    int rc = pt_plugin_load(V1_CLIENT, PETAL_PLUGIN_CLIENT, &c->plugin, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    c->ops = pt_plugin_info(c->plugin)->client;
    c->run_config = pt_run_config_alloc(holder_from(run_config));
    ck_assert_int_eq(c->ops->init(pt_run_config_get(c->run_config), &c->app), 0);
}

static void
v1_client_close(v1_client_t *c)
{
    c->ops->fini(c->app);
    pt_run_config_release(c->run_config);
    pt_plugin_unload(c->plugin);
}

START_TEST(test_v1_client_info)
{
    char err[256];
    pt_plugin_t *p = NULL;
    ck_assert_int_eq(pt_plugin_load(V1_CLIENT, PETAL_PLUGIN_CLIENT, &p, err, sizeof(err)), 0);
    const petal_plugin_info_t *info = pt_plugin_info(p);
    ck_assert_uint_eq(info->kind, PETAL_PLUGIN_CLIENT);
    ck_assert_uint_eq(info->abi_version, 1);
    ck_assert_str_eq(info->name, "abi_v1");
    ck_assert_str_eq(info->version, "1.0.0");
    ck_assert_ptr_null(info->server);
    ck_assert(info->client->init != NULL);
    ck_assert(info->client->train != NULL);
    ck_assert(info->client->fini != NULL);
    ck_assert_str_eq(pt_plugin_path(p), V1_CLIENT);
    pt_plugin_unload(p);
}
END_TEST

START_TEST(test_v1_client_train_doubles_float32)
{
    v1_client_t c;
    v1_client_open(&c, "note='hello abi'");
    petal_context_t *ctx = pt_context_alloc(1, 42, c.run_config, NULL);

    for (int round = 1; round <= 2; round++) {
        petal_message_t *msg = train_message(42);
        petal_recorddict_t *reply = petal_recorddict_alloc();
        ck_assert_int_eq(c.ops->train(c.app, ctx, msg, reply), 0);

        const petal_arrayrecord_t *ar = petal_recorddict_arrays(reply, "arrays");
        ck_assert_ptr_nonnull(ar);
        ck_assert_uint_eq(petal_arrayrecord_count(ar), 2);
        const petal_array_t *w = petal_arrayrecord_get(ar, "w");
        ck_assert_int_eq(petal_array_dtype(w), PETAL_DTYPE_FLOAT32);
        ck_assert_uint_eq(petal_array_ndim(w), 2);
        ck_assert_uint_eq(petal_array_shape(w)[0], 2);
        ck_assert_uint_eq(petal_array_shape(w)[1], 3);
        const float *d = petal_array_data(w);
        for (int i = 0; i < 6; i++) {
            ck_assert_float_eq(d[i], 2.0f * ((float)i - 1.5f));
        }
        const petal_array_t *n = petal_arrayrecord_get(ar, "n"); /* int32: passed through */
        ck_assert_int_eq(petal_array_dtype(n), PETAL_DTYPE_INT32);
        ck_assert_int_eq(((const int32_t *)petal_array_data(n))[1], -8);

        ck_assert_int_eq(metric_i64(reply, "metrics", "num-examples"), 6);
        ck_assert_int_eq(metric_i64(reply, "metrics", "round"), round); /* context state */
        ck_assert_int_eq(metric_i64(reply, "metrics", "node-id"), 42);
        petal_recorddict_free(reply);
        petal_message_free(msg);
    }
    pt_context_free(ctx);
    v1_client_close(&c);
}
END_TEST

START_TEST(test_v1_client_evaluate_and_query)
{
    v1_client_t c;
    v1_client_open(&c, "note='hello abi' num-server-rounds=2");
    petal_context_t *ctx =
        pt_context_alloc(1, 9, c.run_config, holder_from("partition-id=2 num-partitions=3"));
    petal_message_t *msg = petal_message_alloc(petal_recorddict_alloc(), "evaluate", 9, "", 10);

    petal_recorddict_t *reply = petal_recorddict_alloc();
    ck_assert_int_eq(c.ops->evaluate(c.app, ctx, msg, reply), 0);
    ck_assert_int_eq(metric_i64(reply, "metrics", "partition-id"), 2);
    petal_value_t v;
    ck_assert_int_eq(petal_metricrecord_get(petal_recorddict_metrics(reply, "metrics"), "loss", &v),
                     0);
    ck_assert(v.as.f64 == 0.5);
    petal_recorddict_free(reply);

    reply = petal_recorddict_alloc();
    ck_assert_int_eq(c.ops->query(c.app, ctx, "", msg, reply), 0);
    const petal_configrecord_t *info = petal_recorddict_config(reply, "info");
    ck_assert_int_eq(petal_configrecord_get(info, "name", &v), 0);
    ck_assert_str_eq(v.as.str, "abi_v1");
    ck_assert_int_eq(petal_configrecord_get(info, "note", &v), 0);
    ck_assert_str_eq(v.as.str, "hello abi"); /* the run config reached init */
    petal_recorddict_free(reply);

    /* a failing handler explains itself through the context */
    reply = petal_recorddict_alloc();
    ck_assert_int_eq(c.ops->query(c.app, ctx, "fail", msg, reply), PETAL_EPLUGIN);
    ck_assert_str_eq(pt_context_error(ctx), "asked to fail on node 9");
    pt_context_clear_error(ctx);
    /* a handler may return garbage: the host must treat any non-zero as a failure */
    ck_assert_int_eq(c.ops->query(c.app, ctx, "bad", msg, reply), 7);
    petal_recorddict_free(reply);

    petal_message_free(msg);
    pt_context_free(ctx);
    v1_client_close(&c);
}
END_TEST

START_TEST(test_v1_client_errors)
{
    v1_client_t c;
    v1_client_open(&c, "note='x'");
    petal_context_t *ctx = pt_context_alloc(1, 3, c.run_config, NULL);
    petal_message_t *msg = petal_message_alloc(petal_recorddict_alloc(), "train", 3, "", 10);
    petal_recorddict_t *reply = petal_recorddict_alloc();
    ck_assert_int_eq(c.ops->train(c.app, ctx, msg, reply), PETAL_EINVAL);
    ck_assert_str_eq(pt_context_error(ctx), "no \"arrays\" record in the train message");
    petal_recorddict_free(reply);
    petal_message_free(msg);
    pt_context_free(ctx);
    v1_client_close(&c);

    /* init sees the run config and may refuse it */
    pt_plugin_t *p = NULL;
    char err[256];
    ck_assert_int_eq(pt_plugin_load(V1_CLIENT, PETAL_PLUGIN_CLIENT, &p, err, sizeof(err)), 0);
    pt_run_config_t *rc = pt_run_config_alloc(holder_from("fail-init=true"));
    void *app = NULL;
    ck_assert_int_eq(pt_plugin_info(p)->client->init(pt_run_config_get(rc), &app), PETAL_ECONFIG);
    pt_run_config_release(rc);
    pt_plugin_unload(p);
}
END_TEST

/* ---- the frozen v1 ServerApp, driving the v1 ClientApp through a test Grid ---------------- */

#define NODES 3

typedef struct test_grid {
    petal_grid_t base;
    const petal_client_ops_t *client;
    void *app;
    petal_context_t *nodes[NODES];
    int fail_replies;
    int metrics_calls;
    double w0[8];
    float final_w[4];
    int final_set;
} test_grid_t;

static int64_t
tg_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    test_grid_t *t = (test_grid_t *)g;
    for (uint64_t i = 0; i < cap && i < NODES; i++) {
        ids[i] = petal_context_node_id(t->nodes[i]);
    }
    return NODES;
}

static int64_t
tg_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                   petal_reply_cb cb, void *cb_ctx)
{
    test_grid_t *t = (test_grid_t *)g;
    (void)timeout;
    for (uint64_t i = 0; i < n; i++) {
        petal_metadata_t md;
        ck_assert_int_eq(petal_message_metadata(msgs[i], &md), 0);
        ck_assert_str_eq(md.message_type, "train");
        petal_context_t *ctx = NULL;
        for (int k = 0; k < NODES; k++) {
            if (petal_context_node_id(t->nodes[k]) == md.dst_node_id) {
                ctx = t->nodes[k];
            }
        }
        ck_assert_ptr_nonnull(ctx);
        petal_message_t *r;
        petal_recorddict_t *content = petal_recorddict_alloc();
        int32_t rc =
            t->fail_replies ? PETAL_EPLUGIN : t->client->train(t->app, ctx, msgs[i], content);
        if (rc == 0) {
            r = pt_message_alloc_reply(msgs[i], content);
        } else {
            petal_recorddict_free(content);
            r = pt_message_alloc_error_reply(msgs[i], PETAL_E_CLIENT_APP_RAISED_EXCEPTION,
                                             "client failed");
        }
        ck_assert_ptr_nonnull(r);
        cb(cb_ctx, r);
        petal_message_free(r);
        petal_message_free(msgs[i]);
    }
    return (int64_t)n;
}

static int32_t
tg_record_metrics(petal_grid_t *g, uint32_t round, const char *phase, const petal_metricrecord_t *m)
{
    test_grid_t *t = (test_grid_t *)g;
    petal_value_t v;
    ck_assert_str_eq(phase, "train");
    ck_assert_uint_eq(round, (uint32_t)t->metrics_calls + 1);
    ck_assert_int_eq(petal_metricrecord_get(m, "w0", &v), 0);
    t->w0[t->metrics_calls++] = v.as.f64;
    ck_assert_int_eq(petal_metricrecord_get(m, "replies", &v), 0);
    ck_assert_int_eq(v.as.i64, NODES);
    return 0;
}

static int32_t
tg_set_final_arrays(petal_grid_t *g, const petal_arrayrecord_t *arrays)
{
    test_grid_t *t = (test_grid_t *)g;
    const petal_array_t *w = petal_arrayrecord_get(arrays, "w");
    ck_assert_ptr_nonnull(w);
    ck_assert_uint_eq(petal_array_numel(w), 4);
    memcpy(t->final_w, petal_array_data(w), sizeof(t->final_w));
    t->final_set = 1;
    return 0;
}

static const pt_grid_ops_t test_grid_ops = {
    .node_ids = tg_node_ids,
    .send_and_stream = tg_send_and_stream,
    .record_metrics = tg_record_metrics,
    .set_final_arrays = tg_set_final_arrays,
};

/* Loads the app from build/plugins/abi_v1 as the daemons do: manifest, then both plugins. */
static void
run_v1_app(test_grid_t *t, petal_context_t **server_ctx, pt_plugin_t **client, pt_plugin_t **server)
{
    char err[512];
    pt_manifest_t *m = NULL;
    int rc = pt_manifest_load(ABI_V1_DIR, &m, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_str_eq(m->name, "abi_v1");
    ck_assert_ptr_nonnull(m->server_path);
    rc = pt_plugin_load(m->client_path, PETAL_PLUGIN_CLIENT, client, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    rc = pt_plugin_load(m->server_path, PETAL_PLUGIN_SERVER, server, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);

    pt_run_config_t *rcfg = pt_run_config_alloc(pt_manifest_take_config(m));
    ck_assert_ptr_nonnull(rcfg);
    pt_manifest_free(m);

    memset(t, 0, sizeof(*t));
    t->base.ops = &test_grid_ops;
    t->client = pt_plugin_info(*client)->client;
    ck_assert_int_eq(t->client->init(pt_run_config_get(rcfg), &t->app), 0);
    for (int k = 0; k < NODES; k++) {
        t->nodes[k] = pt_context_alloc(5, 100 + (uint64_t)k, rcfg, NULL);
    }
    *server_ctx = pt_context_alloc(5, PETAL_SERVER_NODE_ID, rcfg, NULL);
    pt_context_set_grid(*server_ctx, &t->base);
    pt_run_config_release(rcfg);
}

static void
stop_v1_app(test_grid_t *t, petal_context_t *server_ctx, pt_plugin_t *client, pt_plugin_t *server)
{
    t->client->fini(t->app);
    for (int k = 0; k < NODES; k++) {
        pt_context_free(t->nodes[k]);
    }
    pt_context_free(server_ctx);
    pt_plugin_unload(client);
    pt_plugin_unload(server);
}

START_TEST(test_v1_server_drives_v1_client)
{
    test_grid_t t;
    petal_context_t *sctx;
    pt_plugin_t *client, *server;
    run_v1_app(&t, &sctx, &client, &server);

    const petal_server_ops_t *ops = pt_plugin_info(server)->server;
    ck_assert_ptr_eq(pt_context_grid(sctx), &t.base);
    int32_t rc = ops->main(pt_context_grid(sctx), sctx);
    ck_assert_msg(rc == 0, "main: %s: %s", petal_strerror(rc), pt_context_error(sctx));

    /* num-server-rounds = 3 in petal.toml; each round every client doubles w */
    ck_assert_int_eq(t.metrics_calls, 3);
    ck_assert(t.w0[0] == 2.0 && t.w0[1] == 4.0 && t.w0[2] == 8.0);
    ck_assert(t.final_set);
    for (int k = 0; k < 4; k++) {
        ck_assert_float_eq(t.final_w[k], 8.0f * (float)(k + 1));
    }
    stop_v1_app(&t, sctx, client, server);
}
END_TEST

START_TEST(test_v1_server_reports_failed_replies)
{
    test_grid_t t;
    petal_context_t *sctx;
    pt_plugin_t *client, *server;
    run_v1_app(&t, &sctx, &client, &server);
    t.fail_replies = 1;

    int32_t rc = pt_plugin_info(server)->server->main(&t.base, sctx);
    ck_assert_int_eq(rc, PETAL_EPLUGIN);
    assert_contains(pt_context_error(sctx), "round 1: 3 failed replies");
    ck_assert_int_eq(t.final_set, 0);
    stop_v1_app(&t, sctx, client, server);
}
END_TEST

static Suite *
loader_suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("bad");
    tcase_add_loop_test(tc, test_bad_plugin, 0, N_BAD_CASES);
    tcase_add_test(tc, test_missing_file_message);
    tcase_add_test(tc, test_no_entry_message);
    tcase_add_test(tc, test_directory_and_bad_arguments);
    tcase_add_test(tc, test_name_without_slash_is_a_file_not_a_library_search);
    tcase_add_test(tc, test_server_kind_loads_as_server_or_any);
    suite_add_tcase(s, tc);
    tc = tcase_create("v1");
    tcase_add_test(tc, test_v1_client_info);
    tcase_add_test(tc, test_v1_client_train_doubles_float32);
    tcase_add_test(tc, test_v1_client_evaluate_and_query);
    tcase_add_test(tc, test_v1_client_errors);
    tcase_add_test(tc, test_v1_server_drives_v1_client);
    tcase_add_test(tc, test_v1_server_reports_failed_replies);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(loader_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
