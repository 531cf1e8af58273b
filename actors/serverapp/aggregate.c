/* aggregate.c - node sampling, the FedAvg running sums, and the weighted mean of metrics. */
#include "aggregate.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/actor.h"
#include "runtime/buf.h"
#include "runtime/message.h"

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

/* ---- Model layout ------------------------------------------------------------------------- */

/* Elements per parallel chunk: 64 Ki elements (256 KiB of float32 in, 512 KiB of sums). */
#define CHUNK_ELEMS ((uint64_t)1 << 16)

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
pt_layout_free(pt_layout_t *l)
{
    if (l == NULL) {
        return;
    }
    for (uint64_t i = 0; i < l->narrays; i++) {
        free(l->arrays[i].name);
    }
    free(l->arrays);
    free(l);
}

int
pt_layout_alloc(const petal_arrayrecord_t *model, const char *who, char *why, size_t why_len,
                pt_layout_t **out)
{
    pt_layout_t *l;
    uint64_t n;
    int rc = PETAL_ENOMEM;

    if (model == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return PETAL_ENOMEM;
    }
    n = petal_arrayrecord_count(model);
    if (n > 0) {
        l->arrays = calloc(n, sizeof(*l->arrays));
        if (l->arrays == NULL) {
            goto fail;
        }
    }
    for (uint64_t i = 0; i < n; i++) {
        const petal_array_t *a = petal_arrayrecord_at(model, i);
        const char *name = petal_arrayrecord_name_at(model, i);
        pt_layout_array_t *d = &l->arrays[i];
        uint32_t ndim;

        if (a == NULL || name == NULL) {
            rc = PETAL_EINVAL;
            goto fail;
        }
        d->dtype = petal_array_dtype(a);
        if (d->dtype != PETAL_DTYPE_FLOAT32 && d->dtype != PETAL_DTYPE_FLOAT64) {
            snprintf(why, why_len,
                     "array '%s' has dtype %s; %s aggregates float32 and float64 arrays only", name,
                     petal_dtype_name(d->dtype), who != NULL ? who : "the strategy");
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
        d->start = l->numel;
        l->numel += d->numel;
        l->narrays = i + 1;
    }
    *out = l;
    return 0;
fail:
    pt_layout_free(l);
    return rc;
}

int
pt_layout_check(const pt_layout_t *l, const petal_arrayrecord_t *arrays, const void **data,
                char *why, size_t why_len)
{
    uint64_t n;

    if (l == NULL || arrays == NULL) {
        snprintf(why, why_len, "no arrays in the reply");
        return PETAL_EINVAL;
    }
    n = petal_arrayrecord_count(arrays);
    if (n != l->narrays) {
        snprintf(why, why_len, "%" PRIu64 " arrays in the reply, the model has %" PRIu64, n,
                 l->narrays);
        return PETAL_EINVAL;
    }
    for (uint64_t j = 0; j < l->narrays; j++) {
        const pt_layout_array_t *m = &l->arrays[j];
        const petal_array_t *a = petal_arrayrecord_get(arrays, m->name);
        int32_t dtype;
        uint32_t ndim;
        const uint64_t *shape;
        const void *p;
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
        p = petal_array_data(a);
        if (m->numel > 0 && (p == NULL || petal_array_numel(a) != m->numel ||
                             petal_array_nbytes(a) != m->numel * esize)) {
            snprintf(why, why_len, "array '%s': data does not match its shape", m->name);
            return PETAL_EINVAL;
        }
        if (((uintptr_t)p % esize) != 0) {
            snprintf(why, why_len, "array '%s': data is not aligned for %s", m->name,
                     petal_dtype_name(m->dtype));
            return PETAL_EINVAL;
        }
        data[j] = p;
    }
    return 0;
}

/* One array's part of a range of the concatenated model: elements [off, off + cnt) of array j,
 * which are elements [at, at + cnt) of the model; cnt 0 ends the range. */
typedef struct layout_piece {
    uint64_t j, off, cnt, at;
} layout_piece_t;

/* The first piece of [lo, hi) in array j or after it (empty arrays have none). */
static layout_piece_t
layout_piece(const pt_layout_t *l, uint64_t j, uint64_t lo, uint64_t hi)
{
    layout_piece_t p = {j, 0, 0, lo};

    for (; p.j < l->narrays && lo < hi; p.j++) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        uint64_t end = arr->start + arr->numel;

        if (end > lo) {
            p.off = lo - arr->start;
            p.cnt = (end < hi ? end : hi) - lo;
            return p;
        }
    }
    p.cnt = 0;
    return p;
}

