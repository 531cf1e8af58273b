/* test_fedavg.c - FedAvg folds, reply ordering, sampling, and the strategy loop on a fake grid. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/strategy.h>

#include "actors/serverapp/aggregate.h"
#include "actors/serverapp/default_server.h"
#include "runtime/actor.h"
#include "runtime/context.h"
#include "runtime/grid.h"
#include "runtime/message.h"

#include "fake_grid.h"

/* ---- Helpers -------------------------------------------------------------------------------- */

static uint64_t
test_rand(uint64_t *s)
{
    return pt_splitmix64(s);
}

/* A value whose magnitude varies over 12 decades, so that the order of a sum matters. */
static double
wild_value(uint64_t *s)
{
    double u = (double)(test_rand(s) >> 11) / 9007199254740992.0; /* [0, 1) */
    int e = (int)(test_rand(s) % 13) - 6;
    return (2.0 * u - 1.0) * pow(10.0, e);
}

/* Adds a float32 or float64 array filled from vals (as doubles). */
static petal_array_t *
add_array(petal_arrayrecord_t *r, const char *name, int32_t dtype, uint32_t ndim,
          const uint64_t *shape, const double *vals)
{
    petal_array_t *a = petal_arrayrecord_add(r, name, dtype, ndim, shape);
    uint64_t n;

    ck_assert_ptr_nonnull(a);
    n = petal_array_numel(a);
    if (dtype == PETAL_DTYPE_FLOAT32) {
        float *p = petal_array_data_mut(a);
        for (uint64_t i = 0; i < n; i++) {
            p[i] = vals != NULL ? (float)vals[i] : 0.0f;
        }
    } else if (dtype == PETAL_DTYPE_FLOAT64) {
        double *p = petal_array_data_mut(a);
        for (uint64_t i = 0; i < n; i++) {
            p[i] = vals != NULL ? vals[i] : 0.0;
        }
    }
    return a;
}

/* A reply message from `node` with one "arrays" record (filled by the caller through the
 * returned record) and "metrics" {num-examples}. */
static petal_message_t *
reply_from(uint64_t node, petal_recorddict_t *content)
{
    petal_metadata_t md;
    petal_message_t *m;

    pt_metadata_init(&md);
    md.src_node_id = node;
    md.dst_node_id = PETAL_SERVER_NODE_ID;
    snprintf(md.message_type, sizeof(md.message_type), "train");
    m = pt_message_alloc_meta(&md, content);
    ck_assert_ptr_nonnull(m);
    return m;
}

static petal_message_t *
error_from(uint64_t node, int32_t code, const char *reason)
{
    petal_metadata_t md;
    petal_message_t *m;

    pt_metadata_init(&md);
    md.src_node_id = node;
    snprintf(md.message_type, sizeof(md.message_type), "train");
    m = pt_message_alloc_error(&md, code, reason);
    ck_assert_ptr_nonnull(m);
    return m;
}

static int
has_metric(const petal_metricrecord_t *m, const char *name)
{
    petal_value_t v;
    return petal_metricrecord_get(m, name, &v) == 0;
}

/* ---- The accumulator on hand-computed cases ---------------------------------------------------
 */

START_TEST(test_acc_weights_1_3)
{
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_recorddict_t *r1 = petal_recorddict_alloc();
    petal_recorddict_t *r2 = petal_recorddict_alloc();
    petal_recorddict_t *o = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_arrayrecord_t *a1 = petal_recorddict_add_arrays(r1, "arrays");
    petal_arrayrecord_t *a2 = petal_recorddict_add_arrays(r2, "arrays");
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(o, "arrays");
    uint64_t sw[1] = {4};
    uint64_t sb[2] = {2, 1};
    double x1[4] = {1, 2, 3, 4};
    double x2[4] = {5, 6, 7, 8};
    double b1[2] = {-1, 10};
    double b2[2] = {3, 2};
    pt_fedavg_acc_t *acc = NULL;
    char why[256] = "";
    const float *w;
    const float *b;

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 1, sw, NULL);
    add_array(ga, "b", PETAL_DTYPE_FLOAT32, 2, sb, NULL);
    add_array(a1, "w", PETAL_DTYPE_FLOAT32, 1, sw, x1);
    add_array(a1, "b", PETAL_DTYPE_FLOAT32, 2, sb, b1);
    /* Same names in another order: matched by name. */
    add_array(a2, "b", PETAL_DTYPE_FLOAT32, 2, sb, b2);
    add_array(a2, "w", PETAL_DTYPE_FLOAT32, 1, sw, x2);

    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1u << 20, why, sizeof(why), &acc), 0);
    ck_assert_uint_eq(pt_fedavg_acc_numel(acc), 6);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, a1, 1.0, NULL, why, sizeof(why)), 0);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, a2, 3.0, NULL, why, sizeof(why)), 0);
    ck_assert_uint_eq(pt_fedavg_acc_count(acc), 2);
    ck_assert(pt_fedavg_acc_total_weight(acc) == 4.0);
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), 0);

    /* (1 * x1 + 3 * x2) / 4 */
    w = petal_array_data(petal_arrayrecord_get(out, "w"));
    b = petal_array_data(petal_arrayrecord_get(out, "b"));
    ck_assert(w[0] == 4.0f && w[1] == 5.0f && w[2] == 6.0f && w[3] == 7.0f);
    ck_assert(b[0] == 2.0f && b[1] == 4.0f);
    ck_assert_str_eq(petal_arrayrecord_name_at(out, 0), "w"); /* the model's order */
    ck_assert_int_eq(petal_array_dtype(petal_arrayrecord_get(out, "b")), PETAL_DTYPE_FLOAT32);
    ck_assert_uint_eq(petal_array_ndim(petal_arrayrecord_get(out, "b")), 2);

    pt_fedavg_acc_free(acc);
    petal_recorddict_free(g);
    petal_recorddict_free(r1);
    petal_recorddict_free(r2);
    petal_recorddict_free(o);
}
END_TEST

