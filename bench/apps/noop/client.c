/* client.c - the no-op benchmark ClientApp: echoes the model by reference, no computation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/plugin.h>

/*
 * Message contract (what the default ServerApp with FedAvg needs, nothing more):
 *   query.init-arrays: -> "arrays" {"w": float32 zeros of run config "model-size" elements
 *                      (default 100000)} + "metrics" {"num-examples": 1}. With run config
 *                      "model-arrays" K > 1 (default 1, at most 4096) the model is K arrays
 *                      "w0" .. "w<K-1>" instead, splitting model-size as evenly as possible
 *                      (the first model-size % K arrays have one element more); one array
 *                      holds at most 1,073,741,808 float32 (4 GiB - 64 bytes on the wire), so
 *                      a larger model needs model-arrays >= model-size / 1,073,741,808.
 *   train:             "arrays" -> the same arrays, referenced (zero copy), + "metrics"
 *                      {"num-examples": 1}.
 *   evaluate:          -> "metrics" {"eval-loss": 0.0, "num-examples": 1}.
 * The app state is one read-only integer, so handlers may run on any number of threads.
 */

PETAL_PLUGIN_INIT;

#define DEFAULT_MODEL_SIZE 100000
#define MAX_MODEL_SIZE (UINT64_C(1) << 32)
#define MAX_MODEL_ARRAYS 4096
#define MAX_ARRAY_ELEMENTS ((UINT64_C(0xffffffff) - 63) / 4)

typedef struct noop_app {
    uint64_t model_size;
    uint64_t model_arrays;
} noop_app_t;

/* Reads integer `key` (an integer, or a string holding one) in 1..max, dflt when absent; 0 or
 * PETAL_ECONFIG. */
static int32_t
read_count(const petal_configrecord_t *cfg, const char *key, int64_t dflt, uint64_t max,
           uint64_t *out)
{
    petal_value_t v;
    int64_t n = dflt;
    if (cfg != NULL && petal_configrecord_get(cfg, key, &v) == 0) {
        if (v.type == PETAL_VALUE_STRING) {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(v.as.str, &end, 10);
            if (errno != 0 || end == v.as.str || *end != '\0') {
                return PETAL_ECONFIG;
            }
            n = x;
        } else if (petal_value_as_i64(&v, &n) != 0) {
            return PETAL_ECONFIG;
        }
    }
    if (n < 1 || (uint64_t)n > max) {
        return PETAL_ECONFIG;
    }
    *out = (uint64_t)n;
    return 0;
}

static int32_t
noop_init(const petal_configrecord_t *run_config, void **out)
{
    noop_app_t *app = petal_alloc(sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    int32_t rc =
        read_count(run_config, "model-size", DEFAULT_MODEL_SIZE, MAX_MODEL_SIZE, &app->model_size);
    if (rc != 0) {
        petal_log(PETAL_LOG_ERROR,
                  "bench-noop: run config \"model-size\" must be an integer in 1..2^32");
        petal_free(app);
        return rc;
    }
    rc = read_count(run_config, "model-arrays", 1, MAX_MODEL_ARRAYS, &app->model_arrays);
    if (rc != 0 || app->model_arrays > app->model_size) {
        petal_log(PETAL_LOG_ERROR,
                  "bench-noop: run config \"model-arrays\" must be an integer in 1..%d and at "
                  "most model-size",
                  MAX_MODEL_ARRAYS);
        petal_free(app);
        return PETAL_ECONFIG;
    }
    if ((app->model_size + app->model_arrays - 1) / app->model_arrays > MAX_ARRAY_ELEMENTS) {
        petal_log(PETAL_LOG_ERROR,
                  "bench-noop: %llu float32 in %llu array(s) exceeds %llu per array (4 GiB - 64 "
                  "bytes on the wire): raise \"model-arrays\"",
                  (unsigned long long)app->model_size, (unsigned long long)app->model_arrays,
                  (unsigned long long)MAX_ARRAY_ELEMENTS);
        petal_free(app);
        return PETAL_ECONFIG;
    }
    *out = app;
    return 0;
}

static void
noop_fini(void *app)
{
    petal_free(app);
}

static int32_t
add_num_examples(petal_context_t *ctx, petal_recorddict_t *reply)
{
    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    petal_value_t one = petal_value_i64(1);
    if (m == NULL || petal_metricrecord_set(m, "num-examples", &one) != 0) {
        petal_context_set_error(ctx, "bench-noop: cannot add the metrics to the reply");
        return PETAL_ENOMEM;
    }
    return 0;
}

static int32_t
noop_train(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_arrayrecord_t *in = content ? petal_recorddict_arrays(content, "arrays") : NULL;
    if (in == NULL) {
        petal_context_set_error(ctx, "bench-noop: the train message has no ArrayRecord \"arrays\"");
        return PETAL_EINVAL;
    }
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(reply, "arrays");
    if (out == NULL) {
        petal_context_set_error(ctx, "bench-noop: cannot add \"arrays\" to the reply");
        return PETAL_ENOMEM;
    }
    uint64_t n = petal_arrayrecord_count(in);
    for (uint64_t i = 0; i < n; i++) {
        int32_t rc = petal_arrayrecord_add_ref(out, petal_arrayrecord_name_at(in, i),
                                               petal_arrayrecord_at(in, i));
        if (rc != 0) {
            petal_context_set_error(ctx, "bench-noop: cannot reference array %llu: %s",
                                    (unsigned long long)i, petal_strerror(rc));
            return rc;
        }
    }
    return add_num_examples(ctx, reply);
}

static int32_t
noop_evaluate(void *app, petal_context_t *ctx, const petal_message_t *msg,
              petal_recorddict_t *reply)
{
    (void)app;
    (void)msg;
    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    petal_value_t zero = petal_value_f64(0.0);
    if (m == NULL || petal_metricrecord_set(m, "eval-loss", &zero) != 0) {
        petal_context_set_error(ctx, "bench-noop: cannot add the metrics to the reply");
        return PETAL_ENOMEM;
    }
    return add_num_examples(ctx, reply);
}

static int32_t
noop_query(void *app, petal_context_t *ctx, const char *action, const petal_message_t *msg,
           petal_recorddict_t *reply)
{
    (void)msg;
    const noop_app_t *a = app;
    if (action != NULL && strcmp(action, "init-arrays") == 0) {
        petal_arrayrecord_t *ar = petal_recorddict_add_arrays(reply, "arrays");
        if (ar == NULL) {
            petal_context_set_error(ctx, "bench-noop: cannot add \"arrays\" to the reply");
            return PETAL_ENOMEM;
        }
        uint64_t k = a->model_arrays;
        for (uint64_t i = 0; i < k; i++) {
            uint64_t shape[1] = {a->model_size / k + (i < a->model_size % k ? 1 : 0)};
            char name[24];
            snprintf(name, sizeof(name), k == 1 ? "w" : "w%llu", (unsigned long long)i);
            if (petal_arrayrecord_add(ar, name, PETAL_DTYPE_FLOAT32, 1, shape) == NULL) {
                petal_context_set_error(ctx, "bench-noop: cannot allocate %llu floats",
                                        (unsigned long long)shape[0]);
                return PETAL_ENOMEM;
            }
        }
    }
    return add_num_examples(ctx, reply);
}

static const petal_client_ops_t noop_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = noop_init,
    .train = noop_train,
    .evaluate = noop_evaluate,
    .query = noop_query,
    .fini = noop_fini,
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
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_CLIENT;
    info->name = "bench-noop";
    info->version = "0.1.0";
    info->client = &noop_ops;
    info->server = NULL;
    return 0;
}
