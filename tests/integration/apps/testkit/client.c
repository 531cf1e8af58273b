/* client.c - testkit: a tiny synthetic ClientApp whose behaviours the run config switches on. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <petal/plugin.h>

/*
 * Written only against <petal/plugin.h>, like a user's plugin. The integration tests
 * (tests/integration/test_sim.c, test_deploy.c) predict its results exactly:
 *   model:    "arrays" {"w": float32[W_LEN]}, initially w[i] = 0.25 * i (query "init-arrays").
 *   train:    replies w + (partition-id + 1) * 0.01 with metrics {"num-examples":
 *             partition-id + 1, "train-loss": 1 / (server-round + partition-id + 1), "calls",
 *             "partition"}.
 *   evaluate: metrics {"eval-loss": mean(w), "eval-acc": 0.5, "num-examples", "calls"}.
 *   query:    any action -> metrics {"calls"}; "init-arrays" adds the initial "arrays".
 * Run config switches (all optional):
 *   "sleep-node" (int) + "sleep-ms" (int): that partition sleeps sleep-ms in every train call;
 *   "slow-ms" (int): every partition sleeps slow-ms in every train call (before sleep-node's);
 *   "fail-node" (int): that partition's train fails with a reason set on the context;
 *   "crash-node" (int): that partition's train crashes its process with raise(SIGSEGV) (meant
 *                for process isolation, where the crash becomes a CLIENT_APP_CRASHED reply);
 *   "crash-init" (bool): init fails;
 *   "pad-node" (int) + "pad-bytes" (int, up to 2^30): that partition's train replies also carry
 *                an ArrayRecord "pad" {"p": uint8[pad-bytes]} (zeros; FedAvg ignores it), to
 *                make replies of a chosen size.
 * Every handler counts its calls in the node's Context state (MetricRecord "counters", keys
 * "train", "evaluate", "query") and reports its own count as "calls"; each call also logs
 * "testkit: <handler> partition=P node=N round=R calls=C" at info level.
 */

PETAL_PLUGIN_INIT;

#define W_LEN 8

static int64_t
cfg_int(const petal_configrecord_t *c, const char *key, int64_t dflt)
{
    petal_value_t v;
    int64_t x;
    if (c == NULL || petal_configrecord_get(c, key, &v) != 0 || petal_value_as_i64(&v, &x) != 0) {
        return dflt;
    }
    return x;
}

static int
cfg_bool(const petal_configrecord_t *c, const char *key)
{
    petal_value_t v;
    if (c == NULL || petal_configrecord_get(c, key, &v) != 0) {
        return 0;
    }
    if (v.type == PETAL_VALUE_BOOL) {
        return v.as.boolean != 0;
    }
    if (v.type == PETAL_VALUE_INT64) {
        return v.as.i64 != 0;
    }
    if (v.type == PETAL_VALUE_STRING) {
        return strcmp(v.as.str, "true") == 0;
    }
    return 0;
}

static int64_t
partition_of(petal_context_t *ctx)
{
    return cfg_int(petal_context_node_config(ctx), "partition-id", 0);
}

static int64_t
round_of(const petal_message_t *msg)
{
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_configrecord_t *cfg =
        content != NULL ? petal_recorddict_config(content, "config") : NULL;
    return cfg_int(cfg, "server-round", 0);
}

/* Adds one to state["counters"][key] and returns the new count (or a negative error). */
static int64_t
count_call(petal_context_t *ctx, const char *key)
{
    petal_recorddict_t *state = petal_context_state(ctx);
    petal_metricrecord_t *counters =
        state != NULL ? petal_recorddict_add_metrics(state, "counters") : NULL;
    petal_value_t v;
    int64_t n = 0;
    if (counters == NULL) {
        petal_context_set_error(ctx, "testkit: no MetricRecord \"counters\" in the state");
        return PETAL_ENOMEM;
    }
    if (petal_metricrecord_get(counters, key, &v) == 0 && petal_value_as_i64(&v, &n) != 0) {
        petal_context_set_error(ctx, "testkit: counter \"%s\" is not an integer", key);
        return PETAL_ETYPE;
    }
    n++;
    v = petal_value_i64(n);
    int32_t rc = petal_metricrecord_set(counters, key, &v);
    if (rc != 0) {
        petal_context_set_error(ctx, "testkit: cannot update counter \"%s\"", key);
        return rc;
    }
    return n;
}

