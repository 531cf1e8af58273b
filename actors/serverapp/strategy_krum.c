/* strategy_krum.c - Krum, MultiKrum and Bulyan: Byzantine-robust selection of replies. */
#include <petal/strategy.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/actor.h"
#include "runtime/grid.h"
#include "runtime/log.h"

/*
 * With n accepted replies and f = num-malicious-nodes:
 *
 * Krum (Blanchard et al., 2017): the score of reply i is the sum of the squared L2 distances
 * from i to its k = max(1, n - f - 2) nearest other replies (over the whole model); the reply
 * with the lowest score becomes the new global model (its arrays are referenced, not copied).
 * MultiKrum: the weighted mean (by num-examples) of the m = num-nodes-to-select best scores.
 * Bulyan (El Mhamdi et al., 2018): Krum picks theta = n - 2f replies one at a time, each time
 * among those left (scores recomputed on the remaining set); then each element is the mean of
 * the beta = theta - 2f selected values closest to that element's median.
 *
 * Ties (equal scores, equal distances to the median) go to the earlier send position, so the
 * result does not depend on the arrival order of the replies. The guarantees need n >= 2f + 3
 * (Krum, MultiKrum) and n >= 4f + 3 (Bulyan); petal_strategy_check() refuses a min-train-nodes
 * below that before round 1, so every successful round has enough replies.
 *
 * Memory: references to the replies' arrays until the end of the phase, an n x n distance
 * matrix, and one output model (none for Krum). The n (n - 1) / 2 pairwise distances are
 * computed in parallel, one pair per task; Bulyan's element-wise step runs over element ranges.
 */

enum { KRUM, MULTIKRUM, BULYAN };

typedef struct krum {
    petal_strategy_t base;
    int kind;
    uint32_t f;
    uint32_t m;
} krum_t;

typedef struct krum_agg {
    pt_replies_t *r;
    struct pt_runtime *rt;
    const petal_round_info_t *info;
} krum_agg_t;

/* ---- Distances and scores ------------------------------------------------------------------- */

typedef struct dist_job {
    const pt_layout_t *l;
    pt_held_t *const *rows;
    const uint32_t *pa;
    const uint32_t *pb;
    double *d; /* n x n */
    uint64_t n;
} dist_job_t;

static void
dist_pair(uint32_t p, void *arg)
{
    dist_job_t *j = arg;
    uint64_t a = j->pa[p];
    uint64_t b = j->pb[p];
    double x = pt_layout_sqdist(j->l, j->rows[a]->data, j->rows[b]->data, NULL, 0);

    j->d[a * j->n + b] = x;
    j->d[b * j->n + a] = x;
}

