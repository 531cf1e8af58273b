/* client.c - the quickstart ClientApp: a Fashion-MNIST MLP trained locally for FedAvg/FedProx. */
#include <math.h>
#include <stdlib.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "../common/plugin_util.h"
#include "mlp_app.h"

/*
 * Mirrors Flower's quickstart (docs/datasets.md has the data side). The message contract and the
 * handlers are mlp_app.h's, shared with the fmnist app; here each node trains on its IID share
 * of the 60k training set (train and query, seeded by the run config's "seed").
 */

PETAL_PLUGIN_INIT;
PLUGIN_NAME("quickstart");

/* This node's IID share of the training set. */
static int
qs_train_partition(const mlp_app_t *app, petal_context_t *ctx, uint32_t pid, uint32_t np, int train,
                   uint64_t **idx, uint64_t *count)
{
    (void)train;
    int rc = petal_partition_iid(app->train->n, np, pid, app->defaults.seed, idx, count);
    if (rc < 0) {
        return plugin_fail(ctx, rc, "cannot partition the train set: %s", petal_strerror(rc));
    }
    return 0;
}

static void
qs_after_train(const mlp_app_t *app, uint32_t pid, const mlp_hparams_t *hp, pt_mlp_t *local,
               const pt_mlp_t *global, double loss)
{
    (void)app;
    (void)local;
    (void)global;
    if (!isfinite(loss)) {
        petal_log(PETAL_LOG_WARN, "quickstart: partition %u: train loss is %f (lr %g too high?)",
                  pid, loss, hp->lr);
    }
}

static const mlp_app_ops_t qs_app_ops = {
    .train_partition = qs_train_partition,
    .after_train = qs_after_train,
    .empty_test_fails = 0,
    .one_array_error = 0,
};

static int32_t
qs_init(const petal_configrecord_t *run_config, void **out)
{
    mlp_app_t *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    int rc = mlp_app_init(app, &qs_app_ops, run_config);
    if (rc < 0) {
        goto fail;
    }
    const char *dir = NULL;
    petal_value_t v;
    if (run_config != NULL && petal_configrecord_get(run_config, "data-dir", &v) == 0) {
        if (v.type != PETAL_VALUE_STRING) {
            rc = plugin_fail(NULL, PETAL_ECONFIG, "run config: \"data-dir\" must be a string");
            goto fail;
        }
        dir = v.as.str;
    }
    if ((rc = mlp_app_load_data(app, dir)) < 0) {
        goto fail;
    }
    if (app->train->dim != MLP_IN || app->test->dim != MLP_IN ||
        app->train->num_classes > MLP_CLASSES || app->test->num_classes > MLP_CLASSES) {
        rc = plugin_fail(NULL, PETAL_EPROTO,
                         "Fashion-MNIST files hold %u-feature examples with %u classes, expected "
                         "%d and at most %d",
                         app->train->dim, app->train->num_classes, MLP_IN, MLP_CLASSES);
        goto fail;
    }
    *out = app;
    return 0;

fail:
    mlp_app_fini(app);
    return rc;
}

static const petal_client_ops_t quickstart_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = qs_init,
    .train = mlp_app_train,
    .evaluate = mlp_app_evaluate,
    .query = mlp_app_query,
    .fini = mlp_app_fini,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    return plugin_entry(host, info, "quickstart", &quickstart_ops, NULL);
}
