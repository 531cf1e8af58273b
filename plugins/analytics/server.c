/* server.c - the analytics ServerApp: queries every node, combines label counts and class means. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <petal/plugin.h>

#include "../common/plugin_util.h"

/*
 * main(grid, ctx), written with petal_grid_* only:
 *  1. waits until "min-available-nodes" nodes (run config, default 1) are connected;
 *  2. sends a "query" message to every connected node and folds each answer as it arrives:
 *     the counts are added, and each class mean is added weighted by its mean-count;
 *  3. from the answers it learns "num-partitions"; while some partitions have not answered and
 *     fewer than "timeout" seconds (default 600) have passed, it queries nodes that connect
 *     later (deployment: nodes come and go);
 *  4. records round 1, phase "analytics": "num-replies", "num-failures", "num-partitions",
 *     "num-partitions-answered", "num-examples", "count-0".."count-9" and
 *     "mean-intensity-0".."mean-intensity-9" (the mean pixel of each class's mean image);
 *  5. sets the final arrays: "histogram" int64 [10] and "class-means" float32 [10, 784].
 *
 * The weighted sums are kept in fixed point (int64 in units of 2^-32), so adding the answers in
 * any order gives bit-identical results: replies arrive in whatever order the nodes finish.
 * Only statistics reach the server; no node sends an example.
 */

PETAL_PLUGIN_INIT;

#define IN_DIM 784
#define CLASSES 10
#define FIXED_ONE 4294967296.0 /* 2^32 */
#define MAX_PARTITIONS (1u << 24)
#define BATCH 4096

typedef struct agg {
    int64_t counts[CLASSES];
    int64_t mean_weight[CLASSES]; /* examples behind the combined mean of each class */
    int64_t (*sums)[IN_DIM];      /* CLASSES x IN_DIM fixed-point weighted sums */
    uint8_t *answered;            /* per partition, once num_partitions is known */
    uint64_t num_partitions;
    uint64_t partitions_answered;
    int64_t replies, failures, examples;
    int overflow;
} agg_t;

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - floor(s)) * 1e9)};
    nanosleep(&ts, NULL);
}

static int
metric_i64(const petal_metricrecord_t *m, const char *name, int64_t *out)
{
    petal_value_t v;
    if (m == NULL || petal_metricrecord_get(m, name, &v) != 0) {
        return PETAL_ENOENT;
    }
    return petal_value_as_i64(&v, out);
}

static void
reject(agg_t *a, uint64_t node, const char *why)
{
    petal_log(PETAL_LOG_WARN, "analytics: node %llu: %s", (unsigned long long)node, why);
    a->failures++;
}

