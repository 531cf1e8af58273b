/* client.c - the analytics ClientApp: label counts and per-class feature means of a partition. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "../common/plugin_util.h"

/*
 * Federated analytics: nothing is trained. A "query" message (any action) is answered with
 * statistics of this node's share of the Fashion-MNIST training set, never with samples:
 *   "metrics" {"num-examples", "partition-id", "num-partitions", "count-0".."count-9"}
 *   "arrays"  {"class-means" float64 [10, 784]: the mean image of each class in the partition,
 *              "mean-counts" int64 [10]: how many examples each mean is over}.
 * A class with fewer than "min-class-count" examples (run config, default 1) is counted but its
 * mean is withheld (a zero row, mean-count 0): the mean of one or two images would give them
 * away. The partition comes from the run config like the fmnist app's ("partitioner", "alpha",
 * ...); the server plugin (server.c) combines the answers.
 */

PETAL_PLUGIN_INIT;
PLUGIN_NAME("analytics");

#define IN_DIM 784
#define CLASSES 10
#define NAME_LEN 32

typedef struct app {
    const petal_dataset_t *train;
    char partitioner[NAME_LEN];
    petal_partition_params_t pp;
    int64_t min_class_count;
} app_t;

static int
read_config(const petal_configrecord_t *r, app_t *app)
{
    int64_t seed = 42, mps = 0, k = app->pp.k, sps = app->pp.shards_per_partition, ss = 0;
    if (petal_cfg_str(r, "partitioner", app->partitioner, sizeof(app->partitioner)) < 0) {
        return plugin_fail(NULL, PETAL_ECONFIG,
                           "run config: \"partitioner\" must be a name such as "
                           "\"iid\" or \"dirichlet\"");
    }
    if (petal_cfg_f64(r, "alpha", &app->pp.alpha) < 0 ||
        petal_cfg_f64(r, "size-tau", &app->pp.tau) < 0) {
        return plugin_fail(NULL, PETAL_ECONFIG,
                           "run config: \"alpha\" and \"size-tau\" must be numbers");
    }
    if (petal_cfg_i64(r, "seed", &seed) < 0 || petal_cfg_i64(r, "min-partition-size", &mps) < 0 ||
        mps < 0 || petal_cfg_i64(r, "classes-per-partition", &k) < 0 || k < 1 || k > CLASSES ||
        petal_cfg_i64(r, "shards-per-partition", &sps) < 0 || sps < 1 || sps > UINT32_MAX ||
        petal_cfg_i64(r, "shard-size", &ss) < 0 || ss < 0) {
        return plugin_fail(NULL, PETAL_ECONFIG,
                           "run config: \"seed\" must be an integer, \"min-partition-size\" and "
                           "\"shard-size\" integers >= 0, \"classes-per-partition\" an integer in "
                           "1..%d, \"shards-per-partition\" an integer >= 1",
                           CLASSES);
    }
    if (petal_cfg_i64(r, "min-class-count", &app->min_class_count) < 0 ||
        app->min_class_count < 1) {
        return plugin_fail(NULL, PETAL_ECONFIG,
                           "run config: \"min-class-count\" must be an integer >= 1");
    }
    app->pp.seed = (uint64_t)seed;
    app->pp.min_partition_size = (uint64_t)mps;
    app->pp.k = (uint32_t)k;
    app->pp.shards_per_partition = (uint32_t)sps;
    app->pp.shard_size = (uint64_t)ss;
    return 0;
}

static int32_t
an_init(const petal_configrecord_t *run_config, void **out)
{
    app_t *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    snprintf(app->partitioner, sizeof(app->partitioner), "iid");
    petal_partition_params_init(&app->pp);
    app->min_class_count = 1;
    int rc = read_config(run_config, app);
    if (rc < 0) {
        free(app);
        return rc;
    }
    char dir[1024] = "", err[512];
    if (petal_cfg_str(run_config, "data-dir", dir, sizeof(dir)) < 0) {
        free(app);
        return plugin_fail(NULL, PETAL_ECONFIG, "run config: \"data-dir\" must be a string");
    }
    rc = petal_dataset_load_fmnist(dir[0] ? dir : NULL, 1, &app->train, err, sizeof(err));
    if (rc < 0) {
        free(app);
        return plugin_fail(NULL, rc, "%s", err);
    }
    if (app->train->dim != IN_DIM || app->train->num_classes > CLASSES) {
        plugin_fail(NULL, PETAL_EPROTO, "Fashion-MNIST files hold %u-feature examples, expected %d",
                    app->train->dim, IN_DIM);
        petal_dataset_release(app->train);
        free(app);
        return PETAL_EPROTO;
    }
    *out = app;
    return 0;
}

