/* test_strategies.c - the strategy library on hand-computed cases, its checks, and its loop. */
#include <check.h>
#include <inttypes.h>
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

static double
uniform(uint64_t *s) /* [0, 1) */
{
    return (double)(pt_splitmix64(s) >> 11) / 9007199254740992.0;
}

static petal_array_t *
add_array(petal_arrayrecord_t *r, const char *name, int32_t dtype, uint64_t n, const double *vals)
{
    uint64_t shape[1] = {n};
    petal_array_t *a = petal_arrayrecord_add(r, name, dtype, 1, shape);

    ck_assert_ptr_nonnull(a);
    for (uint64_t i = 0; i < n; i++) {
        if (dtype == PETAL_DTYPE_FLOAT32) {
            ((float *)petal_array_data_mut(a))[i] = vals != NULL ? (float)vals[i] : 0.0f;
        } else {
            ((double *)petal_array_data_mut(a))[i] = vals != NULL ? vals[i] : 0.0;
        }
    }
    return a;
}

/* Element i of array `name` in `r` as a double. */
static double
elem(const petal_arrayrecord_t *r, const char *name, uint64_t i)
{
    const petal_array_t *a = petal_arrayrecord_get(r, name);

    ck_assert_ptr_nonnull(a);
    ck_assert_uint_lt(i, petal_array_numel(a));
    if (petal_array_dtype(a) == PETAL_DTYPE_FLOAT32) {
        return (double)((const float *)petal_array_data(a))[i];
    }
    return ((const double *)petal_array_data(a))[i];
}

static void
close_to(double got, double want, double rel)
{
    ck_assert_msg(fabs(got - want) <= rel * (fabs(want) + 1e-300), "got %.17g, want %.17g", got,
                  want);
}

/* A train reply from `node`: arrays "w" (and "b" when nb > 0) plus metrics. */
static petal_message_t *
reply_wb(uint64_t node, int32_t dtype, const double *w, uint64_t nw, const double *b, uint64_t nb,
         int64_t num_examples, double loss)
{
    petal_recorddict_t *c = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(c, "arrays");
    petal_metricrecord_t *m = petal_recorddict_add_metrics(c, "metrics");
    petal_metadata_t md;
    petal_message_t *msg;

    add_array(a, "w", dtype, nw, w);
    if (nb > 0) {
        add_array(a, "b", PETAL_DTYPE_FLOAT64, nb, b);
    }
    set_i64(m, "num-examples", num_examples);
    set_f64(m, "loss", loss);
    set_f64(m, "train-loss", loss);
    pt_metadata_init(&md);
    md.src_node_id = node;
    snprintf(md.message_type, sizeof(md.message_type), "train");
    msg = pt_message_alloc_meta(&md, c);
    ck_assert_ptr_nonnull(msg);
    return msg;
}

static petal_strategy_t *
make(const char *name, const petal_strategy_options_t *o, const petal_strategy_params_t *p)
{
    petal_strategy_t *s = NULL;
    char why[512] = "";

    ck_assert_msg(petal_strategy_alloc(name, o, p, why, sizeof(why), &s) == 0, "%s: %s", name, why);
    ck_assert_str_eq(s->ops->name, name);
    return s;
}

/* A grid that only provides a runtime (for the parallel paths of aggregation). */
typedef struct rt_grid {
    struct petal_grid base;
    pt_runtime_t *rt;
} rt_grid_t;

static struct pt_runtime *
rtg_runtime(petal_grid_t *g)
{
    return ((rt_grid_t *)g)->rt;
}

static const pt_grid_ops_t rt_grid_ops = {.runtime = rtg_runtime};

/*
 * One train phase of `s` over `global` with the replies delivered in `order` (n of them;
 * nodes[i] is send position i). Returns a RecordDict with "arrays" (empty when the strategy
 * kept the global arrays) and "metrics"; the caller frees it.
 */
static petal_recorddict_t *
run_phase(petal_strategy_t *s, const petal_arrayrecord_t *global, petal_message_t **replies,
          const uint64_t *nodes, uint64_t n, const int *order, uint32_t round, pt_runtime_t *rt)
{
    const petal_aggregate_ops_t *ops = &s->ops->aggregate_train;
    petal_recorddict_t *out = petal_recorddict_alloc();
    petal_arrayrecord_t *oa = petal_recorddict_add_arrays(out, "arrays");
    petal_metricrecord_t *om = petal_recorddict_add_metrics(out, "metrics");
    rt_grid_t grid = {{&rt_grid_ops}, rt};
    petal_round_info_t info;
    pt_phase_t *ph = NULL;
    void *agg = NULL;

    memset(&info, 0, sizeof(info));
    info.round = round;
    info.phase = "train";
    info.arrays = global;
    info.nodes = nodes;
    info.num_nodes = n;
    info.grid = &grid.base;
    ck_assert_int_eq(ops->begin(s, &info, &agg), 0);
    ck_assert_int_eq(pt_phase_alloc(s, ops, agg, &info, s->opts.deterministic, &ph), 0);
    for (uint64_t i = 0; i < n; i++) {
        pt_phase_reply(ph, replies[order != NULL ? order[i] : (int)i]);
    }
    pt_phase_close(ph);
    ck_assert_msg(pt_phase_failures(ph) == 0, "%s", pt_phase_failure_text(ph));
    ck_assert_msg(ops->end(s, agg, oa, om) == 0, "%s", s->error);
    ops->free(s, agg);
    pt_phase_free(ph);
    /* Nothing of the replies is held after the phase. */
    for (uint64_t i = 0; i < n; i++) {
        ck_assert_uint_eq(pt_message_refs(replies[i]), 1);
    }
    return out;
}

static const petal_arrayrecord_t *
arrays_of(const petal_recorddict_t *d)
{
    return petal_recorddict_arrays(d, "arrays");
}

/* ---- FedMedian and FedTrimmedAvg ------------------------------------------------------------- */