/* Runs the statement after it for each piece p of [lo, hi), in order. */
#define LAYOUT_FOR_PIECES(l, lo, hi, p)                                                            \
    for (layout_piece_t p = layout_piece((l), layout_find((l), (lo)), (lo), (hi)); p.cnt > 0;      \
         p = layout_piece((l), p.j + 1, p.at + p.cnt, (hi)))

/* The last array starting at or before element lo. */
static uint64_t
layout_find(const pt_layout_t *l, uint64_t lo)
{
    uint64_t a = 0;
    uint64_t b = l->narrays;

    while (b - a > 1) {
        uint64_t mid = a + (b - a) / 2;
        if (l->arrays[mid].start <= lo) {
            a = mid;
        } else {
            b = mid;
        }
    }
    return a;
}

void
pt_layout_load(const pt_layout_t *l, const void *const *data, uint64_t lo, uint64_t hi, double *out)
{
    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        if (arr->dtype == PETAL_DTYPE_FLOAT32) {
            const float *restrict x = (const float *)data[j] + off;
            for (uint64_t i = 0; i < cnt; i++) {
                out[i] = (double)x[i];
            }
        } else {
            memcpy(out, (const double *)data[j] + off, cnt * sizeof(double));
        }
        out += cnt;
    }
}

void
pt_layout_store(const pt_layout_t *l, void *const *data, uint64_t lo, uint64_t hi, const double *in)
{
    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        if (arr->dtype == PETAL_DTYPE_FLOAT32) {
            float *restrict y = (float *)data[j] + off;
            for (uint64_t i = 0; i < cnt; i++) {
                y[i] = (float)in[i];
            }
        } else {
            memcpy((double *)data[j] + off, in, cnt * sizeof(double));
        }
        in += cnt;
    }
}

int
pt_layout_add_arrays(const pt_layout_t *l, petal_arrayrecord_t *out, void **data)
{
    if (l == NULL || out == NULL || (l->narrays > 0 && data == NULL)) {
        return PETAL_EINVAL;
    }
    for (uint64_t j = 0; j < l->narrays; j++) {
        const pt_layout_array_t *m = &l->arrays[j];
        petal_array_t *a = petal_arrayrecord_add(out, m->name, m->dtype, m->ndim, m->shape);
        if (a == NULL) {
            return PETAL_ENOMEM;
        }
        data[j] = petal_array_data_mut(a);
        if (data[j] == NULL && m->numel > 0) {
            return PETAL_ENOMEM;
        }
    }
    return 0;
}

/* Sum of squared differences over [lo, hi). */
static double
sqdist_range(const pt_layout_t *l, const void *const *a, const void *const *b, uint64_t lo,
             uint64_t hi)
{
    double sum = 0.0;

    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        if (arr->dtype == PETAL_DTYPE_FLOAT32) {
            const float *restrict x = (const float *)a[j] + off;
            const float *restrict y = (const float *)b[j] + off;
            for (uint64_t i = 0; i < cnt; i++) {
                double d = (double)x[i] - (double)y[i];
                sum += d * d;
            }
        } else {
            const double *restrict x = (const double *)a[j] + off;
            const double *restrict y = (const double *)b[j] + off;
            for (uint64_t i = 0; i < cnt; i++) {
                double d = x[i] - y[i];
                sum += d * d;
            }
        }
    }
    return sum;
}

typedef struct sqdist_job {
    const pt_layout_t *l;
    const void *const *a;
    const void *const *b;
    double *partial;
} sqdist_job_t;

static void
sqdist_chunk(uint64_t lo, uint64_t hi, void *arg)
{
    sqdist_job_t *j = arg;
    j->partial[lo / CHUNK_ELEMS] = sqdist_range(j->l, j->a, j->b, lo, hi);
}

double
pt_layout_sqdist(const pt_layout_t *l, const void *const *a, const void *const *b,
                 struct pt_runtime *rt, uint64_t parallel_min)
{
    uint64_t chunks = (l->numel + CHUNK_ELEMS - 1) / CHUNK_ELEMS;
    double sum = 0.0;

    if (rt != NULL && chunks > 1 && l->numel >= parallel_min && pt_runtime_workers(rt) > 0) {
        sqdist_job_t job = {l, a, b, calloc(chunks, sizeof(double))};
        if (job.partial != NULL) {
            pt_parallel_ranges(rt, l->numel, CHUNK_ELEMS, parallel_min, sqdist_chunk, &job);
            for (uint64_t c = 0; c < chunks; c++) {
                sum += job.partial[c];
            }
            free(job.partial);
            return sum;
        }
    }
    /* Serially, with the same chunks added in the same order. */
    for (uint64_t lo = 0; lo < l->numel; lo += CHUNK_ELEMS) {
        uint64_t hi = lo + CHUNK_ELEMS < l->numel ? lo + CHUNK_ELEMS : l->numel;
        sum += sqdist_range(l, a, b, lo, hi);
    }
    return sum;
}