START_TEST(test_acc_float64)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(d, "g");
    petal_arrayrecord_t *a[3] = {petal_recorddict_add_arrays(d, "r0"),
                                 petal_recorddict_add_arrays(d, "r1"),
                                 petal_recorddict_add_arrays(d, "r2")};
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(d, "out");
    uint64_t shape[1] = {3};
    double v[3][3] = {{0.1, 1e300, -2}, {0.2, -1e300, 4}, {0.7, 0, 8}};
    double weights[3] = {2, 2, 4};
    pt_fedavg_acc_t *acc = NULL;
    char why[256];
    const double *y;

    add_array(ga, "x", PETAL_DTYPE_FLOAT64, 1, shape, NULL);
    for (int i = 0; i < 3; i++) {
        add_array(a[i], "x", PETAL_DTYPE_FLOAT64, 1, shape, v[i]);
    }
    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1u << 20, why, sizeof(why), &acc), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pt_fedavg_acc_fold(acc, a[i], weights[i], NULL, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), 0);
    y = petal_array_data(petal_arrayrecord_get(out, "x"));
    ck_assert_int_eq(petal_array_dtype(petal_arrayrecord_get(out, "x")), PETAL_DTYPE_FLOAT64);
    /* Exactly what the same double arithmetic gives, and close to the exact values. */
    ck_assert(y[0] == (2 * 0.1 + 2 * 0.2 + 4 * 0.7) / 8);
    ck_assert(fabs(y[0] - 0.425) < 1e-15);
    ck_assert(y[1] == 0.0);
    ck_assert(y[2] == (2 * -2.0 + 2 * 4.0 + 4 * 8.0) / 8);
    pt_fedavg_acc_free(acc);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_acc_rejects_mismatches)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(d, "g");
    petal_arrayrecord_t *shape_bad = petal_recorddict_add_arrays(d, "shape");
    petal_arrayrecord_t *rank_bad = petal_recorddict_add_arrays(d, "rank");
    petal_arrayrecord_t *dtype_bad = petal_recorddict_add_arrays(d, "dtype");
    petal_arrayrecord_t *name_bad = petal_recorddict_add_arrays(d, "name");
    petal_arrayrecord_t *extra = petal_recorddict_add_arrays(d, "extra");
    petal_arrayrecord_t *good = petal_recorddict_add_arrays(d, "good");
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(d, "out");
    uint64_t s4[1] = {4};
    uint64_t s5[1] = {5};
    uint64_t s22[2] = {2, 2};
    double ones[5] = {1, 1, 1, 1, 1};
    double vals[4] = {1, 2, 3, 4};
    pt_fedavg_acc_t *acc = NULL;
    char why[256];
    const float *y;

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 1, s4, NULL);
    add_array(shape_bad, "w", PETAL_DTYPE_FLOAT32, 1, s5, ones);
    add_array(rank_bad, "w", PETAL_DTYPE_FLOAT32, 2, s22, ones);
    add_array(dtype_bad, "w", PETAL_DTYPE_FLOAT64, 1, s4, ones);
    add_array(name_bad, "v", PETAL_DTYPE_FLOAT32, 1, s4, ones);
    add_array(extra, "w", PETAL_DTYPE_FLOAT32, 1, s4, ones);
    add_array(extra, "v", PETAL_DTYPE_FLOAT32, 1, s4, ones);
    add_array(good, "w", PETAL_DTYPE_FLOAT32, 1, s4, vals);

    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1u << 20, why, sizeof(why), &acc), 0);
    why[0] = '\0';
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, shape_bad, 1, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_msg(strstr(why, "'w'") && strstr(why, "[5]") && strstr(why, "[4]"), "%s", why);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, rank_bad, 1, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_msg(strstr(why, "[2, 2]") != NULL, "%s", why);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, dtype_bad, 1, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_msg(strstr(why, "float64") && strstr(why, "float32"), "%s", why);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, name_bad, 1, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_msg(strstr(why, "'w' is missing") != NULL, "%s", why);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, extra, 1, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, good, 0.0, NULL, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, good, NAN, NULL, why, sizeof(why)), PETAL_EINVAL);
    /* Nothing was folded so far. */
    ck_assert_uint_eq(pt_fedavg_acc_count(acc), 0);
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), PETAL_ESTATE);
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, good, 7, NULL, why, sizeof(why)), 0);
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), 0);
    y = petal_array_data(petal_arrayrecord_get(out, "w"));
    ck_assert(y[0] == 1.0f && y[1] == 2.0f && y[2] == 3.0f && y[3] == 4.0f);
    pt_fedavg_acc_free(acc);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_acc_refuses_int_model)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(d, "g");
    uint64_t s[1] = {3};
    pt_fedavg_acc_t *acc = NULL;
    char why[256] = "";

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 1, s, NULL);
    ck_assert_ptr_nonnull(petal_arrayrecord_add(ga, "steps", PETAL_DTYPE_INT64, 1, s));
    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1u << 20, why, sizeof(why), &acc), PETAL_ETYPE);
    ck_assert_ptr_null(acc);
    ck_assert_msg(strstr(why, "'steps'") && strstr(why, "int64"), "%s", why);
    petal_recorddict_free(d);
}
END_TEST

/* Several arrays of awkward sizes (chunks straddle array boundaries), folded on a 2-worker
 * pool and serially: the bytes must be identical. */
START_TEST(test_acc_parallel_matches_serial)
{
    pt_runtime_opts_t ro = {.workers = 2};
    pt_runtime_t *rt = NULL;
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(d, "g");
    petal_arrayrecord_t *rep[4];
    petal_arrayrecord_t *out_par = petal_recorddict_add_arrays(d, "out-par");
    petal_arrayrecord_t *out_ser = petal_recorddict_add_arrays(d, "out-ser");
    uint64_t sizes[4] = {70001, 3, 131077, 65536};
    const char *names[4] = {"a", "b", "c", "d"};
    int32_t dtypes[4] = {PETAL_DTYPE_FLOAT32, PETAL_DTYPE_FLOAT64, PETAL_DTYPE_FLOAT32,
                         PETAL_DTYPE_FLOAT64};
    double *vals = malloc(131077 * sizeof(double));
    uint64_t seed = 42;
    pt_fedavg_acc_t *par = NULL;
    pt_fedavg_acc_t *ser = NULL;
    char why[256];

    ck_assert_ptr_nonnull(vals);
    ck_assert_int_eq(pt_runtime_alloc(&ro, &rt), 0);
    for (int j = 0; j < 4; j++) {
        add_array(ga, names[j], dtypes[j], 1, &sizes[j], NULL);
    }
    for (int r = 0; r < 4; r++) {
        char name[16];
        snprintf(name, sizeof(name), "r%d", r);
        rep[r] = petal_recorddict_add_arrays(d, name);
        for (int j = 0; j < 4; j++) {
            for (uint64_t i = 0; i < sizes[j]; i++) {
                vals[i] = wild_value(&seed);
            }
            add_array(rep[r], names[j], dtypes[j], 1, &sizes[j], vals);
        }
    }
    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1, why, sizeof(why), &par), 0);
    ck_assert_int_eq(pt_fedavg_acc_alloc(ga, 1, why, sizeof(why), &ser), 0);
    for (int r = 0; r < 4; r++) {
        ck_assert_int_eq(pt_fedavg_acc_fold(par, rep[r], r + 1.5, rt, why, sizeof(why)), 0);
        ck_assert_int_eq(pt_fedavg_acc_fold(ser, rep[r], r + 1.5, NULL, why, sizeof(why)), 0);
    }
    ck_assert_int_eq(pt_fedavg_acc_finish(par, out_par, rt), 0);
    ck_assert_int_eq(pt_fedavg_acc_finish(ser, out_ser, NULL), 0);
    for (int j = 0; j < 4; j++) {
        const petal_array_t *x = petal_arrayrecord_get(out_par, names[j]);
        const petal_array_t *y = petal_arrayrecord_get(out_ser, names[j]);
        ck_assert_uint_eq(petal_array_nbytes(x), petal_array_nbytes(y));
        ck_assert(memcmp(petal_array_data(x), petal_array_data(y), petal_array_nbytes(x)) == 0);
    }
    pt_fedavg_acc_free(par);
    pt_fedavg_acc_free(ser);
    petal_recorddict_free(d);
    free(vals);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

