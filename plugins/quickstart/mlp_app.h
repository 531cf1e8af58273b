/* mlp_app.h - the Fashion-MNIST MLP ClientApp shared by the quickstart and fmnist plugins. */
#ifndef PT_QUICKSTART_MLP_APP_H
#define PT_QUICKSTART_MLP_APP_H

#include <stddef.h>
#include <stdint.h>

#include <petal/data.h>
#include <petal/plugin.h>

#include "mlp.h"

/*
 * Message contract of both apps (each client.c documents what it adds):
 *   train:    "arrays" (global model) + ConfigRecord "config" {"server-round", optional "lr",
 *             "local-epochs", "batch-size", "proximal-mu", "seed"} -> "arrays" (local model) +
 *             MetricRecord "metrics" {"train-loss" (mean cross-entropy of the last epoch),
 *             "num-examples" (training partition size)}.
 *   evaluate: "arrays" -> "metrics" {"eval-loss", "eval-acc", "num-examples"} on this node's IID
 *             share of the 10k test set.
 *   query:    any action -> "metrics" {"num-examples", "count-0".."count-9"} of the training
 *             partition; action "init-arrays" also returns "arrays", the seed-deterministic model.
 * The model is "fc1.weight" [128,784], "fc1.bias" [128], "fc2.weight" [10,128], "fc2.bias" [10],
 * float32. Node config "partition-id" / "num-partitions" pick the share (default 0 of 1).
 * Handlers run concurrently on worker threads: the app is read-only after init and each call
 * allocates its own scratch. Errors are reported with plugin_fail (plugins/common/plugin_util.h).
 */

#define MLP_IN 784
#define MLP_HIDDEN 128
#define MLP_CLASSES 10
#define MLP_TENSORS 4
#define MLP_EVAL_BATCH 256
#define MLP_MAX_BATCH 65536

/* Training hyper-parameters of one call: the run config's, overridden by the message's. */
typedef struct mlp_hparams {
    double lr;
    int64_t local_epochs;
    int64_t batch_size;
    double proximal_mu;
    int64_t server_round;
    uint64_t seed;
} mlp_hparams_t;

typedef struct mlp_app mlp_app_t;

/* What an app does its own way (a static const table per plugin). */
typedef struct mlp_app_ops {
    /* This node's training examples (*idx is free()d by the caller); train is 1 in a train call,
     * 0 in a query. Reports its errors; returns 0 or a negative error. */
    int (*train_partition)(const mlp_app_t *app, petal_context_t *ctx, uint32_t pid, uint32_t np,
                           int train, uint64_t **idx, uint64_t *count);
    /* Runs after the local epochs, before the metrics are added (may be NULL). */
    void (*after_train)(const mlp_app_t *app, uint32_t pid, const mlp_hparams_t *hp,
                        pt_mlp_t *local, const pt_mlp_t *global, double loss);
    /* 1: an evaluate call on an empty test share fails (else it reports loss 0 and acc 0). */
    int empty_test_fails;
    /* 1: every missing or malformed tensor gets the one message "needs a float32 array". */
    int one_array_error;
} mlp_app_ops_t;

/* The app state the shared handlers read; a plugin's own app struct starts with it. */
struct mlp_app {
    const mlp_app_ops_t *ops;
    const petal_dataset_t *train;
    const petal_dataset_t *test;
    mlp_hparams_t defaults; /* the run config's; server_round is 0 */
};

/* Sets one BLAS thread, ops and the defaults (lr 0.1, 1 local epoch, batch 32, proximal-mu 0,
 * seed 42), then reads them from the run config. Returns 0 or PETAL_ECONFIG (logged). */
int mlp_app_init(mlp_app_t *app, const mlp_app_ops_t *ops, const petal_configrecord_t *run_config);
/* Loads the Fashion-MNIST train and test sets from dir (NULL: the default). Returns 0 or the
 * loader's error (logged); app->train/test stay NULL when not loaded. */
int mlp_app_load_data(mlp_app_t *app, const char *dir);
/* The client fini: releases the datasets and free()s p (an app starting with mlp_app_t). */
void mlp_app_fini(void *p);

/* The client handlers; p is the app (starting with mlp_app_t). */
int32_t mlp_app_train(void *p, petal_context_t *ctx, const petal_message_t *msg,
                      petal_recorddict_t *reply);
int32_t mlp_app_evaluate(void *p, petal_context_t *ctx, const petal_message_t *msg,
                         petal_recorddict_t *reply);
int32_t mlp_app_query(void *p, petal_context_t *ctx, const char *action, const petal_message_t *msg,
                      petal_recorddict_t *reply);

/* Element count of tensor t (0..3: w1, b1, w2, b2) and a pointer to m's pointer to it. */
size_t mlp_tensor_len(int t);
float **mlp_tensor_slot(pt_mlp_t *m, int t);

#endif