static void
an_fini(void *p)
{
    app_t *app = p;
    if (app != NULL) {
        petal_dataset_release(app->train);
        free(app);
    }
}

static int32_t
an_query(void *p, petal_context_t *ctx, const char *action, const petal_message_t *msg,
         petal_recorddict_t *reply)
{
    (void)action; /* every query action gets the same statistics */
    (void)msg;
    const app_t *app = p;
    uint32_t pid = 0, np = 1;
    int rc = plugin_node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    uint64_t *idx = NULL, count = 0;
    char err[512];
    rc = petal_partition_by_name(app->partitioner, &app->pp, app->train->y, app->train->n, CLASSES,
                                 np, pid, &idx, &count, err, sizeof(err));
    if (rc < 0) {
        return plugin_fail(ctx, rc, "partition %u of %u (partitioner \"%s\"): %s", pid, np,
                           app->partitioner, err);
    }
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(reply, "arrays");
    uint64_t mshape[2] = {CLASSES, IN_DIM}, cshape[1] = {CLASSES};
    petal_array_t *ma =
        ar ? petal_arrayrecord_add(ar, "class-means", PETAL_DTYPE_FLOAT64, 2, mshape) : NULL;
    petal_array_t *ca =
        ar ? petal_arrayrecord_add(ar, "mean-counts", PETAL_DTYPE_INT64, 1, cshape) : NULL;
    double *means = ma ? petal_array_data_mut(ma) : NULL; /* zeroed by the host */
    int64_t *mean_counts = ca ? petal_array_data_mut(ca) : NULL;
    if (means == NULL || mean_counts == NULL) {
        free(idx);
        return plugin_fail(ctx, PETAL_ENOMEM, "cannot add the arrays to the reply");
    }
    int64_t counts[CLASSES] = {0};
    for (uint64_t i = 0; i < count; i++) {
        uint64_t row = idx[i];
        uint8_t y = app->train->y[row];
        if (y >= CLASSES) {
            continue;
        }
        counts[y]++;
        const float *x = app->train->x + row * IN_DIM;
        double *sum = means + (size_t)y * IN_DIM;
        for (int j = 0; j < IN_DIM; j++) {
            sum[j] += x[j];
        }
    }
    free(idx);
    for (int c = 0; c < CLASSES; c++) {
        double *row = means + (size_t)c * IN_DIM;
        if (counts[c] < app->min_class_count) {
            memset(row, 0, IN_DIM * sizeof(double)); /* withheld (or empty) */
            continue;
        }
        for (int j = 0; j < IN_DIM; j++) {
            row[j] /= (double)counts[c];
        }
        mean_counts[c] = counts[c];
    }
    petal_metricrecord_t *mr = plugin_add_metrics(ctx, reply);
    if (mr == NULL) {
        return PETAL_ENOMEM;
    }
    if ((rc = plugin_set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count))) < 0 ||
        (rc = plugin_set_metric(ctx, mr, "partition-id", petal_value_i64(pid))) < 0 ||
        (rc = plugin_set_metric(ctx, mr, "num-partitions", petal_value_i64(np))) < 0) {
        return rc;
    }
    for (int c = 0; c < CLASSES && rc == 0; c++) {
        char name[16];
        snprintf(name, sizeof(name), "count-%d", c);
        rc = plugin_set_metric(ctx, mr, name, petal_value_i64(counts[c]));
    }
    return rc;
}

static const petal_client_ops_t analytics_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = an_init,
    .query = an_query,
    .fini = an_fini,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    return plugin_entry(host, info, "analytics", &analytics_ops, NULL);
}