/* ---- FedAvg through the strategy ops and the reply ordering -----------------------------------
 */

#define NREP 12
#define NELEM 257

typedef struct phase_fixture {
    petal_strategy_t *s;
    petal_recorddict_t *global;
    petal_message_t *replies[NREP];
    uint64_t nodes[NREP];
} phase_fixture_t;

static void
fixture_init(phase_fixture_t *f, int deterministic)
{
    petal_strategy_options_t o;
    petal_arrayrecord_t *ga;
    uint64_t shape[1] = {NELEM};
    double vals[NELEM];
    uint64_t seed = 7;

    petal_strategy_options_init(&o);
    o.deterministic = deterministic;
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &f->s), 0);
    f->global = petal_recorddict_alloc();
    ga = petal_recorddict_add_arrays(f->global, "arrays");
    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 1, shape, NULL);
    for (int r = 0; r < NREP; r++) {
        petal_recorddict_t *c = petal_recorddict_alloc();
        petal_arrayrecord_t *a = petal_recorddict_add_arrays(c, "arrays");
        petal_metricrecord_t *m = petal_recorddict_add_metrics(c, "metrics");
        for (int i = 0; i < NELEM; i++) {
            vals[i] = wild_value(&seed);
        }
        add_array(a, "w", PETAL_DTYPE_FLOAT32, 1, shape, vals);
        set_i64(m, "num-examples", 1 + (int64_t)(test_rand(&seed) % 1000));
        set_f64(m, "loss", wild_value(&seed));
        f->nodes[r] = 1000 + 17 * (uint64_t)r; /* send order: r */
        f->replies[r] = reply_from(f->nodes[r], c);
    }
}

static void
fixture_fini(phase_fixture_t *f)
{
    for (int r = 0; r < NREP; r++) {
        petal_message_free(f->replies[r]);
    }
    petal_recorddict_free(f->global);
    petal_strategy_free(f->s);
}

/* Runs a train phase with the replies delivered in `order` (NULL: skip that position); returns
 * a RecordDict with "arrays" and "metrics" (the caller frees it). */
static petal_recorddict_t *
run_fold(phase_fixture_t *f, const int *order, int n, uint64_t *max_held, uint64_t *failures)
{
    petal_round_info_t info;
    const petal_aggregate_ops_t *ops = &f->s->ops->aggregate_train;
    petal_recorddict_t *out = petal_recorddict_alloc();
    petal_arrayrecord_t *oa = petal_recorddict_add_arrays(out, "arrays");
    petal_metricrecord_t *om = petal_recorddict_add_metrics(out, "metrics");
    pt_phase_t *ph = NULL;
    void *agg = NULL;

    memset(&info, 0, sizeof(info));
    info.round = 1;
    info.phase = "train";
    info.arrays = petal_recorddict_arrays(f->global, "arrays");
    info.nodes = f->nodes;
    info.num_nodes = NREP;
    ck_assert_int_eq(ops->begin(f->s, &info, &agg), 0);
    ck_assert_int_eq(pt_phase_alloc(f->s, ops, agg, &info, f->s->opts.deterministic, &ph), 0);
    for (int i = 0; i < n; i++) {
        pt_phase_reply(ph, f->replies[order[i]]);
    }
    pt_phase_close(ph);
    *max_held = pt_phase_max_held(ph);
    *failures = pt_phase_failures(ph);
    ck_assert_int_eq(ops->end(f->s, agg, oa, om), 0);
    ops->free(f->s, agg);
    pt_phase_free(ph);
    return out;
}

static int
same_arrays(const petal_recorddict_t *a, const petal_recorddict_t *b)
{
    const petal_array_t *x = petal_arrayrecord_get(petal_recorddict_arrays(a, "arrays"), "w");
    const petal_array_t *y = petal_arrayrecord_get(petal_recorddict_arrays(b, "arrays"), "w");
    return memcmp(petal_array_data(x), petal_array_data(y), petal_array_nbytes(x)) == 0;
}

START_TEST(test_out_of_order_is_bit_identical)
{
    phase_fixture_t f;
    int in_order[NREP];
    int reversed[NREP];
    int shuffled[NREP];
    uint64_t seed = 99;
    uint64_t held;
    uint64_t failures;
    petal_recorddict_t *a;
    petal_recorddict_t *b;
    petal_recorddict_t *c;

    for (int i = 0; i < NREP; i++) {
        in_order[i] = i;
        reversed[i] = NREP - 1 - i;
        shuffled[i] = i;
    }
    for (int i = NREP - 1; i > 0; i--) {
        int j = (int)(test_rand(&seed) % (uint64_t)(i + 1));
        int t = shuffled[i];
        shuffled[i] = shuffled[j];
        shuffled[j] = t;
    }
    fixture_init(&f, 1);
    a = run_fold(&f, in_order, NREP, &held, &failures);
    ck_assert_uint_eq(held, 0);
    ck_assert_uint_eq(failures, 0);
    b = run_fold(&f, reversed, NREP, &held, &failures);
    ck_assert_uint_eq(held, NREP - 1); /* the worst case: all wait for the first */
    c = run_fold(&f, shuffled, NREP, &held, &failures);
    ck_assert(same_arrays(a, b));
    ck_assert(same_arrays(a, c));
    ck_assert(metric_f64(petal_recorddict_metrics(a, "metrics"), "loss") ==
              metric_f64(petal_recorddict_metrics(b, "metrics"), "loss"));
    /* Held replies were released: only the fixture's reference is left. */
    for (int i = 0; i < NREP; i++) {
        ck_assert_uint_eq(pt_message_refs(f.replies[i]), 1);
    }
    petal_recorddict_free(a);
    petal_recorddict_free(b);
    petal_recorddict_free(c);
    fixture_fini(&f);
}
END_TEST

