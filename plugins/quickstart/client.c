/* client.c - the quickstart ClientApp: a Fashion-MNIST MLP trained locally for FedAvg/FedProx. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "mlp.h"

/*
 * Message contract (mirrors Flower's quickstart; docs/datasets.md has the data side):
 *   train:    "arrays" (global model) + ConfigRecord "config" {"server-round", optional "lr",
 *             "local-epochs", "batch-size", "proximal-mu"} -> "arrays" (updated model) +
 *             MetricRecord "metrics" {"train-loss" (mean cross-entropy of the last epoch),
 *             "num-examples" (partition size)}.
 *   evaluate: "arrays" + "config" -> "metrics" {"eval-loss", "eval-acc", "num-examples"} on this
 *             node's IID share of the 10k test set.
 *   query:    any action -> "metrics" {"num-examples", "count-0".."count-9"} of the train share;
 *             action "init-arrays" also returns "arrays", the seed-deterministic initial model.
 * The model is "fc1.weight" [128,784], "fc1.bias" [128], "fc2.weight" [10,128], "fc2.bias" [10],
 * float32. Node config "partition-id" / "num-partitions" pick the share (default 0 of 1).
 * Handlers run concurrently on worker threads: the app struct is read-only after init and each
 * call allocates its own scratch.
 */

PETAL_PLUGIN_INIT;

#define IN_DIM 784
#define HIDDEN 128
#define CLASSES 10
#define EVAL_BATCH 256
#define MAX_BATCH 65536

typedef struct app {
    const petal_dataset_t *train;
    const petal_dataset_t *test;
    double lr;
    int64_t local_epochs;
    int64_t batch_size;
    double proximal_mu;
    uint64_t seed;
} app_t;

/* Training hyper-parameters of one call: the run config's, overridden by the message's. */
typedef struct hparams {
    double lr;
    int64_t local_epochs;
    int64_t batch_size;
    double proximal_mu;
    int64_t server_round;
    uint64_t seed;
} hparams_t;

static const char *const tensor_names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};

static int fail(petal_context_t *ctx, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(petal_context_t *ctx, int rc, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctx != NULL) {
        petal_context_set_error(ctx, "quickstart: %s", buf);
    } else {
        petal_log(PETAL_LOG_ERROR, "quickstart: %s", buf);
    }
    return rc;
}

/* ---- Config values ------------------------------------------------------------------------- */

/* Reads and checks the hyper-parameters in r over the values already in *hp. */
static int
read_hparams(petal_context_t *ctx, const petal_configrecord_t *r, const char *where, hparams_t *hp)
{
    int64_t seed = (int64_t)hp->seed;
    if (petal_cfg_f64(r, "lr", &hp->lr) < 0 || !(hp->lr > 0.0) || !isfinite(hp->lr)) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"lr\" must be a number > 0", where);
    }
    if (petal_cfg_i64(r, "local-epochs", &hp->local_epochs) < 0 || hp->local_epochs < 1 ||
        hp->local_epochs > 100000) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"local-epochs\" must be an integer >= 1", where);
    }
    if (petal_cfg_i64(r, "batch-size", &hp->batch_size) < 0 || hp->batch_size < 1 ||
        hp->batch_size > MAX_BATCH) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"batch-size\" must be an integer in 1..%d", where,
                    MAX_BATCH);
    }
    if (petal_cfg_f64(r, "proximal-mu", &hp->proximal_mu) < 0 || !(hp->proximal_mu >= 0.0) ||
        !isfinite(hp->proximal_mu)) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"proximal-mu\" must be a number >= 0", where);
    }
    if (petal_cfg_i64(r, "server-round", &hp->server_round) < 0) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"server-round\" must be an integer", where);
    }
    if (petal_cfg_i64(r, "seed", &seed) < 0) {
        return fail(ctx, PETAL_ECONFIG, "%s: \"seed\" must be an integer", where);
    }
    hp->seed = (uint64_t)seed;
    return 0;
}

static void
app_hparams(const app_t *app, hparams_t *hp)
{
    hp->lr = app->lr;
    hp->local_epochs = app->local_epochs;
    hp->batch_size = app->batch_size;
    hp->proximal_mu = app->proximal_mu;
    hp->server_round = 0;
    hp->seed = app->seed;
}

/* This node's share: node config "partition-id" of "num-partitions" (default 0 of 1). */
static int
node_partition(petal_context_t *ctx, uint32_t *pid, uint32_t *np)
{
    char err[128];
    int rc = petal_cfg_partition(petal_context_node_config(ctx), pid, np, err, sizeof(err));
    return rc < 0 ? fail(ctx, rc, "%s", err) : 0;
}

