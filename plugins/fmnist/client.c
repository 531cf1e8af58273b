/* client.c - the fmnist ClientApp: the quickstart MLP, partitioner and strategy by run config. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "../common/plugin_util.h"
#include "mlp_app.h" /* plugins/quickstart/: the model and handlers are shared with quickstart */

/*
 * What this app adds to the quickstart: the training data are split by any partitioner of
 * petal_data (run config "partitioner" = iid, dirichlet, pathological, shard, linear, square,
 * exponential, with its parameters), and every strategy of the default server can be used
 * (run config "strategy"). docs/examples.md lists the keys. The message contract is the
 * quickstart's (mlp_app.h), except:
 *   train:    an empty training partition fails the call.
 *   evaluate: on this node's IID share of the 10k test set, whatever the partitioner (an empty
 *             share fails the call): the shares of all nodes make up the whole test set, so with
 *             fraction-evaluate = 1 the federation's weighted eval-acc is the global model's
 *             accuracy on the Fashion-MNIST test set, comparable across partitioners and
 *             strategies.
 *   query:    the counts are of the node's training partition.
 * Attack (robustness experiments): with run config "malicious-nodes" = f, the nodes with
 * partition-id < f train honestly, then reply global - "attack-scale" * (local - global): their
 * update, sign-flipped and scaled.
 */

PETAL_PLUGIN_INIT;
PLUGIN_NAME("fmnist");

#define NAME_LEN 32

typedef struct app {
    mlp_app_t base; /* first: the shared handlers see an mlp_app_t */
    char partitioner[NAME_LEN];
    petal_partition_params_t pp;
    int64_t malicious_nodes; /* partitions 0..malicious_nodes-1 send poisoned updates */
    double attack_scale;
} app_t;

/* The partitioner's keys: partitioner, alpha, min-partition-size, classes-per-partition,
 * shards-per-partition, shard-size, size-tau (and seed, read with the hyperparameters). */
static int
read_partitioner(const petal_configrecord_t *r, app_t *app)
{
    int64_t mps = (int64_t)app->pp.min_partition_size, k = app->pp.k;
    int64_t sps = app->pp.shards_per_partition, ss = (int64_t)app->pp.shard_size;
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
    if (petal_cfg_i64(r, "min-partition-size", &mps) < 0 || mps < 0 ||
        petal_cfg_i64(r, "classes-per-partition", &k) < 0 || k < 1 || k > MLP_CLASSES ||
        petal_cfg_i64(r, "shards-per-partition", &sps) < 0 || sps < 1 || sps > UINT32_MAX ||
        petal_cfg_i64(r, "shard-size", &ss) < 0 || ss < 0) {
        return plugin_fail(NULL, PETAL_ECONFIG,
                           "run config: \"min-partition-size\" and \"shard-size\" must be "
                           "integers >= 0, \"classes-per-partition\" an integer in 1..%d, "
                           "\"shards-per-partition\" an integer >= 1",
                           MLP_CLASSES);
    }
    app->pp.min_partition_size = (uint64_t)mps;
    app->pp.k = (uint32_t)k;
    app->pp.shards_per_partition = (uint32_t)sps;
    app->pp.shard_size = (uint64_t)ss;
    app->pp.seed = app->base.defaults.seed;
    return 0;
}

/* This node's training examples by the configured partitioner; a train call refuses none. */
static int
fm_train_partition(const mlp_app_t *base, petal_context_t *ctx, uint32_t pid, uint32_t np,
                   int train, uint64_t **idx, uint64_t *count)
{
    const app_t *app = (const app_t *)base;
    char err[512];
    int rc = petal_partition_by_name(app->partitioner, &app->pp, base->train->y, base->train->n,
                                     MLP_CLASSES, np, pid, idx, count, err, sizeof(err));
    if (rc < 0) {
        return plugin_fail(ctx, rc, "partition %u of %u (partitioner \"%s\"): %s", pid, np,
                           app->partitioner, err);
    }
    if (train && *count == 0) {
        free(*idx);
        *idx = NULL;
        return plugin_fail(ctx, PETAL_ENOENT,
                           "partition %u of %u is empty (partitioner \"%s\"): nothing to train "
                           "on; raise alpha or set min-partition-size",
                           pid, np, app->partitioner);
    }
    return 0;
}