START_TEST(test_fold_on_arrival_holds_nothing)
{
    phase_fixture_t f;
    int reversed[NREP];
    int in_order[NREP];
    uint64_t held;
    uint64_t failures;
    petal_recorddict_t *a;
    petal_recorddict_t *b;
    const float *x;
    const float *y;

    for (int i = 0; i < NREP; i++) {
        reversed[i] = NREP - 1 - i;
        in_order[i] = i;
    }
    fixture_init(&f, 0);
    a = run_fold(&f, reversed, NREP, &held, &failures);
    ck_assert_uint_eq(held, 0);
    b = run_fold(&f, in_order, NREP, &held, &failures);
    x = petal_array_data(petal_arrayrecord_get(petal_recorddict_arrays(a, "arrays"), "w"));
    y = petal_array_data(petal_arrayrecord_get(petal_recorddict_arrays(b, "arrays"), "w"));
    for (int i = 0; i < NELEM; i++) {
        ck_assert(fabs((double)x[i] - (double)y[i]) <= 1e-6 * (fabs((double)y[i]) + 1e-6));
    }
    petal_recorddict_free(a);
    petal_recorddict_free(b);
    fixture_fini(&f);
}
END_TEST

/* An error reply at the head releases the replies held behind it; a missing one counts as a
 * failure at close. */
START_TEST(test_failures_release_held_replies)
{
    phase_fixture_t f;
    petal_round_info_t info;
    const petal_aggregate_ops_t *ops;
    petal_message_t *err;
    pt_phase_t *ph = NULL;
    void *agg = NULL;

    fixture_init(&f, 1);
    ops = &f.s->ops->aggregate_train;
    memset(&info, 0, sizeof(info));
    info.round = 3;
    info.phase = "train";
    info.arrays = petal_recorddict_arrays(f.global, "arrays");
    info.nodes = f.nodes;
    info.num_nodes = NREP;
    ck_assert_int_eq(ops->begin(f.s, &info, &agg), 0);
    ck_assert_int_eq(pt_phase_alloc(f.s, ops, agg, &info, 1, &ph), 0);
    for (int r = 2; r < NREP; r++) {
        ck_assert_int_eq(pt_phase_reply(ph, f.replies[r]), 0);
    }
    ck_assert_uint_eq(pt_phase_successes(ph), 0); /* all waiting for positions 0 and 1 */
    ck_assert_uint_eq(pt_message_refs(f.replies[5]), 2);
    err = error_from(f.nodes[0], PETAL_E_NODE_UNAVAILABLE, "heartbeat lost");
    pt_phase_reply(ph, err);
    petal_message_free(err);
    ck_assert_uint_eq(pt_phase_successes(ph), 0); /* position 1 still missing */
    pt_phase_reply(ph, f.replies[4]);             /* a duplicate is ignored */
    pt_phase_close(ph);                           /* position 1 never replies */
    ck_assert_uint_eq(pt_phase_successes(ph), NREP - 2);
    ck_assert_uint_eq(pt_phase_failures(ph), 2);
    ck_assert_uint_eq(pt_message_refs(f.replies[5]), 1);
    ck_assert_msg(strstr(pt_phase_failure_text(ph), "node 1000: NODE_UNAVAILABLE: heartbeat lost"),
                  "%s", pt_phase_failure_text(ph));
    ck_assert_msg(strstr(pt_phase_failure_text(ph), "node 1017: no reply"), "%s",
                  pt_phase_failure_text(ph));
    ops->free(f.s, agg);
    pt_phase_free(ph);
    fixture_fini(&f);
}
END_TEST

/* A bad reply (shape, num-examples) is a failure with a reason, never a crash. */
START_TEST(test_bad_replies_are_failures)
{
    phase_fixture_t f;
    petal_round_info_t info;
    const petal_aggregate_ops_t *ops;
    pt_phase_t *ph = NULL;
    void *agg = NULL;
    uint64_t nodes[6] = {1, 2, 3, 4, 5, 6};
    uint64_t s3[1] = {3};
    uint64_t s257[1] = {NELEM};
    petal_message_t *m[6];
    const char *text;

    fixture_init(&f, 1);
    ops = &f.s->ops->aggregate_train;
    for (int i = 0; i < 6; i++) {
        petal_recorddict_t *c = petal_recorddict_alloc();
        petal_arrayrecord_t *a = petal_recorddict_add_arrays(c, "arrays");
        petal_metricrecord_t *mr = petal_recorddict_add_metrics(c, "metrics");
        add_array(a, "w", PETAL_DTYPE_FLOAT32, 1, i == 0 ? s3 : s257, NULL);
        if (i == 1) {
            set_i64(mr, "num-examples", 0);
        } else if (i == 2) {
            set_f64(mr, "num-examples", 10.0);
        } else if (i == 3) {
            set_i64(mr, "other", 10);
        } else {
            set_i64(mr, "num-examples", 10);
        }
        m[i] = reply_from(nodes[i], c);
    }
    { /* node 5: no ArrayRecord at all */
        petal_recorddict_t *c = petal_recorddict_alloc();
        set_i64(petal_recorddict_add_metrics(c, "metrics"), "num-examples", 3);
        petal_message_free(m[4]);
        m[4] = reply_from(nodes[4], c);
    }
    memset(&info, 0, sizeof(info));
    info.round = 1;
    info.phase = "train";
    info.arrays = petal_recorddict_arrays(f.global, "arrays");
    info.nodes = nodes;
    info.num_nodes = 6;
    ck_assert_int_eq(ops->begin(f.s, &info, &agg), 0);
    ck_assert_int_eq(pt_phase_alloc(f.s, ops, agg, &info, 1, &ph), 0);
    for (int i = 5; i >= 0; i--) {
        pt_phase_reply(ph, m[i]);
    }
    pt_phase_close(ph);
    ck_assert_uint_eq(pt_phase_successes(ph), 1);
    ck_assert_uint_eq(pt_phase_failures(ph), 5);
    text = pt_phase_failure_text(ph);
    ck_assert_msg(strstr(text, "node 1: bad reply: array 'w': shape [3]"), "%s", text);
    ck_assert_msg(strstr(text, "node 2: bad reply: metric 'num-examples' must be a positive"), "%s",
                  text);
    ck_assert_msg(strstr(text, "node 3: bad reply: metric 'num-examples' must be"), "%s", text);
    ck_assert_msg(strstr(text, "node 4: bad reply: metric 'num-examples' is missing"), "%s", text);
    ck_assert_msg(strstr(text, "node 5: bad reply: no ArrayRecord 'arrays'"), "%s", text);
    ops->free(f.s, agg);
    pt_phase_free(ph);
    for (int i = 0; i < 6; i++) {
        petal_message_free(m[i]);
    }
    fixture_fini(&f);
}
END_TEST