/* ---- Model <-> ArrayRecord ------------------------------------------------------------------ */

static void
tensor_shape(int t, uint32_t *ndim, uint64_t shape[2])
{
    static const uint64_t shapes[4][2] = {
        {HIDDEN, IN_DIM}, {HIDDEN, 0}, {CLASSES, HIDDEN}, {CLASSES, 0}};
    *ndim = (t % 2 == 0) ? 2 : 1;
    shape[0] = shapes[t][0];
    shape[1] = shapes[t][1];
}

static float **
tensor_slot(pt_mlp_t *m, int t)
{
    float **slots[4] = {&m->w1, &m->b1, &m->w2, &m->b2};
    return slots[t];
}

/*
 * Points *m at the four tensors of the message's "arrays" after checking names, dtypes and
 * shapes. The data stays in the message (read-only); if the host handed an array whose data
 * is not float-aligned, everything is copied into *copy (free() it after use).
 */
static int
model_from_message(petal_context_t *ctx, const petal_message_t *msg, const char *what, pt_mlp_t *m,
                   float **copy)
{
    *copy = NULL;
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_arrayrecord_t *ar =
        content != NULL ? petal_recorddict_arrays(content, "arrays") : NULL;
    if (ar == NULL) {
        return fail(ctx, PETAL_EINVAL, "%s message has no ArrayRecord \"arrays\"", what);
    }
    m->in = IN_DIM;
    m->hidden = HIDDEN;
    m->out = CLASSES;
    int aligned = 1;
    for (int t = 0; t < 4; t++) {
        const petal_array_t *a = petal_arrayrecord_get(ar, tensor_names[t]);
        if (a == NULL) {
            return fail(ctx, PETAL_EINVAL, "%s message: \"arrays\" has no array \"%s\"", what,
                        tensor_names[t]);
        }
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        const uint64_t *got = petal_array_shape(a);
        if (petal_array_dtype(a) != PETAL_DTYPE_FLOAT32 || petal_array_ndim(a) != ndim ||
            got == NULL || got[0] != shape[0] || (ndim == 2 && got[1] != shape[1])) {
            char want[48];
            if (ndim == 2) {
                snprintf(want, sizeof(want), "[%llu, %llu]", (unsigned long long)shape[0],
                         (unsigned long long)shape[1]);
            } else {
                snprintf(want, sizeof(want), "[%llu]", (unsigned long long)shape[0]);
            }
            return fail(ctx, PETAL_EINVAL, "%s message: array \"%s\" must be float32 of shape %s",
                        what, tensor_names[t], want);
        }
        const void *data = petal_array_data(a);
        if (data == NULL) {
            return fail(ctx, PETAL_EINVAL, "%s message: array \"%s\" has no data", what,
                        tensor_names[t]);
        }
        if (((uintptr_t)data % _Alignof(float)) != 0) {
            aligned = 0;
        }
        *tensor_slot(m, t) = (float *)(uintptr_t)data; /* read-only: never written through */
    }
    if (!aligned) {
        size_t np = pt_mlp_num_params(IN_DIM, HIDDEN, CLASSES);
        float *buf = aligned_alloc(64, np * sizeof(float));
        if (buf == NULL) {
            return fail(ctx, PETAL_ENOMEM, "out of memory");
        }
        pt_mlp_t c;
        pt_mlp_view(&c, IN_DIM, HIDDEN, CLASSES, buf);
        for (int t = 0; t < 4; t++) {
            uint32_t ndim;
            uint64_t shape[2];
            tensor_shape(t, &ndim, shape);
            size_t n = (size_t)shape[0] * (ndim == 2 ? shape[1] : 1);
            memcpy(*tensor_slot(&c, t), *tensor_slot(m, t), n * sizeof(float));
        }
        *m = c;
        *copy = buf;
    }
    return 0;
}

/* Adds the four (zeroed) tensors to reply["arrays"] and points *m at their writable data. */
static int
model_to_reply(petal_context_t *ctx, petal_recorddict_t *reply, pt_mlp_t *m)
{
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(reply, "arrays");
    if (ar == NULL) {
        return fail(ctx, PETAL_ENOMEM, "cannot add ArrayRecord \"arrays\" to the reply");
    }
    m->in = IN_DIM;
    m->hidden = HIDDEN;
    m->out = CLASSES;
    for (int t = 0; t < 4; t++) {
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        petal_array_t *a =
            petal_arrayrecord_add(ar, tensor_names[t], PETAL_DTYPE_FLOAT32, ndim, shape);
        float *data = a != NULL ? petal_array_data_mut(a) : NULL;
        if (data == NULL) {
            return fail(ctx, PETAL_ENOMEM, "cannot add array \"%s\" to the reply", tensor_names[t]);
        }
        *tensor_slot(m, t) = data;
    }
    return 0;
}