static int32_t
set_metric(petal_metricrecord_t *m, const char *name, petal_value_t v)
{
    return m != NULL ? petal_metricrecord_set(m, name, &v) : PETAL_ENOMEM;
}

/* The message's "w" as float32[W_LEN]; NULL (and the context's error) otherwise. */
static const float *
model_in(petal_context_t *ctx, const petal_message_t *msg)
{
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_arrayrecord_t *ar =
        content != NULL ? petal_recorddict_arrays(content, "arrays") : NULL;
    const petal_array_t *w = ar != NULL ? petal_arrayrecord_get(ar, "w") : NULL;
    if (w == NULL || petal_array_dtype(w) != PETAL_DTYPE_FLOAT32 || petal_array_numel(w) != W_LEN) {
        petal_context_set_error(ctx, "testkit: expected \"arrays\" with float32 \"w\"[%d]", W_LEN);
        return NULL;
    }
    return petal_array_data(w);
}

/* Adds reply["arrays"]["w"] and returns its writable data. */
static float *
model_out(petal_context_t *ctx, petal_recorddict_t *reply)
{
    uint64_t shape[1] = {W_LEN};
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(reply, "arrays");
    petal_array_t *a =
        ar != NULL ? petal_arrayrecord_add(ar, "w", PETAL_DTYPE_FLOAT32, 1, shape) : NULL;
    float *w = a != NULL ? petal_array_data_mut(a) : NULL;
    if (w == NULL) {
        petal_context_set_error(ctx, "testkit: cannot add \"w\" to the reply");
    }
    return w;
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int32_t
tk_init(const petal_configrecord_t *run_config, void **app)
{
    *app = NULL;
    if (cfg_bool(run_config, "crash-init")) {
        petal_log(PETAL_LOG_ERROR, "testkit: init refuses to start (crash-init = true)");
        return PETAL_EPLUGIN;
    }
    return 0;
}

static int32_t
tk_train(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    const petal_configrecord_t *run = petal_context_run_config(ctx);
    int64_t pid = partition_of(ctx);
    int64_t round = round_of(msg);
    int64_t calls = count_call(ctx, "train");
    if (calls < 0) {
        return (int32_t)calls;
    }
    petal_log(PETAL_LOG_INFO, "testkit: train partition=%lld node=%llu round=%lld calls=%lld",
              (long long)pid, (unsigned long long)petal_context_node_id(ctx), (long long)round,
              (long long)calls);
    if (cfg_int(run, "fail-node", -1) == pid) {
        petal_context_set_error(ctx, "testkit: partition %lld fails on purpose (fail-node)",
                                (long long)pid);
        return PETAL_EPLUGIN;
    }
    if (cfg_int(run, "crash-node", -1) == pid) {
        petal_log(PETAL_LOG_WARN, "testkit: partition %lld crashes on purpose (crash-node)",
                  (long long)pid);
        raise(SIGSEGV);
    }
    int64_t slow = cfg_int(run, "slow-ms", 0);
    if (slow > 0 && slow <= 600000) {
        sleep_ms(slow);
    }
    if (cfg_int(run, "sleep-node", -1) == pid) {
        int64_t ms = cfg_int(run, "sleep-ms", 0);
        if (ms > 0 && ms <= 600000) {
            sleep_ms(ms);
        }
    }
    const float *in = model_in(ctx, msg);
    if (in == NULL) {
        return PETAL_EINVAL;
    }
    float *out = model_out(ctx, reply);
    if (out == NULL) {
        return PETAL_ENOMEM;
    }
    for (int i = 0; i < W_LEN; i++) {
        out[i] = in[i] + (float)(pid + 1) * 0.01f;
    }
    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    int32_t rc = set_metric(m, "num-examples", petal_value_i64(pid + 1));
    if (rc == 0) {
        rc = set_metric(m, "train-loss", petal_value_f64(1.0 / (double)(round + pid + 1)));
    }
    if (rc == 0) {
        rc = set_metric(m, "calls", petal_value_i64(calls));
    }
    if (rc == 0) {
        rc = set_metric(m, "partition", petal_value_i64(pid));
    }
    int64_t pad = cfg_int(run, "pad-bytes", 0);
    if (rc == 0 && pad > 0 && pad <= (INT64_C(1) << 30) && cfg_int(run, "pad-node", -1) == pid) {
        uint64_t pshape[1] = {(uint64_t)pad};
        petal_arrayrecord_t *pr = petal_recorddict_add_arrays(reply, "pad");
        if (pr == NULL || petal_arrayrecord_add(pr, "p", PETAL_DTYPE_UINT8, 1, pshape) == NULL) {
            rc = PETAL_ENOMEM;
        }
    }
    if (rc != 0) {
        petal_context_set_error(ctx, "testkit: cannot set the train metrics");
    }
    return rc;
}

static int32_t
tk_evaluate(void *app, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    (void)app;
    int64_t pid = partition_of(ctx);
    int64_t calls = count_call(ctx, "evaluate");
    if (calls < 0) {
        return (int32_t)calls;
    }
    petal_log(PETAL_LOG_INFO, "testkit: evaluate partition=%lld node=%llu round=%lld calls=%lld",
              (long long)pid, (unsigned long long)petal_context_node_id(ctx),
              (long long)round_of(msg), (long long)calls);
    const float *in = model_in(ctx, msg);
    if (in == NULL) {
        return PETAL_EINVAL;
    }
    double mean = 0.0;
    for (int i = 0; i < W_LEN; i++) {
        mean += in[i];
    }
    mean /= W_LEN;
    petal_metricrecord_t *m = petal_recorddict_add_metrics(reply, "metrics");
    int32_t rc = set_metric(m, "num-examples", petal_value_i64(pid + 1));
    if (rc == 0) {
        rc = set_metric(m, "eval-loss", petal_value_f64(mean));
    }
    if (rc == 0) {
        rc = set_metric(m, "eval-acc", petal_value_f64(0.5));
    }
    if (rc == 0) {
        rc = set_metric(m, "calls", petal_value_i64(calls));
    }
    if (rc != 0) {
        petal_context_set_error(ctx, "testkit: cannot set the evaluate metrics");
    }
    return rc;
}

static int32_t
tk_query(void *app, petal_context_t *ctx, const char *action, const petal_message_t *msg,
         petal_recorddict_t *reply)
{
    (void)app;
    (void)msg;
    int64_t calls = count_call(ctx, "query");
    if (calls < 0) {
        return (int32_t)calls;
    }
    petal_log(PETAL_LOG_INFO, "testkit: query.%s partition=%lld node=%llu calls=%lld", action,
              (long long)partition_of(ctx), (unsigned long long)petal_context_node_id(ctx),
              (long long)calls);
    if (strcmp(action, "init-arrays") == 0) {
        float *w = model_out(ctx, reply);
        if (w == NULL) {
            return PETAL_ENOMEM;
        }
        for (int i = 0; i < W_LEN; i++) {
            w[i] = 0.25f * (float)i;
        }
    }
    int32_t rc =
        set_metric(petal_recorddict_add_metrics(reply, "metrics"), "calls", petal_value_i64(calls));
    if (rc != 0) {
        petal_context_set_error(ctx, "testkit: cannot set the query metrics");
    }
    return rc;
}

static void
tk_fini(void *app)
{
    (void)app;
}

static const petal_client_ops_t testkit_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = tk_init,
    .train = tk_train,
    .evaluate = tk_evaluate,
    .query = tk_query,
    .fini = tk_fini,
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
    info->name = "testkit";
    info->version = "0.1.0";
    info->client = &testkit_ops;
    info->server = NULL;
    return 0;
}