START_TEST(test_metrics_weighted_mean)
{
    const petal_metrics_aggr_t *agg = petal_metrics_aggr_weighted_mean();
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *m1 = petal_recorddict_add_metrics(d, "m1");
    petal_metricrecord_t *m2 = petal_recorddict_add_metrics(d, "m2");
    petal_metricrecord_t *out = petal_recorddict_add_metrics(d, "out");
    double l1[2] = {1.0, 10.0};
    int64_t l2[2] = {5, 2};
    petal_value_t v;
    void *st = NULL;

    set_i64(m1, "num-examples", 1);
    set_f64(m1, "loss", 2.0);
    set_i64(m1, "correct", 4);
    set_f64(m1, "only-here", 1.0);
    v.type = PETAL_VALUE_DOUBLE_LIST;
    v.len = 2;
    v.as.f64s = l1;
    ck_assert_int_eq(petal_metricrecord_set(m1, "per-class", &v), 0);
    set_i64(m2, "num-examples", 3);
    set_f64(m2, "loss", 6.0);
    set_i64(m2, "correct", 8);
    v.type = PETAL_VALUE_INT64_LIST;
    v.len = 2;
    v.as.i64s = l2;
    ck_assert_int_eq(petal_metricrecord_set(m2, "per-class", &v), 0);

    ck_assert_int_eq(agg->begin(agg->ctx, "num-examples", &st), 0);
    ck_assert_int_eq(agg->fold(st, m1, 1.0), 0);
    ck_assert_int_eq(agg->fold(st, m2, 3.0), 0);
    ck_assert_int_eq(agg->end(st, out), 0);
    agg->free(st);

    ck_assert(metric_f64(out, "loss") == 5.0);    /* (2 + 3 * 6) / 4 */
    ck_assert(metric_f64(out, "correct") == 7.0); /* (4 + 3 * 8) / 4 */
    ck_assert(!has_metric(out, "only-here"));
    ck_assert(!has_metric(out, "num-examples"));
    ck_assert_int_eq(petal_metricrecord_get(out, "per-class", &v), 0);
    ck_assert_int_eq(v.type, PETAL_VALUE_DOUBLE_LIST);
    ck_assert_uint_eq(v.len, 2);
    ck_assert(v.as.f64s[0] == 4.0 && v.as.f64s[1] == 4.0); /* (1+15)/4, (10+6)/4 */
    petal_recorddict_free(d);
}
END_TEST

/* ---- Sampling -------------------------------------------------------------------------------- */

START_TEST(test_sample_count)
{
    ck_assert_uint_eq(pt_sample_count(10, 1.0, 2), 10);
    ck_assert_uint_eq(pt_sample_count(10, 0.3, 2), 3); /* not 4, although 0.3 * 10 > 3 */
    ck_assert_uint_eq(pt_sample_count(10, 0.1, 2), 2);
    ck_assert_uint_eq(pt_sample_count(10, 0.25, 0), 3); /* ceil(2.5) */
    ck_assert_uint_eq(pt_sample_count(3, 0.5, 5), 3);   /* capped at what is there */
    ck_assert_uint_eq(pt_sample_count(0, 1.0, 2), 0);
    ck_assert_uint_eq(pt_sample_count(1000, 0.0, 0), 0);
    ck_assert_uint_eq(pt_sample_count(1000, 0.0, 7), 7);
    ck_assert_uint_eq(pt_sample_count(1000, 0.001, 0), 1);
}
END_TEST

START_TEST(test_sample_deterministic)
{
    uint64_t ids[100];
    uint64_t rev[100];
    uint64_t a[10];
    uint64_t b[10];
    uint64_t c[10];
    uint64_t d[10];
    uint64_t all[100];

    for (int i = 0; i < 100; i++) {
        ids[i] = 5000 + 3 * (uint64_t)i;
        rev[99 - i] = ids[i];
    }
    ck_assert_int_eq(pt_sample_nodes(ids, 100, 10, 1234, 1, PT_PHASE_TRAIN, a), 0);
    ck_assert_int_eq(pt_sample_nodes(rev, 100, 10, 1234, 1, PT_PHASE_TRAIN, b), 0);
    ck_assert(memcmp(a, b, sizeof(a)) == 0); /* the listing order does not matter */
    ck_assert_int_eq(pt_sample_nodes(ids, 100, 10, 1235, 1, PT_PHASE_TRAIN, c), 0);
    ck_assert(memcmp(a, c, sizeof(a)) != 0); /* another seed, another sample */
    ck_assert_int_eq(pt_sample_nodes(ids, 100, 10, 1234, 2, PT_PHASE_TRAIN, d), 0);
    ck_assert(memcmp(a, d, sizeof(a)) != 0); /* another round, another sample */
    for (int i = 0; i < 10; i++) {
        ck_assert(a[i] >= 5000 && a[i] <= 5297 && (a[i] - 5000) % 3 == 0);
        for (int j = 0; j < i; j++) {
            ck_assert(a[i] != a[j]);
        }
    }
    /* k == n is a permutation. */
    ck_assert_int_eq(pt_sample_nodes(ids, 100, 100, 1, 1, PT_PHASE_EVALUATE, all), 0);
    {
        uint64_t sum = 0;
        for (int i = 0; i < 100; i++) {
            sum += all[i];
        }
        ck_assert_uint_eq(sum, 100 * 5000 + 3 * 4950);
    }
    ck_assert_int_eq(pt_sample_nodes(ids, 5, 6, 1, 1, 0, a), PETAL_EINVAL);
}
END_TEST

/* ---- The loop on a fake grid --------------------------------------------------------------- */

/* What the fake ClientApp saw in its config (when the test points f->ctx at one). */
typedef struct config_seen {
    int saw_lr;
    int saw_round;
} config_seen_t;