START_TEST(test_median_hand)
{
    double w[4][4] = {{1, 5, -2, 0}, {3, 2, -1, 10}, {2, 9, -7, 4}, {10, 0, 0, 1}};
    double b[4][2] = {{0.5, 1e9}, {0.25, -3}, {1.0, 7}, {2.0, 0}};
    int64_t ne[4] = {1, 100, 5, 7};
    double loss[4] = {1, 2, 3, 4};
    uint64_t nodes[4] = {5, 6, 7, 8};
    petal_message_t *m[4];
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_strategy_t *s = make("fedmedian", NULL, NULL);
    petal_recorddict_t *r3;
    petal_recorddict_t *r4;
    const petal_arrayrecord_t *a;

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 4, NULL);
    add_array(ga, "b", PETAL_DTYPE_FLOAT64, 2, NULL);
    for (int i = 0; i < 4; i++) {
        m[i] = reply_wb(nodes[i], PETAL_DTYPE_FLOAT32, w[i], 4, b[i], 2, ne[i], loss[i]);
    }
    /* Three replies: the middle value of each element, whatever the weights. */
    r3 = run_phase(s, ga, m, nodes, 3, NULL, 1, NULL);
    a = arrays_of(r3);
    ck_assert(elem(a, "w", 0) == 2 && elem(a, "w", 1) == 5 && elem(a, "w", 2) == -2 &&
              elem(a, "w", 3) == 4);
    ck_assert(elem(a, "b", 0) == 0.5 && elem(a, "b", 1) == 7);
    ck_assert_int_eq(petal_array_dtype(petal_arrayrecord_get(a, "w")), PETAL_DTYPE_FLOAT32);
    /* The metrics are the weighted mean over every reply. */
    close_to(metric_f64(petal_recorddict_metrics(r3, "metrics"), "loss"),
             (1.0 * 1 + 100.0 * 2 + 5.0 * 3) / 106.0, 1e-15);
    /* Four: the mean of the two middle values. */
    r4 = run_phase(s, ga, m, nodes, 4, NULL, 1, NULL);
    a = arrays_of(r4);
    ck_assert(elem(a, "w", 0) == 2.5 && elem(a, "w", 1) == 3.5 && elem(a, "w", 2) == -1.5 &&
              elem(a, "w", 3) == 2.5);
    ck_assert(elem(a, "b", 0) == 0.75 && elem(a, "b", 1) == 3.5);
    petal_recorddict_free(r3);
    petal_recorddict_free(r4);
    for (int i = 0; i < 4; i++) {
        petal_message_free(m[i]);
    }
    petal_strategy_free(s);
    petal_recorddict_free(g);
}
END_TEST

START_TEST(test_trimmed_mean_hand)
{
    /* Five replies of three elements, send order as listed. */
    double w[5][3] = {{4, 2, 5}, {100, 0, 5}, {1, -50, 5}, {3, 1, 5}, {2, 0, 5}};
    uint64_t nodes[5] = {1, 2, 3, 4, 5};
    petal_message_t *m[5];
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r;
    const petal_arrayrecord_t *a;

    add_array(ga, "w", PETAL_DTYPE_FLOAT64, 3, NULL);
    for (int i = 0; i < 5; i++) {
        m[i] = reply_wb(nodes[i], PETAL_DTYPE_FLOAT64, w[i], 3, NULL, 0, 1 + i, 1.0);
    }
    /* beta 0.2 (the default) of 5: int(1.0) = 1 cut at each end, the mean of the middle 3. */
    ck_assert_int_eq(petal_strategy_params_init(&p, "fedtrimmedavg"), 0);
    ck_assert(p.beta == 0.2);
    s = make("fedtrimmedavg", NULL, &p);
    r = run_phase(s, ga, m, nodes, 5, NULL, 1, NULL);
    a = arrays_of(r);
    ck_assert(elem(a, "w", 0) == 3.0); /* (2 + 3 + 4) / 3 */
    close_to(elem(a, "w", 1), 1.0 / 3.0, 1e-15);
    ck_assert(elem(a, "w", 2) == 5.0);
    petal_recorddict_free(r);
    /* beta 0.2 of 4: int(0.8) = 0, nothing cut: the unweighted mean. */
    r = run_phase(s, ga, m, nodes, 4, NULL, 1, NULL);
    a = arrays_of(r);
    ck_assert(elem(a, "w", 0) == 27.0); /* (4 + 100 + 1 + 3) / 4 */
    petal_recorddict_free(r);
    petal_strategy_free(s);
    /* beta 0.25 of 4: one cut at each end. */
    p.beta = 0.25;
    s = make("fedtrimmedavg", NULL, &p);
    r = run_phase(s, ga, m, nodes, 4, NULL, 1, NULL);
    a = arrays_of(r);
    ck_assert(elem(a, "w", 0) == 3.5); /* (3 + 4) / 2 */
    ck_assert(elem(a, "w", 1) == 0.5); /* (0 + 1) / 2 */
    petal_recorddict_free(r);
    petal_strategy_free(s);
    for (int i = 0; i < 5; i++) {
        petal_message_free(m[i]);
    }
    petal_recorddict_free(g);
}
END_TEST

/* ---- Krum, MultiKrum, Bulyan ------------------------------------------------------------------
 */

/*
 * Five replies of two elements, the last an outlier. Squared distances among the honest ones:
 * d01 = .02, d02 = .01, d03 = .04, d12 = .05, d13 = .10, d23 = .05. With f = 1 each score sums
 * the n - f - 2 = 2 smallest: r0 .03, r1 .07, r2 .06, r3 .09, r4 huge.
 */
START_TEST(test_krum_outlier)
{
    double w[5][2] = {{1.0, 1.0}, {1.1, 0.9}, {0.9, 1.0}, {1.0, 1.2}, {100, -100}};
    int64_t ne[5] = {1, 2, 3, 4, 5};
    double loss[5] = {1, 2, 3, 4, 1000};
    uint64_t nodes[5] = {11, 12, 13, 14, 15};
    int order[5] = {4, 2, 0, 3, 1};
    petal_message_t *m[5];
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_strategy_options_t o;
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r;
    const petal_arrayrecord_t *a;

    add_array(ga, "w", PETAL_DTYPE_FLOAT32, 2, NULL);
    for (int i = 0; i < 5; i++) {
        m[i] = reply_wb(nodes[i], PETAL_DTYPE_FLOAT32, w[i], 2, NULL, 0, ne[i], loss[i]);
    }
    petal_strategy_options_init(&o);
    o.min_train_nodes = 5;
    ck_assert_int_eq(petal_strategy_params_init(&p, "krum"), 0);
    p.num_malicious_nodes = 1;

    /* Krum: reply 0, referenced (its buffer, not a copy). */
    s = make("krum", &o, &p);
    r = run_phase(s, ga, m, nodes, 5, order, 1, NULL);
    a = arrays_of(r);
    ck_assert(elem(a, "w", 0) == 1.0 && elem(a, "w", 1) == 1.0);
    ck_assert_ptr_eq(pt_array_buf(petal_arrayrecord_get(a, "w")),
                     pt_array_buf(petal_arrayrecord_get(
                         petal_recorddict_arrays(petal_message_content(m[0]), "arrays"), "w")));
    ck_assert(metric_f64(petal_recorddict_metrics(r, "metrics"), "loss") == 1.0);
    petal_recorddict_free(r);
    petal_strategy_free(s);

    /* MultiKrum, m = 3: replies 0, 2, 1 (scores .03, .06, .07), weighted by num-examples. */
    p.num_nodes_to_select = 3;
    s = make("multikrum", &o, &p);
    r = run_phase(s, ga, m, nodes, 5, order, 1, NULL);
    a = arrays_of(r);
    for (int j = 0; j < 2; j++) {
        double want = (1.0 * (float)w[0][j] + 2.0 * (float)w[1][j] + 3.0 * (float)w[2][j]) / 6.0;
        close_to(elem(a, "w", (uint64_t)j), (double)(float)want, 1e-7);
    }
    /* The outlier's loss (1000) is not in the metrics: only the selected replies'. */
    close_to(metric_f64(petal_recorddict_metrics(r, "metrics"), "loss"),
             (1.0 * 1 + 2.0 * 2 + 3.0 * 3) / 6.0, 1e-15);
    petal_recorddict_free(r);
    petal_strategy_free(s);

    for (int i = 0; i < 5; i++) {
        petal_message_free(m[i]);
    }
    petal_recorddict_free(g);
}
END_TEST