/* The attack of a malicious node: local <- global - scale * (local - global), per element. */
static void
fm_after_train(const mlp_app_t *base, uint32_t pid, const mlp_hparams_t *hp, pt_mlp_t *local,
               const pt_mlp_t *global, double loss)
{
    const app_t *app = (const app_t *)base;
    (void)hp;
    (void)loss;
    if ((int64_t)pid >= app->malicious_nodes) {
        return;
    }
    pt_mlp_t gv = *global; /* a copy of the pointers, for mlp_tensor_slot; read only */
    for (int t = 0; t < MLP_TENSORS; t++) {
        size_t n = mlp_tensor_len(t);
        float *x = *mlp_tensor_slot(local, t);
        const float *g = *mlp_tensor_slot(&gv, t);
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)((double)g[i] - app->attack_scale * ((double)x[i] - (double)g[i]));
        }
    }
}

static const mlp_app_ops_t fm_app_ops = {
    .train_partition = fm_train_partition,
    .after_train = fm_after_train,
    .empty_test_fails = 1,
    .one_array_error = 1,
};

static int32_t
fm_init(const petal_configrecord_t *run_config, void **out)
{
    app_t *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    snprintf(app->partitioner, sizeof(app->partitioner), "iid");
    petal_partition_params_init(&app->pp);
    int rc = mlp_app_init(&app->base, &fm_app_ops, run_config);
    if (rc < 0 || (rc = read_partitioner(run_config, app)) < 0) {
        goto fail;
    }
    app->attack_scale = 10.0;
    if (petal_cfg_i64(run_config, "malicious-nodes", &app->malicious_nodes) < 0 ||
        app->malicious_nodes < 0) {
        rc = plugin_fail(NULL, PETAL_ECONFIG,
                         "run config: \"malicious-nodes\" must be an integer >= 0");
        goto fail;
    }
    if (petal_cfg_f64(run_config, "attack-scale", &app->attack_scale) < 0 ||
        !(app->attack_scale >= 0.0) || !isfinite(app->attack_scale)) {
        rc = plugin_fail(NULL, PETAL_ECONFIG, "run config: \"attack-scale\" must be a number >= 0");
        goto fail;
    }

    char dir[1024] = "";
    if (petal_cfg_str(run_config, "data-dir", dir, sizeof(dir)) < 0) {
        rc = plugin_fail(NULL, PETAL_ECONFIG, "run config: \"data-dir\" must be a string");
        goto fail;
    }
    if ((rc = mlp_app_load_data(&app->base, dir[0] ? dir : NULL)) < 0) {
        goto fail;
    }
    const petal_dataset_t *train = app->base.train, *test = app->base.test;
    if (train->dim != MLP_IN || test->dim != MLP_IN || train->num_classes > MLP_CLASSES ||
        test->num_classes > MLP_CLASSES) {
        rc = plugin_fail(NULL, PETAL_EPROTO,
                         "Fashion-MNIST files hold %u-feature examples, expected %d", train->dim,
                         MLP_IN);
        goto fail;
    }
    /* A wrong partitioner name or parameter fails the run now, not in every train call. */
    char err[512];
    uint64_t *idx = NULL, count = 0;
    rc = petal_partition_by_name(app->partitioner, &app->pp, train->y, train->n, MLP_CLASSES, 1, 0,
                                 &idx, &count, err, sizeof(err));
    free(idx);
    if (rc < 0) {
        plugin_fail(NULL, rc, "run config: %s", err);
        goto fail;
    }
    *out = app;
    return 0;

fail:
    mlp_app_fini(app);
    return rc;
}

static const petal_client_ops_t fmnist_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = fm_init,
    .train = mlp_app_train,
    .evaluate = mlp_app_evaluate,
    .query = mlp_app_query,
    .fini = mlp_app_fini,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    return plugin_entry(host, info, "fmnist", &fmnist_ops, NULL);
}