/* Folds one answer; a malformed one is counted as a failure and changes nothing. */
static int32_t
fold_reply(void *cb_ctx, const petal_message_t *reply)
{
    agg_t *a = cb_ctx;
    petal_metadata_t md;
    md.struct_size = sizeof(md);
    md.abi_version = PETAL_ABI_VERSION;
    uint64_t node = petal_message_metadata(reply, &md) == 0 ? md.src_node_id : 0;
    const petal_recorddict_t *c = petal_message_content(reply);
    if (c == NULL) {
        char why[512];
        snprintf(why, sizeof(why), "error reply: %s", petal_message_error_reason(reply));
        reject(a, node, why);
        return 0;
    }
    const petal_metricrecord_t *m = petal_recorddict_metrics(c, "metrics");
    const petal_arrayrecord_t *ar = petal_recorddict_arrays(c, "arrays");
    const petal_array_t *means = ar ? petal_arrayrecord_get(ar, "class-means") : NULL;
    const petal_array_t *mc = ar ? petal_arrayrecord_get(ar, "mean-counts") : NULL;
    int64_t pid, np, n, counts[CLASSES];
    int ok = metric_i64(m, "partition-id", &pid) == 0 &&
             metric_i64(m, "num-partitions", &np) == 0 && metric_i64(m, "num-examples", &n) == 0 &&
             np >= 1 && (uint64_t)np <= MAX_PARTITIONS && pid >= 0 && pid < np && n >= 0;
    for (int k = 0; k < CLASSES && ok; k++) {
        char name[16];
        snprintf(name, sizeof(name), "count-%d", k);
        ok = metric_i64(m, name, &counts[k]) == 0 && counts[k] >= 0 && counts[k] <= n;
    }
    if (!ok) {
        reject(a, node, "the answer lacks partition-id, num-partitions, num-examples or counts");
        return 0;
    }
    if (means == NULL || mc == NULL || petal_array_dtype(means) != PETAL_DTYPE_FLOAT64 ||
        petal_array_numel(means) != CLASSES * IN_DIM ||
        petal_array_dtype(mc) != PETAL_DTYPE_INT64 || petal_array_numel(mc) != CLASSES) {
        reject(a, node,
               "the answer needs float64 \"class-means\" [10, 784] and int64 "
               "\"mean-counts\" [10]");
        return 0;
    }
    if (a->num_partitions == 0) {
        a->num_partitions = (uint64_t)np;
        a->answered = calloc((size_t)np, 1);
        if (a->answered == NULL) {
            a->num_partitions = 0;
            reject(a, node, "out of memory");
            return 0;
        }
    } else if ((uint64_t)np != a->num_partitions) {
        reject(a, node, "its num-partitions differs from the other nodes'");
        return 0;
    }
    if (a->answered[pid]) {
        reject(a, node, "its partition has answered already (two nodes with one partition-id)");
        return 0;
    }
    /* Copies: array data may not be aligned for direct double/int64 access. */
    int64_t w[CLASSES];
    memcpy(w, petal_array_data(mc), sizeof(w));
    const unsigned char *mean_bytes = petal_array_data(means);
    for (int k = 0; k < CLASSES; k++) {
        if (w[k] < 0 || w[k] > counts[k]) {
            reject(a, node, "a mean-count is not between 0 and the class's count");
            return 0;
        }
    }
    for (int k = 0; k < CLASSES; k++) {
        if (w[k] == 0) {
            continue;
        }
        for (int j = 0; j < IN_DIM; j++) {
            double x;
            memcpy(&x, mean_bytes + ((size_t)k * IN_DIM + j) * sizeof(double), sizeof(x));
            double v = x * (double)w[k] * FIXED_ONE;
            if (!isfinite(x) || fabs(v) > 0x1p62) {
                a->overflow = 1;
                continue;
            }
            a->sums[k][j] += (int64_t)llround(v);
        }
        a->mean_weight[k] += w[k];
    }
    for (int k = 0; k < CLASSES; k++) {
        a->counts[k] += counts[k];
    }
    a->answered[pid] = 1;
    a->partitions_answered++;
    a->examples += n;
    a->replies++;
    return 0;
}

/* Queries the nodes in ids[0..n) (in batches) and folds their answers. */
static int
query_nodes(petal_grid_t *grid, const uint64_t *ids, uint64_t n, double timeout, agg_t *a)
{
    petal_message_t *msgs[BATCH];
    for (uint64_t at = 0; at < n; at += BATCH) {
        uint64_t k = n - at < BATCH ? n - at : BATCH, made = 0;
        int rc = 0;
        for (; made < k; made++) {
            petal_recorddict_t *rd = petal_recorddict_alloc();
            petal_configrecord_t *cfg = rd ? petal_recorddict_add_config(rd, "config") : NULL;
            petal_value_t v = petal_value_i64(1);
            if (cfg == NULL || petal_configrecord_set(cfg, "server-round", &v) != 0 ||
                (msgs[made] = petal_message_alloc(rd, "query", ids[at + made], "1", timeout)) ==
                    NULL) {
                petal_recorddict_free(rd);
                rc = PETAL_ENOMEM;
                break;
            }
        }
        int64_t got =
            rc == 0 ? petal_grid_send_and_stream(grid, msgs, k, timeout, fold_reply, a) : 0;
        if (rc != 0 || got < 0) {
            for (uint64_t i = 0; i < made; i++) {
                petal_message_free(msgs[i]);
            }
            return rc != 0 ? rc : (int)got;
        }
    }
    return 0;
}