typedef struct ranges_job {
    uint64_t n;
    uint64_t chunk;
    void (*fn)(uint64_t lo, uint64_t hi, void *arg);
    void *arg;
} ranges_job_t;

static void
ranges_chunk(uint32_t i, void *arg)
{
    ranges_job_t *j = arg;
    uint64_t lo = (uint64_t)i * j->chunk;
    uint64_t hi = lo + j->chunk;

    if (hi > j->n) {
        hi = j->n;
    }
    j->fn(lo, hi, j->arg);
}

void
pt_parallel_ranges(struct pt_runtime *rt, uint64_t n, uint64_t chunk, uint64_t parallel_min,
                   void (*fn)(uint64_t lo, uint64_t hi, void *arg), void *arg)
{
    uint64_t chunks;

    if (n == 0) {
        return;
    }
    if (chunk == 0) {
        chunk = n;
    }
    chunks = (n + chunk - 1) / chunk;
    if (rt != NULL && n >= parallel_min && chunks > 1 && chunks <= UINT32_MAX &&
        pt_runtime_workers(rt) > 0) {
        ranges_job_t job = {n, chunk, fn, arg};
        pt_pool_parallel_for(rt, (uint32_t)chunks, ranges_chunk, &job);
        return;
    }
    for (uint64_t lo = 0; lo < n; lo += chunk) {
        fn(lo, lo + chunk < n ? lo + chunk : n, arg);
    }
}

/* ---- FedAvg accumulator --------------------------------------------------------------------- */

enum { OP_FOLD, OP_FINISH, OP_MEAN, OP_NFOLD, OP_NFINISH };

struct pt_fedavg_acc {
    pt_layout_t *layout;
    pt_buf_t *sums_buf; /* wide sums: not zeroed, the first fold writes every sum */
    double *sums;
    uint64_t numel;
    uint64_t parallel_min;
    uint64_t narrow_min; /* narrow sums for models of at least this many elements (0: never) */
    int narrow;          /* decided at the first fold */
    int taken;           /* narrow: the first reply's arrays are the sums */
    int finished;        /* narrow: the sums became the output (pt_fedavg_acc_finish) */
    double total_weight;
    uint64_t count;
    int meaned; /* the sums hold the mean (pt_fedavg_acc_mean) */
    /* Narrow sums: where array j's sums are (data), and the buffer and offset they live in. */
    void **ndata;
    pt_buf_t **nbuf; /* one reference each */
    size_t *noff;
    /* The operation in progress (read by the chunk workers). */
    int op;
    double weight;    /* OP_FOLD: the reply's weight */
    const void **src; /* OP_FOLD: each array's data in the reply */
    void **dst;       /* OP_FINISH: each output array's data */
};

void
pt_fedavg_acc_free(pt_fedavg_acc_t *acc)
{
    if (acc == NULL) {
        return;
    }
    for (uint64_t j = 0; acc->nbuf != NULL && j < acc->layout->narrays; j++) {
        pt_buf_release(acc->nbuf[j]);
    }
    pt_layout_free(acc->layout);
    pt_buf_release(acc->sums_buf);
    free(acc->ndata);
    free(acc->nbuf);
    free(acc->noff);
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
    int rc;

    if (global == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    acc = calloc(1, sizeof(*acc));
    if (acc == NULL) {
        return PETAL_ENOMEM;
    }
    acc->parallel_min = parallel_min_elements;
    rc = pt_layout_alloc(global, "FedAvg", why, why_len, &acc->layout);
    if (rc != 0) {
        goto fail;
    }
    rc = PETAL_ENOMEM;
    n = acc->layout->narrays;
    acc->src = calloc(n > 0 ? n : 1, sizeof(*acc->src));
    acc->dst = calloc(n > 0 ? n : 1, sizeof(*acc->dst));
    if (acc->src == NULL || acc->dst == NULL) {
        goto fail;
    }
    acc->numel = acc->layout->numel;
    *out = acc;
    return 0;
fail:
    pt_fedavg_acc_free(acc);
    return rc;
}

void
pt_fedavg_acc_set_narrow(pt_fedavg_acc_t *acc, uint64_t min_elements)
{
    if (acc != NULL && acc->count == 0) {
        acc->narrow_min = min_elements;
    }
}

int
pt_fedavg_acc_is_narrow(const pt_fedavg_acc_t *acc)
{
    return acc != NULL && acc->narrow;
}

/* Narrow sums over elements [lo, hi): fold, first fold, or the mean written over the sums. The
 * sums may be the first reply's own arrays (src == sums then), so no restrict here. */
static void
narrow_range(pt_fedavg_acc_t *acc, uint64_t lo, uint64_t hi)
{
    const pt_layout_t *l = acc->layout;
    const int first = acc->op == OP_NFOLD && acc->count == 0;
    const double w = acc->weight;
    const double t = acc->total_weight;

    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        if (arr->dtype == PETAL_DTYPE_FLOAT32) {
            float *s = (float *)acc->ndata[j] + off;
            const float *x = acc->op == OP_NFOLD ? (const float *)acc->src[j] + off : NULL;
            if (acc->op == OP_NFINISH) {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = (float)((double)s[i] / t);
                }
            } else if (first) {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = (float)(0.0 + w * (double)x[i]);
                }
            } else {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = (float)((double)s[i] + w * (double)x[i]);
                }
            }
        } else {
            double *s = (double *)acc->ndata[j] + off;
            const double *x = acc->op == OP_NFOLD ? (const double *)acc->src[j] + off : NULL;
            if (acc->op == OP_NFINISH) {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = s[i] / t;
                }
            } else if (first) {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = 0.0 + w * x[i];
                }
            } else {
                for (uint64_t i = 0; i < cnt; i++) {
                    s[i] = s[i] + w * x[i];
                }
            }
        }
    }
}