static int
set_metric(petal_context_t *ctx, petal_metricrecord_t *mr, const char *name, petal_value_t v)
{
    int rc = petal_metricrecord_set(mr, name, &v);
    if (rc < 0) {
        return fail(ctx, rc, "cannot set metric \"%s\": %s", name, petal_strerror(rc));
    }
    return 0;
}

/* ---- Handlers -------------------------------------------------------------------------------- */

static int32_t
qs_init(const petal_configrecord_t *run_config, void **out)
{
    /* Parallelism comes from running many nodes at once: one BLAS thread per call. */
    openblas_set_num_threads(1);

    app_t *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    app->lr = 0.1;
    app->local_epochs = 1;
    app->batch_size = 32;
    app->proximal_mu = 0.0;
    app->seed = 42;
    hparams_t hp;
    app_hparams(app, &hp);
    int rc = read_hparams(NULL, run_config, "run config", &hp);
    if (rc < 0) {
        goto fail;
    }
    app->lr = hp.lr;
    app->local_epochs = hp.local_epochs;
    app->batch_size = hp.batch_size;
    app->proximal_mu = hp.proximal_mu;
    app->seed = hp.seed;

    const char *dir = NULL;
    petal_value_t v;
    if (run_config != NULL && petal_configrecord_get(run_config, "data-dir", &v) == 0) {
        if (v.type != PETAL_VALUE_STRING) {
            rc = fail(NULL, PETAL_ECONFIG, "run config: \"data-dir\" must be a string");
            goto fail;
        }
        dir = v.as.str;
    }
    char err[512];
    rc = petal_dataset_load_fmnist(dir, 1, &app->train, err, sizeof(err));
    if (rc < 0) {
        fail(NULL, rc, "%s", err);
        goto fail;
    }
    rc = petal_dataset_load_fmnist(dir, 0, &app->test, err, sizeof(err));
    if (rc < 0) {
        fail(NULL, rc, "%s", err);
        goto fail;
    }
    if (app->train->dim != IN_DIM || app->test->dim != IN_DIM ||
        app->train->num_classes > CLASSES || app->test->num_classes > CLASSES) {
        rc = fail(NULL, PETAL_EPROTO,
                  "Fashion-MNIST files hold %u-feature examples with %u classes, expected %d "
                  "and at most %d",
                  app->train->dim, app->train->num_classes, IN_DIM, CLASSES);
        goto fail;
    }
    *out = app;
    return 0;

fail:
    petal_dataset_release(app->train);
    petal_dataset_release(app->test);
    free(app);
    return rc;
}

static void
qs_fini(void *p)
{
    app_t *app = p;
    if (app == NULL) {
        return;
    }
    petal_dataset_release(app->train);
    petal_dataset_release(app->test);
    free(app);
}

static int32_t
qs_train(void *p, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint64_t *idx = NULL;
    float *global_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    hparams_t hp;
    app_hparams(app, &hp);
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_configrecord_t *cfg =
        content != NULL ? petal_recorddict_config(content, "config") : NULL;
    int rc = read_hparams(ctx, cfg, "train message config", &hp);
    if (rc < 0) {
        return rc;
    }
    uint32_t pid, np;
    rc = node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    pt_mlp_t global, local;
    rc = model_from_message(ctx, msg, "train", &global, &global_copy);
    if (rc < 0) {
        return rc;
    }
    uint64_t count = 0;
    rc = petal_partition_iid(app->train->n, np, pid, app->seed, &idx, &count);
    if (rc < 0) {
        rc = fail(ctx, rc, "cannot partition the train set: %s", petal_strerror(rc));
        goto fail;
    }
    rc = model_to_reply(ctx, reply, &local);
    if (rc < 0) {
        goto fail;
    }
    pt_mlp_copy(&local, &global);
    rc = pt_mlp_work_alloc(&work, &local, (uint32_t)hp.batch_size);
    if (rc < 0) {
        rc = fail(ctx, rc, "out of memory for a batch of %lld", (long long)hp.batch_size);
        goto fail;
    }
    /* The order of examples depends only on (seed, server round, partition id). */
    petal_rng_t rng;
    uint64_t s = petal_seed_combine(hp.seed, (uint64_t)hp.server_round);
    petal_rng_seed(&rng, petal_seed_combine(s, pid));
    double loss = 0.0;
    for (int64_t e = 0; e < hp.local_epochs; e++) {
        rc = pt_mlp_train_epoch(&local, &work, app->train, idx, count, (float)hp.lr,
                                (float)hp.proximal_mu, &global, &rng, &loss);
        if (rc < 0) {
            rc = fail(ctx, rc, "training failed: %s", petal_strerror(rc));
            goto fail;
        }
    }
    if (!isfinite(loss)) {
        petal_log(PETAL_LOG_WARN, "quickstart: partition %u: train loss is %f (lr %g too high?)",
                  pid, loss, hp.lr);
    }
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(reply, "metrics");
    if (mr == NULL) {
        rc = fail(ctx, PETAL_ENOMEM, "cannot add MetricRecord \"metrics\" to the reply");
        goto fail;
    }
    if ((rc = set_metric(ctx, mr, "train-loss", petal_value_f64(loss))) < 0 ||
        (rc = set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count))) < 0) {
        goto fail;
    }
    rc = 0;

