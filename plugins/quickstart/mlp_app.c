/* mlp_app.c - the Fashion-MNIST MLP ClientApp shared by the quickstart and fmnist plugins. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/plugin_util.h"
#include "mlp_app.h"

static const char *const tensor_names[MLP_TENSORS] = {"fc1.weight", "fc1.bias", "fc2.weight",
                                                      "fc2.bias"};

/* ---- Config values (petal_cfg_*: a missing key leaves *out alone, "0.05" strings count) -- */

/* Reads and checks the hyper-parameters in r over the values already in *hp. */
static int
read_hparams(petal_context_t *ctx, const petal_configrecord_t *r, const char *where,
             mlp_hparams_t *hp)
{
    int64_t seed = (int64_t)hp->seed;
    if (petal_cfg_f64(r, "lr", &hp->lr) < 0 || !(hp->lr > 0.0) || !isfinite(hp->lr)) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"lr\" must be a number > 0", where);
    }
    if (petal_cfg_i64(r, "local-epochs", &hp->local_epochs) < 0 || hp->local_epochs < 1 ||
        hp->local_epochs > 100000) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"local-epochs\" must be an integer >= 1",
                           where);
    }
    if (petal_cfg_i64(r, "batch-size", &hp->batch_size) < 0 || hp->batch_size < 1 ||
        hp->batch_size > MLP_MAX_BATCH) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"batch-size\" must be an integer in 1..%d",
                           where, MLP_MAX_BATCH);
    }
    if (petal_cfg_f64(r, "proximal-mu", &hp->proximal_mu) < 0 || !(hp->proximal_mu >= 0.0) ||
        !isfinite(hp->proximal_mu)) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"proximal-mu\" must be a number >= 0", where);
    }
    if (petal_cfg_i64(r, "server-round", &hp->server_round) < 0) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"server-round\" must be an integer", where);
    }
    if (petal_cfg_i64(r, "seed", &seed) < 0) {
        return plugin_fail(ctx, PETAL_ECONFIG, "%s: \"seed\" must be an integer", where);
    }
    hp->seed = (uint64_t)seed;
    return 0;
}

int
mlp_app_init(mlp_app_t *app, const mlp_app_ops_t *ops, const petal_configrecord_t *run_config)
{
    /* Parallelism comes from running many nodes at once: one BLAS thread per call. */
    openblas_set_num_threads(1);
    app->ops = ops;
    mlp_hparams_t hp = {.lr = 0.1, .local_epochs = 1, .batch_size = 32, .seed = 42};
    int rc = read_hparams(NULL, run_config, "run config", &hp);
    if (rc < 0) {
        return rc;
    }
    hp.server_round = 0; /* checked, but a call's round comes from its message only */
    app->defaults = hp;
    return 0;
}

int
mlp_app_load_data(mlp_app_t *app, const char *dir)
{
    char err[512];
    int rc = petal_dataset_load_fmnist(dir, 1, &app->train, err, sizeof(err));
    if (rc < 0) {
        return plugin_fail(NULL, rc, "%s", err);
    }
    rc = petal_dataset_load_fmnist(dir, 0, &app->test, err, sizeof(err));
    if (rc < 0) {
        return plugin_fail(NULL, rc, "%s", err);
    }
    return 0;
}

void
mlp_app_fini(void *p)
{
    mlp_app_t *app = p;
    if (app == NULL) {
        return;
    }
    petal_dataset_release(app->train);
    petal_dataset_release(app->test);
    free(app);
}

/* ---- Model <-> ArrayRecord ------------------------------------------------------------------ */

static void
tensor_shape(int t, uint32_t *ndim, uint64_t shape[2])
{
    static const uint64_t shapes[MLP_TENSORS][2] = {
        {MLP_HIDDEN, MLP_IN}, {MLP_HIDDEN, 0}, {MLP_CLASSES, MLP_HIDDEN}, {MLP_CLASSES, 0}};
    *ndim = (t % 2 == 0) ? 2 : 1;
    shape[0] = shapes[t][0];
    shape[1] = shapes[t][1];
}

size_t
mlp_tensor_len(int t)
{
    uint32_t ndim;
    uint64_t shape[2];
    tensor_shape(t, &ndim, shape);
    return (size_t)shape[0] * (ndim == 2 ? shape[1] : 1);
}

float **
mlp_tensor_slot(pt_mlp_t *m, int t)
{
    float **slots[MLP_TENSORS] = {&m->w1, &m->b1, &m->w2, &m->b2};
    return slots[t];
}

/*
 * Points *m at the four tensors of the message's "arrays" after checking names, dtypes and
 * shapes. The data stays in the message (read-only); if the host handed an array whose data
 * is not float-aligned, everything is copied into *copy (free() it after use).
 */