/* The op in progress over elements [lo, hi) of the concatenated model. */
static void
run_range(uint64_t lo, uint64_t hi, void *arg)
{
    pt_fedavg_acc_t *acc = arg;
    const pt_layout_t *l = acc->layout;

    if (acc->op == OP_NFOLD || acc->op == OP_NFINISH) {
        narrow_range(acc, lo, hi);
        return;
    }
    if (acc->op == OP_MEAN) {
        const double t = acc->total_weight;
        for (uint64_t i = lo; i < hi; i++) {
            acc->sums[i] /= t;
        }
        return;
    }
    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        double *restrict sum;
        sum = acc->sums + p.at;
        if (acc->op == OP_FOLD && acc->count == 0) {
            /* The first fold writes the sums (no read of zeroed memory): 0.0 + w * x is what
             * adding to a zero gives, bit for bit (also for -0.0). */
            const double w = acc->weight;
            if (arr->dtype == PETAL_DTYPE_FLOAT32) {
                const float *restrict x = (const float *)acc->src[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    sum[i] = 0.0 + w * (double)x[i];
                }
            } else {
                const double *restrict x = (const double *)acc->src[j] + off;
                for (uint64_t i = 0; i < cnt; i++) {
                    sum[i] = 0.0 + w * x[i];
                }
            }
        } else if (acc->op == OP_FOLD) {
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
            const double t = acc->meaned ? 1.0 : acc->total_weight;
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
    }
}

/* Runs the op over the whole model, on the pool when it is large enough. Each element is
 * touched by one chunk only, so the result does not depend on the number of threads. */
static void
run_op(pt_fedavg_acc_t *acc, struct pt_runtime *rt)
{
    pt_parallel_ranges(rt, acc->numel, CHUNK_ELEMS, acc->parallel_min, run_range, acc);
}

int
pt_fedavg_acc_check(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, char *why,
                    size_t why_len)
{
    if (acc == NULL || arrays == NULL) {
        snprintf(why, why_len, "no arrays in the reply");
        return PETAL_EINVAL;
    }
    return pt_layout_check(acc->layout, arrays, acc->src, why, why_len);
}

/* Array views of `content` (every ArrayRecord) whose bytes live in `buf`. */
static uint32_t
views_of(const petal_recorddict_t *content, const pt_buf_t *buf)
{
    uint32_t n = 0;

    for (uint64_t i = 0; i < petal_recorddict_count(content); i++) {
        if (petal_recorddict_kind_at(content, i) != PETAL_RECORD_ARRAYS) {
            continue;
        }
        const petal_arrayrecord_t *r =
            petal_recorddict_arrays(content, petal_recorddict_name_at(content, i));
        for (uint64_t k = 0; r != NULL && k < petal_arrayrecord_count(r); k++) {
            n += pt_array_buf(petal_arrayrecord_at(r, k)) == buf;
        }
    }
    return n;
}

/*
 * Narrow sums, first fold: the reply's arrays become the sums when nobody else can see them
 * (the message has one reference, and every buffer its model arrays live in is an owned
 * buffer referenced only by this message's arrays), so that folding needs no memory; otherwise
 * one new buffer holds the sums. 0 or PETAL_ENOMEM.
 */
