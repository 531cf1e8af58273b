/* test_quickstart.c - the quickstart ClientApp .so through the real host table: contract and
 * FedAvg. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include "runtime/context.h"
#include "runtime/plugin.h"

#define PLUGIN_PATH PETAL_BUILD_DIR "/plugins/quickstart/client.so"
#define NUM_PARAMS (128 * 784 + 128 + 10 * 128 + 10)

static const char *const names[4] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
static const uint64_t numel[4] = {128 * 784, 128, 10 * 128, 10};

static pt_plugin_t *plugin;
static const petal_client_ops_t *ops;
static void *app;
static pt_run_config_t *run_config;

static void
set_i64(petal_configrecord_t *r, const char *k, int64_t v)
{
    petal_value_t x = petal_value_i64(v);
    ck_assert_int_eq(petal_configrecord_set(r, k, &x), 0);
}

static void
set_f64(petal_configrecord_t *r, const char *k, double v)
{
    petal_value_t x = petal_value_f64(v);
    ck_assert_int_eq(petal_configrecord_set(r, k, &x), 0);
}

static void
setup(void)
{
    char err[512] = "";
    int rc = pt_plugin_load(PLUGIN_PATH, PETAL_PLUGIN_CLIENT, &plugin, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ops = pt_plugin_info(plugin)->client;
    ck_assert_str_eq(pt_plugin_info(plugin)->name, "quickstart");
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *rcfg = petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME);
    set_f64(rcfg, "lr", 0.1);
    set_i64(rcfg, "local-epochs", 1);
    set_i64(rcfg, "batch-size", 32);
    set_i64(rcfg, "seed", 42);
    run_config = pt_run_config_alloc(holder);
    ck_assert_ptr_nonnull(run_config);
    ck_assert_int_eq(ops->init(pt_run_config_get(run_config), &app), 0);
}

static void
teardown(void)
{
    ops->fini(app);
    pt_run_config_release(run_config);
    pt_plugin_unload(plugin);
}

static petal_context_t *
node_context(uint64_t node_id, int64_t partition, int64_t partitions)
{
    petal_recorddict_t *holder = petal_recorddict_alloc();
    petal_configrecord_t *nc = petal_recorddict_add_config(holder, PT_CONFIG_HOLDER_NAME);
    set_i64(nc, "partition-id", partition);
    set_i64(nc, "num-partitions", partitions);
    petal_context_t *c = pt_context_alloc(1, node_id, run_config, holder);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* A message of `type` carrying `params` (NUM_PARAMS floats, in order) and a config. */