/*
 * Bulyan, n = 7, f = 1: Krum selects theta = 5 one at a time (scores over the remaining set),
 * then each element averages the beta = 3 selected values closest to its median.
 * Values 10, 12, 8, 11, 9, 14 (honest) and 500 (malicious), in send order. Selection (ties to
 * the earlier position): 10 (score 10 = 1+1+4+4), then 12 (14, tied with 11 and 9), then 9 (5),
 * 8 (9, tied with 11 and 14), 11. Selected {8, 9, 10, 11, 12}: median 10, closest three 10, 9,
 * 11 -> 10. FedAvg would give 80.57, the median of all 11.
 */
START_TEST(test_bulyan_hand)
{
    double v[7] = {10, 12, 8, 11, 9, 14, 500};
    uint64_t nodes[7] = {1, 2, 3, 4, 5, 6, 7};
    petal_message_t *m[7];
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_strategy_options_t o;
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r;

    add_array(ga, "w", PETAL_DTYPE_FLOAT64, 1, NULL);
    for (int i = 0; i < 7; i++) {
        m[i] = reply_wb(nodes[i], PETAL_DTYPE_FLOAT64, &v[i], 1, NULL, 0, 1, v[i]);
    }
    petal_strategy_options_init(&o);
    o.min_train_nodes = 7;
    ck_assert_int_eq(petal_strategy_params_init(&p, "bulyan"), 0);
    p.num_malicious_nodes = 1;
    s = make("bulyan", &o, &p);
    r = run_phase(s, ga, m, nodes, 7, NULL, 1, NULL);
    ck_assert(elem(arrays_of(r), "w", 0) == 10.0);
    /* Metrics over the 5 selected: losses 10, 12, 8, 11, 9 with equal weights. */
    ck_assert(metric_f64(petal_recorddict_metrics(r, "metrics"), "loss") == 10.0);
    petal_recorddict_free(r);
    petal_strategy_free(s);
    for (int i = 0; i < 7; i++) {
        petal_message_free(m[i]);
    }
    petal_recorddict_free(g);
}
END_TEST

/* ---- Reference implementations for random cases (straightforward, O(n^3)) ------------------- */

#define RN 7
#define RW 37
#define RB 5

static int
cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reference Bulyan over vals[r][k] (RN replies, K elements), f = 1. */
static void
ref_bulyan(double vals[RN][RW + RB], int k_elems, int f, double *out)
{
    double d[RN][RN];
    int alive[RN];
    int chosen[RN];
    int theta = RN - 2 * f;
    int beta = theta - 2 * f;

    for (int a = 0; a < RN; a++) {
        alive[a] = 1;
        for (int b = 0; b < RN; b++) {
            double s = 0;
            for (int k = 0; k < k_elems; k++) {
                s += (vals[a][k] - vals[b][k]) * (vals[a][k] - vals[b][k]);
            }
            d[a][b] = s;
        }
    }
    for (int t = 0; t < theta; t++) {
        int r = RN - t;
        int kk = r - f - 2 >= 1 ? r - f - 2 : 1;
        double best = INFINITY;
        int bi = -1;
        for (int i = 0; i < RN; i++) {
            double others[RN];
            int c = 0;
            double sc = 0;
            if (!alive[i]) {
                continue;
            }
            for (int j = 0; j < RN; j++) {
                if (j != i && alive[j]) {
                    others[c++] = d[i][j];
                }
            }
            qsort(others, (size_t)c, sizeof(double), cmp_dbl);
            for (int j = 0; j < kk && j < c; j++) {
                sc += others[j];
            }
            if (sc < best) {
                best = sc;
                bi = i;
            }
        }
        chosen[t] = bi;
        alive[bi] = 0;
    }
    for (int k = 0; k < k_elems; k++) {
        double col[RN];
        double med;
        double dist[RN];
        int used[RN] = {0};
        double sum = 0;
        for (int t = 0; t < theta; t++) {
            col[t] = vals[chosen[t]][k];
        }
        qsort(col, (size_t)theta, sizeof(double), cmp_dbl);
        med = theta % 2 ? col[theta / 2] : (col[theta / 2 - 1] + col[theta / 2]) / 2;
        for (int t = 0; t < theta; t++) {
            dist[t] = fabs(col[t] - med);
        }
        for (int b = 0; b < beta; b++) {
            int bi = -1;
            for (int t = 0; t < theta; t++) {
                if (!used[t] && (bi < 0 || dist[t] < dist[bi])) {
                    bi = t;
                }
            }
            used[bi] = 1;
            sum += col[bi];
        }
        out[k] = sum / beta;
    }
}

typedef struct random_case {
    double vals[RN][RW + RB]; /* w then b, as stored (w is float32) */
    uint64_t nodes[RN];
    petal_message_t *m[RN];
    petal_recorddict_t *g;
    petal_arrayrecord_t *ga;
} random_case_t;

static void
random_case_init(random_case_t *c, uint64_t seed)
{
    c->g = petal_recorddict_alloc();
    c->ga = petal_recorddict_add_arrays(c->g, "arrays");
    add_array(c->ga, "w", PETAL_DTYPE_FLOAT32, RW, NULL);
    add_array(c->ga, "b", PETAL_DTYPE_FLOAT64, RB, NULL);
    for (int r = 0; r < RN; r++) {
        double shift = r == 3 ? 40.0 : 0.0; /* one malicious reply */
        for (int k = 0; k < RW + RB; k++) {
            double x = 4.0 * uniform(&seed) - 2.0 + shift;
            c->vals[r][k] = k < RW ? (double)(float)x : x;
        }
        c->nodes[r] = 100 + (uint64_t)r;
        c->m[r] = reply_wb(c->nodes[r], PETAL_DTYPE_FLOAT32, c->vals[r], RW, c->vals[r] + RW, RB,
                           1 + r, uniform(&seed));
    }
}

static void
random_case_fini(random_case_t *c)
{
    for (int r = 0; r < RN; r++) {
        petal_message_free(c->m[r]);
    }
    petal_recorddict_free(c->g);
}

static double
out_elem(const petal_recorddict_t *res, int k)
{
    return k < RW ? elem(arrays_of(res), "w", (uint64_t)k)
                  : elem(arrays_of(res), "b", (uint64_t)(k - RW));
}