static int
narrow_setup(pt_fedavg_acc_t *acc, const petal_message_t *reply, const petal_arrayrecord_t *arrays)
{
    const pt_layout_t *l = acc->layout;
    const petal_recorddict_t *content = reply != NULL ? petal_message_content(reply) : NULL;
    uint64_t n = l->narrays;
    int take = content != NULL && pt_message_refs(reply) == 1;

    acc->ndata = calloc(n > 0 ? n : 1, sizeof(*acc->ndata));
    acc->nbuf = calloc(n > 0 ? n : 1, sizeof(*acc->nbuf));
    acc->noff = calloc(n > 0 ? n : 1, sizeof(*acc->noff));
    if (acc->ndata == NULL || acc->nbuf == NULL || acc->noff == NULL) {
        return PETAL_ENOMEM;
    }
    for (uint64_t j = 0; take && j < n; j++) {
        const petal_array_t *a = petal_arrayrecord_get(arrays, l->arrays[j].name);
        pt_buf_t *b = pt_array_buf(a);
        take = b != NULL && pt_buf_is_owned(b) && pt_buf_refs(b) == views_of(content, b);
    }
    if (take) {
        for (uint64_t j = 0; j < n; j++) {
            const petal_array_t *a = petal_arrayrecord_get(arrays, l->arrays[j].name);
            acc->nbuf[j] = pt_array_buf(a);
            pt_buf_hold(acc->nbuf[j]);
            acc->noff[j] = pt_array_offset(a);
            acc->ndata[j] = (char *)pt_buf_data(acc->nbuf[j]) + acc->noff[j];
        }
        acc->taken = 1;
        return 0;
    }
    size_t total = 0;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t nbytes = l->arrays[j].numel * petal_dtype_size(l->arrays[j].dtype);
        acc->noff[j] = total;
        if (nbytes > SIZE_MAX / 2 - total) {
            return PETAL_ENOMEM;
        }
        total += ((size_t)nbytes + PT_BUF_ALIGN - 1) / PT_BUF_ALIGN * PT_BUF_ALIGN;
    }
    pt_buf_t *b = pt_buf_alloc(total, 0);
    if (b == NULL) {
        return PETAL_ENOMEM;
    }
    for (uint64_t j = 0; j < n; j++) {
        pt_buf_hold(b);
        acc->nbuf[j] = b;
        acc->ndata[j] = (char *)pt_buf_data(b) + acc->noff[j];
    }
    pt_buf_release(b); /* the arrays' references keep it */
    return 0;
}

int
pt_fedavg_acc_fold_reply(pt_fedavg_acc_t *acc, const petal_message_t *reply,
                         const petal_arrayrecord_t *arrays, double weight, struct pt_runtime *rt,
                         char *why, size_t why_len)
{
    int rc;

    if (!(weight > 0.0) || !isfinite(weight)) {
        snprintf(why, why_len, "the weight must be positive and finite");
        return PETAL_EINVAL;
    }
    if (acc != NULL && (acc->meaned || acc->finished)) {
        snprintf(why, why_len, "the mean was taken already");
        return PETAL_ESTATE;
    }
    rc = pt_fedavg_acc_check(acc, arrays, why, why_len);
    if (rc != 0) {
        return rc;
    }
    if (acc->count == 0 && acc->numel > 0) {
        acc->narrow = acc->narrow_min > 0 && acc->numel >= acc->narrow_min;
        if (acc->narrow) {
            rc = narrow_setup(acc, reply, arrays);
        } else if (acc->sums_buf == NULL) {
            /* Large sums come from the buffer cache (runtime/buf.c): the same size every
             * round. */
            acc->sums_buf = acc->numel <= SIZE_MAX / sizeof(double)
                                ? pt_buf_alloc((size_t)acc->numel * sizeof(double), 0)
                                : NULL;
            acc->sums = acc->sums_buf != NULL ? pt_buf_data(acc->sums_buf) : NULL;
            rc = acc->sums != NULL ? 0 : PETAL_ENOMEM;
        }
        if (rc != 0) {
            snprintf(why, why_len, "out of memory for %" PRIu64 " running sums", acc->numel);
            return rc;
        }
    }
    acc->op = acc->narrow ? OP_NFOLD : OP_FOLD;
    acc->weight = weight;
    run_op(acc, rt);
    acc->total_weight += weight;
    acc->count++;
    for (uint64_t j = 0; j < acc->layout->narrays; j++) {
        acc->src[j] = NULL;
    }
    return 0;
}

int
pt_fedavg_acc_fold(pt_fedavg_acc_t *acc, const petal_arrayrecord_t *arrays, double weight,
                   struct pt_runtime *rt, char *why, size_t why_len)
{
    return pt_fedavg_acc_fold_reply(acc, NULL, arrays, weight, rt, why, why_len);
}