static int
model_from_message(const mlp_app_t *app, petal_context_t *ctx, const petal_message_t *msg,
                   const char *what, pt_mlp_t *m, float **copy)
{
    int one_error = app->ops->one_array_error;
    *copy = NULL;
    const petal_recorddict_t *content = petal_message_content(msg);
    const petal_arrayrecord_t *ar =
        content != NULL ? petal_recorddict_arrays(content, "arrays") : NULL;
    if (ar == NULL) {
        return plugin_fail(ctx, PETAL_EINVAL, "%s message has no ArrayRecord \"arrays\"", what);
    }
    m->in = MLP_IN;
    m->hidden = MLP_HIDDEN;
    m->out = MLP_CLASSES;
    int aligned = 1;
    for (int t = 0; t < MLP_TENSORS; t++) {
        const petal_array_t *a = petal_arrayrecord_get(ar, tensor_names[t]);
        if (a == NULL && !one_error) {
            return plugin_fail(ctx, PETAL_EINVAL, "%s message: \"arrays\" has no array \"%s\"",
                               what, tensor_names[t]);
        }
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        const uint64_t *got = a != NULL ? petal_array_shape(a) : NULL;
        const void *data = a != NULL ? petal_array_data(a) : NULL;
        if (a == NULL || petal_array_dtype(a) != PETAL_DTYPE_FLOAT32 ||
            petal_array_ndim(a) != ndim || got == NULL || got[0] != shape[0] ||
            (ndim == 2 && got[1] != shape[1]) || (one_error && data == NULL)) {
            char want[48];
            if (ndim == 2) {
                snprintf(want, sizeof(want), "[%llu, %llu]", (unsigned long long)shape[0],
                         (unsigned long long)shape[1]);
            } else {
                snprintf(want, sizeof(want), "[%llu]", (unsigned long long)shape[0]);
            }
            return plugin_fail(
                ctx, PETAL_EINVAL,
                one_error ? "%s message: \"arrays\" needs a float32 array \"%s\" of shape %s"
                          : "%s message: array \"%s\" must be float32 of shape %s",
                what, tensor_names[t], want);
        }
        if (data == NULL) {
            return plugin_fail(ctx, PETAL_EINVAL, "%s message: array \"%s\" has no data", what,
                               tensor_names[t]);
        }
        if (((uintptr_t)data % _Alignof(float)) != 0) {
            aligned = 0;
        }
        *mlp_tensor_slot(m, t) = (float *)(uintptr_t)data; /* read-only: never written through */
    }
    if (!aligned) {
        size_t np = pt_mlp_num_params(MLP_IN, MLP_HIDDEN, MLP_CLASSES);
        float *buf = aligned_alloc(64, np * sizeof(float));
        if (buf == NULL) {
            return plugin_fail(ctx, PETAL_ENOMEM, "out of memory");
        }
        pt_mlp_t c;
        pt_mlp_view(&c, MLP_IN, MLP_HIDDEN, MLP_CLASSES, buf);
        for (int t = 0; t < MLP_TENSORS; t++) {
            memcpy(*mlp_tensor_slot(&c, t), *mlp_tensor_slot(m, t),
                   mlp_tensor_len(t) * sizeof(float));
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
        return plugin_fail(ctx, PETAL_ENOMEM, "cannot add ArrayRecord \"arrays\" to the reply");
    }
    m->in = MLP_IN;
    m->hidden = MLP_HIDDEN;
    m->out = MLP_CLASSES;
    for (int t = 0; t < MLP_TENSORS; t++) {
        uint32_t ndim;
        uint64_t shape[2];
        tensor_shape(t, &ndim, shape);
        petal_array_t *a =
            petal_arrayrecord_add(ar, tensor_names[t], PETAL_DTYPE_FLOAT32, ndim, shape);
        float *data = a != NULL ? petal_array_data_mut(a) : NULL;
        if (data == NULL) {
            return plugin_fail(ctx, PETAL_ENOMEM, "cannot add array \"%s\" to the reply",
                               tensor_names[t]);
        }
        *mlp_tensor_slot(m, t) = data;
    }
    return 0;
}

/* ---- Handlers -------------------------------------------------------------------------------- */

int32_t
mlp_app_train(void *p, petal_context_t *ctx, const petal_message_t *msg, petal_recorddict_t *reply)
{
    const mlp_app_t *app = p;
    uint64_t *idx = NULL, count = 0;
    float *global_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    mlp_hparams_t hp = app->defaults;
    int rc = read_hparams(ctx, plugin_message_config(msg), "train message config", &hp);
    uint32_t pid = 0, np = 1;
    if (rc < 0 || (rc = plugin_node_partition(ctx, &pid, &np)) < 0) {
        return rc;
    }
    pt_mlp_t global, local;
    if ((rc = model_from_message(app, ctx, msg, "train", &global, &global_copy)) < 0) {
        return rc;
    }
    if ((rc = app->ops->train_partition(app, ctx, pid, np, 1, &idx, &count)) < 0) {
        goto fail;
    }
    if ((rc = model_to_reply(ctx, reply, &local)) < 0) {
        goto fail;
    }
    pt_mlp_copy(&local, &global);
    if ((rc = pt_mlp_work_alloc(&work, &local, (uint32_t)hp.batch_size)) < 0) {
        rc = plugin_fail(ctx, rc, "out of memory for a batch of %lld", (long long)hp.batch_size);
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
            rc = plugin_fail(ctx, rc, "training failed: %s", petal_strerror(rc));
            goto fail;
        }
    }
    if (app->ops->after_train != NULL) {
        app->ops->after_train(app, pid, &hp, &local, &global, loss);
    }
    petal_metricrecord_t *mr = plugin_add_metrics(ctx, reply);
    if (mr == NULL) {
        rc = PETAL_ENOMEM;
        goto fail;
    }
    if ((rc = plugin_set_metric(ctx, mr, "train-loss", petal_value_f64(loss))) < 0 ||
        (rc = plugin_set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count))) < 0) {
        goto fail;
    }
    rc = 0;