/* The fake ClientApp: train returns the arrays plus a per-node perturbation. */
static petal_message_t *
fg_client(fake_grid_t *f, petal_message_t *msg)
{
    petal_metadata_t md;
    const petal_recorddict_t *in = petal_message_content(msg);
    const petal_configrecord_t *cfg = petal_recorddict_config(in, "config");
    const petal_arrayrecord_t *arrays = petal_recorddict_arrays(in, "arrays");
    config_seen_t *seen = f->ctx;
    petal_recorddict_t *out;
    petal_value_t v;
    uint64_t node;

    petal_message_metadata(msg, &md);
    node = md.dst_node_id;
    out = petal_recorddict_alloc();
    if (strcmp(md.message_type, "query.init-arrays") == 0) {
        uint64_t shape[1] = {1000};
        double vals[1000];
        for (int i = 0; i < 1000; i++) {
            vals[i] = sin(i);
        }
        add_array(petal_recorddict_add_arrays(out, "arrays"), "w", PETAL_DTYPE_FLOAT32, 1, shape,
                  vals);
        return pt_message_alloc_reply(msg, out);
    }
    if (seen != NULL && cfg != NULL && petal_configrecord_get(cfg, "lr", &v) == 0) {
        seen->saw_lr++;
    }
    if (seen != NULL && cfg != NULL && petal_configrecord_get(cfg, "server-round", &v) == 0) {
        seen->saw_round++;
    }
    if (strcmp(md.message_type, "train") == 0) {
        const petal_array_t *w = petal_arrayrecord_get(arrays, "w");
        const float *x = petal_array_data(w);
        uint64_t n = petal_array_numel(w);
        petal_array_t *y = petal_arrayrecord_add(petal_recorddict_add_arrays(out, "arrays"), "w",
                                                 PETAL_DTYPE_FLOAT32, 1, petal_array_shape(w));
        float *p = petal_array_data_mut(y);
        uint64_t s = node;
        for (uint64_t i = 0; i < n; i++) {
            p[i] = x[i] + (float)wild_value(&s);
        }
        set_i64(petal_recorddict_add_metrics(out, "metrics"), "num-examples", (int64_t)node);
        set_f64(petal_recorddict_add_metrics(out, "metrics"), "loss", 1.0 / (double)node);
    } else {
        set_i64(petal_recorddict_add_metrics(out, "metrics"), "num-examples", 10);
        set_f64(petal_recorddict_add_metrics(out, "metrics"), "accuracy", (double)node);
    }
    return pt_message_alloc_reply(msg, out);
}

/* What every recorded round must carry, given fg_client's metrics. */
static void
fg_check_metrics(fake_grid_t *f, uint32_t round, const char *phase, const petal_metricrecord_t *m)
{
    petal_value_t v;

    (void)f;
    ck_assert_uint_ge(round, 1);
    if (strcmp(phase, "train") == 0) {
        ck_assert_int_eq(petal_metricrecord_get(m, "num-replies", &v), 0);
        ck_assert_int_eq(petal_metricrecord_get(m, "num-failures", &v), 0);
        ck_assert(has_metric(m, "loss"));
    } else if (strcmp(phase, "evaluate") == 0) {
        ck_assert(has_metric(m, "accuracy"));
    } else {
        ck_assert_str_eq(phase, "server");
    }
}

static void
fg_init(fake_grid_t *f, uint64_t n, uint64_t delivery_seed)
{
    fake_grid_init(f, n, delivery_seed, fg_client);
    f->check_metrics = fg_check_metrics;
}

static int32_t
server_eval(void *ctx, uint32_t round, const petal_arrayrecord_t *arrays, petal_metricrecord_t *out)
{
    int *calls = ctx;
    (*calls)++;
    set_f64(out, "norm", (double)round + (double)petal_arrayrecord_count(arrays));
    return 0;
}

static petal_recorddict_t *
initial_model(void)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    uint64_t shape[1] = {5000};
    double *vals = calloc(5000, sizeof(double));
    for (int i = 0; i < 5000; i++) {
        vals[i] = cos(i);
    }
    add_array(petal_recorddict_add_arrays(d, "arrays"), "w", PETAL_DTYPE_FLOAT32, 1, shape, vals);
    free(vals);
    return d;
}

static petal_recorddict_t *
run_on_fake_grid(uint64_t delivery_seed, pt_runtime_t *rt, int *eval_calls)
{
    fake_grid_t f;
    petal_strategy_options_t o;
    petal_strategy_t *s = NULL;
    petal_result_t *res = NULL;
    petal_recorddict_t *init = initial_model();
    petal_recorddict_t *final;

    fg_init(&f, 10, delivery_seed);
    f.rt = rt;
    f.failing = 18;
    petal_strategy_options_init(&o);
    o.fraction_train = 0.8;
    o.fraction_evaluate = 0.5;
    o.seed = 2024;
    o.parallel_min_elements = 1000;
    o.evaluate_fn = server_eval;
    o.evaluate_ctx = eval_calls;
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &s), 0);
    ck_assert_int_eq(
        petal_strategy_start(s, &f.base, petal_recorddict_arrays(init, "arrays"), 3, &res), 0);
    ck_assert_str_eq(petal_strategy_error(s), "");
    ck_assert_int_eq(f.train_records, 3);
    ck_assert_int_eq(f.evaluate_records, 3);
    ck_assert_int_eq(f.server_records, 3);
    ck_assert_int_eq(f.last_replies + f.last_failures, 8); /* 0.8 of 10 */
    ck_assert_uint_eq(petal_result_num_rounds(res), 3);
    ck_assert_ptr_nonnull(petal_result_metrics(res, 2, "train"));
    ck_assert_ptr_nonnull(petal_result_metrics(res, 3, "evaluate"));
    ck_assert(metric_f64(petal_result_metrics(res, 0, "server"), "norm") == 1.0);
    ck_assert(metric_f64(petal_result_metrics(res, 3, "server"), "norm") == 4.0);
    ck_assert_ptr_null(petal_result_metrics(res, 0, "train"));
    ck_assert_int_eq(f.shared_buffers, 3 * 7); /* every train message shares one buffer */
    ck_assert_ptr_nonnull(f.final);
    ck_assert(memcmp(petal_array_data(petal_arrayrecord_get(petal_result_arrays(res), "w")),
                     petal_array_data(
                         petal_arrayrecord_get(petal_recorddict_arrays(f.final, "arrays"), "w")),
                     5000 * sizeof(float)) == 0);
    final = f.final;
    petal_result_free(res);
    petal_strategy_free(s);
    petal_recorddict_free(init);
    return final;
}

START_TEST(test_loop_same_seed_bit_identical)
{
    pt_runtime_opts_t ro = {.workers = 2};
    pt_runtime_t *rt = NULL;
    int calls = 0;
    petal_recorddict_t *a;
    petal_recorddict_t *b;
    petal_recorddict_t *c;

    ck_assert_int_eq(pt_runtime_alloc(&ro, &rt), 0);
    a = run_on_fake_grid(1, NULL, &calls);
    b = run_on_fake_grid(2, rt, &calls); /* other arrival order, parallel folds */
    c = run_on_fake_grid(3, NULL, &calls);
    ck_assert_int_eq(calls, 3 * 4);
    ck_assert(pt_recorddict_equal(a, b));
    ck_assert(pt_recorddict_equal(a, c));
    petal_recorddict_free(a);
    petal_recorddict_free(b);
    petal_recorddict_free(c);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

START_TEST(test_loop_fails_with_too_few_replies)
{
    fake_grid_t f;
    petal_strategy_options_t o;
    petal_strategy_t *s = NULL;
    petal_recorddict_t *init = initial_model();
    petal_result_t *res = NULL;
    const char *err;

    fg_init(&f, 4, 1);
    f.broken_from = f.nodes[1]; /* only the first node answers */
    petal_strategy_options_init(&o);
    o.fraction_evaluate = 0.0;
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &s), 0);
    ck_assert_int_eq(
        petal_strategy_start(s, &f.base, petal_recorddict_arrays(init, "arrays"), 2, &res),
        PETAL_E_SERVER_APP_RAISED_EXCEPTION);
    ck_assert_ptr_null(res);
    err = petal_strategy_error(s);
    ck_assert_msg(strstr(err, "round 1: 1 of 4 train replies arrived (min-train-nodes 2): ") &&
                      strstr(err, "node 18: NODE_UNAVAILABLE: node went away"),
                  "%s", err);
    ck_assert_ptr_null(f.final);
    petal_strategy_free(s);

    /* min-completion-rate raises the bar above min-train-nodes. */
    fg_init(&f, 4, 1);
    f.failing = f.nodes[2];
    o.min_completion_rate = 1.0;
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &s), 0);
    ck_assert_int_eq(
        petal_strategy_start(s, &f.base, petal_recorddict_arrays(init, "arrays"), 1, NULL),
        PETAL_E_SERVER_APP_RAISED_EXCEPTION);
    ck_assert_msg(strstr(petal_strategy_error(s), "3 of 4 train replies") &&
                      strstr(petal_strategy_error(s), "min-completion-rate 1: 4 needed"),
                  "%s", petal_strategy_error(s));
    petal_strategy_free(s);
    petal_recorddict_free(init);
}
END_TEST