/* As pt_layout_add_arrays(), but the new arrays are not zeroed: the caller writes every
 * element. */
static int
add_output_arrays(const pt_layout_t *l, petal_arrayrecord_t *out, void **data)
{
    for (uint64_t j = 0; j < l->narrays; j++) {
        const pt_layout_array_t *m = &l->arrays[j];
        uint64_t nbytes = m->numel * petal_dtype_size(m->dtype);
        pt_buf_t *b = nbytes <= SIZE_MAX ? pt_buf_alloc((size_t)nbytes, 0) : NULL;
        petal_array_t *a;

        if (b == NULL) {
            return PETAL_ENOMEM;
        }
        a = pt_arrayrecord_add_view(out, m->name, m->dtype, m->ndim, m->shape, b, 0);
        pt_buf_release(b); /* the array holds its own reference */
        if (a == NULL) {
            return PETAL_ENOMEM;
        }
        data[j] = petal_array_data_mut(a);
        if (data[j] == NULL && m->numel > 0) {
            return PETAL_ENOMEM;
        }
    }
    return 0;
}

/* Narrow sums: the mean is written over the sums, which become the output arrays (views). */
static int
narrow_finish(pt_fedavg_acc_t *acc, petal_arrayrecord_t *out, struct pt_runtime *rt)
{
    const pt_layout_t *l = acc->layout;

    if (acc->finished) {
        return PETAL_ESTATE;
    }
    acc->op = OP_NFINISH;
    run_op(acc, rt);
    acc->finished = 1;
    for (uint64_t j = 0; j < l->narrays; j++) {
        const pt_layout_array_t *m = &l->arrays[j];
        if (pt_arrayrecord_add_view(out, m->name, m->dtype, m->ndim, m->shape, acc->nbuf[j],
                                    acc->noff[j]) == NULL) {
            return PETAL_ENOMEM;
        }
    }
    return 0;
}

