/* fedavg.c - FedAvg: the weighted mean of the replies' arrays, folded as they arrive. */
#include <petal/strategy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/grid.h"
#include "runtime/log.h"

typedef struct fedavg {
    petal_strategy_t base;
} fedavg_t;

void
pt_fedavg_agg_free(petal_strategy_t *s, void *agg)
{
    pt_fedavg_agg_t *a = agg;

    (void)s;
    if (a == NULL) {
        return;
    }
    if (a->mstate != NULL) {
        a->aggr->free(a->mstate);
    }
    pt_fedavg_acc_free(a->acc);
    free(a);
}

int32_t
pt_fedavg_agg_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    pt_fedavg_agg_t *a = calloc(1, sizeof(*a));
    int32_t rc;

    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->info = info;
    a->aggr = s->opts.train_metrics_aggr != NULL ? s->opts.train_metrics_aggr
                                                 : petal_metrics_aggr_weighted_mean();
    a->rt = pt_grid_runtime(info->grid);
    rc = pt_fedavg_acc_alloc(info->arrays, s->opts.parallel_min_elements, s->error,
                             sizeof(s->error), &a->acc);
    if (rc == 0) {
        rc = a->aggr->begin(a->aggr->ctx, s->opts.weighted_by_key, &a->mstate);
    }
    if (rc != 0) {
        pt_fedavg_agg_free(s, a);
        return rc;
    }
    *agg = a;
    return 0;
}

int32_t
pt_fedavg_agg_fold(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply,
                   char *why, size_t why_len)
{
    pt_fedavg_agg_t *a = agg;
    const petal_recorddict_t *content = petal_message_content(reply);
    const petal_arrayrecord_t *arrays;
    double w;
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
    if (rc == 0) {
        rc = pt_fedavg_acc_check(a->acc, arrays, why, why_len);
    }
    if (rc != 0) {
        return rc;
    }
    /* Metrics first: once the arrays are checked their fold cannot fail, so a failing metrics
     * fold leaves the sums untouched. */
    rc = a->aggr->fold(a->mstate, petal_strategy_reply_metrics(content), w);
    if (rc != 0) {
        snprintf(why, why_len, "metrics aggregation failed: %s", petal_strerror(rc));
        return rc;
    }
    return pt_fedavg_acc_fold_reply(a->acc, reply, arrays, w, a->rt, why, why_len);
}

int32_t
pt_fedavg_agg_end_metrics(pt_fedavg_agg_t *a, petal_metricrecord_t *metrics)
{
    return a->aggr->end(a->mstate, metrics);
}

int32_t
pt_fedavg_agg_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
                  petal_metricrecord_t *metrics)
{
    pt_fedavg_agg_t *a = agg;
    int32_t rc;

    rc = pt_fedavg_acc_finish(a->acc, arrays, a->rt);
    if (rc != 0) {
        snprintf(s->error, sizeof(s->error), "FedAvg could not write the averaged arrays: %s",
                 petal_strerror(rc));
        return rc;
    }
    return pt_fedavg_agg_end_metrics(a, metrics);
}

int32_t
pt_server_step_init(pt_server_step_t *st, pt_fedavg_agg_t *a, petal_arrayrecord_t *arrays,
                    char *why, size_t why_len)
{
    uint64_t n;
    int32_t rc;

    memset(st, 0, sizeof(*st));
    st->layout = pt_fedavg_acc_layout(a->acc);
    n = st->layout->narrays;
    st->x = calloc(n > 0 ? n : 1, sizeof(*st->x));
    st->y = calloc(n > 0 ? n : 1, sizeof(*st->y));
    if (st->x == NULL || st->y == NULL) {
        pt_server_step_fini(st);
        snprintf(why, why_len, "out of memory");
        return PETAL_ENOMEM;
    }
    st->mean = pt_fedavg_acc_mean(a->acc, a->rt);
    if (st->mean == NULL) {
        pt_server_step_fini(st);
        snprintf(why, why_len, "no reply was averaged");
        return PETAL_ESTATE;
    }
    rc = pt_layout_check(st->layout, a->info->arrays, st->x, why, why_len);
    if (rc == 0) {
        rc = pt_layout_add_arrays(st->layout, arrays, st->y);
        if (rc != 0) {
            snprintf(why, why_len, "cannot add the new arrays: %s", petal_strerror(rc));
        }
    }
    if (rc != 0) {
        pt_server_step_fini(st);
    }
    return rc;
}

void
pt_server_step_fini(pt_server_step_t *st)
{
    free(st->x);
    free(st->y);
    st->x = NULL;
    st->y = NULL;
}

/* FedAvg's own begin: as the strategies built on it, plus narrow sums for very large models
 * (aggregate.h; FedAvgM, FedAdam, ... need the double-precision mean and keep wide sums). */
static int32_t
fedavg_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    int32_t rc = pt_fedavg_agg_begin(s, info, agg);
    if (rc == 0) {
        pt_fedavg_acc_set_narrow(((pt_fedavg_agg_t *)*agg)->acc, PT_FEDAVG_NARROW_MIN_ELEMENTS);
    }
    return rc;
}

static void
fedavg_free(petal_strategy_t *s)
{
    free((fedavg_t *)s);
}

static const petal_strategy_ops_t fedavg_ops = {
    .name = "fedavg",
    .configure_train = NULL, /* the default: global arrays by reference + config */
    .aggregate_train =
        {
            .begin = fedavg_begin,
            .fold = pt_fedavg_agg_fold,
            .end = pt_fedavg_agg_end,
            .free = pt_fedavg_agg_free,
        },
    .configure_evaluate = NULL,
    .aggregate_evaluate = {NULL, NULL, NULL, NULL}, /* the weighted mean of the metrics */
    .free = fedavg_free,
};

int32_t
petal_strategy_fedavg_alloc(const petal_strategy_options_t *opts, petal_strategy_t **out)
{
    fedavg_t *f;
    int32_t rc;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&f->base, &fedavg_ops, opts);
    if (rc != 0) {
        PT_ERROR("fedavg: %s", f->base.error[0] ? f->base.error : petal_strerror(rc));
        free(f);
        return rc;
    }
    *out = &f->base;
    return 0;
}

int32_t
pt_strategy_fedavg_ctor(const char *name, const petal_strategy_options_t *opts,
                        const petal_strategy_params_t *p, petal_strategy_t **out)
{
    (void)name;
    (void)p;
    return petal_strategy_fedavg_alloc(opts, out);
}
