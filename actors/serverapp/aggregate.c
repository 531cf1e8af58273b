/* aggregate.c - node sampling, the FedAvg running sums, and the weighted mean of metrics. */
#include "aggregate.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actor.h"

/* ---- Sampling ------------------------------------------------------------------------------- */

#define GOLDEN_GAMMA 0x9e3779b97f4a7c15ull

uint64_t
pt_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += GOLDEN_GAMMA);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, m), m >= 1: rejects the low (2^64 mod m) values so every residue is equally
 * likely. */
static uint64_t
draw_below(uint64_t *state, uint64_t m)
{
    uint64_t threshold = (0 - m) % m;
    for (;;) {
        uint64_t r = pt_splitmix64(state);
        if (r >= threshold) {
            return r % m;
        }
    }
}

uint64_t
pt_sample_count(uint64_t available, double fraction, uint32_t min_nodes)
{
    double want = fraction * (double)available;
    double floor_want = floor(want);
    uint64_t k;

    if (!(fraction > 0.0)) {
        k = 0;
    } else if (want - floor_want < 1e-9) {
        k = (uint64_t)floor_want;
    } else {
        k = (uint64_t)floor_want + 1;
    }
    if (k < min_nodes) {
        k = min_nodes;
    }
    if (k > available) {
        k = available;
    }
    return k;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int
pt_sample_nodes(const uint64_t *ids, uint64_t n, uint64_t k, uint64_t seed, uint32_t round,
                uint32_t phase, uint64_t *out)
{
    uint64_t *pool;
    uint64_t state;

    if (k > n || (n > 0 && ids == NULL) || (k > 0 && out == NULL)) {
        return PETAL_EINVAL;
    }
    if (k == 0) {
        return 0;
    }
    pool = malloc(n * sizeof(*pool));
    if (pool == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(pool, ids, n * sizeof(*pool));
    /* The SuperLink lists node ids ascending already; sort only when they are not. */
    for (uint64_t i = 1; i < n; i++) {
        if (pool[i - 1] > pool[i]) {
            qsort(pool, n, sizeof(*pool), cmp_u64);
            break;
        }
    }
    state = seed + GOLDEN_GAMMA * (2 * (uint64_t)round + phase + 1);
    for (uint64_t i = 0; i < k; i++) {
        uint64_t j = i + draw_below(&state, n - i);
        uint64_t t = pool[i];
        pool[i] = pool[j];
        pool[j] = t;
        out[i] = pool[i];
    }
    free(pool);
    return 0;
}

/* ---- FedAvg accumulator --------------------------------------------------------------------- */

/* Elements per parallel chunk: 64 Ki elements (256 KiB of float32 in, 512 KiB of sums). */
#define CHUNK_ELEMS ((uint64_t)1 << 16)

typedef struct acc_array {
    char *name;
    int32_t dtype;
    uint32_t ndim;
    uint64_t shape[PETAL_MAX_NDIM];
    uint64_t numel;
    uint64_t start; /* first element in sums */
} acc_array_t;

enum { OP_FOLD, OP_FINISH };

struct pt_fedavg_acc {
    acc_array_t *arrays;
    uint64_t narrays;
    double *sums;
    uint64_t numel;
    uint64_t parallel_min;
    double total_weight;
    uint64_t count;
    /* The operation in progress (read by the chunk workers). */
    int op;
    double weight;    /* OP_FOLD: the reply's weight */
    const void **src; /* OP_FOLD: each array's data in the reply */
    void **dst;       /* OP_FINISH: each output array's data */
};

static void
fmt_shape(char *buf, size_t len, uint32_t ndim, const uint64_t *shape)
{
    size_t used = 0;
    int w = snprintf(buf, len, "[");
    used = w > 0 ? (size_t)w : 0;
    for (uint32_t i = 0; i < ndim && used < len; i++) {
        w = snprintf(buf + used, len - used, "%s%" PRIu64, i ? ", " : "", shape[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used < len) {
        snprintf(buf + used, len - used, "]");
    }
}

void
pt_fedavg_acc_free(pt_fedavg_acc_t *acc)
{
    if (acc == NULL) {
        return;
    }
    for (uint64_t i = 0; i < acc->narrays; i++) {
        free(acc->arrays[i].name);
    }
    free(acc->arrays);
    free(acc->sums);
    free(acc->src);
    free(acc->dst);
    free(acc);
}

int
pt_fedavg_acc_alloc(const petal_arrayrecord_t *global, uint64_t parallel_min_elements, char *why,
                    size_t why_len, pt_fedavg_acc_t **out)
{
    pt_fedavg_acc_t *acc;
    uint64_t n;
    int rc = PETAL_ENOMEM;

    if (global == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    acc = calloc(1, sizeof(*acc));
    if (acc == NULL) {
        return PETAL_ENOMEM;
    }
    n = petal_arrayrecord_count(global);
    acc->parallel_min = parallel_min_elements;
    if (n > 0) {
        acc->arrays = calloc(n, sizeof(*acc->arrays));
        acc->src = calloc(n, sizeof(*acc->src));
        acc->dst = calloc(n, sizeof(*acc->dst));
        if (acc->arrays == NULL || acc->src == NULL || acc->dst == NULL) {
            goto fail;
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        const petal_array_t *a = petal_arrayrecord_at(global, i);
        const char *name = petal_arrayrecord_name_at(global, i);
        acc_array_t *d = &acc->arrays[i];
        uint32_t ndim;

        if (a == NULL || name == NULL) {
            rc = PETAL_EINVAL;
            goto fail;
        }
        d->dtype = petal_array_dtype(a);
        if (d->dtype != PETAL_DTYPE_FLOAT32 && d->dtype != PETAL_DTYPE_FLOAT64) {
            snprintf(why, why_len,
                     "array '%s' has dtype %s; FedAvg averages float32 and float64 arrays only",
                     name, petal_dtype_name(d->dtype));
            rc = PETAL_ETYPE;
            goto fail;
        }
        ndim = petal_array_ndim(a);
        if (ndim > PETAL_MAX_NDIM) {
            rc = PETAL_EINVAL;
            goto fail;
        }
        d->name = strdup(name);
        if (d->name == NULL) {
            goto fail;
        }
        d->ndim = ndim;
        if (ndim > 0) {
            memcpy(d->shape, petal_array_shape(a), ndim * sizeof(uint64_t));
        }
        d->numel = petal_array_numel(a);
        d->start = acc->numel;
        acc->numel += d->numel;
        acc->narrays = i + 1;
    }
    if (acc->numel > 0) {
        acc->sums = calloc(acc->numel, sizeof(double));
        if (acc->sums == NULL) {
            snprintf(why, why_len, "out of memory for %" PRIu64 " running sums", acc->numel);
            goto fail;
        }
    }
    *out = acc;
    return 0;
fail:
    pt_fedavg_acc_free(acc);
    return rc;
}

/* The op in progress over elements [lo, hi) of the concatenated model. */
static void
run_range(pt_fedavg_acc_t *acc, uint64_t lo, uint64_t hi)
{
    uint64_t a = 0;
    uint64_t b = acc->narrays;

    /* The last array starting at or before lo. */
    while (b - a > 1) {
        uint64_t mid = a + (b - a) / 2;
        if (acc->arrays[mid].start <= lo) {
            a = mid;
        } else {
            b = mid;
        }
    }
    for (uint64_t j = a; j < acc->narrays && lo < hi; j++) {
        const acc_array_t *arr = &acc->arrays[j];
        uint64_t end = arr->start + arr->numel;
        uint64_t off;
        uint64_t cnt;
        double *restrict sum;

        if (end <= lo) {
            continue;
        }
        if (end > hi) {
            end = hi;
        }
        off = lo - arr->start;
        cnt = end - lo;
        sum = acc->sums + lo;
        if (acc->op == OP_FOLD) {
            const double w = acc->weight;
            if (arr->dtype == PETAL_DTYPE_FLOAT32) {
                const float *restrict x = (const float *)acc->src[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    sum[i] += w * (double)x[i];
                }
            } else {
                const double *restrict x = (const double *)acc->src[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    sum[i] += w * x[i];
                }
            }
        } else {
            const double t = acc->total_weight;
            if (arr->dtype == PETAL_DTYPE_FLOAT32) {
                float *restrict y = (float *)acc->dst[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    y[i] = (float)(sum[i] / t);
                }
            } else {
                double *restrict y = (double *)acc->dst[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    y[i] = sum[i] / t;
                }
            }
        }
        lo = end;
    }
}

static void
run_chunk(uint32_t i, void *arg)
{
    pt_fedavg_acc_t *acc = arg;
    uint64_t lo = (uint64_t)i * CHUNK_ELEMS;
    uint64_t hi = lo + CHUNK_ELEMS;

    if (hi > acc->numel) {
        hi = acc->numel;
    }
    run_range(acc, lo, hi);
}

/* Runs the op over the whole model, on the pool when it is large enough. Each element is
 * touched by one chunk only, so the result does not depend on the number of threads. */
static void
run_op(pt_fedavg_acc_t *acc, struct pt_runtime *rt)
{
    uint64_t chunks = (acc->numel + CHUNK_ELEMS - 1) / CHUNK_ELEMS;

    if (acc->numel == 0) {
        return;
    }
    if (rt != NULL && acc->numel >= acc->parallel_min && chunks > 1 && chunks <= UINT32_MAX &&
        pt_runtime_workers(rt) > 0) {
        pt_pool_parallel_for(rt, (uint32_t)chunks, run_chunk, acc);
    } else {
        run_range(acc, 0, acc->numel);
    }
}

int
pt_fedavg_acc_check(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, char *why,
                    size_t why_len)
{
    uint64_t n;

    if (acc == NULL || arrays == NULL) {
        snprintf(why, why_len, "no arrays in the reply");
        return PETAL_EINVAL;
    }
    n = petal_arrayrecord_count(arrays);
    if (n != acc->narrays) {
        snprintf(why, why_len, "%" PRIu64 " arrays in the reply, the model has %" PRIu64, n,
                 acc->narrays);
        return PETAL_EINVAL;
    }
    for (uint64_t j = 0; j < acc->narrays; j++) {
        const acc_array_t *m = &acc->arrays[j];
        const petal_array_t *a = petal_arrayrecord_get(arrays, m->name);
        int32_t dtype;
        uint32_t ndim;
        const uint64_t *shape;
        const void *data;
        uint32_t esize = m->dtype == PETAL_DTYPE_FLOAT32 ? 4 : 8;

        if (a == NULL) {
            snprintf(why, why_len, "array '%s' is missing from the reply", m->name);
            return PETAL_EINVAL;
        }
        dtype = petal_array_dtype(a);
        if (dtype != m->dtype) {
            snprintf(why, why_len, "array '%s': dtype %s, the model's is %s", m->name,
                     petal_dtype_name(dtype), petal_dtype_name(m->dtype));
            return PETAL_EINVAL;
        }
        ndim = petal_array_ndim(a);
        shape = petal_array_shape(a);
        if (ndim != m->ndim ||
            (ndim > 0 && (shape == NULL || memcmp(shape, m->shape, ndim * sizeof(uint64_t))))) {
            char got[128];
            char want[128];
            fmt_shape(got, sizeof(got), ndim <= PETAL_MAX_NDIM && shape ? ndim : 0, shape);
            fmt_shape(want, sizeof(want), m->ndim, m->shape);
            snprintf(why, why_len, "array '%s': shape %s, the model's is %s", m->name, got, want);
            return PETAL_EINVAL;
        }
        data = petal_array_data(a);
        if (m->numel > 0 && (data == NULL || petal_array_numel(a) != m->numel ||
                             petal_array_nbytes(a) != m->numel * esize)) {
            snprintf(why, why_len, "array '%s': data does not match its shape", m->name);
            return PETAL_EINVAL;
        }
        if (((uintptr_t)data % esize) != 0) {
            snprintf(why, why_len, "array '%s': data is not aligned for %s", m->name,
                     petal_dtype_name(m->dtype));
            return PETAL_EINVAL;
        }
        acc->src[j] = data;
    }
    return 0;
}

int
pt_fedavg_acc_fold(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, double weight,
                   struct pt_runtime *rt, char *why, size_t why_len)
{
    int rc;

    if (!(weight > 0.0) || !isfinite(weight)) {
        snprintf(why, why_len, "the weight must be positive and finite");
        return PETAL_EINVAL;
    }
    rc = pt_fedavg_acc_check(acc, arrays, why, why_len);
    if (rc != 0) {
        return rc;
    }
    acc->op = OP_FOLD;
    acc->weight = weight;
    run_op(acc, rt);
    acc->total_weight += weight;
    acc->count++;
    for (uint64_t j = 0; j < acc->narrays; j++) {
        acc->src[j] = NULL;
    }
    return 0;
}

int
pt_fedavg_acc_finish(pt_fedavg_acc_t *acc, petal_arrayrecord_t *out, struct pt_runtime *rt)
{
    if (acc == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (acc->count == 0 || !(acc->total_weight > 0.0)) {
        return PETAL_ESTATE;
    }
    for (uint64_t j = 0; j < acc->narrays; j++) {
        const acc_array_t *m = &acc->arrays[j];
        petal_array_t *a = petal_arrayrecord_add(out, m->name, m->dtype, m->ndim, m->shape);
        if (a == NULL) {
            return PETAL_ENOMEM;
        }
        acc->dst[j] = petal_array_data_mut(a);
        if (acc->dst[j] == NULL && m->numel > 0) {
            return PETAL_ENOMEM;
        }
    }
    acc->op = OP_FINISH;
    run_op(acc, rt);
    for (uint64_t j = 0; j < acc->narrays; j++) {
        acc->dst[j] = NULL;
    }
    return 0;
}

uint64_t
pt_fedavg_acc_count(const pt_fedavg_acc_t *acc)
{
    return acc->count;
}

double
pt_fedavg_acc_total_weight(const pt_fedavg_acc_t *acc)
{
    return acc->total_weight;
}

uint64_t
pt_fedavg_acc_numel(const pt_fedavg_acc_t *acc)
{
    return acc->numel;
}

/* ---- Weighted mean of metrics ------------------------------------------------------------- */

typedef struct wm_entry {
    char *name;
    int is_list;
    int dropped;
    uint64_t len;
    double *sum;
} wm_entry_t;

typedef struct wm_state {
    char *skip;
    wm_entry_t *e;
    uint64_t n;
    uint64_t folds;
    double total;
} wm_state_t;

/* Element count of a numeric value (lists elementwise); -1 if it is not numeric. */
static int64_t
numeric_len(const petal_value_t *v, int *is_list)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
    case PETAL_VALUE_UINT64:
    case PETAL_VALUE_DOUBLE:
        *is_list = 0;
        return 1;
    case PETAL_VALUE_INT64_LIST:
    case PETAL_VALUE_UINT64_LIST:
    case PETAL_VALUE_DOUBLE_LIST:
        *is_list = 1;
        return v->len > (uint64_t)INT64_MAX ? -1 : (int64_t)v->len;
    default:
        return -1;
    }
}

static double
numeric_at(const petal_value_t *v, uint64_t k)
{
    switch (v->type) {
    case PETAL_VALUE_INT64:
        return (double)v->as.i64;
    case PETAL_VALUE_UINT64:
        return (double)v->as.u64;
    case PETAL_VALUE_DOUBLE:
        return v->as.f64;
    case PETAL_VALUE_INT64_LIST:
        return (double)v->as.i64s[k];
    case PETAL_VALUE_UINT64_LIST:
        return (double)v->as.u64s[k];
    case PETAL_VALUE_DOUBLE_LIST:
        return v->as.f64s[k];
    default:
        return 0.0;
    }
}

static void
wm_clear_entries(wm_state_t *st)
{
    for (uint64_t i = 0; i < st->n; i++) {
        free(st->e[i].name);
        free(st->e[i].sum);
    }
    free(st->e);
    st->e = NULL;
    st->n = 0;
}

static void
wm_free(void *state)
{
    wm_state_t *st = state;

    if (st == NULL) {
        return;
    }
    wm_clear_entries(st);
    free(st->skip);
    free(st);
}

static int32_t
wm_begin(void *ctx, const char *weighted_by_key, void **state)
{
    wm_state_t *st = calloc(1, sizeof(*st));

    (void)ctx;
    if (st == NULL) {
        return PETAL_ENOMEM;
    }
    if (weighted_by_key != NULL) {
        st->skip = strdup(weighted_by_key);
        if (st->skip == NULL) {
            free(st);
            return PETAL_ENOMEM;
        }
    }
    *state = st;
    return 0;
}

/* The first reply defines the candidate keys; later replies can only drop keys. */
static int32_t
wm_fold_first(wm_state_t *st, const petal_metricrecord_t *m, double w)
{
    uint64_t count = m != NULL ? petal_metricrecord_count(m) : 0;

    if (count > 0) {
        st->e = calloc(count, sizeof(*st->e));
        if (st->e == NULL) {
            return PETAL_ENOMEM;
        }
    }
    for (uint64_t i = 0; i < count; i++) {
        const char *name;
        petal_value_t v;
        int is_list;
        int64_t len;
        wm_entry_t *e;

        if (petal_metricrecord_at(m, i, &name, &v) != 0 || name == NULL) {
            continue;
        }
        if (st->skip != NULL && strcmp(name, st->skip) == 0) {
            continue;
        }
        len = numeric_len(&v, &is_list);
        if (len < 0) {
            continue;
        }
        e = &st->e[st->n];
        e->name = strdup(name);
        e->sum = calloc(len > 0 ? (size_t)len : 1, sizeof(double));
        if (e->name == NULL || e->sum == NULL) {
            free(e->name);
            free(e->sum);
            e->name = NULL;
            e->sum = NULL;
            wm_clear_entries(st);
            return PETAL_ENOMEM;
        }
        e->is_list = is_list;
        e->len = (uint64_t)len;
        for (uint64_t k = 0; k < e->len; k++) {
            e->sum[k] = w * numeric_at(&v, k);
        }
        st->n++;
    }
    return 0;
}

static int32_t
wm_fold(void *state, const petal_metricrecord_t *m, double weight)
{
    wm_state_t *st = state;

    if (st->folds == 0) {
        int32_t rc = wm_fold_first(st, m, weight);
        if (rc != 0) {
            return rc;
        }
    } else {
        for (uint64_t i = 0; i < st->n; i++) {
            wm_entry_t *e = &st->e[i];
            petal_value_t v;
            int is_list;
            int64_t len;

            if (e->dropped) {
                continue;
            }
            if (m == NULL || petal_metricrecord_get(m, e->name, &v) != 0) {
                e->dropped = 1;
                continue;
            }
            len = numeric_len(&v, &is_list);
            if (len < 0 || is_list != e->is_list || (uint64_t)len != e->len) {
                e->dropped = 1;
                continue;
            }
            for (uint64_t k = 0; k < e->len; k++) {
                e->sum[k] += weight * numeric_at(&v, k);
            }
        }
    }
    st->folds++;
    st->total += weight;
    return 0;
}

static int32_t
wm_end(void *state, petal_metricrecord_t *out)
{
    wm_state_t *st = state;

    if (st->folds == 0 || !(st->total > 0.0)) {
        return 0;
    }
    for (uint64_t i = 0; i < st->n; i++) {
        wm_entry_t *e = &st->e[i];
        petal_value_t v;
        int32_t rc;

        if (e->dropped) {
            continue;
        }
        for (uint64_t k = 0; k < e->len; k++) {
            e->sum[k] /= st->total;
        }
        if (e->is_list) {
            v.type = PETAL_VALUE_DOUBLE_LIST;
            v.reserved = 0;
            v.len = e->len;
            v.as.f64s = e->sum;
        } else {
            v = petal_value_f64(e->sum[0]);
        }
        rc = petal_metricrecord_set(out, e->name, &v);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static const petal_metrics_aggr_t weighted_mean = {
    .ctx = NULL,
    .begin = wm_begin,
    .fold = wm_fold,
    .end = wm_end,
    .free = wm_free,
};

const petal_metrics_aggr_t *
petal_metrics_aggr_weighted_mean(void)
{
    return &weighted_mean;
}
