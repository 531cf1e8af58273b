/* client.c - the fmnist ClientApp: the quickstart MLP, partitioner and strategy by run config. */
#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "mlp.h" /* plugins/quickstart/mlp.h: the model is shared with the quickstart app */

/*
 * What this app adds to the quickstart: the training data are split by any partitioner of
 * petal_data (run config "partitioner" = iid, dirichlet, pathological, shard, linear, square,
 * exponential, with its parameters), and every strategy of the default server can be used
 * (run config "strategy"). docs/examples.md lists the keys.
 *
 * Message contract:
 *   train:    "arrays" (global model) + "config" {"server-round", "lr", "local-epochs",
 *             "batch-size", "proximal-mu", ...} -> "arrays" (local model) + "metrics"
 *             {"train-loss" (mean cross-entropy of the last local epoch), "num-examples"}.
 *   evaluate: "arrays" -> "metrics" {"eval-loss", "eval-acc", "num-examples"} on this node's IID
 *             share of the 10k test set, whatever the partitioner: the shares of all nodes make up
 *             the whole test set, so with fraction-evaluate = 1 the federation's weighted
 *             eval-acc is the global model's accuracy on the Fashion-MNIST test set, comparable
 *             across partitioners and strategies.
 *   query:    -> "metrics" {"num-examples", "count-0".."count-9"} of the node's training
 *             partition; action "init-arrays" also returns "arrays", the seeded initial model.
 * Attack (robustness experiments): with run config "malicious-nodes" = f, the nodes with
 * partition-id < f train honestly, then reply global - "attack-scale" * (local - global): their
 * update, sign-flipped and scaled.
 * Node config "partition-id" / "num-partitions" pick the partition (default 0 of 1).
 * Handlers run concurrently: the app struct is read-only after init.
 */

PETAL_PLUGIN_INIT;

#define IN_DIM 784
#define HIDDEN 128
#define CLASSES 10
#define EVAL_BATCH 256
#define MAX_BATCH 65536
#define NAME_LEN 32

typedef struct app {
    const petal_dataset_t *train;
    const petal_dataset_t *test;
    char partitioner[NAME_LEN];
    petal_partition_params_t pp;
    double lr;
    int64_t local_epochs;
    int64_t batch_size;
    double proximal_mu;
    uint64_t seed;
    int64_t malicious_nodes; /* partitions 0..malicious_nodes-1 send poisoned updates */
    double attack_scale;
} app_t;

/* The hyperparameters of one call: the run config's, overridden by the message's config. */
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
    char buf[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ctx != NULL) {
        petal_context_set_error(ctx, "fmnist: %s", buf);
    } else {
        petal_log(PETAL_LOG_ERROR, "fmnist: %s", buf);
    }
    return rc;
}

/* ---- Config values (petal_cfg_*: a missing key leaves *out alone, "0.05" strings count) -- */

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

/* The partitioner's keys: partitioner, alpha, min-partition-size, classes-per-partition,
 * shards-per-partition, shard-size, size-tau (and seed, read with the hyperparameters). */