START_TEST(test_order_statistics_match_reference)
{
    random_case_t c;
    petal_strategy_options_t o;
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r;
    double want[RW + RB];

    random_case_init(&c, 77);
    petal_strategy_options_init(&o);
    o.min_train_nodes = RN;

    /* Median and trimmed mean, element by element. */
    s = make("fedmedian", &o, NULL);
    r = run_phase(s, c.ga, c.m, c.nodes, RN, NULL, 1, NULL);
    for (int k = 0; k < RW + RB; k++) {
        double col[RN];
        for (int i = 0; i < RN; i++) {
            col[i] = c.vals[i][k];
        }
        qsort(col, RN, sizeof(double), cmp_dbl);
        want[k] = col[RN / 2];
        ck_assert_msg(out_elem(r, k) == (k < RW ? (double)(float)want[k] : want[k]), "k %d", k);
    }
    petal_recorddict_free(r);
    petal_strategy_free(s);

    ck_assert_int_eq(petal_strategy_params_init(&p, "fedtrimmedavg"), 0);
    p.beta = 0.3; /* int(2.1) = 2 cut at each end of 7 */
    s = make("fedtrimmedavg", &o, &p);
    r = run_phase(s, c.ga, c.m, c.nodes, RN, NULL, 1, NULL);
    for (int k = 0; k < RW + RB; k++) {
        double col[RN];
        for (int i = 0; i < RN; i++) {
            col[i] = c.vals[i][k];
        }
        qsort(col, RN, sizeof(double), cmp_dbl);
        want[k] = (col[2] + col[3] + col[4]) / 3.0;
        close_to(out_elem(r, k), k < RW ? (double)(float)want[k] : want[k], 1e-7);
    }
    petal_recorddict_free(r);
    petal_strategy_free(s);

    /* Bulyan with f = 1 on 7 replies, one of them shifted far away. */
    ck_assert_int_eq(petal_strategy_params_init(&p, "bulyan"), 0);
    p.num_malicious_nodes = 1;
    s = make("bulyan", &o, &p);
    r = run_phase(s, c.ga, c.m, c.nodes, RN, NULL, 1, NULL);
    ref_bulyan(c.vals, RW + RB, 1, want);
    for (int k = 0; k < RW + RB; k++) {
        close_to(out_elem(r, k), k < RW ? (double)(float)want[k] : want[k], 1e-7);
        ck_assert(fabs(out_elem(r, k)) < 2.0); /* nothing of the malicious reply */
    }
    petal_recorddict_free(r);
    petal_strategy_free(s);
    random_case_fini(&c);
}
END_TEST

/* ---- FedAdam, FedYogi, FedAdagrad: one (and two) steps against the formulas -------------- */

typedef struct opt_case {
    petal_recorddict_t *g;
    petal_arrayrecord_t *ga;
    petal_message_t *m[2];
    uint64_t nodes[2];
    double x[3];
    double mean[3];
} opt_case_t;

/* Global [1, 2, 3]; replies [2, 2, 2] x1 and [4, 0, 6] x3: the mean is [3.5, 0.5, 5]. */
static void
opt_case_init(opt_case_t *c)
{
    double r0[3] = {2, 2, 2};
    double r1[3] = {4, 0, 6};

    c->x[0] = 1;
    c->x[1] = 2;
    c->x[2] = 3;
    c->mean[0] = 3.5;
    c->mean[1] = 0.5;
    c->mean[2] = 5.0;
    c->g = petal_recorddict_alloc();
    c->ga = petal_recorddict_add_arrays(c->g, "arrays");
    add_array(c->ga, "w", PETAL_DTYPE_FLOAT64, 3, c->x);
    c->nodes[0] = 1;
    c->nodes[1] = 2;
    c->m[0] = reply_wb(1, PETAL_DTYPE_FLOAT64, r0, 3, NULL, 0, 1, 0.5);
    c->m[1] = reply_wb(2, PETAL_DTYPE_FLOAT64, r1, 3, NULL, 0, 3, 0.25);
}

static void
opt_case_fini(opt_case_t *c)
{
    petal_message_free(c->m[0]);
    petal_message_free(c->m[1]);
    petal_recorddict_free(c->g);
}

/* The formulas of Reddi et al. (docs/strategies.md) for `steps` rounds with the same replies;
 * the global arrays of round t + 1 are the result of round t. */
static void
opt_expected(const char *name, const petal_strategy_params_t *p, const opt_case_t *c, int steps,
             double *out)
{
    for (int i = 0; i < 3; i++) {
        double x = c->x[i];
        double m = 0;
        double v = 0;
        for (int t = 1; t <= steps; t++) {
            /* the replies are fixed, so the mean is too: d = mean - x */
            double d = c->mean[i] - x;
            double eta = p->eta;
            if (strcmp(name, "fedadagrad") == 0) {
                m = d;
                v = v + d * d;
            } else {
                m = p->beta_1 * m + (1 - p->beta_1) * d;
                if (strcmp(name, "fedadam") == 0) {
                    v = p->beta_2 * v + (1 - p->beta_2) * d * d;
                    eta = p->eta * sqrt(1 - pow(p->beta_2, t)) / (1 - pow(p->beta_1, t));
                } else {
                    double sgn = v - d * d > 0 ? 1 : (v - d * d < 0 ? -1 : 0);
                    v = v - (1 - p->beta_2) * d * d * sgn;
                }
            }
            x = x + eta * m / (sqrt(v) + p->tau);
        }
        out[i] = x;
    }
}

START_TEST(test_fedopt_steps)
{
    const char *names[3] = {"fedadam", "fedyogi", "fedadagrad"};

    for (int k = 0; k < 3; k++) {
        opt_case_t c;
        petal_strategy_params_t p;
        petal_strategy_t *s;
        petal_recorddict_t *r1;
        petal_recorddict_t *r2;
        double want1[3];
        double want2[3];

        opt_case_init(&c);
        ck_assert_int_eq(petal_strategy_params_init(&p, names[k]), 0);
        s = make(names[k], NULL, &p);
        r1 = run_phase(s, c.ga, c.m, c.nodes, 2, NULL, 1, NULL);
        opt_expected(names[k], &p, &c, 1, want1);
        for (int i = 0; i < 3; i++) {
            close_to(elem(arrays_of(r1), "w", (uint64_t)i), want1[i], 1e-13);
        }
        /* Round 2 from round 1's arrays: the moments carried over. */
        r2 = run_phase(s, arrays_of(r1), c.m, c.nodes, 2, NULL, 2, NULL);
        opt_expected(names[k], &p, &c, 2, want2);
        for (int i = 0; i < 3; i++) {
            close_to(elem(arrays_of(r2), "w", (uint64_t)i), want2[i], 1e-13);
        }
        close_to(metric_f64(petal_recorddict_metrics(r2, "metrics"), "loss"), 0.3125, 1e-15);
        petal_recorddict_free(r2);
        /* A new run (round 1 again) starts from zero moments: round 1's result again. */
        r2 = run_phase(s, c.ga, c.m, c.nodes, 2, NULL, 1, NULL);
        ck_assert(pt_recorddict_equal(r1, r2));
        petal_recorddict_free(r1);
        petal_recorddict_free(r2);
        petal_strategy_free(s);
        opt_case_fini(&c);
    }
    /* The defaults are Flower's. */
    {
        petal_strategy_params_t p;
        petal_strategy_params_init(&p, "fedadam");
        ck_assert(p.eta == 0.1 && p.eta_l == 0.1 && p.beta_1 == 0.9 && p.beta_2 == 0.99 &&
                  p.tau == 1e-3);
        petal_strategy_params_init(&p, "fedyogi");
        ck_assert(p.eta == 0.01 && p.eta_l == 0.0316 && p.beta_1 == 0.9 && p.beta_2 == 0.99 &&
                  p.tau == 1e-3);
        petal_strategy_params_init(&p, "fedadagrad");
        ck_assert(p.eta == 0.1 && p.eta_l == 0.1 && p.tau == 1e-3);
    }
}
END_TEST