START_TEST(test_loop_times_out_waiting_for_nodes)
{
    fake_grid_t f;
    petal_strategy_options_t o;
    petal_strategy_t *s = NULL;
    petal_recorddict_t *init = initial_model();

    fg_init(&f, 1, 1);
    petal_strategy_options_init(&o);
    o.round_timeout = 0.2;
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &s), 0);
    ck_assert_int_eq(
        petal_strategy_start(s, &f.base, petal_recorddict_arrays(init, "arrays"), 1, NULL),
        PETAL_ETIMEDOUT);
    ck_assert_msg(strstr(petal_strategy_error(s), "only 1 of the 2 nodes needed"), "%s",
                  petal_strategy_error(s));
    petal_strategy_free(s);
    petal_recorddict_free(init);
}
END_TEST

START_TEST(test_options_checked)
{
    petal_strategy_options_t o;
    petal_strategy_t *s = NULL;
    char why[256];

    petal_strategy_options_init(&o);
    ck_assert(o.fraction_train == 1.0 && o.min_available_nodes == 2 && o.round_timeout == 3600);
    ck_assert_str_eq(o.weighted_by_key, "num-examples");
    ck_assert_int_eq(petal_strategy_options_check(&o, why, sizeof(why)), 0);
    o.fraction_evaluate = 1.5;
    ck_assert_int_eq(petal_strategy_options_check(&o, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_msg(strstr(why, "fraction-evaluate") != NULL, "%s", why);
    ck_assert_int_eq(petal_strategy_fedavg_alloc(&o, &s), PETAL_EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(petal_strategy_alloc_by_name("fedsgd", NULL, &s), PETAL_ENOENT);
    ck_assert_int_eq(petal_strategy_alloc_by_name("fedavg", NULL, &s), 0);
    ck_assert_str_eq(s->ops->name, "fedavg");
    petal_strategy_free(s);
}
END_TEST

/* ---- The default server ------------------------------------------------------------------------
 */

START_TEST(test_default_server_runs)
{
    fake_grid_t f;
    const char *keys[4] = {"num-server-rounds", "lr", "fraction-evaluate", "seed"};
    petal_value_t vals[4] = {petal_value_i64(2), petal_value_f64(0.05), petal_value_f64(0.0),
                             petal_value_i64(9)};
    petal_context_t *ctx = fg_server_context(keys, vals, 4);
    config_seen_t seen = {0};

    fg_init(&f, 5, 4);
    f.ctx = &seen;
    ck_assert_int_eq(pt_default_server_main(&f.base, ctx), 0);
    ck_assert_int_eq(f.queries, 1);
    ck_assert_int_eq(f.train_records, 2);
    ck_assert_int_eq(f.evaluate_records, 0);
    ck_assert_int_eq(seen.saw_lr, 2 * 5);    /* run config forwarded to every train message */
    ck_assert_int_eq(seen.saw_round, 2 * 5); /* with "server-round" */
    ck_assert_ptr_nonnull(f.final);
    ck_assert_uint_eq(
        petal_array_numel(petal_arrayrecord_get(petal_recorddict_arrays(f.final, "arrays"), "w")),
        1000);
    petal_recorddict_free(f.final);
    pt_context_free(ctx);
}
END_TEST

START_TEST(test_default_server_rejects_bad_config)
{
    struct {
        const char *key;
        petal_value_t val;
        const char *expect;
    } cases[] = {
        {"strategy", petal_value_str("fedsgd", 6), "supported: fedavg"},
        {"fraction-train", petal_value_f64(1.5), "\"fraction-train\""},
        {"fraction-evaluate", petal_value_f64(-0.1), "\"fraction-evaluate\""},
        {"num-server-rounds", petal_value_i64(0), "\"num-server-rounds\""},
        {"min-train-nodes", petal_value_f64(2.5), "\"min-train-nodes\" must be an integer"},
        {"min-available-nodes", petal_value_i64(-1), "\"min-available-nodes\""},
        {"round-timeout", petal_value_str("soon", 4), "\"round-timeout\" must be a number"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_grid_t f;
        petal_context_t *ctx = fg_server_context(&cases[i].key, &cases[i].val, 1);
        fg_init(&f, 5, 4);
        ck_assert_int_eq(pt_default_server_main(&f.base, ctx), PETAL_ECONFIG);
        ck_assert_msg(strstr(pt_context_error(ctx), cases[i].expect), "%s: %s", cases[i].key,
                      pt_context_error(ctx));
        ck_assert_int_eq(f.queries, 0); /* failed before anything was sent */
        pt_context_free(ctx);
    }
}
END_TEST

START_TEST(test_default_server_needs_init_arrays)
{
    fake_grid_t f;
    petal_context_t *ctx = fg_server_context(NULL, NULL, 0);

    fg_init(&f, 3, 4);
    f.failing = f.nodes[0]; /* the lowest node id answers with an error */
    ck_assert_int_eq(pt_default_server_main(&f.base, ctx), PETAL_E_SERVER_APP_RAISED_EXCEPTION);
    ck_assert_msg(strstr(pt_context_error(ctx), "node 11 did not provide the initial arrays") &&
                      strstr(pt_context_error(ctx), "init-arrays"),
                  "%s", pt_context_error(ctx));
    pt_context_free(ctx);
}
END_TEST

/* ---- The worked example of docs/strategies.md, verbatim ----------------------------------------
 */

int32_t fedavg_slr_alloc(const petal_strategy_options_t *o, double lr, petal_strategy_t **out);

typedef struct fedavg_slr {
    petal_strategy_t base;          /* first: the loop sees a petal_strategy_t */
    petal_strategy_t *avg;          /* a plain FedAvg computes the mean */
    const petal_arrayrecord_t *old; /* this round's global arrays (valid until free) */
    double lr;
} fedavg_slr_t;

#define SLR(s) ((fedavg_slr_t *)(s))
#define AVG(s) (SLR(s)->avg->ops->aggregate_train)

static int32_t
slr_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    SLR(s)->old = info->arrays;
    return AVG(s).begin(SLR(s)->avg, info, agg);
}

static int32_t
slr_fold(petal_strategy_t *s, void *agg, uint64_t i, const petal_message_t *reply, char *why,
         size_t why_len)
{
    return AVG(s).fold(SLR(s)->avg, agg, i, reply, why, why_len);
}

static int32_t
slr_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays, petal_metricrecord_t *m)
{
    int32_t rc = AVG(s).end(SLR(s)->avg, agg, arrays, m); /* arrays = the mean */
    for (uint64_t j = 0; rc == 0 && j < petal_arrayrecord_count(arrays); j++) {
        petal_array_t *a = (petal_array_t *)petal_arrayrecord_at(arrays, j); /* ours, unsent */
        float *x = petal_array_data_mut(a);
        const float *x0 = petal_array_data(
            petal_arrayrecord_get(SLR(s)->old, petal_arrayrecord_name_at(arrays, j)));
        for (uint64_t i = 0; i < petal_array_numel(a); i++) {
            x[i] = x0[i] + (float)(SLR(s)->lr * ((double)x[i] - (double)x0[i]));
        }
    }
    return rc;
}

static void
slr_agg_free(petal_strategy_t *s, void *agg)
{
    AVG(s).free(SLR(s)->avg, agg);
}

static void
slr_free(petal_strategy_t *s)
{
    petal_strategy_free(SLR(s)->avg);
    free(s);
}

static const petal_strategy_ops_t slr_ops = {
    .name = "fedavg-slr",
    .aggregate_train = {slr_begin, slr_fold, slr_end, slr_agg_free},
    .free = slr_free,
};

int32_t
fedavg_slr_alloc(const petal_strategy_options_t *o, double lr, petal_strategy_t **out)
{
    fedavg_slr_t *x = calloc(1, sizeof(*x));
    int32_t rc = x != NULL ? petal_strategy_fedavg_alloc(o, &x->avg) : PETAL_ENOMEM;
    if (rc == 0 && (rc = petal_strategy_init(&x->base, &slr_ops, o)) != 0) {
        petal_strategy_free(x->avg);
    }
    if (rc != 0) {
        free(x);
        return rc;
    }
    x->lr = lr;
    *out = &x->base;
    return 0;
}

START_TEST(test_server_lr_example)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(d, "global");
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(d, "out");
    petal_metricrecord_t *om = petal_recorddict_add_metrics(d, "metrics");
    uint64_t shape[1] = {4};
    double ones[4] = {1, 1, 1, 1};
    double twos[4] = {2, 2, 2, 2};
    double sixes[4] = {6, 6, 6, 6};
    uint64_t nodes[2] = {1, 2};
    petal_message_t *m[2];
    petal_round_info_t info;
    petal_strategy_t *s = NULL;
    void *agg = NULL;
    char why[256];
    const float *y;

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 1, shape, ones);
    for (int i = 0; i < 2; i++) {
        petal_recorddict_t *c = petal_recorddict_alloc();
        add_array(petal_recorddict_add_arrays(c, "arrays"), "w", PETAL_DTYPE_FLOAT32, 1, shape,
                  i == 0 ? twos : sixes);
        set_i64(petal_recorddict_add_metrics(c, "metrics"), "num-examples", i == 0 ? 1 : 3);
        m[i] = reply_from(nodes[i], c);
    }
    ck_assert_int_eq(fedavg_slr_alloc(NULL, 0.5, &s), 0);
    memset(&info, 0, sizeof(info));
    info.round = 1;
    info.phase = "train";
    info.arrays = ga;
    info.nodes = nodes;
    info.num_nodes = 2;
    ck_assert_int_eq(s->ops->aggregate_train.begin(s, &info, &agg), 0);
    for (uint64_t i = 0; i < 2; i++) {
        ck_assert_int_eq(s->ops->aggregate_train.fold(s, agg, i, m[i], why, sizeof(why)), 0);
    }
    ck_assert_int_eq(s->ops->aggregate_train.end(s, agg, out, om), 0);
    s->ops->aggregate_train.free(s, agg);
    y = petal_array_data(petal_arrayrecord_get(out, "w"));
    /* mean (2 + 3 * 6) / 4 = 5; 1 + 0.5 * (5 - 1) = 3 */
    ck_assert(y[0] == 3.0f && y[3] == 3.0f);
    petal_strategy_free(s);
    petal_message_free(m[0]);
    petal_message_free(m[1]);
    petal_recorddict_free(d);
}
END_TEST

