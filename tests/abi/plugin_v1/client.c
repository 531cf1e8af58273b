/* client.c - the frozen ABI v1 test ClientApp, built only against <petal/plugin.h>. */
#include <petal/plugin.h>

/*
 * FROZEN. This file is what a plugin author wrote against ABI v1.0. Newer hosts must load the
 * .so built from it and behave the same; if a host change breaks a test that uses it, the host
 * broke the ABI. Add new test plugins next to it instead of changing it.
 *
 *   init      fails with PETAL_ECONFIG when the run config has fail-init = true
 *   train     reply "arrays": every float32 array of the received "arrays" record doubled
 *             (other dtypes referenced unchanged); reply "metrics": num-examples (float32
 *             elements), round (this node's train count, kept in the context state), node-id
 *   evaluate  reply "metrics": loss = 0.5, partition-id from the node config (-1 if none)
 *   query     ""     reply config "info": name = "abi_v1", abi = 1, note = run config "note"
 *             "fail" petal_context_set_error("asked to fail on node N") + PETAL_EPLUGIN
 *             "bad"  returns 7, a value a handler must not return
 */

PETAL_PLUGIN_INIT;

typedef struct app {
    int64_t inits;
    char note[64];
} app_t;

static int32_t
v1_init(const petal_configrecord_t *run_config, void **app)
{
    petal_value_t v;
    if (petal_configrecord_get(run_config, "fail-init", &v) == 0 && v.type == PETAL_VALUE_BOOL &&
        v.as.boolean) {
        return PETAL_ECONFIG;
    }
    app_t *a = petal_alloc(sizeof(*a));
    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->inits = 1;
    if (petal_configrecord_get(run_config, "note", &v) == 0 && v.type == PETAL_VALUE_STRING) {
        uint64_t n = v.len < sizeof(a->note) - 1 ? v.len : sizeof(a->note) - 1;
        for (uint64_t i = 0; i < n; i++) {
            a->note[i] = v.as.str[i];
        }
        a->note[n] = '\0';
    }
    *app = a;
    return 0;
}

static int32_t
v1_train(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_arrayrecord_t *in = content ? petal_recorddict_arrays(content, "arrays") : NULL;
    if (in == NULL) {
        petal_context_set_error(ctx, "no \"arrays\" record in the train message");
        return PETAL_EINVAL;
    }
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(reply, "arrays");
    if (out == NULL) {
        return PETAL_ENOMEM;
    }
    int64_t examples = 0;
    for (uint64_t i = 0; i < petal_arrayrecord_count(in); i++) {
        const petal_array_t *a = petal_arrayrecord_at(in, i);
        const char *name = petal_arrayrecord_name_at(in, i);
        if (petal_array_dtype(a) != PETAL_DTYPE_FLOAT32) {
            int32_t rc = petal_arrayrecord_add_ref(out, name, a);
            if (rc != 0) {
                return rc;
            }
            continue;
        }
        petal_array_t *b = petal_arrayrecord_add(out, name, PETAL_DTYPE_FLOAT32,
                                                 petal_array_ndim(a), petal_array_shape(a));
        if (b == NULL) {
            return PETAL_ENOMEM;
        }
        const float *src = petal_array_data(a);
        float *dst = petal_array_data_mut(b);
        uint64_t n = petal_array_numel(a);
        for (uint64_t k = 0; k < n; k++) {
            dst[k] = 2.0f * src[k];
        }
        examples += (int64_t)n;
    }

    /* the per-node round counter lives in the context state */
    petal_recorddict_t *state = petal_context_state(ctx);
    petal_configrecord_t *st = state ? petal_recorddict_add_config(state, "abi_v1") : NULL;
    if (st == NULL) {
        return PETAL_ENOMEM;
    }
    petal_value_t v;
    int64_t round = 1;
    if (petal_configrecord_get(st, "rounds", &v) == 0 && v.type == PETAL_VALUE_INT64) {
        round = v.as.i64 + 1;
    }
    v = petal_value_i64(round);
    int32_t rc = petal_configrecord_set(st, "rounds", &v);
    if (rc != 0) {
        return rc;
    }

    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    v = petal_value_i64(examples);
    rc = petal_metricrecord_set(m, "num-examples", &v);
    if (rc == 0) {
        v = petal_value_i64(round);
        rc = petal_metricrecord_set(m, "round", &v);
    }
    if (rc == 0) {
        v = petal_value_u64(petal_context_node_id(ctx));
        rc = petal_metricrecord_set(m, "node-id", &v);
    }
    return rc;
}

static int32_t
v1_evaluate(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    (void)msg;
    petal_value_t v;
    int64_t partition = -1;
    if (petal_configrecord_get(petal_context_node_config(ctx), "partition-id", &v) == 0) {
        petal_value_as_i64(&v, &partition);
    }
    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    if (m == NULL) {
        return PETAL_ENOMEM;
    }
    v = petal_value_f64(0.5);
    int32_t rc = petal_metricrecord_set(m, "loss", &v);
    if (rc == 0) {
        v = petal_value_i64(partition);
        rc = petal_metricrecord_set(m, "partition-id", &v);
    }
    return rc;
}

static int
same(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

static int32_t
v1_query(void *app, petal_context_t *ctx, const char *action, const petal_message_t *msg,
         petal_recorddict_t *reply)
{
    const app_t *a = app;
    (void)msg;
    if (same(action, "fail")) {
        petal_context_set_error(ctx, "asked to fail on node %llu",
                                (unsigned long long)petal_context_node_id(ctx));
        return PETAL_EPLUGIN;
    }
    if (same(action, "bad")) {
        return 7;
    }
    petal_configrecord_t *c = petal_recorddict_add_config(reply, "info");
    if (c == NULL) {
        return PETAL_ENOMEM;
    }
    petal_value_t v = petal_value_str("abi_v1", 6);
    int32_t rc = petal_configrecord_set(c, "name", &v);
    if (rc == 0) {
        v = petal_value_i64(PETAL_ABI_VERSION);
        rc = petal_configrecord_set(c, "abi", &v);
    }
    if (rc == 0) {
        uint64_t n = 0;
        while (a->note[n] != '\0') {
            n++;
        }
        v = petal_value_str(a->note, n);
        rc = petal_configrecord_set(c, "note", &v);
    }
    return rc;
}

static void
v1_fini(void *app)
{
    petal_free(app);
}

static const petal_client_ops_t v1_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = v1_init,
    .train = v1_train,
    .evaluate = v1_evaluate,
    .query = v1_query,
    .fini = v1_fini,
};

PETAL_PLUGIN_EXPORT int32_t petal_plugin_entry_v1(const petal_host_api_v1_t *host,
                                                  petal_plugin_info_t *info);

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    if (info == NULL || info->struct_size < sizeof(*info)) {
        return PETAL_EABI;
    }
    if (!PETAL_HOST_HAS(host, context_set_error)) {
        return PETAL_EABI;
    }
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_CLIENT;
    info->name = "abi_v1";
    info->version = "1.0.0";
    info->client = &v1_ops;
    info->server = NULL;
    return 0;
}