START_TEST(test_fedavgm_two_rounds)
{
    opt_case_t c;
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r1;
    petal_recorddict_t *r2;

    opt_case_init(&c);
    ck_assert_int_eq(petal_strategy_params_init(&p, "fedavgm"), 0);
    ck_assert(p.server_learning_rate == 1.0 && p.server_momentum == 0.0);
    /* Defaults: exactly FedAvg's mean. */
    s = make("fedavgm", NULL, &p);
    r1 = run_phase(s, c.ga, c.m, c.nodes, 2, NULL, 1, NULL);
    for (int i = 0; i < 3; i++) {
        ck_assert(elem(arrays_of(r1), "w", (uint64_t)i) == c.mean[i]);
    }
    petal_recorddict_free(r1);
    petal_strategy_free(s);

    p.server_learning_rate = 0.5;
    p.server_momentum = 0.9;
    s = make("fedavgm", NULL, &p);
    r1 = run_phase(s, c.ga, c.m, c.nodes, 2, NULL, 1, NULL);
    r2 = run_phase(s, arrays_of(r1), c.m, c.nodes, 2, NULL, 2, NULL);
    for (int i = 0; i < 3; i++) {
        /* round 1: g1 = x0 - mean, p = g1, x1 = x0 - lr g1 */
        double g1 = c.x[i] - c.mean[i];
        double x1 = c.x[i] - 0.5 * g1;
        /* round 2: g2 = x1 - mean, p = 0.9 p + g2, x2 = x1 - lr p */
        double g2 = x1 - c.mean[i];
        double pm = 0.9 * g1 + g2;
        double x2 = x1 - 0.5 * pm;
        close_to(elem(arrays_of(r1), "w", (uint64_t)i), x1, 1e-15);
        close_to(elem(arrays_of(r2), "w", (uint64_t)i), x2, 1e-15);
    }
    petal_recorddict_free(r1);
    petal_recorddict_free(r2);
    petal_strategy_free(s);
    opt_case_fini(&c);
}
END_TEST

/* ---- QFedAvg ------------------------------------------------------------------------------- */

START_TEST(test_qfedavg_step)
{
    double x[2] = {1, 1};
    double w[2][2] = {{0, 2}, {3, 1}};
    double loss[2] = {0.5, 2.0};
    uint64_t nodes[2] = {1, 2};
    petal_message_t *m[2];
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *r;
    double q = 0.2;
    double L = 1.0 / 0.1;
    double sum_delta[2] = {0, 0};
    double sum_h = 0;

    add_array(ga, "w", PETAL_DTYPE_FLOAT64, 2, x);
    for (int k = 0; k < 2; k++) {
        m[k] = reply_wb(nodes[k], PETAL_DTYPE_FLOAT64, w[k], 2, NULL, 0, 10 + 20 * k, loss[k]);
    }
    ck_assert_int_eq(petal_strategy_params_init(&p, "qfedavg"), 0);
    ck_assert(p.q == 0.1);
    ck_assert_str_eq(p.train_loss_key, "train-loss");
    p.q = q;
    p.client_learning_rate = 0.1;
    s = make("qfedavg", NULL, &p);
    r = run_phase(s, ga, m, nodes, 2, NULL, 1, NULL);
    /* Li et al. / Flower: delta_k = F^q L (x - x_k), h_k = q F^(q-1) ||L (x - x_k)||^2 + L F^q */
    for (int k = 0; k < 2; k++) {
        double f = loss[k] + 1e-10;
        double norm = 0;
        for (int i = 0; i < 2; i++) {
            double gk = L * (x[i] - w[k][i]);
            norm += gk * gk;
            sum_delta[i] += pow(f, q) * gk;
        }
        sum_h += q * pow(f, q - 1) * norm + L * pow(f, q);
    }
    for (int i = 0; i < 2; i++) {
        close_to(elem(arrays_of(r), "w", (uint64_t)i), x[i] - sum_delta[i] / sum_h, 1e-13);
    }
    /* Metrics are weighted by num-examples, as usual. */
    close_to(metric_f64(petal_recorddict_metrics(r, "metrics"), "loss"),
             (10 * 0.5 + 30 * 2.0) / 40.0, 1e-15);
    petal_recorddict_free(r);
    petal_strategy_free(s);
    for (int k = 0; k < 2; k++) {
        petal_message_free(m[k]);
    }
    petal_recorddict_free(g);
}
END_TEST

/* ---- Arrival order, threads -------------------------------------------------------------------
 */

static const char *const all_names[] = {"fedavg",     "fedprox",   "fedadam",   "fedyogi",
                                        "fedadagrad", "fedavgm",   "fedmedian", "fedtrimmedavg",
                                        "krum",       "multikrum", "bulyan",    "qfedavg"};
#define NNAMES (sizeof(all_names) / sizeof(all_names[0]))

static petal_strategy_t *
make_any(const char *name, int deterministic, uint64_t parallel_min)
{
    petal_strategy_options_t o;
    petal_strategy_params_t p;

    petal_strategy_options_init(&o);
    o.min_train_nodes = RN;
    o.deterministic = deterministic;
    o.parallel_min_elements = parallel_min;
    ck_assert_int_eq(petal_strategy_params_init(&p, name), 0);
    p.num_malicious_nodes = 1;
    p.num_nodes_to_select = 3;
    p.client_learning_rate = 0.05;
    p.server_momentum = 0.5;
    p.proximal_mu = 0.1;
    return make(name, &o, &p);
}

