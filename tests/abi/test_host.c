/* test_host.c - the host side plugins call into: contexts and grid dispatch. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include "runtime/config.h"
#include "runtime/context.h"
#include "runtime/grid.h"

/* A holder ("config" ConfigRecord inside a RecordDict) filled from "k=v ..." text. */
static petal_recorddict_t *
holder_from(const char *spec)
{
    char err[256];
    petal_recorddict_t *h = petal_recorddict_alloc();
    ck_assert_ptr_nonnull(h);
    petal_configrecord_t *c = petal_recorddict_add_config(h, PT_CONFIG_HOLDER_NAME);
    ck_assert_ptr_nonnull(c);
    ck_assert_msg(pt_config_parse_overrides(spec, NULL, c, err, sizeof(err)) == 0, "%s", err);
    return h;
}

/* ---- contexts ------------------------------------------------------------------------------ */

START_TEST(test_context_ids_and_configs)
{
    pt_run_config_t *rc = pt_run_config_alloc(holder_from("lr=0.1 num-server-rounds=3"));
    ck_assert_ptr_nonnull(rc);
    petal_context_t *c = pt_context_alloc(7, 42, rc, holder_from("partition-id=2"));
    ck_assert_ptr_nonnull(c);
    pt_run_config_release(rc); /* the context keeps its own reference */

    ck_assert_uint_eq(petal_context_run_id(c), 7);
    ck_assert_uint_eq(petal_context_node_id(c), 42);
    petal_value_t v;
    ck_assert_int_eq(petal_configrecord_get(petal_context_run_config(c), "lr", &v), 0);
    ck_assert_uint_eq(v.type, PETAL_VALUE_DOUBLE);
    ck_assert(v.as.f64 == 0.1);
    ck_assert_int_eq(petal_configrecord_get(petal_context_node_config(c), "partition-id", &v), 0);
    ck_assert_int_eq(v.as.i64, 2);
    ck_assert_ptr_null(pt_context_grid(c));
    pt_context_free(c);
}
END_TEST