static int
contains(const uint64_t *sorted, uint64_t n, uint64_t id)
{
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] == id) {
            return 1;
        }
        if (sorted[mid] < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return 0;
}

static int
cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static int
set_i64(petal_metricrecord_t *m, const char *name, int64_t x)
{
    petal_value_t v = petal_value_i64(x);
    return petal_metricrecord_set(m, name, &v);
}

/* Records the round-1 metrics and sets the final arrays. */
static int
publish(petal_grid_t *grid, const agg_t *a)
{
    petal_recorddict_t *rd = petal_recorddict_alloc();
    petal_metricrecord_t *m = rd ? petal_recorddict_add_metrics(rd, "analytics") : NULL;
    petal_arrayrecord_t *ar = rd ? petal_recorddict_add_arrays(rd, "final") : NULL;
    uint64_t hshape[1] = {CLASSES}, mshape[2] = {CLASSES, IN_DIM};
    petal_array_t *h =
        ar ? petal_arrayrecord_add(ar, "histogram", PETAL_DTYPE_INT64, 1, hshape) : NULL;
    petal_array_t *cm =
        ar ? petal_arrayrecord_add(ar, "class-means", PETAL_DTYPE_FLOAT32, 2, mshape) : NULL;
    int64_t *hist = h ? petal_array_data_mut(h) : NULL;
    float *means = cm ? petal_array_data_mut(cm) : NULL;
    if (m == NULL || hist == NULL || means == NULL) {
        petal_recorddict_free(rd);
        return PETAL_ENOMEM;
    }
    int rc = set_i64(m, "num-replies", a->replies);
    rc = rc ? rc : set_i64(m, "num-failures", a->failures);
    rc = rc ? rc : set_i64(m, "num-partitions", (int64_t)a->num_partitions);
    rc = rc ? rc : set_i64(m, "num-partitions-answered", (int64_t)a->partitions_answered);
    rc = rc ? rc : set_i64(m, "num-examples", a->examples);
    for (int k = 0; k < CLASSES && rc == 0; k++) {
        char name[32];
        hist[k] = a->counts[k];
        snprintf(name, sizeof(name), "count-%d", k);
        rc = set_i64(m, name, a->counts[k]);
        double total = 0.0;
        for (int j = 0; j < IN_DIM; j++) {
            double x = a->mean_weight[k] > 0
                           ? (double)a->sums[k][j] / FIXED_ONE / (double)a->mean_weight[k]
                           : 0.0;
            means[(size_t)k * IN_DIM + j] = (float)x;
            total += x;
        }
        petal_value_t v = petal_value_f64(total / IN_DIM);
        snprintf(name, sizeof(name), "mean-intensity-%d", k);
        rc = rc ? rc : petal_metricrecord_set(m, name, &v);
    }
    rc = rc ? rc : petal_grid_record_metrics(grid, 1, "analytics", m);
    rc = rc ? rc : petal_grid_set_final_arrays(grid, ar);
    petal_recorddict_free(rd);
    return rc;
}

static double
run_config_f64(petal_context_t *ctx, const char *key, double dflt)
{
    petal_value_t v;
    double x;
    const petal_configrecord_t *rc = petal_context_run_config(ctx);
    if (rc == NULL || petal_configrecord_get(rc, key, &v) != 0 || petal_value_as_f64(&v, &x) != 0) {
        return dflt;
    }
    return x;
}