START_TEST(test_arrival_order_does_not_matter)
{
    int in_order[RN];
    int reversed[RN];
    int shuffled[RN] = {3, 6, 0, 5, 1, 4, 2};
    random_case_t c;

    for (int i = 0; i < RN; i++) {
        in_order[i] = i;
        reversed[i] = RN - 1 - i;
    }
    random_case_init(&c, 5);
    for (size_t k = 0; k < NNAMES; k++) {
        petal_strategy_t *s = make_any(all_names[k], 1, (uint64_t)1 << 20);
        petal_recorddict_t *a = run_phase(s, c.ga, c.m, c.nodes, RN, in_order, 1, NULL);
        petal_recorddict_t *b = run_phase(s, c.ga, c.m, c.nodes, RN, reversed, 1, NULL);
        petal_recorddict_t *d = run_phase(s, c.ga, c.m, c.nodes, RN, shuffled, 1, NULL);

        ck_assert_msg(pt_recorddict_equal(a, b), "%s: reversed", all_names[k]);
        ck_assert_msg(pt_recorddict_equal(a, d), "%s: shuffled", all_names[k]);
        ck_assert_uint_eq(petal_arrayrecord_count(arrays_of(a)), 2);
        petal_recorddict_free(b);
        petal_recorddict_free(d);
        petal_strategy_free(s);
        /* Order statistics do not even need `deterministic`: they compute in send order. */
        if (k >= 6 && k <= 10) {
            s = make_any(all_names[k], 0, (uint64_t)1 << 20);
            b = run_phase(s, c.ga, c.m, c.nodes, RN, shuffled, 1, NULL);
            ck_assert_msg(pt_recorddict_equal(a, b), "%s: on arrival", all_names[k]);
            petal_recorddict_free(b);
            petal_strategy_free(s);
        }
        petal_recorddict_free(a);
    }
    random_case_fini(&c);
}
END_TEST

