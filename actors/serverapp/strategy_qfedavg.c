/* strategy_qfedavg.c - q-FedAvg: fair aggregation weighted by each node's training loss. */
#include <petal/strategy.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/grid.h"
#include "runtime/log.h"

/*
 * Li et al., "Fair Resource Allocation in Federated Learning" (ICLR 2020), as in Flower's
 * QFedAvg. With x the global arrays, x_k a reply's arrays, F_k its training loss (metric
 * train-loss-key, + 1e-10), L = 1 / client-learning-rate:
 *
 *   delta_k = F_k^q * L * (x - x_k)
 *   h_k     = q * F_k^(q-1) * ||L * (x - x_k)||^2 + L * F_k^q
 *   x      <- x - sum_k delta_k / sum_k h_k
 *
 * Streaming: with c_k = L * F_k^q, sum_k delta_k = C * (x - xbar) where C = sum_k c_k and xbar
 * is the c-weighted mean of the x_k, so each reply is folded into FedAvg's running sums with
 * weight c_k (memory O(model)), its ||x - x_k||^2 is computed on arrival (in parallel for large
 * models), and end() writes x + (C / H) * (xbar - x), H = sum_k h_k. The train metrics are the
 * usual aggregator's, weighted by num-examples.
 */

#define UPDATE_CHUNK ((uint64_t)1 << 16)
#define BLOCK 256

typedef struct qfedavg {
    petal_strategy_t base;
    double q;
    double lr;
    char *loss_key;
} qfedavg_t;

typedef struct qfedavg_agg {
    pt_fedavg_acc_t *acc;
    const petal_metrics_aggr_t *aggr;
    void *mstate;
    struct pt_runtime *rt;
    const petal_round_info_t *info;
    const void **x;  /* the global arrays' data */
    const void **xk; /* scratch: a reply's data */
    double sum_h;
} qfedavg_agg_t;

static void
qfedavg_agg_free(petal_strategy_t *s, void *agg)
{
    qfedavg_agg_t *a = agg;

    (void)s;
    if (a == NULL) {
        return;
    }
    if (a->mstate != NULL) {
        a->aggr->free(a->mstate);
    }
    pt_fedavg_acc_free(a->acc);
    free(a->x);
    free(a->xk);
    free(a);
}

static int32_t
qfedavg_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    qfedavg_agg_t *a = calloc(1, sizeof(*a));
    const pt_layout_t *l;
    int32_t rc;

    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->info = info;
    a->rt = pt_grid_runtime(info->grid);
    a->aggr = s->opts.train_metrics_aggr != NULL ? s->opts.train_metrics_aggr
                                                 : petal_metrics_aggr_weighted_mean();
    rc = pt_fedavg_acc_alloc(info->arrays, s->opts.parallel_min_elements, s->error,
                             sizeof(s->error), &a->acc);
    if (rc == 0) {
        l = pt_fedavg_acc_layout(a->acc);
        a->x = calloc(l->narrays > 0 ? l->narrays : 1, sizeof(*a->x));
        a->xk = calloc(l->narrays > 0 ? l->narrays : 1, sizeof(*a->xk));
        rc = a->x != NULL && a->xk != NULL ? 0 : PETAL_ENOMEM;
        if (rc == 0) {
            rc = pt_layout_check(l, info->arrays, a->x, s->error, sizeof(s->error));
        }
    }
    if (rc == 0) {
        rc = a->aggr->begin(a->aggr->ctx, s->opts.weighted_by_key, &a->mstate);
    }
    if (rc != 0) {
        qfedavg_agg_free(s, a);
        return rc;
    }
    *agg = a;
    return 0;
}