static int
read_partitioner(const petal_configrecord_t *r, app_t *app)
{
    int64_t mps = (int64_t)app->pp.min_partition_size, k = app->pp.k;
    int64_t sps = app->pp.shards_per_partition, ss = (int64_t)app->pp.shard_size;
    if (petal_cfg_str(r, "partitioner", app->partitioner, sizeof(app->partitioner)) < 0) {
        return fail(NULL, PETAL_ECONFIG,
                    "run config: \"partitioner\" must be a name such as "
                    "\"iid\" or \"dirichlet\"");
    }
    if (petal_cfg_f64(r, "alpha", &app->pp.alpha) < 0 ||
        petal_cfg_f64(r, "size-tau", &app->pp.tau) < 0) {
        return fail(NULL, PETAL_ECONFIG, "run config: \"alpha\" and \"size-tau\" must be numbers");
    }
    if (petal_cfg_i64(r, "min-partition-size", &mps) < 0 || mps < 0 ||
        petal_cfg_i64(r, "classes-per-partition", &k) < 0 || k < 1 || k > CLASSES ||
        petal_cfg_i64(r, "shards-per-partition", &sps) < 0 || sps < 1 || sps > UINT32_MAX ||
        petal_cfg_i64(r, "shard-size", &ss) < 0 || ss < 0) {
        return fail(NULL, PETAL_ECONFIG,
                    "run config: \"min-partition-size\" and \"shard-size\" must be integers >= 0, "
                    "\"classes-per-partition\" an integer in 1..%d, \"shards-per-partition\" an "
                    "integer >= 1",
                    CLASSES);
    }
    app->pp.min_partition_size = (uint64_t)mps;
    app->pp.k = (uint32_t)k;
    app->pp.shards_per_partition = (uint32_t)sps;
    app->pp.shard_size = (uint64_t)ss;
    app->pp.seed = app->seed;
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

static int
node_partition(petal_context_t *ctx, uint32_t *pid, uint32_t *np)
{
    char err[128];
    int rc = petal_cfg_partition(petal_context_node_config(ctx), pid, np, err, sizeof(err));
    return rc < 0 ? fail(ctx, rc, "%s", err) : 0;
}

/* This node's training examples by the configured partitioner. */
static int
train_partition(const app_t *app, petal_context_t *ctx, uint32_t pid, uint32_t np, uint64_t **idx,
                uint64_t *count)
{
    char err[512];
    int rc = petal_partition_by_name(app->partitioner, &app->pp, app->train->y, app->train->n,
                                     CLASSES, np, pid, idx, count, err, sizeof(err));
    if (rc < 0) {
        return fail(ctx, rc, "partition %u of %u (partitioner \"%s\"): %s", pid, np,
                    app->partitioner, err);
    }
    return 0;
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

/* Points *m at the message's four tensors after checking them; data that is not float-aligned
 * is copied into *copy (free() it after use). */
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
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        const uint64_t *got = a != NULL ? petal_array_shape(a) : NULL;
        if (a == NULL || petal_array_dtype(a) != PETAL_DTYPE_FLOAT32 ||
            petal_array_ndim(a) != ndim || got == NULL || got[0] != shape[0] ||
            (ndim == 2 && got[1] != shape[1]) || petal_array_data(a) == NULL) {
            char want[48];
            if (ndim == 2) {
                snprintf(want, sizeof(want), "[%llu, %llu]", (unsigned long long)shape[0],
                         (unsigned long long)shape[1]);
            } else {
                snprintf(want, sizeof(want), "[%llu]", (unsigned long long)shape[0]);
            }
            return fail(ctx, PETAL_EINVAL,
                        "%s message: \"arrays\" needs a float32 array \"%s\" of shape %s", what,
                        tensor_names[t], want);
        }
        const void *data = petal_array_data(a);
        if (((uintptr_t)data % _Alignof(float)) != 0) {
            aligned = 0;
        }
        *tensor_slot(m, t) = (float *)(uintptr_t)data; /* read-only: never written through */
    }
    if (!aligned) {
        float *buf = aligned_alloc(64, pt_mlp_num_params(IN_DIM, HIDDEN, CLASSES) * sizeof(float));
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

static const petal_configrecord_t *
message_config(const petal_message_t *msg)
{
    const petal_recorddict_t *content = petal_message_content(msg);
    return content != NULL ? petal_recorddict_config(content, "config") : NULL;
}

/* The attack of a malicious node: local <- global - scale * (local - global), per element. */
static void
poison_update(pt_mlp_t *local, const pt_mlp_t *global, double scale)
{
    pt_mlp_t gv = *global; /* a copy of the pointers, for tensor_slot; read only */
    for (int t = 0; t < 4; t++) {
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        size_t n = (size_t)shape[0] * (ndim == 2 ? shape[1] : 1);
        float *x = *tensor_slot(local, t);
        const float *g = *tensor_slot(&gv, t);
        for (size_t i = 0; i < n; i++) {
            x[i] = (float)((double)g[i] - scale * ((double)x[i] - (double)g[i]));
        }
    }
}

/* ---- Handlers -------------------------------------------------------------------------------- */

static int32_t
fm_init(const petal_configrecord_t *run_config, void **out)
{
    openblas_set_num_threads(1); /* parallelism comes from running many nodes at once */
    app_t *app = calloc(1, sizeof(*app));
    if (app == NULL) {
        return PETAL_ENOMEM;
    }
    app->lr = 0.1;
    app->local_epochs = 1;
    app->batch_size = 32;
    app->seed = 42;
    snprintf(app->partitioner, sizeof(app->partitioner), "iid");
    petal_partition_params_init(&app->pp);
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
    if ((rc = read_partitioner(run_config, app)) < 0) {
        goto fail;
    }
    app->attack_scale = 10.0;
    if (petal_cfg_i64(run_config, "malicious-nodes", &app->malicious_nodes) < 0 ||
        app->malicious_nodes < 0) {
        rc = fail(NULL, PETAL_ECONFIG, "run config: \"malicious-nodes\" must be an integer >= 0");
        goto fail;
    }
    if (petal_cfg_f64(run_config, "attack-scale", &app->attack_scale) < 0 ||
        !(app->attack_scale >= 0.0) || !isfinite(app->attack_scale)) {
        rc = fail(NULL, PETAL_ECONFIG, "run config: \"attack-scale\" must be a number >= 0");
        goto fail;
    }

    char dir[1024] = "";
    if (petal_cfg_str(run_config, "data-dir", dir, sizeof(dir)) < 0) {
        rc = fail(NULL, PETAL_ECONFIG, "run config: \"data-dir\" must be a string");
        goto fail;
    }
    char err[512];
    if ((rc = petal_dataset_load_fmnist(dir[0] ? dir : NULL, 1, &app->train, err, sizeof(err))) <
            0 ||
        (rc = petal_dataset_load_fmnist(dir[0] ? dir : NULL, 0, &app->test, err, sizeof(err))) <
            0) {
        fail(NULL, rc, "%s", err);
        goto fail;
    }
    if (app->train->dim != IN_DIM || app->test->dim != IN_DIM ||
        app->train->num_classes > CLASSES || app->test->num_classes > CLASSES) {
        rc = fail(NULL, PETAL_EPROTO, "Fashion-MNIST files hold %u-feature examples, expected %d",
                  app->train->dim, IN_DIM);
        goto fail;
    }
    /* A wrong partitioner name or parameter fails the run now, not in every train call. */
    uint64_t *idx = NULL, count = 0;
    rc = petal_partition_by_name(app->partitioner, &app->pp, app->train->y, app->train->n, CLASSES,
                                 1, 0, &idx, &count, err, sizeof(err));
    free(idx);
    if (rc < 0) {
        fail(NULL, rc, "run config: %s", err);
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
fm_fini(void *p)
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
fm_train(void *p, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint64_t *idx = NULL, count = 0;
    float *global_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    hparams_t hp;
    app_hparams(app, &hp);
    int rc = read_hparams(ctx, message_config(msg), "train message config", &hp);
    uint32_t pid = 0, np = 1;
    if (rc < 0 || (rc = node_partition(ctx, &pid, &np)) < 0) {
        return rc;
    }
    pt_mlp_t global, local;
    if ((rc = model_from_message(ctx, msg, "train", &global, &global_copy)) < 0) {
        return rc;
    }
    if ((rc = train_partition(app, ctx, pid, np, &idx, &count)) < 0) {
        goto fail;
    }
    if (count == 0) {
        rc = fail(ctx, PETAL_ENOENT,
                  "partition %u of %u is empty (partitioner \"%s\"): nothing to train on; raise "
                  "alpha or set min-partition-size",
                  pid, np, app->partitioner);
        goto fail;
    }
    if ((rc = model_to_reply(ctx, reply, &local)) < 0) {
        goto fail;
    }
    pt_mlp_copy(&local, &global);
    if ((rc = pt_mlp_work_alloc(&work, &local, (uint32_t)hp.batch_size)) < 0) {
        rc = fail(ctx, rc, "out of memory for a batch of %lld", (long long)hp.batch_size);
        goto fail;
    }
    /* The order of examples depends only on (seed, server round, partition id). */
    petal_rng_t rng;
    petal_rng_seed(&rng,
                   petal_seed_combine(petal_seed_combine(hp.seed, (uint64_t)hp.server_round), pid));
    double loss = 0.0;
    for (int64_t e = 0; e < hp.local_epochs; e++) {
        rc = pt_mlp_train_epoch(&local, &work, app->train, idx, count, (float)hp.lr,
                                (float)hp.proximal_mu, &global, &rng, &loss);
        if (rc < 0) {
            rc = fail(ctx, rc, "training failed: %s", petal_strerror(rc));
            goto fail;
        }
    }
    if ((int64_t)pid < app->malicious_nodes) {
        poison_update(&local, &global, app->attack_scale);
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
fm_evaluate(void *p, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint64_t *idx = NULL, count = 0;
    float *model_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    uint32_t pid = 0, np = 1;
    int rc = node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    pt_mlp_t model;
    if ((rc = model_from_message(ctx, msg, "evaluate", &model, &model_copy)) < 0) {
        return rc;
    }
    rc = petal_partition_iid(app->test->n, np, pid, app->seed, &idx, &count);
    if (rc < 0) {
        rc = fail(ctx, rc, "cannot partition the test set: %s", petal_strerror(rc));
        goto fail;
    }
    if (count == 0) {
        /* More nodes than test examples: nothing to measure (the strategy counts a failure). */
        rc = fail(ctx, PETAL_ENOENT, "partition %u of %u has no test examples", pid, np);
        goto fail;
    }
    if ((rc = pt_mlp_work_alloc(&work, &model, EVAL_BATCH)) < 0) {
        rc = fail(ctx, rc, "out of memory");
        goto fail;
    }
    double loss = 0.0, acc = 0.0;
    if ((rc = pt_mlp_evaluate(&model, &work, app->test, idx, count, &loss, &acc)) < 0) {
        rc = fail(ctx, rc, "evaluation failed: %s", petal_strerror(rc));
        goto fail;
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
fm_query(void *p, petal_context_t *ctx, const char *action, const petal_message_t *msg,
         petal_recorddict_t *reply)
{
    const app_t *app = p;
    uint32_t pid = 0, np = 1;
    int rc = node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    if (action != NULL && strcmp(action, "init-arrays") == 0) {
        hparams_t hp;
        app_hparams(app, &hp);
        if ((rc = read_hparams(ctx, message_config(msg), "query message config", &hp)) < 0) {
            return rc;
        }
        pt_mlp_t m;
        if ((rc = model_to_reply(ctx, reply, &m)) < 0) {
            return rc;
        }
        pt_mlp_init(&m, hp.seed);
    }
    uint64_t *idx = NULL, count = 0;
    if ((rc = train_partition(app, ctx, pid, np, &idx, &count)) < 0) {
        return rc;
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

static const petal_client_ops_t fmnist_ops = {
    .struct_size = sizeof(petal_client_ops_t),
    .abi_version = PETAL_ABI_VERSION,
    .init = fm_init,
    .train = fm_train,
    .evaluate = fm_evaluate,
    .query = fm_query,
    .fini = fm_fini,
};

PETAL_PLUGIN_EXPORT int32_t
petal_plugin_entry_v1(const petal_host_api_v1_t *host, petal_plugin_info_t *info)
{
    PETAL_PLUGIN_ENTRY_BEGIN(host);
    if (info == NULL || info->struct_size < sizeof(*info)) {
        return PETAL_EABI;
    }
    info->abi_version = PETAL_ABI_VERSION;
    info->kind = PETAL_PLUGIN_CLIENT;
    info->name = "fmnist";
    info->version = "0.1.0";
    info->client = &fmnist_ops;
    info->server = NULL;
    return 0;
}