START_TEST(test_parallel_matches_serial)
{
    pt_runtime_opts_t ro = {.workers = 2};
    pt_runtime_t *rt = NULL;
    petal_recorddict_t *g = petal_recorddict_alloc();
    petal_arrayrecord_t *ga = petal_recorddict_add_arrays(g, "arrays");
    uint64_t sizes[3] = {9001, 3, 7000};
    const char *names[3] = {"a", "b", "c"};
    int32_t dtypes[3] = {PETAL_DTYPE_FLOAT32, PETAL_DTYPE_FLOAT64, PETAL_DTYPE_FLOAT32};
    petal_message_t *m[RN];
    uint64_t nodes[RN];
    double *vals = malloc(9001 * sizeof(double));
    uint64_t seed = 3;

    ck_assert_ptr_nonnull(vals);
    ck_assert_int_eq(pt_runtime_alloc(&ro, &rt), 0);
    for (int j = 0; j < 3; j++) {
        add_array(ga, names[j], dtypes[j], sizes[j], NULL);
    }
    for (int r = 0; r < RN; r++) {
        petal_recorddict_t *ct = petal_recorddict_alloc();
        petal_arrayrecord_t *a = petal_recorddict_add_arrays(ct, "arrays");
        petal_metricrecord_t *mr = petal_recorddict_add_metrics(ct, "metrics");
        petal_metadata_t md;
        for (int j = 0; j < 3; j++) {
            for (uint64_t i = 0; i < sizes[j]; i++) {
                vals[i] = 2.0 * uniform(&seed) - 1.0;
            }
            add_array(a, names[j], dtypes[j], sizes[j], vals);
        }
        set_i64(mr, "num-examples", 1 + r);
        set_f64(mr, "train-loss", uniform(&seed));
        nodes[r] = 40 + (uint64_t)r;
        pt_metadata_init(&md);
        md.src_node_id = nodes[r];
        m[r] = pt_message_alloc_meta(&md, ct);
    }
    for (size_t k = 0; k < NNAMES; k++) {
        petal_strategy_t *ser = make_any(all_names[k], 1, (uint64_t)1 << 20);
        petal_strategy_t *par = make_any(all_names[k], 1, 1);
        petal_recorddict_t *a = run_phase(ser, ga, m, nodes, RN, NULL, 1, NULL);
        petal_recorddict_t *b = run_phase(par, ga, m, nodes, RN, NULL, 1, rt);
        ck_assert_msg(pt_recorddict_equal(a, b), "%s: pool != serial", all_names[k]);
        petal_recorddict_free(a);
        petal_recorddict_free(b);
        petal_strategy_free(ser);
        petal_strategy_free(par);
    }
    for (int r = 0; r < RN; r++) {
        petal_message_free(m[r]);
    }
    free(vals);
    petal_recorddict_free(g);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

/* ---- A fake grid: the loop, FedProx's config, the default server ------------------------------
 */

/* What FedProx's fake ClientApp looks for and saw (when the test points f->ctx at one). */
typedef struct mu_seen {
    double want_mu;
    int saw_mu;   /* train messages with "proximal-mu" == want_mu */
    int saw_user; /* train messages with the user hook's key */
} mu_seen_t;

/* The fake ClientApp: train moves each element towards 1 with a per-node offset; node 11 is
 * malicious when the run says so (config "attack"). */
static petal_message_t *
fg_client(fake_grid_t *f, petal_message_t *msg)
{
    petal_metadata_t md;
    const petal_recorddict_t *in = petal_message_content(msg);
    const petal_configrecord_t *cfg = petal_recorddict_config(in, "config");
    petal_recorddict_t *out = petal_recorddict_alloc();
    mu_seen_t *seen = f->ctx;
    petal_value_t v;

    petal_message_metadata(msg, &md);
    if (strcmp(md.message_type, "query.init-arrays") == 0) {
        double zeros[64] = {0};
        add_array(petal_recorddict_add_arrays(out, "arrays"), "w", PETAL_DTYPE_FLOAT32, 64, zeros);
        return pt_message_alloc_reply(msg, out);
    }
    if (strcmp(md.message_type, "train") == 0) {
        const petal_array_t *w = petal_arrayrecord_get(petal_recorddict_arrays(in, "arrays"), "w");
        const float *x = petal_array_data(w);
        double y[64];
        uint64_t s = md.dst_node_id;
        int attack = cfg != NULL && petal_configrecord_get(cfg, "attack", &v) == 0 &&
                     md.dst_node_id == f->nodes[0];

        if (seen != NULL && cfg != NULL && petal_configrecord_get(cfg, "proximal-mu", &v) == 0 &&
            v.type == PETAL_VALUE_DOUBLE && v.as.f64 == seen->want_mu) {
            seen->saw_mu++;
        }
        if (seen != NULL && cfg != NULL && petal_configrecord_get(cfg, "user-key", &v) == 0) {
            seen->saw_user++;
        }
        for (int i = 0; i < 64; i++) {
            y[i] = attack ? -1000.0
                          : (double)x[i] + 0.5 * (1.0 - (double)x[i]) + 0.01 * (uniform(&s) - 0.5);
        }
        add_array(petal_recorddict_add_arrays(out, "arrays"), "w", PETAL_DTYPE_FLOAT32, 64, y);
        set_i64(petal_recorddict_add_metrics(out, "metrics"), "num-examples",
                (int64_t)md.dst_node_id);
        set_f64(petal_recorddict_add_metrics(out, "metrics"), "train-loss",
                fabs(1.0 - (double)x[0]));
    } else {
        set_i64(petal_recorddict_add_metrics(out, "metrics"), "num-examples", 10);
        set_f64(petal_recorddict_add_metrics(out, "metrics"), "accuracy", 0.5);
    }
    return pt_message_alloc_reply(msg, out);
}

static void
fg_init(fake_grid_t *f, uint64_t n, uint64_t delivery_seed)
{
    fake_grid_init(f, n, delivery_seed, fg_client);
}

static int32_t
user_hook(void *ctx, uint32_t round, petal_configrecord_t *config)
{
    petal_value_t v = petal_value_f64(9.0);
    petal_value_t u = petal_value_i64(round);

    (void)ctx;
    ck_assert_int_eq(petal_configrecord_set(config, "proximal-mu", &v), 0);
    return petal_configrecord_set(config, "user-key", &u);
}

START_TEST(test_fedprox_sends_mu)
{
    fake_grid_t f;
    petal_strategy_options_t o;
    petal_strategy_params_t p;
    petal_strategy_t *s;
    petal_recorddict_t *init = petal_recorddict_alloc();
    double zeros[64] = {0};
    mu_seen_t seen = {.want_mu = 0.25};

    add_array(petal_recorddict_add_arrays(init, "arrays"), "w", PETAL_DTYPE_FLOAT32, 64, zeros);
    fg_init(&f, 4, 1);
    f.ctx = &seen;
    petal_strategy_options_init(&o);
    o.fraction_evaluate = 0.0;
    o.train_config_fn = user_hook; /* chained: its keys stay, FedProx's mu wins */
    ck_assert_int_eq(petal_strategy_params_init(&p, "fedprox"), 0);
    ck_assert(p.proximal_mu == 0.0);
    p.proximal_mu = 0.25;
    s = make("fedprox", &o, &p);
    ck_assert_int_eq(
        petal_strategy_start(s, &f.base, petal_recorddict_arrays(init, "arrays"), 2, NULL), 0);
    ck_assert_int_eq(f.train_msgs, 8);
    ck_assert_int_eq(seen.saw_mu, 8);
    ck_assert_int_eq(seen.saw_user, 8);
    ck_assert_ptr_nonnull(f.final);
    petal_recorddict_free(f.final);
    petal_strategy_free(s);
    petal_recorddict_free(init);
}
END_TEST

/* ---- Checks before round 1 ------------------------------------------------------------------- */

#define S(x) petal_value_str(x, sizeof(x) - 1)
#define I(x) petal_value_i64(x)
#define F(x) petal_value_f64(x)

START_TEST(test_misconfigured_fail_before_round_1)
{
    struct {
        const char *keys[3];
        petal_value_t vals[3];
        int n;
        const char *expect;
    } cases[] = {
        {{"strategy", "num-malicious-nodes", "min-train-nodes"},
         {S("krum"), I(2), I(5)},
         3,
         "krum: num-malicious-nodes 2 needs at least 2*2+3 = 7 sampled nodes per round, "
         "min-train-nodes is 5"},
        {{"strategy", "num-malicious-nodes", "min-train-nodes"},
         {S("bulyan"), I(1), I(5)},
         3,
         "bulyan: num-malicious-nodes 1 needs at least 4*1+3 = 7 sampled nodes per round, "
         "min-train-nodes is 5"},
        {{"strategy", "num-nodes-to-select"}, {S("multikrum"), I(0)}, 2, "num-nodes-to-select"},
        {{"strategy", "num-nodes-to-select"}, {S("multikrum"), I(5)}, 2, "min-train-nodes is 2"},
        {{"strategy", "beta"}, {S("fedtrimmedavg"), F(0.5)}, 2, "within [0, 0.5), got 0.5"},
        {{"strategy"}, {S("qfedavg")}, 1, "client-learning-rate"},
        {{"strategy", "q"}, {S("qfedavg"), F(-1)}, 2, "client-learning-rate"},
        {{"strategy", "beta-1"}, {S("fedadam"), F(1.0)}, 2, "fedadam: beta-1 must be within"},
        {{"strategy", "tau"}, {S("fedyogi"), F(0)}, 2, "fedyogi: tau must be > 0"},
        {{"strategy", "eta"},
         {S("fedadagrad"), S("fast")},
         2,
         "run config key \"eta\" must be a number, got a string"},
        {{"strategy", "server-momentum"}, {S("fedavgm"), F(-0.1)}, 2, "server-momentum"},
        {{"strategy", "proximal-mu"}, {S("fedprox"), F(-1)}, 2, "proximal-mu must be"},
        {{"strategy", "num-malicious-nodes"},
         {S("krum"), F(1.5)},
         2,
         "\"num-malicious-nodes\" must be a whole number >= 0, got 1.5"},
        {{"strategy"},
         {S("fedsgd")},
         1,
         "unknown strategy \"fedsgd\"; supported: fedavg, fedprox, fedadam, fedyogi, "
         "fedadagrad, fedavgm, fedmedian, fedtrimmedavg, krum, multikrum, bulyan, qfedavg"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_grid_t f;
        petal_context_t *ctx = fg_server_context(cases[i].keys, cases[i].vals, cases[i].n);
        fg_init(&f, 5, 4);
        ck_assert_int_eq(pt_default_server_main(&f.base, ctx), PETAL_ECONFIG);
        ck_assert_msg(strstr(pt_context_error(ctx), cases[i].expect), "case %zu: %s", i,
                      pt_context_error(ctx));
        ck_assert_int_eq(f.queries, 0); /* nothing was sent */
        ck_assert_int_eq(f.train_msgs, 0);
        pt_context_free(ctx);
    }
}
END_TEST

START_TEST(test_check_api)
{
    petal_strategy_options_t o;
    petal_strategy_params_t p;
    petal_strategy_t *s = NULL;
    char why[512] = "";

    petal_strategy_options_init(&o);
    o.min_train_nodes = 5;
    ck_assert_int_eq(petal_strategy_params_init(&p, "krum"), 0);
    p.num_malicious_nodes = 2;
    ck_assert_int_eq(petal_strategy_check("krum", &o, &p, why, sizeof(why)), PETAL_EINVAL);
    ck_assert_str_eq(why, "krum: num-malicious-nodes 2 needs at least 2*2+3 = 7 sampled nodes "
                          "per round, min-train-nodes is 5");
    ck_assert_int_eq(petal_strategy_alloc("krum", &o, &p, why, sizeof(why), &s), PETAL_EINVAL);
    ck_assert_ptr_null(s);
    o.min_train_nodes = 7;
    ck_assert_int_eq(petal_strategy_check("krum", &o, &p, why, sizeof(why)), 0);
    /* f = 0 promises nothing, so any sample size works. */
    p.num_malicious_nodes = 0;
    o.min_train_nodes = 2;
    ck_assert_int_eq(petal_strategy_check("krum", &o, &p, why, sizeof(why)), 0);
    ck_assert_int_eq(petal_strategy_check("bulyan", &o, NULL, why, sizeof(why)), 0);
    ck_assert_int_eq(petal_strategy_params_init(&p, "nope"), PETAL_ENOENT);
    ck_assert_int_eq(petal_strategy_alloc("nope", NULL, NULL, why, sizeof(why), &s), PETAL_ENOENT);
    ck_assert_msg(strstr(why, "supported: fedavg, fedprox") != NULL, "%s", why);
    ck_assert_int_eq(petal_strategy_alloc_by_name("nope", NULL, &s), PETAL_ENOENT);
    /* Every name allocates with its defaults, except qfedavg, which needs the clients' lr. */
    for (size_t k = 0; k < NNAMES; k++) {
        int32_t rc = petal_strategy_alloc_by_name(all_names[k], NULL, &s);
        if (strcmp(all_names[k], "qfedavg") == 0) {
            ck_assert_int_eq(rc, PETAL_EINVAL);
            continue;
        }
        ck_assert_msg(rc == 0, "%s", all_names[k]);
        ck_assert_str_eq(s->ops->name, all_names[k]);
        petal_strategy_free(s);
        s = NULL;
    }
    ck_assert(strstr(petal_strategy_names(), "qfedavg") != NULL);
}
END_TEST

START_TEST(test_params_read)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_configrecord_t *c = petal_recorddict_add_config(d, "c");
    petal_strategy_params_t p;
    petal_value_t v;
    char why[256] = "";

    v = F(0.5);
    petal_configrecord_set(c, "eta", &v);
    v = I(1);
    petal_configrecord_set(c, "tau", &v); /* an integer is a number */
    v = F(0.03);
    petal_configrecord_set(c, "lr", &v);
    v = S("loss");
    petal_configrecord_set(c, "train-loss-key", &v);
    v = F(2.0);
    petal_configrecord_set(c, "num-malicious-nodes", &v); /* a whole double is a count */
    ck_assert_int_eq(petal_strategy_params_read(&p, "fedyogi", c, why, sizeof(why)), 0);
    ck_assert(p.eta == 0.5 && p.tau == 1.0 && p.eta_l == 0.0316);
    ck_assert_int_eq(petal_strategy_params_read(&p, "qfedavg", c, why, sizeof(why)), 0);
    ck_assert(p.client_learning_rate == 0.03); /* from "lr" */
    ck_assert_str_eq(p.train_loss_key, "loss");
    v = F(0.2);
    petal_configrecord_set(c, "client-learning-rate", &v);
    ck_assert_int_eq(petal_strategy_params_read(&p, "qfedavg", c, why, sizeof(why)), 0);
    ck_assert(p.client_learning_rate == 0.2);
    ck_assert_int_eq(petal_strategy_params_read(&p, "bulyan", c, why, sizeof(why)), 0);
    ck_assert_uint_eq(p.num_malicious_nodes, 2);
    ck_assert_int_eq(petal_strategy_params_read(&p, "x", c, why, sizeof(why)), PETAL_ENOENT);
    petal_recorddict_free(d);
}
END_TEST

/* ---- The default server runs every strategy ----------------------------------------------- */

START_TEST(test_default_server_every_strategy)
{
    for (size_t k = 0; k < NNAMES; k++) {
        fake_grid_t f;
        const char *keys[6] = {
            "strategy", "num-server-rounds", "num-malicious-nodes", "min-train-nodes", "lr",
            "attack"};
        petal_value_t vals[6] = {
            petal_value_str(all_names[k], strlen(all_names[k])), I(3), I(1), I(7), F(0.1), I(1)};
        int robust = k >= 6 && k <= 10;
        petal_context_t *ctx = fg_server_context(keys, vals, robust ? 6 : 5);
        const petal_arrayrecord_t *a;

        fg_init(&f, 8, k + 1);
        ck_assert_msg(pt_default_server_main(&f.base, ctx) == 0, "%s: %s", all_names[k],
                      pt_context_error(ctx));
        ck_assert_int_eq(f.train_records, 3);
        ck_assert_ptr_nonnull(f.final);
        a = petal_recorddict_arrays(f.final, "arrays");
        /* Every strategy moves the model from 0 towards 1 (the robust ones despite node 11
         * answering -1000 everywhere). */
        for (uint64_t i = 0; i < 64; i++) {
            double x = elem(a, "w", i);
            ck_assert_msg(x > 0.02 && x < 1.5, "%s: w[%" PRIu64 "] = %g", all_names[k], i, x);
        }
        petal_recorddict_free(f.final);
        pt_context_free(ctx);
    }
}
END_TEST

START_TEST(test_host_table_runs_default_server)
{
    const petal_host_api_v1_t *h = petal_host_api();
    fake_grid_t f;
    const char *keys[2] = {"strategy", "num-server-rounds"};
    petal_value_t vals[2] = {S("fedmedian"), I(2)};
    petal_context_t *ctx = fg_server_context(keys, vals, 2);

    ck_assert(PETAL_HOST_HAS(h, run_default_server));
    fg_init(&f, 3, 9);
    ck_assert_int_eq(h->run_default_server(&f.base, ctx), 0);
    ck_assert_int_eq(f.queries, 1);
    ck_assert_int_eq(f.train_records, 2);
    petal_recorddict_free(f.final);
    pt_context_free(ctx);

    /* Errors come back with the reason on the context. */
    vals[0] = S("krum");
    keys[1] = "num-malicious-nodes";
    vals[1] = I(3);
    ctx = fg_server_context(keys, vals, 2);
    fg_init(&f, 3, 9);
    ck_assert_int_eq(h->run_default_server(&f.base, ctx), PETAL_ECONFIG);
    ck_assert_msg(strstr(pt_context_error(ctx), "2*3+3 = 9"), "%s", pt_context_error(ctx));
    pt_context_free(ctx);
}
END_TEST

static Suite *
strategies_suite(void)
{
    Suite *s = suite_create("strategies");
    TCase *math = tcase_create("math");
    TCase *order = tcase_create("order");
    TCase *config = tcase_create("config");
    TCase *loop = tcase_create("loop");

    tcase_add_test(math, test_median_hand);
    tcase_add_test(math, test_trimmed_mean_hand);
    tcase_add_test(math, test_krum_outlier);
    tcase_add_test(math, test_bulyan_hand);
    tcase_add_test(math, test_order_statistics_match_reference);
    tcase_add_test(math, test_fedopt_steps);
    tcase_add_test(math, test_fedavgm_two_rounds);
    tcase_add_test(math, test_qfedavg_step);
    tcase_add_test(order, test_arrival_order_does_not_matter);
    tcase_add_test(order, test_parallel_matches_serial);
    tcase_add_test(config, test_misconfigured_fail_before_round_1);
    tcase_add_test(config, test_check_api);
    tcase_add_test(config, test_params_read);
    tcase_add_test(loop, test_fedprox_sends_mu);
    tcase_add_test(loop, test_default_server_every_strategy);
    tcase_add_test(loop, test_host_table_runs_default_server);
    suite_add_tcase(s, math);
    suite_add_tcase(s, order);
    suite_add_tcase(s, config);
    suite_add_tcase(s, loop);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(strategies_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
