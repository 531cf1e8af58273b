/* strategy_robust.c - FedMedian and FedTrimmedAvg: element-wise order statistics of replies. */
#include <petal/strategy.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/grid.h"
#include "runtime/log.h"

/*
 * FedMedian (Yin et al., 2018): each element of the new arrays is the median of that element
 * over the accepted replies (the mean of the two middle values for an even count), unweighted.
 * FedTrimmedAvg: the mean after dropping the floor(beta * n) smallest and largest values of each
 * element (scipy's trim_mean, as in Flower).
 *
 * Both need every reply at once: fold() keeps a reference to each reply's arrays (no copy, at
 * its send position) and end() computes element ranges on the worker pool. Memory: the
 * replies' arrays (already received) plus one output model. The train metrics are the
 * aggregator's over all accepted replies, in send order.
 */

typedef struct robust {
    petal_strategy_t base;
    int trimmed;
    double beta;
} robust_t;

typedef struct robust_agg {
    pt_replies_t *r;
    struct pt_runtime *rt;
} robust_agg_t;

static double
col_median(double *c, uint64_t n, void *arg)
{
    uint64_t k = n / 2;
    double hi = pt_select(c, n, k);
    double lo;

    (void)arg;
    if (n % 2 == 1) {
        return hi;
    }
    lo = c[0]; /* the largest of c[0..k), all <= hi */
    for (uint64_t i = 1; i < k; i++) {
        if (c[i] > lo) {
            lo = c[i];
        }
    }
    return (lo + hi) / 2.0;
}

static double
col_trimmed(double *c, uint64_t n, void *arg)
{
    uint64_t cut = *(const uint64_t *)arg;
    uint64_t keep = n - 2 * cut;
    double sum = 0.0;

    if (cut > 0) {
        pt_select(c, n, cut);                  /* c[0..cut): the smallest */
        pt_select(c + cut, n - cut, keep - 1); /* c[n-cut..n): the largest */
    }
    for (uint64_t i = cut; i < cut + keep; i++) {
        sum += c[i];
    }
    return sum / (double)keep;
}

static void
robust_agg_free(petal_strategy_t *s, void *agg)
{
    robust_agg_t *a = agg;

    (void)s;
    if (a != NULL) {
        pt_replies_free(a->r);
        free(a);
    }
}

static int32_t
robust_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    robust_agg_t *a = calloc(1, sizeof(*a));
    int32_t rc;

    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->rt = pt_grid_runtime(info->grid);
    rc = pt_replies_alloc(info, ((robust_t *)s)->trimmed ? "FedTrimmedAvg" : "FedMedian", s->error,
                          sizeof(s->error), &a->r);
    if (rc != 0) {
        free(a);
        return rc;
    }
    *agg = a;
    return 0;
}

static int32_t
robust_fold(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply, char *why,
            size_t why_len)
{
    robust_agg_t *a = agg;
    return pt_replies_hold(a->r, s, index, reply, why, why_len);
}

static int32_t
robust_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
           petal_metricrecord_t *metrics)
{
    robust_t *x = (robust_t *)s;
    robust_agg_t *a = agg;
    pt_replies_t *r = a->r;
    void **out = NULL;
    uint64_t cut = 0;
    int32_t rc;

    pt_replies_seal(r);
    if (r->count == 0) {
        snprintf(s->error, sizeof(s->error), "%s: no reply to aggregate", s->ops->name);
        return PETAL_ESTATE;
    }
    out = calloc(r->layout->narrays > 0 ? r->layout->narrays : 1, sizeof(*out));
    if (out == NULL) {
        return PETAL_ENOMEM;
    }
    rc = pt_layout_add_arrays(r->layout, arrays, out);
    if (rc == 0) {
        if (x->trimmed) {
            /* As Flower (and scipy's trim_mean): int(beta * n) from each end. */
            cut = (uint64_t)(x->beta * (double)r->count);
            if (2 * cut >= r->count) {
                cut = (r->count - 1) / 2; /* cannot happen with beta < 0.5; keep one */
            }
        }
        rc = pt_columns(r->layout, (const pt_held_t *const *)r->held, r->count, out, a->rt,
                        s->opts.parallel_min_elements, x->trimmed ? col_trimmed : col_median, &cut);
    }
    free(out);
    if (rc != 0) {
        snprintf(s->error, sizeof(s->error), "%s: %s", s->ops->name, petal_strerror(rc));
        return rc;
    }
    PT_DEBUG("%s: %" PRIu64 " replies%s", s->ops->name, r->count, x->trimmed ? ", trimmed" : "");
    return pt_replies_metrics(r, s, NULL, 0, metrics);
}

static void
robust_free(petal_strategy_t *s)
{
    free((robust_t *)s);
}

#define ROBUST_OPS(ident, label)                                                                   \
    static const petal_strategy_ops_t ident = {                                                    \
        .name = label,                                                                             \
        .configure_train = NULL,                                                                   \
        .aggregate_train =                                                                         \
            {                                                                                      \
                .begin = robust_begin,                                                             \
                .fold = robust_fold,                                                               \
                .end = robust_end,                                                                 \
                .free = robust_agg_free,                                                           \
            },                                                                                     \
        .configure_evaluate = NULL,                                                                \
        .aggregate_evaluate = {NULL, NULL, NULL, NULL},                                            \
        .free = robust_free,                                                                       \
    }

ROBUST_OPS(fedmedian_ops, "fedmedian");
ROBUST_OPS(fedtrimmedavg_ops, "fedtrimmedavg");

int32_t
pt_strategy_robust_ctor(const char *name, const petal_strategy_options_t *opts,
                        const petal_strategy_params_t *p, petal_strategy_t **out)
{
    int trimmed = strcmp(name, "fedtrimmedavg") == 0;
    robust_t *x;
    int32_t rc;

    if (!trimmed && strcmp(name, "fedmedian") != 0) {
        return PETAL_ENOENT;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&x->base, trimmed ? &fedtrimmedavg_ops : &fedmedian_ops, opts);
    if (rc != 0) {
        free(x);
        return rc;
    }
    x->trimmed = trimmed;
    x->beta = p->beta;
    *out = &x->base;
    return 0;
}
