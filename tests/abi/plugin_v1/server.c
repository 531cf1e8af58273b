/* server.c - the frozen ABI v1 test ServerApp, built only against <petal/plugin.h>. */
#include <petal/plugin.h>

/*
 * FROZEN, like client.c. main(): for num-server-rounds rounds (run config, default 1) it sends
 * a "train" message with arrays {"w": float32[4]} (initially 1, 2, 3, 4) and config
 * {"server-round"} to every node, averages the replied "w" arrays into the next w, and records
 * metrics {"replies", "failures", "w0"} per round under phase "train". At the end it sets the
 * final arrays to {"w"}. Fails (with petal_context_set_error) when there are no nodes or any
 * reply is an error.
 */

PETAL_PLUGIN_INIT;

#define MAX_NODES 64
#define W_LEN 4

typedef struct round_sum {
    double sum[W_LEN];
    int64_t replies;
    int64_t failures;
    int32_t last_error;
} round_sum_t;

static int32_t
on_reply(void *ctx, const petal_message_t *reply)
{
    round_sum_t *s = ctx;
    const petal_recorddict_t *c = petal_message_content(reply);
    const petal_arrayrecord_t *ar = c ? petal_recorddict_arrays(c, "arrays") : NULL;
    const petal_array_t *w = ar ? petal_arrayrecord_get(ar, "w") : NULL;
    if (w == NULL || petal_array_dtype(w) != PETAL_DTYPE_FLOAT32 || petal_array_numel(w) != W_LEN) {
        s->failures++;
        s->last_error = petal_message_error_code(reply);
        return 0;
    }
    const float *d = petal_array_data(w);
    for (int k = 0; k < W_LEN; k++) {
        s->sum[k] += d[k];
    }
    s->replies++;
    return 0;
}

static int32_t
v1_main(petal_grid_t *grid, petal_context_t *ctx)
{
    uint64_t ids[MAX_NODES];
    float w[W_LEN] = {1.0f, 2.0f, 3.0f, 4.0f};
    int64_t rounds = 1;
    petal_value_t v;

    if (petal_configrecord_get(petal_context_run_config(ctx), "num-server-rounds", &v) == 0) {
        petal_value_as_i64(&v, &rounds);
    }
    int64_t n = petal_grid_node_ids(grid, ids, MAX_NODES);
    if (n <= 0) {
        petal_context_set_error(ctx, "abi_v1 server: no nodes (%lld)", (long long)n);
        return n < 0 ? (int32_t)n : PETAL_ESTATE;
    }
    if (n > MAX_NODES) {
        n = MAX_NODES;
    }

    for (int64_t r = 1; r <= rounds; r++) {
        petal_message_t *msgs[MAX_NODES];
        int64_t built = 0;
        int32_t rc = 0;
        for (int64_t i = 0; i < n && rc == 0; i++) {
            petal_recorddict_t *content = petal_recorddict_alloc();
            petal_arrayrecord_t *ar =
                content ? petal_recorddict_add_arrays(content, "arrays") : NULL;
            uint64_t shape[1] = {W_LEN};
            petal_array_t *a =
                ar ? petal_arrayrecord_add(ar, "w", PETAL_DTYPE_FLOAT32, 1, shape) : NULL;
            petal_configrecord_t *cfg =
                content ? petal_recorddict_add_config(content, "config") : NULL;
            if (a == NULL || cfg == NULL) {
                petal_recorddict_free(content);
                rc = PETAL_ENOMEM;
                break;
            }
            float *d = petal_array_data_mut(a);
            for (int k = 0; k < W_LEN; k++) {
                d[k] = w[k];
            }
            v = petal_value_i64(r);
            petal_configrecord_set(cfg, "server-round", &v);
            msgs[built] = petal_message_alloc(content, "train", ids[i], "1", 60.0);
            if (msgs[built] == NULL) {
                petal_recorddict_free(content);
                rc = PETAL_ENOMEM;
                break;
            }
            built++;
        }
        if (rc != 0) {
            for (int64_t i = 0; i < built; i++) {
                petal_message_free(msgs[i]);
            }
            return rc;
        }

        round_sum_t s = {{0}, 0, 0, 0};
        int64_t got = petal_grid_send_and_stream(grid, msgs, (uint64_t)built, 30.0, on_reply, &s);
        if (got < 0) {
            for (int64_t i = 0; i < built; i++) {
                petal_message_free(msgs[i]);
            }
            petal_context_set_error(ctx, "abi_v1 server: send failed: %s",
                                    petal_strerror((int32_t)got));
            return (int32_t)got;
        }
        if (s.failures > 0 || s.replies == 0) {
            petal_context_set_error(ctx, "abi_v1 server: round %lld: %lld failed replies (%s)",
                                    (long long)r, (long long)s.failures,
                                    petal_strerror(s.last_error));
            return PETAL_EPLUGIN;
        }
        for (int k = 0; k < W_LEN; k++) {
            w[k] = (float)(s.sum[k] / (double)s.replies);
        }

        petal_recorddict_t *md = petal_recorddict_alloc();
        petal_metricrecord_t *m = md ? petal_recorddict_add_metrics(md, "m") : NULL;
        if (m == NULL) {
            petal_recorddict_free(md);
            return PETAL_ENOMEM;
        }
        v = petal_value_i64(s.replies);
        petal_metricrecord_set(m, "replies", &v);
        v = petal_value_i64(s.failures);
        petal_metricrecord_set(m, "failures", &v);
        v = petal_value_f64(w[0]);
        petal_metricrecord_set(m, "w0", &v);
        rc = petal_grid_record_metrics(grid, (uint32_t)r, "train", m);
        petal_recorddict_free(md);
        if (rc != 0) {
            return rc;
        }
    }

    petal_recorddict_t *fd = petal_recorddict_alloc();
    petal_arrayrecord_t *final = fd ? petal_recorddict_add_arrays(fd, "final") : NULL;
    uint64_t shape[1] = {W_LEN};
    petal_array_t *a =
        final ? petal_arrayrecord_add(final, "w", PETAL_DTYPE_FLOAT32, 1, shape) : NULL;
    if (a == NULL) {
        petal_recorddict_free(fd);
        return PETAL_ENOMEM;
    }
    float *d = petal_array_data_mut(a);
    for (int k = 0; k < W_LEN; k++) {
        d[k] = w[k];
    }
    int32_t rc = petal_grid_set_final_arrays(grid, final);
    petal_recorddict_free(fd);
    return rc;
}

static const petal_server_ops_t v1_server_ops = {
    .struct_size = sizeof(petal_server_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .main = v1_main,
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
    if (!PETAL_HOST_HAS(host, grid_set_final_arrays)) {
        return PETAL_EABI;
    }
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_SERVER;
    info->name = "abi_v1";
    info->version = "1.0.0";
    info->client = NULL;
    info->server = &v1_server_ops;
    return 0;
}
