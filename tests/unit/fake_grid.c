/* fake_grid.c - a fake Grid for strategy and default-server tests, and the record helpers. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/message.h"

#include "fake_grid.h"

/* ---- Record helpers -------------------------------------------------------------------------- */

void
set_i64(petal_metricrecord_t *m, const char *name, int64_t v)
{
    petal_value_t x = petal_value_i64(v);
    ck_assert_int_eq(petal_metricrecord_set(m, name, &x), 0);
}

void
set_f64(petal_metricrecord_t *m, const char *name, double v)
{
    petal_value_t x = petal_value_f64(v);
    ck_assert_int_eq(petal_metricrecord_set(m, name, &x), 0);
}

double
metric_f64(const petal_metricrecord_t *m, const char *name)
{
    petal_value_t v;
    double x = NAN;

    ck_assert_ptr_nonnull(m);
    ck_assert_msg(petal_metricrecord_get(m, name, &v) == 0, "metric %s missing", name);
    ck_assert_int_eq(petal_value_as_f64(&v, &x), 0);
    return x;
}

/* ---- The grid's ops -------------------------------------------------------------------------- */

static int64_t
fg_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    fake_grid_t *f = (fake_grid_t *)g;
    for (uint64_t i = 0; i < f->n && i < cap; i++) {
        ids[i] = f->nodes[i];
    }
    return (int64_t)f->n;
}

/* The reply of the node msg is for: an error from a failing node, else the fake ClientApp's. */
static petal_message_t *
fg_answer(fake_grid_t *f, petal_message_t *msg)
{
    petal_metadata_t md;
    uint64_t node;

    petal_message_metadata(msg, &md);
    node = md.dst_node_id;
    if (node == f->failing || (f->broken_from != 0 && node >= f->broken_from)) {
        return pt_message_alloc_error_reply(msg, PETAL_E_NODE_UNAVAILABLE, "node went away");
    }
    if (strncmp(md.message_type, "query", 5) == 0) {
        f->queries++;
    }
    if (strcmp(md.message_type, "train") == 0) {
        f->train_msgs++;
    }
    return f->client(f, msg);
}

/* The "w" array of a message's "arrays" record (NULL if it has none). */
static const petal_array_t *
array_w(const petal_message_t *m)
{
    const petal_arrayrecord_t *a = petal_recorddict_arrays(petal_message_content(m), "arrays");
    return a != NULL ? petal_arrayrecord_get(a, "w") : NULL;
}

static int64_t
fg_send_and_stream(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout,
                   petal_reply_cb cb, void *cb_ctx)
{
    fake_grid_t *f = (fake_grid_t *)g;
    petal_message_t *replies[FG_MAX_NODES];
    uint64_t s = f->delivery_seed;

    (void)timeout;
    ck_assert_uint_le(n, FG_MAX_NODES);
    for (uint64_t i = 0; i < n; i++) {
        petal_metadata_t md;
        petal_message_metadata(msgs[i], &md);
        if (i > 0 && strcmp(md.message_type, "train") == 0) {
            const petal_array_t *w = array_w(msgs[i]), *w0 = array_w(msgs[0]);
            f->shared_buffers += w != NULL && w0 != NULL && pt_array_buf(w) == pt_array_buf(w0);
        }
        replies[i] = fg_answer(f, msgs[i]);
        ck_assert_ptr_nonnull(replies[i]);
    }
    for (uint64_t i = 0; i < n; i++) {
        petal_message_free(msgs[i]); /* the grid owned them */
    }
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = pt_splitmix64(&s) % i;
        petal_message_t *t = replies[i - 1];
        replies[i - 1] = replies[j];
        replies[j] = t;
    }
    for (uint64_t i = 0; i < n; i++) {
        cb(cb_ctx, replies[i]);
        petal_message_free(replies[i]);
    }
    return (int64_t)n;
}

static int32_t
fg_record_metrics(petal_grid_t *g, uint32_t round, const char *phase, const petal_metricrecord_t *m)
{
    fake_grid_t *f = (fake_grid_t *)g;
    petal_value_t v;

    if (strcmp(phase, "train") == 0) {
        f->train_records++;
        if (petal_metricrecord_get(m, "num-replies", &v) == 0) {
            f->last_replies = v.as.i64;
        }
        if (petal_metricrecord_get(m, "num-failures", &v) == 0) {
            f->last_failures = v.as.i64;
        }
    } else if (strcmp(phase, "evaluate") == 0) {
        f->evaluate_records++;
    } else if (strcmp(phase, "server") == 0) {
        f->server_records++;
    }
    if (f->check_metrics != NULL) {
        f->check_metrics(f, round, phase, m);
    }
    return 0;
}

static int32_t
fg_set_final(petal_grid_t *g, const petal_arrayrecord_t *arrays)
{
    fake_grid_t *f = (fake_grid_t *)g;
    petal_arrayrecord_t *dst;

    petal_recorddict_free(f->final);
    f->final = petal_recorddict_alloc();
    dst = petal_recorddict_add_arrays(f->final, "arrays");
    for (uint64_t i = 0; i < petal_arrayrecord_count(arrays); i++) {
        ck_assert_int_eq(petal_arrayrecord_add_ref(dst, petal_arrayrecord_name_at(arrays, i),
                                                   petal_arrayrecord_at(arrays, i)),
                         0);
    }
    return 0;
}

static struct pt_runtime *
fg_runtime(petal_grid_t *g)
{
    return ((fake_grid_t *)g)->rt;
}

static const pt_grid_ops_t fake_grid_ops = {
    .node_ids = fg_node_ids,
    .send_and_stream = fg_send_and_stream,
    .record_metrics = fg_record_metrics,
    .set_final_arrays = fg_set_final,
    .runtime = fg_runtime,
};

void
fake_grid_init(fake_grid_t *f, uint64_t n, uint64_t delivery_seed, fg_client_fn client)
{
    ck_assert_uint_le(n, FG_MAX_NODES);
    memset(f, 0, sizeof(*f));
    f->base.ops = &fake_grid_ops;
    f->client = client;
    f->n = n;
    for (uint64_t i = 0; i < n; i++) {
        f->nodes[i] = 11 + 7 * i;
    }
    f->delivery_seed = delivery_seed;
}

/* ---- The default server's context ------------------------------------------------------------ */

petal_context_t *
fg_server_context(const char *const *keys, const petal_value_t *vals, int n)
{
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *c = petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME);
    pt_run_config_t *rc;
    petal_context_t *ctx;

    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(petal_configrecord_set(c, keys[i], &vals[i]), 0);
    }
    rc = pt_run_config_alloc(holder);
    ck_assert_ptr_nonnull(rc);
    ctx = pt_context_alloc(1, PETAL_SERVER_NODE_ID, rc, NULL);
    ck_assert_ptr_nonnull(ctx);
    pt_run_config_release(rc);
    return ctx;
}
