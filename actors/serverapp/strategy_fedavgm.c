/* strategy_fedavgm.c - FedAvgM: FedAvg with a server learning rate and server momentum. */
#include <petal/strategy.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/log.h"

/*
 * Hsu et al., "Measuring the Effects of Non-Identical Data Distribution" (2019), as in Flower
 * (PyTorch's SGD convention). With xbar the FedAvg mean of the replies and x the global arrays
 * sent this round, per element:
 *
 *   g = x - xbar                          (the pseudo-gradient)
 *   momentum > 0:  p = g in the first round of a run, p = momentum * p + g afterwards; g = p
 *   x <- x - server_learning_rate * g
 *
 * With server-learning-rate 1 and server-momentum 0 (the defaults) this is exactly FedAvg and
 * the mean is written directly. The momentum vector is kept in double, 8 bytes per element.
 */

#define UPDATE_CHUNK ((uint64_t)1 << 16)
#define BLOCK 256

typedef struct fedavgm {
    petal_strategy_t base;
    double lr;
    double momentum;
    double *p; /* the momentum vector; NULL until the first server update */
    uint64_t numel;
    uint32_t last_round;
} fedavgm_t;

typedef struct update_job {
    const pt_server_step_t *st;
    double *p;
    int first;
    double lr;
    double momentum;
} update_job_t;

static void
update_range(uint64_t lo, uint64_t hi, void *arg)
{
    const update_job_t *u = arg;
    const pt_server_step_t *st = u->st;
    double buf[BLOCK];

    for (uint64_t b = lo; b < hi; b += BLOCK) {
        uint64_t e = b + BLOCK < hi ? b + BLOCK : hi;

        pt_layout_load(st->layout, st->x, b, e, buf);
        for (uint64_t i = b; i < e; i++) {
            double x = buf[i - b];
            double g = x - st->mean[i];

            if (u->p != NULL) {
                g = u->first ? g : u->momentum * u->p[i] + g;
                u->p[i] = g;
            }
            buf[i - b] = x - u->lr * g;
        }
        pt_layout_store(st->layout, st->y, b, e, buf);
    }
}

static int32_t
fedavgm_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
            petal_metricrecord_t *metrics)
{
    fedavgm_t *f = (fedavgm_t *)s;
    pt_fedavg_agg_t *a = agg;
    pt_server_step_t st;
    update_job_t job;
    uint32_t round = a->info->round;
    int32_t rc;

    if (f->lr == 1.0 && f->momentum == 0.0) {
        return pt_fedavg_agg_end(s, agg, arrays, metrics); /* plain FedAvg */
    }
    rc = pt_server_step_init(&st, a, arrays, s->error, sizeof(s->error));
    if (rc != 0) {
        return rc;
    }
    memset(&job, 0, sizeof(job));
    if (f->momentum > 0.0) {
        if (f->p == NULL || f->numel != st.layout->numel || round <= f->last_round) {
            free(f->p);
            f->numel = st.layout->numel;
            f->p = calloc(f->numel > 0 ? f->numel : 1, sizeof(double));
            if (f->p == NULL) {
                snprintf(s->error, sizeof(s->error),
                         "fedavgm: out of memory for the momentum vector");
                pt_server_step_fini(&st);
                return PETAL_ENOMEM;
            }
            job.first = 1;
        }
        job.p = f->p;
    }
    f->last_round = round;
    job.st = &st;
    job.lr = f->lr;
    job.momentum = f->momentum;
    pt_parallel_ranges(a->rt, st.layout->numel, UPDATE_CHUNK, s->opts.parallel_min_elements,
                       update_range, &job);
    pt_server_step_fini(&st);
    return pt_fedavg_agg_end_metrics(a, metrics);
}

static void
fedavgm_free(petal_strategy_t *s)
{
    fedavgm_t *f = (fedavgm_t *)s;

    free(f->p);
    free(f);
}

static const petal_strategy_ops_t fedavgm_ops = {
    .name = "fedavgm",
    .configure_train = NULL,
    .aggregate_train =
        {
            .begin = pt_fedavg_agg_begin,
            .fold = pt_fedavg_agg_fold,
            .end = fedavgm_end,
            .free = pt_fedavg_agg_free,
        },
    .configure_evaluate = NULL,
    .aggregate_evaluate = {NULL, NULL, NULL, NULL},
    .free = fedavgm_free,
};

int32_t
pt_strategy_fedavgm_ctor(const char *name, const petal_strategy_options_t *opts,
                         const petal_strategy_params_t *p, petal_strategy_t **out)
{
    fedavgm_t *f = calloc(1, sizeof(*f));
    int32_t rc;

    (void)name;
    if (f == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&f->base, &fedavgm_ops, opts);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->lr = p->server_learning_rate;
    f->momentum = p->server_momentum;
    PT_DEBUG("fedavgm: server-learning-rate %g, server-momentum %g", f->lr, f->momentum);
    *out = &f->base;
    return 0;
}