int
pt_fedavg_acc_finish(pt_fedavg_acc_t *acc, petal_arrayrecord_t *out, struct pt_runtime *rt)
{
    int rc;

    if (acc == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (acc->count == 0 || !(acc->total_weight > 0.0)) {
        return PETAL_ESTATE;
    }
    if (acc->narrow) {
        return narrow_finish(acc, out, rt);
    }
    rc = add_output_arrays(acc->layout, out, acc->dst);
    if (rc != 0) {
        return rc;
    }
    acc->op = OP_FINISH;
    run_op(acc, rt);
    for (uint64_t j = 0; j < acc->layout->narrays; j++) {
        acc->dst[j] = NULL;
    }
    return 0;
}

const double *
pt_fedavg_acc_mean(pt_fedavg_acc_t *acc, struct pt_runtime *rt)
{
    if (acc == NULL || acc->count == 0 || !(acc->total_weight > 0.0) || acc->narrow) {
        return NULL;
    }
    if (acc->numel == 0) {
        static const double nothing = 0.0;
        return &nothing; /* not NULL: an empty model has an (empty) mean */
    }
    if (!acc->meaned) {
        acc->op = OP_MEAN;
        run_op(acc, rt);
        acc->meaned = 1;
    }
    return acc->sums;
}

const pt_layout_t *
pt_fedavg_acc_layout(const pt_fedavg_acc_t *acc)
{
    return acc->layout;
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

/* ---- Held replies --------------------------------------------------------------------------- */

void
pt_replies_free(pt_replies_t *r)
{
    if (r == NULL) {
        return;
    }
    for (uint64_t i = 0; r->slots != NULL && i < r->nslots; i++) {
        petal_recorddict_free(r->slots[i].holder);
        free(r->slots[i].data);
    }
    free(r->slots);
    free(r->held);
    pt_layout_free(r->layout);
    free(r);
}

int
pt_replies_alloc(const petal_round_info_t *info, const char *who, char *why, size_t why_len,
                 pt_replies_t **out)
{
    pt_replies_t *r;
    int rc;

    if (info == NULL || info->arrays == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return PETAL_ENOMEM;
    }
    rc = pt_layout_alloc(info->arrays, who, why, why_len, &r->layout);
    if (rc != 0) {
        pt_replies_free(r);
        return rc;
    }
    r->nslots = info->num_nodes;
    r->slots = calloc(r->nslots > 0 ? r->nslots : 1, sizeof(*r->slots));
    r->held = calloc(r->nslots > 0 ? r->nslots : 1, sizeof(*r->held));
    if (r->slots == NULL || r->held == NULL) {
        pt_replies_free(r);
        return PETAL_ENOMEM;
    }
    *out = r;
    return 0;
}

static int32_t
copy_metrics(petal_metricrecord_t *dst, const petal_metricrecord_t *src)
{
    uint64_t n = src != NULL ? petal_metricrecord_count(src) : 0;

    for (uint64_t i = 0; i < n; i++) {
        const char *name;
        petal_value_t v;
        int32_t rc = petal_metricrecord_at(src, i, &name, &v);
        if (rc == 0) {
            rc = petal_metricrecord_set(dst, name, &v);
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int
pt_replies_hold(pt_replies_t *r, const petal_strategy_t *s, uint64_t index,
                const petal_message_t *reply, char *why, size_t why_len)
{
    const petal_recorddict_t *content = petal_message_content(reply);
    const petal_arrayrecord_t *arrays;
    const pt_layout_t *l = r->layout;
    petal_arrayrecord_t *keep;
    petal_metricrecord_t *metrics;
    pt_held_t *h;
    const void **data;
    double w;
    int rc;

    if (index >= r->nslots || r->slots[index].holder != NULL) {
        snprintf(why, why_len, "reply position %" PRIu64 " is out of range or taken", index);
        return PETAL_EINVAL;
    }
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
    data = calloc(l->narrays > 0 ? l->narrays : 1, sizeof(*data));
    if (data == NULL) {
        return PETAL_ENOMEM;
    }
    rc = pt_layout_check(l, arrays, data, why, why_len);
    if (rc != 0) {
        free(data);
        return rc;
    }
    h = &r->slots[index];
    h->holder = petal_recorddict_alloc();
    keep = h->holder != NULL ? petal_recorddict_add_arrays(h->holder, "arrays") : NULL;
    metrics = h->holder != NULL ? petal_recorddict_add_metrics(h->holder, "metrics") : NULL;
    rc = keep != NULL && metrics != NULL ? 0 : PETAL_ENOMEM;
    /* References to the reply's buffers, in model order: no array byte is copied. */
    for (uint64_t j = 0; rc == 0 && j < l->narrays; j++) {
        rc = petal_arrayrecord_add_ref(keep, l->arrays[j].name,
                                       petal_arrayrecord_get(arrays, l->arrays[j].name));
    }
    if (rc == 0) {
        rc = copy_metrics(metrics, petal_strategy_reply_metrics(content));
    }
    if (rc == 0) {
        rc = pt_layout_check(l, keep, data, why, why_len);
    }
    if (rc != 0) {
        if (why[0] == '\0') {
            snprintf(why, why_len, "keeping the reply failed: %s", petal_strerror(rc));
        }
        petal_recorddict_free(h->holder);
        h->holder = NULL;
        free(data);
        return rc;
    }
    h->index = index;
    h->weight = w;
    h->arrays = keep;
    h->data = data;
    return 0;
}

int
pt_replies_seal(pt_replies_t *r)
{
    r->count = 0;
    for (uint64_t i = 0; i < r->nslots; i++) {
        if (r->slots[i].holder != NULL) {
            r->held[r->count++] = &r->slots[i];
        }
    }
    return 0;
}

int32_t
pt_replies_metrics(const pt_replies_t *r, const petal_strategy_t *s, const uint64_t *which,
                   uint64_t n, petal_metricrecord_t *out)
{
    const petal_metrics_aggr_t *aggr = s->opts.train_metrics_aggr != NULL
                                           ? s->opts.train_metrics_aggr
                                           : petal_metrics_aggr_weighted_mean();
    void *st = NULL;
    int32_t rc;

    if (which == NULL) {
        n = r->count;
    }
    rc = aggr->begin(aggr->ctx, s->opts.weighted_by_key, &st);
    if (rc != 0) {
        return rc;
    }
    for (uint64_t k = 0; k < n && rc == 0; k++) {
        uint64_t pos = which != NULL ? which[k] : k;
        const pt_held_t *h;
        if (pos >= r->count) {
            rc = PETAL_EINVAL;
            break;
        }
        h = r->held[pos];
        rc = aggr->fold(st, petal_recorddict_metrics(h->holder, "metrics"), h->weight);
    }
    if (rc == 0) {
        rc = aggr->end(st, out);
    }
    aggr->free(st);
    return rc;
}

/* ---- Element-wise order statistics ------------------------------------------------------ */

/* Elements per range of pt_columns(): the work per element is O(replies). */
#define COLUMN_ELEMS ((uint64_t)1 << 12)
#define COLUMN_STACK 64

typedef struct columns_job {
    const pt_layout_t *l;
    const pt_held_t *const *rows;
    uint64_t n;
    void *const *dst;
    pt_column_fn fn;
    void *arg;
    atomic_int failed;
} columns_job_t;

static void
columns_range(uint64_t lo, uint64_t hi, void *arg)
{
    columns_job_t *c = arg;
    const pt_layout_t *l = c->l;
    const uint64_t n = c->n;
    double col_stack[COLUMN_STACK];
    const void *src_stack[COLUMN_STACK];
    double *col = col_stack;
    const void **src = src_stack;

    if (n > COLUMN_STACK) {
        col = malloc(n * sizeof(*col));
        src = malloc(n * sizeof(*src));
        if (col == NULL || src == NULL) {
            free(col);
            free(src);
            atomic_store(&c->failed, 1);
            return;
        }
    }
    LAYOUT_FOR_PIECES (l, lo, hi, p) {
        const pt_layout_array_t *arr = &l->arrays[p.j];
        const uint64_t j = p.j, off = p.off, cnt = p.cnt;
        if (arr->dtype == PETAL_DTYPE_FLOAT32) {
            float *y = (float *)c->dst[j] + off;
            for (uint64_t r = 0; r < n; r++) {
                src[r] = (const float *)c->rows[r]->data[j] + off;
            }
            for (uint64_t i = 0; i < cnt; i++) {
                for (uint64_t r = 0; r < n; r++) {
                    col[r] = (double)((const float *)src[r])[i];
                }
                y[i] = (float)c->fn(col, n, c->arg);
            }
        } else {
            double *y = (double *)c->dst[j] + off;
            for (uint64_t r = 0; r < n; r++) {
                src[r] = (const double *)c->rows[r]->data[j] + off;
            }
            for (uint64_t i = 0; i < cnt; i++) {
                for (uint64_t r = 0; r < n; r++) {
                    col[r] = ((const double *)src[r])[i];
                }
                y[i] = c->fn(col, n, c->arg);
            }
        }
    }
    if (col != col_stack) {
        free(col);
        free(src);
    }
}

int
pt_columns(const pt_layout_t *l, const pt_held_t *const *rows, uint64_t n, void *const *dst,
           struct pt_runtime *rt, uint64_t parallel_min, pt_column_fn fn, void *arg)
{
    columns_job_t job;

    if (l == NULL || fn == NULL || n == 0 || rows == NULL || (l->narrays > 0 && dst == NULL)) {
        return PETAL_EINVAL;
    }
    job.l = l;
    job.rows = rows;
    job.n = n;
    job.dst = dst;
    job.fn = fn;
    job.arg = arg;
    atomic_init(&job.failed, 0);
    /* The work is n times FedAvg's per element: go parallel n times sooner. */
    pt_parallel_ranges(rt, l->numel, COLUMN_ELEMS, parallel_min / n > 0 ? parallel_min / n : 1,
                       columns_range, &job);
    return atomic_load(&job.failed) ? PETAL_ENOMEM : 0;
}

static void
insertion_sort(double *v, int64_t lo, int64_t hi)
{
    for (int64_t i = lo + 1; i <= hi; i++) {
        double x = v[i];
        int64_t j = i - 1;
        while (j >= lo && v[j] > x) {
            v[j + 1] = v[j];
            j--;
        }
        v[j + 1] = x;
    }
}

static void
swap_d(double *v, int64_t a, int64_t b)
{
    double t = v[a];
    v[a] = v[b];
    v[b] = t;
}

double
pt_select(double *v, uint64_t n, uint64_t k)
{
    int64_t lo = 0;
    int64_t hi = (int64_t)n - 1;
    int64_t kk = (int64_t)k;

    while (hi > lo) {
        int64_t mid;
        int64_t i;
        int64_t j;
        double pivot;

        if (hi - lo < 16) {
            insertion_sort(v, lo, hi);
            break;
        }
        /* Median of three as the pivot, which also bounds both scans below. */
        mid = lo + (hi - lo) / 2;
        if (v[mid] < v[lo]) {
            swap_d(v, mid, lo);
        }
        if (v[hi] < v[lo]) {
            swap_d(v, hi, lo);
        }
        if (v[hi] < v[mid]) {
            swap_d(v, hi, mid);
        }
        pivot = v[mid];
        i = lo;
        j = hi;
        while (i <= j) {
            while (v[i] < pivot) {
                i++;
            }
            while (v[j] > pivot) {
                j--;
            }
            if (i <= j) {
                swap_d(v, i, j);
                i++;
                j--;
            }
        }
        /* Now v[lo..j] <= pivot, v[i..hi] >= pivot, and v[j+1..i-1] == pivot. */
        if (kk <= j) {
            hi = j;
        } else if (kk >= i) {
            lo = i;
        } else {
            break;
        }
    }
    return v[k];
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