static int32_t
qfedavg_fold(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply,
             char *why, size_t why_len)
{
    qfedavg_t *x = (qfedavg_t *)s;
    qfedavg_agg_t *a = agg;
    const petal_recorddict_t *content = petal_message_content(reply);
    const petal_arrayrecord_t *arrays;
    const petal_metricrecord_t *m;
    const pt_layout_t *l = pt_fedavg_acc_layout(a->acc);
    petal_value_t v;
    double w;
    double loss;
    double fq;
    double L = 1.0 / x->lr;
    double sq;
    double c;
    double h;
    int32_t rc;

    (void)index;
    if (content == NULL) {
        snprintf(why, why_len, "the reply has no content");
        return PETAL_EINVAL;
    }
    arrays = petal_recorddict_arrays(content, s->opts.arrayrecord_key);
    if (arrays == NULL) {
        snprintf(why, why_len, "no ArrayRecord '%s' in the reply", s->opts.arrayrecord_key);
        return PETAL_EINVAL;
    }
    rc = petal_strategy_reply_weight(s, content, &w, why, why_len);
    if (rc != 0) {
        return rc;
    }
    m = petal_strategy_reply_metrics(content);
    if (m == NULL || petal_metricrecord_get(m, x->loss_key, &v) != 0 ||
        petal_value_as_f64(&v, &loss) != 0) {
        snprintf(why, why_len,
                 "qfedavg needs the training loss as a number in metric '%s' (train-loss-key)",
                 x->loss_key);
        return PETAL_EINVAL;
    }
    if (!(loss >= 0.0) || !isfinite(loss)) {
        snprintf(why, why_len, "metric '%s' must be a finite loss >= 0, got %g", x->loss_key, loss);
        return PETAL_EINVAL;
    }
    rc = pt_layout_check(l, arrays, a->xk, why, why_len);
    if (rc != 0) {
        return rc;
    }
    fq = pow(loss + 1e-10, x->q);
    sq = pt_layout_sqdist(l, a->x, a->xk, a->rt, s->opts.parallel_min_elements);
    c = L * fq;
    h = x->q * pow(loss + 1e-10, x->q - 1.0) * L * L * sq + L * fq;
    if (!(c > 0.0) || !isfinite(c) || !isfinite(h)) {
        snprintf(why, why_len, "q-FedAvg weights overflow (loss %g, q %g)", loss, x->q);
        return PETAL_EINVAL;
    }
    rc = a->aggr->fold(a->mstate, m, w);
    if (rc != 0) {
        snprintf(why, why_len, "metrics aggregation failed: %s", petal_strerror(rc));
        return rc;
    }
    rc = pt_fedavg_acc_fold(a->acc, arrays, c, a->rt, why, why_len);
    if (rc == 0) {
        a->sum_h += h;
    }
    return rc;
}

typedef struct update_job {
    const pt_layout_t *l;
    const void *const *x;
    void *const *y;
    const double *mean;
    double step; /* C / H */
} update_job_t;

static void
update_range(uint64_t lo, uint64_t hi, void *arg)
{
    const update_job_t *u = arg;
    double buf[BLOCK];

    for (uint64_t b = lo; b < hi; b += BLOCK) {
        uint64_t e = b + BLOCK < hi ? b + BLOCK : hi;

        pt_layout_load(u->l, u->x, b, e, buf);
        for (uint64_t i = b; i < e; i++) {
            double xi = buf[i - b];
            buf[i - b] = xi + u->step * (u->mean[i] - xi);
        }
        pt_layout_store(u->l, u->y, b, e, buf);
    }
}

static int32_t
qfedavg_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
            petal_metricrecord_t *metrics)
{
    qfedavg_agg_t *a = agg;
    const pt_layout_t *l = pt_fedavg_acc_layout(a->acc);
    update_job_t job;
    void **y;
    int32_t rc;

    memset(&job, 0, sizeof(job));
    job.mean = pt_fedavg_acc_mean(a->acc, a->rt);
    if (job.mean == NULL || !(a->sum_h > 0.0)) {
        snprintf(s->error, sizeof(s->error), "qfedavg: no reply was aggregated");
        return PETAL_ESTATE;
    }
    y = calloc(l->narrays > 0 ? l->narrays : 1, sizeof(*y));
    if (y == NULL) {
        return PETAL_ENOMEM;
    }
    rc = pt_layout_add_arrays(l, arrays, y);
    if (rc != 0) {
        free(y);
        return rc;
    }
    job.l = l;
    job.x = a->x;
    job.y = y;
    job.step = pt_fedavg_acc_total_weight(a->acc) / a->sum_h;
    pt_parallel_ranges(a->rt, l->numel, UPDATE_CHUNK, s->opts.parallel_min_elements, update_range,
                       &job);
    free(y);
    return a->aggr->end(a->mstate, metrics);
}

static void
qfedavg_free(petal_strategy_t *s)
{
    qfedavg_t *x = (qfedavg_t *)s;

    free(x->loss_key);
    free(x);
}

static const petal_strategy_ops_t qfedavg_ops = {
    .name = "qfedavg",
    .configure_train = NULL,
    .aggregate_train =
        {
            .begin = qfedavg_begin,
            .fold = qfedavg_fold,
            .end = qfedavg_end,
            .free = qfedavg_agg_free,
        },
    .configure_evaluate = NULL,
    .aggregate_evaluate = {NULL, NULL, NULL, NULL},
    .free = qfedavg_free,
};

int32_t
pt_strategy_qfedavg_ctor(const char *name, const petal_strategy_options_t *opts,
                         const petal_strategy_params_t *p, petal_strategy_t **out)
{
    qfedavg_t *x = calloc(1, sizeof(*x));
    int32_t rc;

    (void)name;
    if (x == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&x->base, &qfedavg_ops, opts);
    if (rc != 0) {
        free(x);
        return rc;
    }
    x->q = p->q;
    x->lr = p->client_learning_rate;
    x->loss_key = strdup(p->train_loss_key);
    if (x->loss_key == NULL) {
        free(x);
        return PETAL_ENOMEM;
    }
    PT_DEBUG("qfedavg: q %g, client-learning-rate %g, train-loss-key '%s'", x->q, x->lr,
             x->loss_key);
    *out = &x->base;
    return 0;
}