/* The n x n matrix of squared distances (0 on the diagonal); NULL when out of memory. */
static double *
distances(const pt_replies_t *r, struct pt_runtime *rt, uint64_t parallel_min)
{
    uint64_t n = r->count;
    uint64_t npairs = n * (n - 1) / 2;
    dist_job_t job;
    uint32_t *pa;
    uint32_t *pb;
    uint64_t p = 0;

    memset(&job, 0, sizeof(job));
    job.d = calloc(n * n, sizeof(double));
    pa = malloc((npairs > 0 ? npairs : 1) * sizeof(*pa));
    pb = malloc((npairs > 0 ? npairs : 1) * sizeof(*pb));
    if (job.d == NULL || pa == NULL || pb == NULL || npairs > UINT32_MAX) {
        free(job.d);
        free(pa);
        free(pb);
        return NULL;
    }
    for (uint64_t a = 0; a < n; a++) {
        for (uint64_t b = a + 1; b < n; b++) {
            pa[p] = (uint32_t)a;
            pb[p] = (uint32_t)b;
            p++;
        }
    }
    job.l = r->layout;
    job.rows = r->held;
    job.pa = pa;
    job.pb = pb;
    job.n = n;
    if (rt != NULL && npairs > 1 && pt_runtime_workers(rt) > 0 &&
        npairs * r->layout->numel >= parallel_min) {
        pt_pool_parallel_for(rt, (uint32_t)npairs, dist_pair, &job);
    } else {
        for (uint64_t i = 0; i < npairs; i++) {
            dist_pair((uint32_t)i, &job);
        }
    }
    free(pa);
    free(pb);
    return job.d;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
sort_doubles(double *v, uint64_t n)
{
    if (n <= 32) {
        for (uint64_t i = 1; i < n; i++) {
            double x = v[i];
            uint64_t j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
    } else {
        qsort(v, n, sizeof(*v), cmp_double);
    }
}

/*
 * Krum scores of the replies still `alive` (r of them): for each, the sum of its
 * min(max(1, r - f - 2), r - 1) smallest distances to the other alive ones, smallest first.
 * tmp holds n doubles.
 */
static void
scores(const double *d, uint64_t n, const uint8_t *alive, uint64_t f, double *score, double *tmp)
{
    uint64_t r = 0;
    uint64_t k;

    for (uint64_t i = 0; i < n; i++) {
        r += alive[i] != 0;
    }
    k = r > f + 3 ? r - f - 2 : 1;
    if (k > r - 1) {
        k = r > 0 ? r - 1 : 0;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = 0;
        double sum = 0.0;

        if (!alive[i]) {
            continue;
        }
        for (uint64_t j = 0; j < n; j++) {
            if (j != i && alive[j]) {
                tmp[c++] = d[i * n + j];
            }
        }
        sort_doubles(tmp, c);
        for (uint64_t j = 0; j < k && j < c; j++) {
            sum += tmp[j];
        }
        score[i] = sum;
    }
}

/* The alive reply with the lowest score (the earliest on ties). */
static uint64_t
best_alive(const double *score, const uint8_t *alive, uint64_t n)
{
    uint64_t best = n;

    for (uint64_t i = 0; i < n; i++) {
        if (alive[i] && (best == n || score[i] < score[best])) {
            best = i;
        }
    }
    return best;
}

/* ---- Bulyan's element-wise step ------------------------------------------------------------- */

static double
col_bulyan(double *c, uint64_t n, void *arg)
{
    uint64_t beta = *(const uint64_t *)arg;
    double med;
    int64_t lo;
    int64_t hi;
    double sum = 0.0;

    sort_doubles(c, n);
    med = n % 2 == 1 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2.0;
    /* The beta values closest to the median are a window of the sorted column around it. */
    hi = 0;
    while (hi < (int64_t)n && c[hi] < med) {
        hi++;
    }
    lo = hi - 1;
    for (uint64_t t = 0; t < beta; t++) {
        if (lo >= 0 && (hi >= (int64_t)n || med - c[lo] <= c[hi] - med)) {
            sum += c[lo--];
        } else {
            sum += c[hi++];
        }
    }
    return sum / (double)beta;
}

/* ---- The strategy ops ----------------------------------------------------------------------- */

static void
krum_agg_free(petal_strategy_t *s, void *agg)
{
    krum_agg_t *a = agg;

    (void)s;
    if (a != NULL) {
        pt_replies_free(a->r);
        free(a);
    }
}

static int32_t
krum_begin(petal_strategy_t *s, const petal_round_info_t *info, void **agg)
{
    static const char *const who[] = {"Krum", "MultiKrum", "Bulyan"};
    krum_agg_t *a = calloc(1, sizeof(*a));
    int32_t rc;

    if (a == NULL) {
        return PETAL_ENOMEM;
    }
    a->rt = pt_grid_runtime(info->grid);
    a->info = info;
    rc = pt_replies_alloc(info, who[((krum_t *)s)->kind], s->error, sizeof(s->error), &a->r);
    if (rc != 0) {
        free(a);
        return rc;
    }
    *agg = a;
    return 0;
}

static int32_t
krum_fold(petal_strategy_t *s, void *agg, uint64_t index, const petal_message_t *reply, char *why,
          size_t why_len)
{
    krum_agg_t *a = agg;
    return pt_replies_hold(a->r, s, index, reply, why, why_len);
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Writes the output arrays of the `k` chosen replies (positions in r->held, ascending). */
static int32_t
write_arrays(krum_t *x, krum_agg_t *a, const uint64_t *chosen, uint64_t k,
             petal_arrayrecord_t *arrays)
{
    petal_strategy_t *s = &x->base;
    pt_replies_t *r = a->r;
    const pt_layout_t *l = r->layout;
    int32_t rc = 0;

    if (x->kind == KRUM) {
        /* The chosen reply's arrays themselves: a reference, no copy. */
        const pt_held_t *h = r->held[chosen[0]];
        for (uint64_t j = 0; j < l->narrays && rc == 0; j++) {
            rc = petal_arrayrecord_add_ref(arrays, l->arrays[j].name,
                                           petal_arrayrecord_get(h->arrays, l->arrays[j].name));
        }
        return rc;
    }
    if (x->kind == MULTIKRUM) {
        pt_fedavg_acc_t *acc = NULL;
        char why[256] = "";
        rc = pt_fedavg_acc_alloc(a->info->arrays, s->opts.parallel_min_elements, why, sizeof(why),
                                 &acc);
        for (uint64_t i = 0; i < k && rc == 0; i++) {
            const pt_held_t *h = r->held[chosen[i]];
            rc = pt_fedavg_acc_fold(acc, h->arrays, h->weight, a->rt, why, sizeof(why));
        }
        if (rc == 0) {
            rc = pt_fedavg_acc_finish(acc, arrays, a->rt);
        }
        pt_fedavg_acc_free(acc);
        if (rc != 0 && why[0] != '\0') {
            snprintf(s->error, sizeof(s->error), "multikrum: %s", why);
        }
        return rc;
    }
    {
        /* Bulyan: beta values closest to each element's median among the chosen. */
        const pt_held_t **rows = calloc(k, sizeof(*rows));
        void **out = calloc(l->narrays > 0 ? l->narrays : 1, sizeof(*out));
        uint64_t beta = k - 2 * (uint64_t)x->f;

        rc = rows != NULL && out != NULL ? 0 : PETAL_ENOMEM;
        for (uint64_t i = 0; i < k && rc == 0; i++) {
            rows[i] = r->held[chosen[i]];
        }
        if (rc == 0) {
            rc = pt_layout_add_arrays(l, arrays, out);
        }
        if (rc == 0) {
            rc = pt_columns(l, rows, k, out, a->rt, s->opts.parallel_min_elements, col_bulyan,
                            &beta);
        }
        free(rows);
        free(out);
        return rc;
    }
}

static int32_t
krum_end(petal_strategy_t *s, void *agg, petal_arrayrecord_t *arrays, petal_metricrecord_t *metrics)
{
    static const char *const label[] = {"krum", "multikrum", "bulyan"};
    krum_t *x = (krum_t *)s;
    krum_agg_t *a = agg;
    pt_replies_t *r = a->r;
    const char *name = label[x->kind];
    uint64_t n;
    uint64_t f = x->f;
    uint64_t want;
    double *d = NULL;
    double *score = NULL;
    double *tmp = NULL;
    uint8_t *alive = NULL;
    uint64_t *chosen = NULL;
    uint64_t k = 0;
    int32_t rc = PETAL_ENOMEM;

    pt_replies_seal(r);
    n = r->count;
    want = x->kind == BULYAN ? 4 * f + 3 : 2 * f + 3;
    if (n == 0 || (f > 0 && n < want)) {
        snprintf(s->error, sizeof(s->error),
                 "%s: %" PRIu64 " replies accepted, num-malicious-nodes %" PRIu64
                 " needs at least %" PRIu64,
                 name, n, f, f > 0 ? want : 1);
        return PETAL_ESTATE;
    }
    if (x->kind == MULTIKRUM && x->m > n) {
        snprintf(s->error, sizeof(s->error),
                 "multikrum: num-nodes-to-select %" PRIu32 " but only %" PRIu64
                 " replies were accepted",
                 x->m, n);
        return PETAL_ESTATE;
    }
    d = distances(r, a->rt, s->opts.parallel_min_elements);
    score = calloc(n, sizeof(*score));
    tmp = calloc(n, sizeof(*tmp));
    alive = malloc(n);
    chosen = calloc(n, sizeof(*chosen));
    if (d == NULL || score == NULL || tmp == NULL || alive == NULL || chosen == NULL) {
        snprintf(s->error, sizeof(s->error), "%s: out of memory for %" PRIu64 " replies", name, n);
        goto out;
    }
    memset(alive, 1, n);
    if (x->kind == BULYAN) {
        uint64_t theta = n - 2 * f;
        for (k = 0; k < theta; k++) {
            scores(d, n, alive, f, score, tmp);
            chosen[k] = best_alive(score, alive, n);
            alive[chosen[k]] = 0;
        }
    } else {
        uint64_t m = x->kind == KRUM ? 1 : x->m;
        scores(d, n, alive, f, score, tmp);
        for (k = 0; k < m; k++) {
            chosen[k] = best_alive(score, alive, n);
            alive[chosen[k]] = 0;
        }
    }
    if (x->kind == KRUM) {
        PT_DEBUG("round %" PRIu32 ": krum: selected node %" PRIu64 " (score %g) of %" PRIu64,
                 a->info->round, a->info->nodes[r->held[chosen[0]]->index], score[chosen[0]], n);
    } else {
        PT_DEBUG("round %" PRIu32 ": %s: selected %" PRIu64 " of %" PRIu64 " replies",
                 a->info->round, name, k, n);
    }
    /* In send order from here on: the arrays and metrics do not depend on the score order. */
    qsort(chosen, k, sizeof(*chosen), cmp_u64);
    rc = write_arrays(x, a, chosen, k, arrays);
    if (rc != 0) {
        if (strncmp(s->error, name, strlen(name)) != 0) {
            snprintf(s->error, sizeof(s->error), "%s: writing the arrays: %s", name,
                     petal_strerror(rc));
        }
        goto out;
    }
    rc = pt_replies_metrics(r, s, chosen, k, metrics);
out:
    free(d);
    free(score);
    free(tmp);
    free(alive);
    free(chosen);
    return rc;
}

static void
krum_free(petal_strategy_t *s)
{
    free((krum_t *)s);
}

#define KRUM_OPS(ident, label)                                                                     \
    static const petal_strategy_ops_t ident = {                                                    \
        .name = label,                                                                             \
        .configure_train = NULL,                                                                   \
        .aggregate_train =                                                                         \
            {                                                                                      \
                .begin = krum_begin,                                                               \
                .fold = krum_fold,                                                                 \
                .end = krum_end,                                                                   \
                .free = krum_agg_free,                                                             \
            },                                                                                     \
        .configure_evaluate = NULL,                                                                \
        .aggregate_evaluate = {NULL, NULL, NULL, NULL},                                            \
        .free = krum_free,                                                                         \
    }

KRUM_OPS(krum_ops, "krum");
KRUM_OPS(multikrum_ops, "multikrum");
KRUM_OPS(bulyan_ops, "bulyan");

int32_t
pt_strategy_krum_ctor(const char *name, const petal_strategy_options_t *opts,
                      const petal_strategy_params_t *p, petal_strategy_t **out)
{
    const petal_strategy_ops_t *ops;
    krum_t *x;
    int kind;
    int32_t rc;

    if (strcmp(name, "krum") == 0) {
        kind = KRUM;
        ops = &krum_ops;
    } else if (strcmp(name, "multikrum") == 0) {
        kind = MULTIKRUM;
        ops = &multikrum_ops;
    } else if (strcmp(name, "bulyan") == 0) {
        kind = BULYAN;
        ops = &bulyan_ops;
    } else {
        return PETAL_ENOENT;
    }
    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        return PETAL_ENOMEM;
    }
    rc = petal_strategy_init(&x->base, ops, opts);
    if (rc != 0) {
        free(x);
        return rc;
    }
    x->kind = kind;
    x->f = p->num_malicious_nodes;
    x->m = kind == MULTIKRUM ? p->num_nodes_to_select : 1;
    *out = &x->base;
    return 0;
}
