/* test_mlp.c - the quickstart model: gradients, determinism, and accuracy on Fashion-MNIST. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <petal/data.h>

#include "plugins/quickstart/mlp.h"

static float *
alloc_params(uint32_t in, uint32_t hidden, uint32_t out, pt_mlp_t *m)
{
    size_t n = pt_mlp_num_params(in, hidden, out);
    float *p = aligned_alloc(64, n * sizeof(float));
    ck_assert_ptr_nonnull(p);
    memset(p, 0, n * sizeof(float));
    pt_mlp_view(m, in, hidden, out, p);
    return p;
}

static double
elapsed(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

/* The analytic gradient matches central finite differences on a tiny network. */
START_TEST(test_gradient_finite_difference)
{
    enum { IN = 5, HID = 4, OUT = 3, B = 3 };
    pt_mlp_t m;
    float *params = alloc_params(IN, HID, OUT, &m);
    pt_mlp_init(&m, 7);
    petal_rng_t r;
    petal_rng_seed(&r, 11);
    for (int j = 0; j < HID; j++) {
        m.b1[j] = (float)(0.2 * petal_rng_uniform(&r));
    }
    for (int j = 0; j < OUT; j++) {
        m.b2[j] = (float)(0.2 * petal_rng_uniform(&r) - 0.1);
    }
    float x[B * IN];
    for (int i = 0; i < B * IN; i++) {
        x[i] = (float)petal_rng_uniform(&r);
    }
    const uint8_t y[B] = {0, 2, 1};
    pt_mlp_work_t w;
    ck_assert_int_eq(pt_mlp_work_alloc(&w, &m, B), 0);
    pt_mlp_grad(&m, &w, x, y, B);
    /* Keep the analytic gradient: the next calls overwrite w.grad. */
    size_t np = pt_mlp_num_params(IN, HID, OUT);
    float *analytic = malloc(np * sizeof(float));
    memcpy(analytic, w.grad.w1, np * sizeof(float));
    const float eps = 1e-3f;
    int checked = 0;
    for (size_t k = 0; k < np; k++) {
        float keep = params[k];
        params[k] = keep + eps;
        double up = pt_mlp_grad(&m, &w, x, y, B);
        params[k] = keep - eps;
        double down = pt_mlp_grad(&m, &w, x, y, B);
        params[k] = keep;
        double numeric = (up - down) / (2.0 * eps);
        double diff = fabs(numeric - analytic[k]);
        ck_assert_msg(diff < 2e-3 + 1e-2 * fabs(numeric), "param %zu: analytic %g numeric %g", k,
                      (double)analytic[k], numeric);
        checked += analytic[k] != 0.0f;
    }
    ck_assert_int_gt(checked, 20); /* the check saw real gradients, not padding */
    free(analytic);
    pt_mlp_work_free(&w);
    free(params);
}
END_TEST

/* A step with mu > 0 and a zero gradient moves the weights towards the global model. */
START_TEST(test_proximal_step)
{
    pt_mlp_t m, g, zero;
    float *pm = alloc_params(4, 3, 2, &m);
    float *pg = alloc_params(4, 3, 2, &g);
    float *pz = alloc_params(4, 3, 2, &zero);
    pt_mlp_init(&m, 1);
    pt_mlp_init(&g, 2);
    float before = m.w1[5], target = g.w1[5];
    pt_mlp_sgd_step(&m, &zero, 0.1f, 0.5f, &g);
    ck_assert_float_eq_tol(m.w1[5], before - 0.1f * 0.5f * (before - target), 1e-6f);
    /* mu = 0 and a zero gradient: nothing moves. */
    float keep = m.w2[3];
    pt_mlp_sgd_step(&m, &zero, 0.1f, 0.0f, NULL);
    ck_assert_float_eq(m.w2[3], keep);
    free(pm);
    free(pg);
    free(pz);
}
END_TEST

START_TEST(test_init_deterministic)
{
    pt_mlp_t a, b, c;
    float *pa = alloc_params(784, 128, 10, &a);
    float *pb = alloc_params(784, 128, 10, &b);
    float *pc = alloc_params(784, 128, 10, &c);
    pt_mlp_init(&a, 42);
    pt_mlp_init(&b, 42);
    pt_mlp_init(&c, 43);
    size_t np = pt_mlp_num_params(784, 128, 10);
    ck_assert_int_eq(memcmp(pa, pb, np * sizeof(float)), 0);
    ck_assert_int_ne(memcmp(pa, pc, np * sizeof(float)), 0);
    /* He-uniform bound for fc1, zero biases. */
    float limit = sqrtf(6.0f / 784.0f), max = 0.0f;
    for (size_t i = 0; i < 128 * 784; i++) {
        max = fabsf(a.w1[i]) > max ? fabsf(a.w1[i]) : max;
    }
    ck_assert_float_le(max, limit);
    ck_assert_float_gt(max, 0.9f * limit);
    ck_assert_float_eq(a.b1[0], 0.0f);
    free(pa);
    free(pb);
    free(pc);
}
END_TEST

