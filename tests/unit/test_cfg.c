/* test_cfg.c - petal_data's typed config keys: defaults, strings from a command line, errors. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include <petal/data.h>

/* A ConfigRecord "config" in d holding the n keys and values. */
static const petal_configrecord_t *
config_of(petal_recorddict_t *d, const char *const *keys, const petal_value_t *vals, int n)
{
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");
    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(petal_configrecord_set(c, keys[i], &vals[i]), 0);
    }
    return c;
}

#define S(x) petal_value_str(x, sizeof(x) - 1)

START_TEST(test_numbers)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    const char *keys[6] = {"lr", "epochs", "from-cli", "bad", "half", "big"};
    petal_value_t vals[6] = {
        petal_value_f64(0.05), petal_value_i64(3),         S("0.25"), S("0.1x"),
        petal_value_f64(2.5),  petal_value_u64(UINT64_MAX)};
    const petal_configrecord_t *c = config_of(d, keys, vals, 6);
    double x = -1.0;
    int64_t n = -1;

    /* A missing key or record keeps the default. */
    ck_assert_int_eq(petal_cfg_f64(c, "missing", &x), 0);
    ck_assert(x == -1.0);
    ck_assert_int_eq(petal_cfg_f64(NULL, "lr", &x), 0);
    ck_assert(x == -1.0);
    ck_assert_int_eq(petal_cfg_i64(NULL, "epochs", &n), 0);
    ck_assert_int_eq(n, -1);

    ck_assert_int_eq(petal_cfg_f64(c, "lr", &x), 0);
    ck_assert(x == 0.05);
    ck_assert_int_eq(petal_cfg_f64(c, "epochs", &x), 0); /* ints are numbers */
    ck_assert(x == 3.0);
    ck_assert_int_eq(petal_cfg_f64(c, "from-cli", &x), 0); /* --run-config "from-cli=0.25" */
    ck_assert(x == 0.25);
    ck_assert_int_eq(petal_cfg_f64(c, "bad", &x), PETAL_ETYPE);
    ck_assert(x == 0.25); /* untouched */

    ck_assert_int_eq(petal_cfg_i64(c, "epochs", &n), 0);
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(petal_cfg_i64(c, "half", &n), PETAL_ETYPE);
    ck_assert_int_eq(petal_cfg_i64(c, "from-cli", &n), PETAL_ETYPE); /* "0.25" is no integer */
    ck_assert_int_eq(petal_cfg_i64(c, "big", &n), PETAL_ETYPE);
    ck_assert_int_eq(n, 3);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_bool_and_string)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    const char *keys[5] = {"iid", "drop", "one", "two", "name"};
    petal_value_t vals[5] = {petal_value_bool(1), S("false"), petal_value_i64(1),
                             petal_value_i64(2), S("dirichlet")};
    const petal_configrecord_t *c = config_of(d, keys, vals, 5);
    int b = 7;
    char name[16] = "iid", small[4] = "x";

    ck_assert_int_eq(petal_cfg_bool(c, "missing", &b), 0);
    ck_assert_int_eq(b, 7);
    ck_assert_int_eq(petal_cfg_bool(c, "iid", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(petal_cfg_bool(c, "drop", &b), 0);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(petal_cfg_bool(c, "one", &b), 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(petal_cfg_bool(c, "two", &b), PETAL_ETYPE);
    ck_assert_int_eq(petal_cfg_bool(c, "name", &b), PETAL_ETYPE);

    ck_assert_int_eq(petal_cfg_str(c, "missing", name, sizeof(name)), 0);
    ck_assert_str_eq(name, "iid");
    ck_assert_int_eq(petal_cfg_str(c, "name", name, sizeof(name)), 0);
    ck_assert_str_eq(name, "dirichlet");
    ck_assert_int_eq(petal_cfg_str(c, "name", small, sizeof(small)), PETAL_ETYPE); /* too long */
    ck_assert_str_eq(small, "x");
    ck_assert_int_eq(petal_cfg_str(c, "one", name, sizeof(name)), PETAL_ETYPE);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_partition)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    const char *keys[2] = {"partition-id", "num-partitions"};
    petal_value_t vals[2] = {S("2"), petal_value_i64(5)};
    const petal_configrecord_t *c = config_of(d, keys, vals, 2);
    uint32_t pid = 99, np = 99;
    char err[128] = "";

    /* No node config: partition 0 of 1. */
    ck_assert_int_eq(petal_cfg_partition(NULL, &pid, &np, err, sizeof(err)), 0);
    ck_assert_uint_eq(pid, 0);
    ck_assert_uint_eq(np, 1);
    ck_assert_int_eq(petal_cfg_partition(c, &pid, &np, err, sizeof(err)), 0);
    ck_assert_uint_eq(pid, 2);
    ck_assert_uint_eq(np, 5);
    petal_recorddict_free(d);

    d = petal_recorddict_alloc();
    vals[0] = petal_value_i64(5);
    c = config_of(d, keys, vals, 2);
    ck_assert_int_eq(petal_cfg_partition(c, &pid, &np, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_str_eq(err, "node config: partition-id 5 is not in 0..num-partitions-1 (4)");
    ck_assert_uint_eq(pid, 2); /* untouched */
    petal_recorddict_free(d);

    d = petal_recorddict_alloc();
    vals[0] = S("first");
    c = config_of(d, keys, vals, 2);
    ck_assert_int_eq(petal_cfg_partition(c, &pid, &np, err, sizeof(err)), PETAL_ECONFIG);
    ck_assert_str_eq(err, "node config: \"partition-id\" and \"num-partitions\" must be integers");
    ck_assert_int_eq(petal_cfg_partition(c, &pid, &np, NULL, 0), PETAL_ECONFIG);
    petal_recorddict_free(d);
}
END_TEST

static Suite *
cfg_suite(void)
{
    Suite *s = suite_create("cfg");
    TCase *tc = tcase_create("keys");
    tcase_add_test(tc, test_numbers);
    tcase_add_test(tc, test_bool_and_string);
    tcase_add_test(tc, test_partition);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(cfg_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