START_TEST(test_context_empty_configs_are_not_null)
{
    petal_context_t *c = pt_context_alloc(1, 2, NULL, NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(petal_context_run_config(c));
    ck_assert_ptr_nonnull(petal_context_node_config(c));
    ck_assert_uint_eq(petal_configrecord_count(petal_context_node_config(c)), 0);
    petal_value_t v;
    ck_assert_int_ne(petal_configrecord_get(petal_context_run_config(c), "x", &v), 0);
    pt_context_free(c);
    /* NULL is tolerated by the getters a plugin may call */
    ck_assert_uint_eq(petal_context_run_id(NULL), 0);
    ck_assert_ptr_nonnull(petal_context_run_config(NULL));
    ck_assert_ptr_null(petal_context_state(NULL));
    petal_context_set_error(NULL, "ignored %d", 1);
    ck_assert_str_eq(pt_context_error(NULL), "");
}
END_TEST

START_TEST(test_context_state_is_lazy_and_persistent)
{
    petal_context_t *c = pt_context_alloc(1, 5, NULL, NULL);
    petal_recorddict_t *s1 = petal_context_state(c);
    ck_assert_ptr_nonnull(s1);
    petal_configrecord_t *cr = petal_recorddict_add_config(s1, "counters");
    petal_value_t v = petal_value_i64(9);
    ck_assert_int_eq(petal_configrecord_set(cr, "rounds", &v), 0);

    petal_recorddict_t *s2 = petal_context_state(c); /* a later round */
    ck_assert_ptr_eq(s1, s2);
    ck_assert_int_eq(petal_configrecord_get(petal_recorddict_config(s2, "counters"), "rounds", &v),
                     0);
    ck_assert_int_eq(v.as.i64, 9);
    pt_context_free(c);
}
END_TEST

START_TEST(test_context_set_error)
{
    petal_context_t *c = pt_context_alloc(1, 5, NULL, NULL);
    ck_assert_str_eq(pt_context_error(c), "");
    petal_context_set_error(c, "bad shape %dx%d for '%s'", 3, 4, "w");
    ck_assert_str_eq(pt_context_error(c), "bad shape 3x4 for 'w'");
    petal_context_set_error(c, "second");
    ck_assert_str_eq(pt_context_error(c), "second");
    pt_context_clear_error(c);
    ck_assert_str_eq(pt_context_error(c), "");

    char longer[2000];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    petal_context_set_error(c, "%s", longer);
    size_t n = strlen(pt_context_error(c));
    ck_assert_uint_gt(n, 255);
    ck_assert_uint_lt(n, sizeof(longer) - 1); /* cut, not overflowing */
    pt_context_free(c);
}
END_TEST

START_TEST(test_run_config_shared_by_contexts)
{
    pt_run_config_t *rc = pt_run_config_alloc(holder_from("note='shared'"));
    petal_context_t *a = pt_context_alloc(1, 1, rc, NULL);
    petal_context_t *b = pt_context_alloc(1, 2, rc, NULL);
    pt_run_config_release(rc);
    ck_assert_ptr_eq(petal_context_run_config(a), petal_context_run_config(b));
    pt_context_free(a);
    petal_value_t v; /* still alive through b */
    ck_assert_int_eq(petal_configrecord_get(petal_context_run_config(b), "note", &v), 0);
    ck_assert_str_eq(v.as.str, "shared");
    pt_context_free(b);
}
END_TEST

START_TEST(test_run_config_holder_rules)
{
    /* a holder without "config" gets an empty one */
    petal_recorddict_t *h = petal_recorddict_alloc();
    pt_run_config_t *rc = pt_run_config_alloc(h);
    ck_assert_ptr_nonnull(rc);
    ck_assert_uint_eq(petal_configrecord_count(pt_run_config_get(rc)), 0);
    pt_run_config_release(rc);

    /* "config" holding another kind of record is refused, and the holder stays the caller's */
    h = petal_recorddict_alloc();
    ck_assert_ptr_nonnull(petal_recorddict_add_arrays(h, PT_CONFIG_HOLDER_NAME));
    ck_assert_ptr_null(pt_run_config_alloc(h));
    petal_recorddict_free(h);
    ck_assert_ptr_null(pt_run_config_alloc(NULL));
}
END_TEST

START_TEST(test_many_contexts)
{
    /* simulation keeps one context per virtual node: they must be cheap */
    enum { N = 100000 };
    pt_run_config_t *rc = pt_run_config_alloc(holder_from("lr=0.5"));
    petal_context_t **cs = malloc(N * sizeof(*cs));
    for (int i = 0; i < N; i++) {
        cs[i] = pt_context_alloc(1, (uint64_t)i + 1, rc, NULL);
        ck_assert_ptr_nonnull(cs[i]);
    }
    pt_run_config_release(rc);
    ck_assert_uint_eq(petal_context_node_id(cs[N - 1]), N);
    for (int i = 0; i < N; i++) {
        pt_context_free(cs[i]);
    }
    free(cs);
}
END_TEST

/* ---- grid dispatch --------------------------------------------------------------------------- */

typedef struct fake_grid {
    petal_grid_t base;
    int calls;
    uint32_t last_round;
} fake_grid_t;

static int64_t
fake_node_ids(petal_grid_t *g, uint64_t *ids, uint64_t cap)
{
    ((fake_grid_t *)g)->calls++;
    for (uint64_t i = 0; i < cap && i < 3; i++) {
        ids[i] = 10 + i;
    }
    return 3;
}

static int64_t
fake_send(petal_grid_t *g, petal_message_t **msgs, uint64_t n, double timeout, petal_reply_cb cb,
          void *cb_ctx)
{
    (void)timeout;
    (void)cb;
    (void)cb_ctx;
    ((fake_grid_t *)g)->calls++;
    for (uint64_t i = 0; i < n; i++) {
        petal_message_free(msgs[i]);
    }
    return (int64_t)n;
}

static int32_t
fake_record(petal_grid_t *g, uint32_t round, const char *phase, const petal_metricrecord_t *m)
{
    (void)phase;
    (void)m;
    ((fake_grid_t *)g)->calls++;
    ((fake_grid_t *)g)->last_round = round;
    return 0;
}

static const pt_grid_ops_t partial_ops = {
    .node_ids = fake_node_ids,
    .send_and_stream = fake_send,
    .record_metrics = fake_record,
};

static int32_t
noop_cb(void *ctx, const petal_message_t *reply)
{
    (void)ctx;
    (void)reply;
    return 0;
}

START_TEST(test_grid_null_grid_is_einval)
{
    uint64_t ids[2];
    petal_message_t *reply = NULL;
    ck_assert_int_eq(petal_grid_node_ids(NULL, ids, 2), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_send_and_stream(NULL, NULL, 0, 1.0, noop_cb, NULL), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_push(NULL, NULL), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_pull(NULL, 1, 1.0, &reply), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_record_metrics(NULL, 1, "train", NULL), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_set_final_arrays(NULL, NULL), PETAL_EINVAL);
}
END_TEST

START_TEST(test_grid_missing_op_is_estate)
{
    petal_grid_t none = {NULL};
    fake_grid_t g = {{&partial_ops}, 0, 0};
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(d, "a");
    petal_message_t *reply = NULL;
    uint64_t ids[1];

    ck_assert_int_eq(petal_grid_node_ids(&none, ids, 1), PETAL_ESTATE);
    petal_message_t *m = petal_message_alloc(petal_recorddict_alloc(), "train", 1, "", 10.0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(petal_grid_push(&g.base, m), PETAL_ESTATE); /* not taken: still ours */
    petal_message_free(m);
    ck_assert_int_eq(petal_grid_pull(&g.base, 1, 1.0, &reply), PETAL_ESTATE);
    ck_assert_int_eq(petal_grid_set_final_arrays(&g.base, ar), PETAL_ESTATE);
    ck_assert_int_eq(g.calls, 0);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_grid_dispatches_and_validates)
{
    fake_grid_t g = {{&partial_ops}, 0, 0};
    uint64_t ids[8] = {0};
    ck_assert_int_eq(petal_grid_node_ids(&g.base, ids, 8), 3);
    ck_assert_uint_eq(ids[2], 12);
    ck_assert_int_eq(petal_grid_node_ids(&g.base, NULL, 0), 3); /* count only */
    ck_assert_int_eq(petal_grid_node_ids(&g.base, NULL, 4), PETAL_EINVAL);

    petal_message_t *m = petal_message_alloc(petal_recorddict_alloc(), "train", 10, "", 30.0);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(petal_grid_send_and_stream(&g.base, &m, 1, -1.0, noop_cb, NULL), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_send_and_stream(&g.base, &m, 1, 5.0, NULL, NULL), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_send_and_stream(&g.base, &m, 1, 5.0, noop_cb, NULL), 1);

    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(d, "m");
    ck_assert_int_eq(petal_grid_record_metrics(&g.base, 0, "train", mr), PETAL_EINVAL);
    ck_assert_int_eq(petal_grid_record_metrics(&g.base, 2, "train", mr), 0);
    ck_assert_uint_eq(g.last_round, 2);
    petal_recorddict_free(d);
    ck_assert_int_eq(g.calls, 4);
}
END_TEST

static Suite *
host_suite(void)
{
    Suite *s = suite_create("host");
    TCase *tc = tcase_create("context");
    tcase_add_test(tc, test_context_ids_and_configs);
    tcase_add_test(tc, test_context_empty_configs_are_not_null);
    tcase_add_test(tc, test_context_state_is_lazy_and_persistent);
    tcase_add_test(tc, test_context_set_error);
    tcase_add_test(tc, test_run_config_shared_by_contexts);
    tcase_add_test(tc, test_run_config_holder_rules);
    tcase_add_test(tc, test_many_contexts);
    suite_add_tcase(s, tc);
    tc = tcase_create("grid");
    tcase_add_test(tc, test_grid_null_grid_is_einval);
    tcase_add_test(tc, test_grid_missing_op_is_estate);
    tcase_add_test(tc, test_grid_dispatches_and_validates);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(host_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
