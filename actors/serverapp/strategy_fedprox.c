/* strategy_fedprox.c - FedProx: FedAvg, with "proximal-mu" in every train config record. */
#include <petal/strategy.h>

#include <stdlib.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/log.h"

/*
 * FedProx (Li et al., 2020) changes the clients' objective, not the server's: each ClientApp
 * adds (mu / 2) * ||w - w_global||^2 to its loss. The server averages like FedAvg and sends mu
 * to the clients as "proximal-mu" in the train config, after the static keys and after the
 * user's train_config_fn (whose output it keeps), so the strategy's value always wins.
 */

typedef struct fedprox {
    petal_strategy_t base;
    double mu;
    petal_config_fn user_fn; /* the caller's train_config_fn, chained */
    void *user_ctx;
} fedprox_t;

static int32_t
fedprox_config(void *ctx, uint32_t round, petal_configrecord_t *config)
{
    fedprox_t *f = ctx;
    petal_value_t v = petal_value_f64(f->mu);

    if (f->user_fn != NULL) {
        int32_t rc = f->user_fn(f->user_ctx, round, config);
        if (rc != 0) {
            return rc;
        }
    }
    return petal_configrecord_set(config, "proximal-mu", &v);
}

static void
fedprox_free(petal_strategy_t *s)
{
    free((fedprox_t *)s);
}

static const petal_strategy_ops_t fedprox_ops = {
    .name = "fedprox",
    .configure_train = NULL, /* the default, with fedprox_config as train_config_fn */
    .aggregate_train =
        {
            .begin = pt_fedavg_agg_begin,
            .fold = pt_fedavg_agg_fold,
            .end = pt_fedavg_agg_end,
            .free = pt_fedavg_agg_free,
        },
    .configure_evaluate = NULL,
    .aggregate_evaluate = {NULL, NULL, NULL, NULL},
    .free = fedprox_free,
};

int32_t
pt_strategy_fedprox_ctor(const char *name, const petal_strategy_options_t *opts,
                         const petal_strategy_params_t *p, petal_strategy_t **out)
{
    fedprox_t *f = calloc(1, sizeof(*f));
    int32_t rc;

    (void)name;
    if (f == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&f->base, &fedprox_ops, opts);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->mu = p->proximal_mu;
    f->user_fn = f->base.opts.train_config_fn;
    f->user_ctx = f->base.opts.train_config_ctx;
    f->base.opts.train_config_fn = fedprox_config;
    f->base.opts.train_config_ctx = f;
    if (f->mu == 0.0) {
        PT_WARN("fedprox: proximal-mu is 0, which makes FedProx the same as FedAvg");
    }
    *out = &f->base;
    return 0;
}