static Suite *
fedavg_suite(void)
{
    Suite *s = suite_create("fedavg");
    TCase *fold = tcase_create("fold");
    TCase *order = tcase_create("order");
    TCase *sample = tcase_create("sample");
    TCase *loop = tcase_create("loop");

    tcase_add_test(fold, test_acc_weights_1_3);
    tcase_add_test(fold, test_acc_float64);
    tcase_add_test(fold, test_acc_rejects_mismatches);
    tcase_add_test(fold, test_acc_refuses_int_model);
    tcase_add_test(fold, test_acc_parallel_matches_serial);
    tcase_add_test(fold, test_metrics_weighted_mean);
    tcase_add_test(order, test_out_of_order_is_bit_identical);
    tcase_add_test(order, test_fold_on_arrival_holds_nothing);
    tcase_add_test(order, test_failures_release_held_replies);
    tcase_add_test(order, test_bad_replies_are_failures);
    tcase_add_test(sample, test_sample_count);
    tcase_add_test(sample, test_sample_deterministic);
    tcase_add_test(loop, test_options_checked);
    tcase_add_test(loop, test_server_lr_example);
    tcase_add_test(loop, test_loop_same_seed_bit_identical);
    tcase_add_test(loop, test_loop_fails_with_too_few_replies);
    tcase_add_test(loop, test_loop_times_out_waiting_for_nodes);
    tcase_add_test(loop, test_default_server_runs);
    tcase_add_test(loop, test_default_server_rejects_bad_config);
    tcase_add_test(loop, test_default_server_needs_init_arrays);
    suite_add_tcase(s, fold);
    suite_add_tcase(s, order);
    suite_add_tcase(s, sample);
    suite_add_tcase(s, loop);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(fedavg_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