static petal_message_t *
model_message(const char *type, const float *params, int64_t round)
{
    petal_recorddict_t *content = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(content, "arrays");
    const uint64_t shapes[4][2] = {{128, 784}, {128, 0}, {10, 128}, {10, 0}};
    for (int t = 0; t < 4; t++) {
        petal_array_t *a =
            petal_arrayrecord_add(ar, names[t], PETAL_DTYPE_FLOAT32, t % 2 == 0 ? 2 : 1, shapes[t]);
        ck_assert_ptr_nonnull(a);
        memcpy(petal_array_data_mut(a), params, numel[t] * sizeof(float));
        params += numel[t];
    }
    petal_configrecord_t *cfg = petal_recorddict_add_config(content, "config");
    set_i64(cfg, "server-round", round);
    petal_message_t *m = petal_message_alloc(content, type, 1, "", 3600.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

/* Copies reply["arrays"] into params after checking names, order, dtype and shapes. */
static void
reply_params(const petal_recorddict_t *reply, float *params)
{
    const petal_arrayrecord_t *ar = petal_recorddict_arrays(reply, "arrays");
    ck_assert_ptr_nonnull(ar);
    ck_assert_uint_eq(petal_arrayrecord_count(ar), 4);
    for (int t = 0; t < 4; t++) {
        ck_assert_str_eq(petal_arrayrecord_name_at(ar, (uint64_t)t), names[t]);
        const petal_array_t *a = petal_arrayrecord_at(ar, (uint64_t)t);
        ck_assert_int_eq(petal_array_dtype(a), PETAL_DTYPE_FLOAT32);
        ck_assert_uint_eq(petal_array_numel(a), numel[t]);
        ck_assert_uint_eq(petal_array_ndim(a), t % 2 == 0 ? 2 : 1);
        memcpy(params, petal_array_data(a), numel[t] * sizeof(float));
        params += numel[t];
    }
}

static double
metric(const petal_recorddict_t *reply, const char *name)
{
    const petal_metricrecord_t *mr = petal_recorddict_metrics(reply, "metrics");
    ck_assert_ptr_nonnull(mr);
    petal_value_t v;
    ck_assert_msg(petal_metricrecord_get(mr, name, &v) == 0, "no metric %s", name);
    double d = 0.0;
    ck_assert_int_eq(petal_value_as_f64(&v, &d), 0);
    return d;
}

static void
init_arrays(float *params)
{
    petal_context_t *c = node_context(1, 0, 10);
    petal_recorddict_t *reply = petal_recorddict_alloc();
    petal_message_t *q =
        petal_message_alloc(petal_recorddict_alloc(), "query.init-arrays", 1, "", 60.0);
    ck_assert_int_eq(ops->query(app, c, "init-arrays", q, reply), 0);
    reply_params(reply, params);
    petal_message_free(q);
    petal_recorddict_free(reply);
    pt_context_free(c);
}

/* ---- tests ----------------------------------------------------------------------------------- */

START_TEST(test_query)
{
    static float a[NUM_PARAMS], b[NUM_PARAMS];
    init_arrays(a);
    init_arrays(b);
    ck_assert_int_eq(memcmp(a, b, sizeof(a)), 0); /* the same seed, the same initial model */
    float amax = 0.0f;
    for (int i = 0; i < 128 * 784; i++) {
        amax = fabsf(a[i]) > amax ? fabsf(a[i]) : amax;
    }
    ck_assert_float_gt(amax, 0.05f);
    ck_assert_float_eq(a[128 * 784], 0.0f); /* fc1.bias starts at 0 */

    petal_context_t *c = node_context(7, 3, 10);
    petal_recorddict_t *reply = petal_recorddict_alloc();
    petal_message_t *q = petal_message_alloc(petal_recorddict_alloc(), "query", 7, "", 60.0);
    ck_assert_int_eq(ops->query(app, c, "", q, reply), 0);
    ck_assert_ptr_null(petal_recorddict_arrays(reply, "arrays"));
    ck_assert_double_eq(metric(reply, "num-examples"), 6000);
    double sum = 0.0;
    for (int k = 0; k < 10; k++) {
        char name[16];
        snprintf(name, sizeof(name), "count-%d", k);
        double v = metric(reply, name);
        ck_assert_double_gt(v, 450);
        sum += v;
    }
    ck_assert_double_eq(sum, 6000);
    petal_message_free(q);
    petal_recorddict_free(reply);
    pt_context_free(c);
}
END_TEST

/* One node trains: the reply has the four arrays, a sane loss, the partition size; the same
 * (seed, round, partition) gives the same weights, another round other weights. */
START_TEST(test_train_evaluate)
{
    static float init[NUM_PARAMS], out1[NUM_PARAMS], out2[NUM_PARAMS], out3[NUM_PARAMS];
    init_arrays(init);
    petal_context_t *c = node_context(4, 2, 10);
    float *outs[3] = {out1, out2, out3};
    const int64_t rounds[3] = {1, 1, 2};
    for (int i = 0; i < 3; i++) {
        petal_message_t *m = model_message("train", init, rounds[i]);
        petal_recorddict_t *reply = petal_recorddict_alloc();
        ck_assert_int_eq(ops->train(app, c, m, reply), 0);
        reply_params(reply, outs[i]);
        ck_assert_double_eq(metric(reply, "num-examples"), 6000);
        double loss = metric(reply, "train-loss");
        ck_assert_msg(loss > 0.3 && loss < 1.5, "train-loss %f", loss);
        petal_message_free(m);
        petal_recorddict_free(reply);
    }
    ck_assert_int_ne(memcmp(init, out1, sizeof(init)), 0);
    ck_assert_int_eq(memcmp(out1, out2, sizeof(out1)), 0);
    ck_assert_int_ne(memcmp(out1, out3, sizeof(out1)), 0);

    petal_message_t *m = model_message("evaluate", out1, 1);
    petal_recorddict_t *reply = petal_recorddict_alloc();
    ck_assert_int_eq(ops->evaluate(app, c, m, reply), 0);
    ck_assert_double_eq(metric(reply, "num-examples"), 1000);
    ck_assert_double_gt(metric(reply, "eval-acc"), 0.6);
    ck_assert_double_lt(metric(reply, "eval-loss"), 1.2);
    ck_assert_ptr_null(petal_recorddict_arrays(reply, "arrays"));
    petal_message_free(m);
    petal_recorddict_free(reply);
    pt_context_free(c);
}
END_TEST

/* Bad input gives an error return and a reason naming the problem. */
START_TEST(test_errors)
{
    static float init[NUM_PARAMS];
    init_arrays(init);
    petal_context_t *c = node_context(2, 0, 10);
    petal_recorddict_t *reply = petal_recorddict_alloc();

    petal_message_t *m = petal_message_alloc(petal_recorddict_alloc(), "train", 2, "", 60.0);
    ck_assert_int_lt(ops->train(app, c, m, reply), 0);
    ck_assert_ptr_nonnull(strstr(pt_context_error(c), "\"arrays\""));
    petal_message_free(m);
    pt_context_clear_error(c);

    /* fc1.bias with a wrong shape */
    petal_recorddict_t *content = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(content, "arrays");
    const uint64_t shapes[4][2] = {{128, 784}, {64, 0}, {10, 128}, {10, 0}};
    for (int t = 0; t < 4; t++) {
        ck_assert_ptr_nonnull(petal_arrayrecord_add(ar, names[t], PETAL_DTYPE_FLOAT32,
                                                    t % 2 == 0 ? 2 : 1, shapes[t]));
    }
    m = petal_message_alloc(content, "evaluate", 2, "", 60.0);
    ck_assert_int_lt(ops->evaluate(app, c, m, reply), 0);
    ck_assert_ptr_nonnull(strstr(pt_context_error(c), "fc1.bias"));
    petal_message_free(m);
    pt_context_clear_error(c);

    /* a bad hyper-parameter in the message config */
    m = model_message("train", init, 1);
    petal_configrecord_t *cfg =
        (petal_configrecord_t *)petal_recorddict_config(petal_message_content(m), "config");
    set_f64(cfg, "lr", -1.0);
    ck_assert_int_eq(ops->train(app, c, m, reply), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(pt_context_error(c), "lr"));
    petal_message_free(m);
    pt_context_free(c);

    /* partition-id out of range */
    c = node_context(3, 10, 10);
    m = model_message("evaluate", init, 1);
    ck_assert_int_eq(ops->evaluate(app, c, m, reply), PETAL_ECONFIG);
    ck_assert_ptr_nonnull(strstr(pt_context_error(c), "partition-id"));
    petal_message_free(m);
    pt_context_free(c);
    petal_recorddict_free(reply);
}
END_TEST

/* ---- FedAvg over 10 nodes, 5 rounds, several nodes training at once -------------------------- */

#define NODES 10
#define ROUNDS 5
#define THREADS 4

typedef struct job {
    const float *global;
    int64_t round;
    int node;
    float *out; /* NUM_PARAMS */
    double n, loss, acc;
    int evaluate;
} job_t;

static void
run_job(job_t *j)
{
    petal_context_t *c = node_context((uint64_t)j->node + 1, j->node, NODES);
    petal_message_t *m = model_message(j->evaluate ? "evaluate" : "train", j->global, j->round);
    petal_recorddict_t *reply = petal_recorddict_alloc();
    int rc = j->evaluate ? ops->evaluate(app, c, m, reply) : ops->train(app, c, m, reply);
    ck_assert_msg(rc == 0, "node %d: %s", j->node, pt_context_error(c));
    j->n = metric(reply, "num-examples");
    if (j->evaluate) {
        j->loss = metric(reply, "eval-loss");
        j->acc = metric(reply, "eval-acc");
    } else {
        j->loss = metric(reply, "train-loss");
        reply_params(reply, j->out);
    }
    petal_message_free(m);
    petal_recorddict_free(reply);
    pt_context_free(c);
}

typedef struct worker {
    job_t *jobs;
    int first, step;
} worker_t;

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    for (int i = w->first; i < NODES; i += w->step) {
        run_job(&w->jobs[i]);
    }
    return NULL;
}

static void
run_all(job_t *jobs)
{
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker_t){jobs, t, THREADS};
        ck_assert_int_eq(pthread_create(&th[t], NULL, worker_main, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        ck_assert_int_eq(pthread_join(th[t], NULL), 0);
    }
}

START_TEST(test_fedavg_10_nodes)
{
    float *global = malloc(sizeof(float) * NUM_PARAMS);
    float *outs = malloc(sizeof(float) * NUM_PARAMS * NODES);
    double *sum = malloc(sizeof(double) * NUM_PARAMS);
    init_arrays(global);
    double acc = 0.0;
    job_t jobs[NODES];
    for (int r = 1; r <= ROUNDS; r++) {
        for (int i = 0; i < NODES; i++) {
            jobs[i] = (job_t){global, r, i, outs + (size_t)i * NUM_PARAMS, 0, 0, 0, 0};
        }
        run_all(jobs);
        /* Thread scheduling does not change a node's result. */
        if (r == 1) {
            job_t again = {global, r, 3, malloc(sizeof(float) * NUM_PARAMS), 0, 0, 0, 0};
            run_job(&again);
            ck_assert_int_eq(memcmp(again.out, jobs[3].out, sizeof(float) * NUM_PARAMS), 0);
            free(again.out);
        }
        double total = 0.0, tloss = 0.0;
        memset(sum, 0, sizeof(double) * NUM_PARAMS);
        for (int i = 0; i < NODES; i++) {
            total += jobs[i].n;
            tloss += jobs[i].loss * jobs[i].n;
            for (size_t k = 0; k < NUM_PARAMS; k++) {
                sum[k] += jobs[i].n * jobs[i].out[k];
            }
        }
        ck_assert_double_eq(total, 60000);
        for (size_t k = 0; k < NUM_PARAMS; k++) {
            global[k] = (float)(sum[k] / total);
        }
        for (int i = 0; i < NODES; i++) {
            jobs[i] = (job_t){global, r, i, NULL, 0, 0, 0, 1};
        }
        run_all(jobs);
        double etotal = 0.0, eloss = 0.0;
        acc = 0.0;
        for (int i = 0; i < NODES; i++) {
            etotal += jobs[i].n;
            eloss += jobs[i].loss * jobs[i].n;
            acc += jobs[i].acc * jobs[i].n;
        }
        ck_assert_double_eq(etotal, 10000); /* federated evaluation covers the test set */
        acc /= etotal;
        printf("quickstart fedavg round %d: train-loss %.4f eval-loss %.4f eval-acc %.4f\n", r,
               tloss / total, eloss / etotal, acc);
    }
    ck_assert_double_ge(acc, 0.80);
    free(global);
    free(outs);
    free(sum);
}
END_TEST

static Suite *
quickstart_suite(void)
{
    Suite *s = suite_create("quickstart");
    TCase *tc = tcase_create("contract");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_query);
    tcase_add_test(tc, test_train_evaluate);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_fedavg_10_nodes);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(quickstart_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