/* Centralised training on a 12000-example IID share for one epoch reaches > 75% test accuracy,
 * and the same seed gives bit-identical weights. */
START_TEST(test_train_fmnist)
{
    openblas_set_num_threads(1);
    const petal_dataset_t *train = NULL, *test = NULL;
    char err[512] = "";
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 1, &train, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(petal_dataset_load_fmnist(NULL, 0, &test, err, sizeof(err)) == 0, "%s", err);
    uint64_t *idx = NULL, count = 0;
    ck_assert_int_eq(petal_partition_iid(train->n, 5, 0, 42, &idx, &count), 0);
    ck_assert_uint_eq(count, 12000);

    pt_mlp_t m, m2;
    float *p = alloc_params(784, 128, 10, &m);
    float *p2 = alloc_params(784, 128, 10, &m2);
    pt_mlp_init(&m, 42);
    pt_mlp_copy(&m2, &m);
    pt_mlp_work_t w, ew;
    ck_assert_int_eq(pt_mlp_work_alloc(&w, &m, 32), 0);
    ck_assert_int_eq(pt_mlp_work_alloc(&ew, &m, 256), 0);

    double loss0 = 0.0, acc0 = 0.0;
    ck_assert_int_eq(pt_mlp_evaluate(&m, &ew, test, NULL, 0, &loss0, &acc0), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    petal_rng_t r;
    petal_rng_seed(&r, 1);
    double train_loss = 0.0;
    ck_assert_int_eq(
        pt_mlp_train_epoch(&m, &w, train, idx, count, 0.1f, 0.0f, NULL, &r, &train_loss), 0);
    double t_train = elapsed(&t0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double loss = 0.0, acc = 0.0;
    ck_assert_int_eq(pt_mlp_evaluate(&m, &ew, test, NULL, 0, &loss, &acc), 0);
    double t_eval = elapsed(&t0);
    printf("test_mlp: before: loss %.4f acc %.4f; 1 epoch on %llu examples: train loss %.4f, "
           "test loss %.4f, test acc %.4f (train %.2f s, eval of 10000 %.2f s)\n",
           loss0, acc0, (unsigned long long)count, train_loss, loss, acc, t_train, t_eval);
    ck_assert_double_lt(acc0, 0.3);
    ck_assert_double_gt(acc, 0.75);
    ck_assert_double_lt(loss, loss0);
    ck_assert_double_lt(train_loss, 1.0);

    /* The same seed and data give the same weights, bit for bit. */
    petal_rng_seed(&r, 1);
    double train_loss2 = 0.0;
    ck_assert_int_eq(
        pt_mlp_train_epoch(&m2, &w, train, idx, count, 0.1f, 0.0f, NULL, &r, &train_loss2), 0);
    ck_assert_int_eq(memcmp(p, p2, pt_mlp_num_params(784, 128, 10) * sizeof(float)), 0);
    ck_assert_double_eq(train_loss, train_loss2);

    pt_mlp_work_free(&w);
    pt_mlp_work_free(&ew);
    free(p);
    free(p2);
    free(idx);
    petal_dataset_release(train);
    petal_dataset_release(test);
}
END_TEST

START_TEST(test_bad_input)
{
    pt_mlp_t m;
    float *p = alloc_params(784, 128, 10, &m);
    pt_mlp_work_t w;
    ck_assert_int_eq(pt_mlp_work_alloc(&w, &m, 0), PETAL_EINVAL);
    ck_assert_int_eq(pt_mlp_work_alloc(&w, &m, 8), 0);
    /* An index past the dataset is refused, not read. */
    float x[784] = {0};
    uint8_t y[1] = {3};
    petal_dataset_t ds = {1, 784, 10, x, y};
    uint64_t bad[1] = {5};
    double loss = 0.0, acc = 0.0;
    ck_assert_int_eq(pt_mlp_evaluate(&m, &w, &ds, bad, 1, &loss, &acc), PETAL_EINVAL);
    petal_rng_t r;
    petal_rng_seed(&r, 1);
    ck_assert_int_eq(pt_mlp_train_epoch(&m, &w, &ds, bad, 1, 0.1f, 0.0f, NULL, &r, &loss),
                     PETAL_EINVAL);
    pt_mlp_work_free(&w);
    free(p);
}
END_TEST

static Suite *
mlp_suite(void)
{
    Suite *s = suite_create("mlp");
    TCase *tc = tcase_create("math");
    tcase_add_test(tc, test_gradient_finite_difference);
    tcase_add_test(tc, test_proximal_step);
    tcase_add_test(tc, test_init_deterministic);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
    tc = tcase_create("fmnist");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_train_fmnist);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(mlp_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
