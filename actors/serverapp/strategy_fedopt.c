/* strategy_fedopt.c - FedAdam, FedYogi, FedAdagrad: adaptive server optimizers on FedAvg. */
#include <petal/strategy.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/log.h"

/*
 * Reddi et al., "Adaptive Federated Optimization" (ICLR 2021), as in Flower. Each round the
 * replies are averaged like FedAvg (streaming, weighted by num-examples) into the mean xbar;
 * the pseudo-gradient is d = xbar - x (x: the global arrays sent this round), and per element:
 *
 *   m <- b1 * m + (1 - b1) * d                     (FedAdagrad: b1 = 0, so m = d)
 *   FedAdam:    v <- b2 * v + (1 - b2) * d^2
 *   FedYogi:    v <- v - (1 - b2) * d^2 * sign(v - d^2)
 *   FedAdagrad: v <- v + d^2
 *   x <- x + eta' * m / (sqrt(v) + tau)
 *
 * with eta' = eta for FedYogi and FedAdagrad, and for FedAdam the bias-corrected
 * eta' = eta * sqrt(1 - b2^t) / (1 - b1^t), t = 1, 2, ... the number of server updates so far
 * (Kingma and Ba's alpha_t; Flower uses t = server round + 1). m and v start at 0. They are
 * kept in double, 16 bytes per model element, next to FedAvg's 8 bytes of running sums; a new
 * run (round 1 again) or another model size starts them over.
 */

enum { OPT_ADAM, OPT_YOGI, OPT_ADAGRAD };

#define UPDATE_CHUNK ((uint64_t)1 << 16)
#define BLOCK 256

typedef struct fedopt {
    petal_strategy_t base;
    int kind;
    double eta;
    double eta_l;
    double beta_1;
    double beta_2;
    double tau;
    double *m;
    double *v;
    uint64_t numel;
    uint64_t steps;
    uint32_t last_round;
} fedopt_t;

typedef struct update_job {
    const pt_server_step_t *st;
    double *m;
    double *v;
    int kind;
    double b1;
    double b2;
    double eta;
    double tau;
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
            double d = st->mean[i] - x;
            double d2 = d * d;
            double m = u->b1 * u->m[i] + (1.0 - u->b1) * d;
            double v = u->v[i];

            if (u->kind == OPT_ADAM) {
                v = u->b2 * v + (1.0 - u->b2) * d2;
            } else if (u->kind == OPT_YOGI) {
                double g = v - d2;
                double sign = g > 0.0 ? 1.0 : (g < 0.0 ? -1.0 : 0.0);
                v = v - (1.0 - u->b2) * d2 * sign;
            } else {
                v = v + d2;
            }
            u->m[i] = m;
            u->v[i] = v;
            buf[i - b] = x + u->eta * m / (sqrt(v) + u->tau);
        }
        pt_layout_store(st->layout, st->y, b, e, buf);
    }
}

/* Zeroed moments for `numel` elements (a new run, or the first round). */
static int32_t
reset_state(fedopt_t *f, uint64_t numel)
{
    free(f->m);
    free(f->v);
    f->m = calloc(numel > 0 ? numel : 1, sizeof(double));
    f->v = calloc(numel > 0 ? numel : 1, sizeof(double));
    f->numel = numel;
    f->steps = 0;
    if (f->m == NULL || f->v == NULL) {
        free(f->m);
        free(f->v);
        f->m = NULL;
        f->v = NULL;
        return PETAL_ENOMEM;
    }
    return 0;
}

static int32_t
fedopt_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays,
           petal_metricrecord_t *metrics)
{
    fedopt_t *f = (fedopt_t *)s;
    pt_fedavg_agg_t *a = agg;
    pt_server_step_t st;
    update_job_t job;
    uint32_t round = a->info->round;
    int32_t rc;

    rc = pt_server_step_init(&st, a, arrays, s->error, sizeof(s->error));
    if (rc != 0) {
        return rc;
    }
    if (f->m == NULL || f->numel != st.layout->numel || round <= f->last_round) {
        rc = reset_state(f, st.layout->numel);
        if (rc != 0) {
            snprintf(s->error, sizeof(s->error), "%s: out of memory for the server moments",
                     s->ops->name);
            pt_server_step_fini(&st);
            return rc;
        }
    }
    f->steps++;
    f->last_round = round;
    memset(&job, 0, sizeof(job));
    job.st = &st;
    job.m = f->m;
    job.v = f->v;
    job.kind = f->kind;
    job.b1 = f->beta_1;
    job.b2 = f->beta_2;
    job.tau = f->tau;
    job.eta = f->eta;
    if (f->kind == OPT_ADAM) {
        double t = (double)f->steps;
        job.eta = f->eta * sqrt(1.0 - pow(f->beta_2, t)) / (1.0 - pow(f->beta_1, t));
    }
    pt_parallel_ranges(a->rt, st.layout->numel, UPDATE_CHUNK, s->opts.parallel_min_elements,
                       update_range, &job);
    pt_server_step_fini(&st);
    return pt_fedavg_agg_end_metrics(a, metrics);
}

static void
fedopt_free(petal_strategy_t *s)
{
    fedopt_t *f = (fedopt_t *)s;

    free(f->m);
    free(f->v);
    free(f);
}

#define FEDOPT_OPS(ident, label)                                                                   \
    static const petal_strategy_ops_t ident = {                                                    \
        .name = label,                                                                             \
        .configure_train = NULL,                                                                   \
        .aggregate_train =                                                                         \
            {                                                                                      \
                .begin = pt_fedavg_agg_begin,                                                      \
                .fold = pt_fedavg_agg_fold,                                                        \
                .end = fedopt_end,                                                                 \
                .free = pt_fedavg_agg_free,                                                        \
            },                                                                                     \
        .configure_evaluate = NULL,                                                                \
        .aggregate_evaluate = {NULL, NULL, NULL, NULL},                                            \
        .free = fedopt_free,                                                                       \
    }

FEDOPT_OPS(fedadam_ops, "fedadam");
FEDOPT_OPS(fedyogi_ops, "fedyogi");
FEDOPT_OPS(fedadagrad_ops, "fedadagrad");

int32_t
pt_strategy_fedopt_ctor(const char *name, const petal_strategy_options_t *opts,
                        const petal_strategy_params_t *p, petal_strategy_t **out)
{
    const petal_strategy_ops_t *ops;
    fedopt_t *f;
    int kind;
    int32_t rc;

    if (strcmp(name, "fedadam") == 0) {
        kind = OPT_ADAM;
        ops = &fedadam_ops;
    } else if (strcmp(name, "fedyogi") == 0) {
        kind = OPT_YOGI;
        ops = &fedyogi_ops;
    } else if (strcmp(name, "fedadagrad") == 0) {
        kind = OPT_ADAGRAD;
        ops = &fedadagrad_ops;
    } else {
        return PETAL_ENOENT;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&f->base, ops, opts);
    if (rc != 0) {
        free(f);
        return rc;
    }
    f->kind = kind;
    f->eta = p->eta;
    f->eta_l = p->eta_l;
    f->beta_1 = kind == OPT_ADAGRAD ? 0.0 : p->beta_1;
    f->beta_2 = kind == OPT_ADAGRAD ? 0.0 : p->beta_2;
    f->tau = p->tau;
    PT_DEBUG("%s: eta %g, eta-l %g, beta-1 %g, beta-2 %g, tau %g", name, f->eta, f->eta_l,
             f->beta_1, f->beta_2, f->tau);
    *out = &f->base;
    return 0;
}