fail:
    pt_mlp_work_free(&work);
    free(idx);
    free(global_copy);
    return rc;
}

int32_t
mlp_app_evaluate(void *p, petal_context_t *ctx, const petal_message_t *msg,
                 petal_recorddict_t *reply)
{
    const mlp_app_t *app = p;
    uint64_t *idx = NULL, count = 0;
    float *model_copy = NULL;
    pt_mlp_work_t work;
    memset(&work, 0, sizeof(work));

    uint32_t pid = 0, np = 1;
    int rc = plugin_node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    pt_mlp_t model;
    if ((rc = model_from_message(app, ctx, msg, "evaluate", &model, &model_copy)) < 0) {
        return rc;
    }
    rc = petal_partition_iid(app->test->n, np, pid, app->defaults.seed, &idx, &count);
    if (rc < 0) {
        rc = plugin_fail(ctx, rc, "cannot partition the test set: %s", petal_strerror(rc));
        goto fail;
    }
    if (count == 0 && app->ops->empty_test_fails) {
        /* More nodes than test examples: nothing to measure (the strategy counts a failure). */
        rc = plugin_fail(ctx, PETAL_ENOENT, "partition %u of %u has no test examples", pid, np);
        goto fail;
    }
    if ((rc = pt_mlp_work_alloc(&work, &model, MLP_EVAL_BATCH)) < 0) {
        rc = plugin_fail(ctx, rc, "out of memory");
        goto fail;
    }
    double loss = 0.0, acc = 0.0;
    if (count > 0) {
        rc = pt_mlp_evaluate(&model, &work, app->test, idx, count, &loss, &acc);
        if (rc < 0) {
            rc = plugin_fail(ctx, rc, "evaluation failed: %s", petal_strerror(rc));
            goto fail;
        }
    }
    petal_metricrecord_t *mr = plugin_add_metrics(ctx, reply);
    if (mr == NULL) {
        rc = PETAL_ENOMEM;
        goto fail;
    }
    if ((rc = plugin_set_metric(ctx, mr, "eval-loss", petal_value_f64(loss))) < 0 ||
        (rc = plugin_set_metric(ctx, mr, "eval-acc", petal_value_f64(acc))) < 0 ||
        (rc = plugin_set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count))) < 0) {
        goto fail;
    }
    rc = 0;

fail:
    pt_mlp_work_free(&work);
    free(idx);
    free(model_copy);
    return rc;
}

int32_t
mlp_app_query(void *p, petal_context_t *ctx, const char *action, const petal_message_t *msg,
              petal_recorddict_t *reply)
{
    const mlp_app_t *app = p;
    uint32_t pid = 0, np = 1;
    int rc = plugin_node_partition(ctx, &pid, &np);
    if (rc < 0) {
        return rc;
    }
    if (action != NULL && strcmp(action, "init-arrays") == 0) {
        mlp_hparams_t hp = app->defaults;
        if ((rc = read_hparams(ctx, plugin_message_config(msg), "query message config", &hp)) < 0) {
            return rc;
        }
        pt_mlp_t m;
        if ((rc = model_to_reply(ctx, reply, &m)) < 0) {
            return rc;
        }
        pt_mlp_init(&m, hp.seed);
    }
    uint64_t *idx = NULL, count = 0;
    if ((rc = app->ops->train_partition(app, ctx, pid, np, 0, &idx, &count)) < 0) {
        return rc;
    }
    uint64_t counts[MLP_CLASSES];
    petal_dataset_class_counts(app->train, idx, count, counts, MLP_CLASSES);
    free(idx);
    petal_metricrecord_t *mr = plugin_add_metrics(ctx, reply);
    if (mr == NULL) {
        return PETAL_ENOMEM;
    }
    rc = plugin_set_metric(ctx, mr, "num-examples", petal_value_i64((int64_t)count));
    for (int c = 0; c < MLP_CLASSES && rc == 0; c++) {
        char name[16];
        snprintf(name, sizeof(name), "count-%d", c);
        rc = plugin_set_metric(ctx, mr, name, petal_value_i64((int64_t)counts[c]));
    }
    return rc;
}