static int32_t
analytics_main(petal_grid_t *grid, petal_context_t *ctx)
{
    double timeout = run_config_f64(ctx, "timeout", 600.0);
    double min_nodes = run_config_f64(ctx, "min-available-nodes", 1.0);
    if (!(timeout > 0) || !(min_nodes >= 1)) {
        petal_context_set_error(ctx, "analytics: run config \"timeout\" must be > 0 and "
                                     "\"min-available-nodes\" >= 1");
        return PETAL_ECONFIG;
    }
    agg_t a;
    memset(&a, 0, sizeof(a));
    a.sums = calloc(CLASSES, sizeof(*a.sums));
    uint64_t *asked = NULL, nasked = 0, *ids = NULL;
    int rc = 0;
    if (a.sums == NULL) {
        rc = PETAL_ENOMEM;
        goto fail;
    }
    double deadline = now_s() + timeout;
    for (;;) {
        int64_t n = petal_grid_node_ids(grid, NULL, 0);
        if (n < 0) {
            rc = (int)n;
            goto fail;
        }
        if (nasked == 0 && (double)n < min_nodes) {
            if (now_s() > deadline) {
                petal_context_set_error(ctx,
                                        "analytics: only %lld of %.0f nodes connected "
                                        "within %.0f s",
                                        (long long)n, min_nodes, timeout);
                rc = PETAL_ETIMEDOUT;
                goto fail;
            }
            sleep_s(0.05);
            continue;
        }
        free(ids);
        ids = malloc(((size_t)n + 1) * sizeof(uint64_t));
        if (ids == NULL) {
            rc = PETAL_ENOMEM;
            goto fail;
        }
        int64_t got = petal_grid_node_ids(grid, ids, (uint64_t)n);
        if (got < 0) {
            rc = (int)got;
            goto fail;
        }
        uint64_t m = (uint64_t)(got < n ? got : n), fresh = 0;
        for (uint64_t i = 0; i < m; i++) { /* keep the nodes not asked yet */
            if (!contains(asked, nasked, ids[i])) {
                ids[fresh++] = ids[i];
            }
        }
        if (fresh > 0) {
            qsort(ids, fresh, sizeof(uint64_t), cmp_u64);
            if ((rc = query_nodes(grid, ids, fresh, timeout, &a)) < 0) {
                petal_context_set_error(ctx, "analytics: sending the query failed: %s",
                                        petal_strerror(rc));
                goto fail;
            }
            uint64_t *grown = realloc(asked, (nasked + fresh) * sizeof(uint64_t));
            if (grown == NULL) {
                rc = PETAL_ENOMEM;
                goto fail;
            }
            asked = grown;
            memcpy(asked + nasked, ids, fresh * sizeof(uint64_t));
            nasked += fresh;
            qsort(asked, nasked, sizeof(uint64_t), cmp_u64);
        }
        /* Done when every partition answered, or no partition can still answer (a failed node
         * is counted as a partition that will not), or time is up. */
        uint64_t settled = a.partitions_answered + (uint64_t)a.failures;
        if ((a.num_partitions > 0 && a.partitions_answered == a.num_partitions) ||
            (fresh == 0 && (a.num_partitions == 0 || settled >= a.num_partitions)) ||
            now_s() > deadline) {
            break;
        }
        if (fresh == 0) {
            sleep_s(0.05);
        }
    }
    if (a.replies == 0) {
        petal_context_set_error(ctx, "analytics: no node answered the query (%lld failed)",
                                (long long)a.failures);
        rc = PETAL_E_SERVER_APP_RAISED_EXCEPTION;
        goto fail;
    }
    if (a.overflow) {
        petal_log(PETAL_LOG_WARN, "analytics: some class means were out of range and left out");
    }
    if (a.partitions_answered < a.num_partitions) {
        petal_log(PETAL_LOG_WARN, "analytics: %llu of %llu partitions answered",
                  (unsigned long long)a.partitions_answered, (unsigned long long)a.num_partitions);
    }
    petal_log(PETAL_LOG_INFO, "analytics: %lld examples over %llu partitions",
              (long long)a.examples, (unsigned long long)a.partitions_answered);
    if ((rc = publish(grid, &a)) < 0) {
        petal_context_set_error(ctx, "analytics: cannot record the results: %s",
                                petal_strerror(rc));
    }

fail:
    free(ids);
    free(asked);
    free(a.answered);
    free(a.sums);
    return rc;
}

static const petal_server_ops_t analytics_server_ops = {
    .struct_size = sizeof(petal_server_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .main = analytics_main,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    return plugin_entry(host, info, "analytics-server", NULL, &analytics_server_ops);
}