fail:
    pt_mlp_work_free(&work);
    free(idx);
    free(global_copy);
    return rc;
}

static int32_t
qs_evaluate(void *p, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint64_t *idx = NULL;
    float *model_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    uint32_t pid, np;
    int rc = node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    pt_mlp_t model;
    rc = model_from_message(ctx, msg, "evaluate", &model, &model_copy);
    if (rc < 0) {
        return rc;
    }
    uint64_t count = 0;
    rc = petal_partition_iid(app->test->n, np, pid, app->seed, &idx, &count);
    if (rc < 0) {
        rc = fail(ctx, rc, "cannot partition the test set: %s", petal_strerror(rc));
        goto fail;
    }
    rc = pt_mlp_work_alloc(&work, &model, EVAL_BATCH);
    if (rc < 0) {
        rc = fail(ctx, rc, "out of memory");
        goto fail;
    }
    double loss = 0.0, acc = 0.0;
    if (count > 0) {
        rc = pt_mlp_evaluate(&model, &work, app->test, idx, count, &loss, &acc);
        if (rc < 0) {
            rc = fail(ctx, rc, "evaluation failed: %s", petal_strerror(rc));
            goto fail;
        }
    }
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(reply, "metrics");
    if (mr == NULL) {
        rc = fail(ctx, PETAL_ENOMEM, "cannot add MetricRecord \"metrics\" to the reply");
        goto fail;
    }
    if ((rc = set_metric(ctx, mr, "eval-loss", petal_value_f64(loss))) < 0 ||
        (rc = set_metric(ctx, mr, "eval-acc", petal_value_f64(acc))) < 0 ||
        (rc = set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count))) < 0) {
        goto fail;
    }
    rc = 0;

fail:
    pt_mlp_work_free(&work);
    free(idx);
    free(model_copy);
    return rc;
}

static int32_t
qs_query(void *p, petal_context_t *ctx, const char *action, const petal_message_t *msg,
         petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint64_t *idx = NULL;
    uint32_t pid, np;
    int rc = node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    if (action != NULL && strcmp(action, "init-arrays") == 0) {
        hparams_t hp;
        app_hparams(app, &hp);
        const petal_recorddict_t *content = petal_message_content(msg);
        const petal_configrecord_t *cfg =
            content != NULL ? petal_recorddict_config(content, "config") : NULL;
        rc = read_hparams(ctx, cfg, "query message config", &hp);
        if (rc < 0) {
            return rc;
        }
        pt_mlp_t m;
        rc = model_to_reply(ctx, reply, &m);
        if (rc < 0) {
            return rc;
        }
        pt_mlp_init(&m, hp.seed);
    }
    uint64_t count = 0;
    rc = petal_partition_iid(app->train->n, np, pid, app->seed, &idx, &count);
    if (rc < 0) {
        return fail(ctx, rc, "cannot partition the train set: %s", petal_strerror(rc));
    }
    uint64_t counts[CLASSES];
    petal_dataset_class_counts(app->train, idx, count, counts, CLASSES);
    free(idx);
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(reply, "metrics");
    if (mr == NULL) {
        return fail(ctx, PETAL_ENOMEM, "cannot add MetricRecord \"metrics\" to the reply");
    }
    rc = set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count));
    for (int c = 0; c < CLASSES && rc == 0; c++) {
        char name[16];
        snprintf(name, sizeof(name), "count-%d", c);
        rc = set_metric(ctx, mr, name, petal_value_i64((int64_t)counts[c]));
    }
    return rc;
}

static const petal_client_ops_t quickstart_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = qs_init,
    .train = qs_train,
    .evaluate = qs_evaluate,
    .query = qs_query,
    .fini = qs_fini,
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
    info->name = "quickstart";
    info->version = "0.1.0";
    info->client = &quickstart_ops;
    info->server = NULL;
    return 0;
}
