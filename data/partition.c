/* partition.c - IID and Dirichlet (label-skew) partitioners and their shared helpers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>

#include "internal.h"

/* ---- IID: a keyed pseudo-random permutation of [0, n) -------------------------------------- */

/*
 * A balanced Feistel network on 2*half bits (2^(2*half) >= n), PT_FEISTEL_ROUNDS rounds, round
 * function F(k, r) = mix64(r ^ k) truncated to `half` bits, where mix64 is splitmix64's output
 * function and the round keys are consecutive splitmix64 outputs from `seed`. Values >= n are
 * walked through the network again (cycle walking) until they land in [0, n), which keeps it a
 * bijection of [0, n). Position i of the permuted order holds perm(i); partition p takes the
 * positions [start_p, end_p), so one partition costs O(its size) to compute.
 */
static uint64_t
mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

void
pt_feistel_init(pt_feistel_t *f, uint64_t n, uint64_t seed)
{
    uint32_t bits = 2;
    while (bits < 64 && (UINT64_C(1) << bits) < n) {
        bits++;
    }
    bits += bits & 1u;
    f->n = n;
    f->half = bits / 2;
    f->mask = (UINT64_C(1) << f->half) - 1;
    uint64_t st = seed;
    for (int r = 0; r < PT_FEISTEL_ROUNDS; r++) {
        f->keys[r] = petal_splitmix64(&st);
    }
}

uint64_t
pt_feistel_apply(const pt_feistel_t *f, uint64_t x)
{
    do {
        uint64_t left = x >> f->half;
        uint64_t right = x & f->mask;
        for (int r = 0; r < PT_FEISTEL_ROUNDS; r++) {
            uint64_t t = left ^ (mix64(right ^ f->keys[r]) & f->mask);
            left = right;
            right = t;
        }
        x = (left << f->half) | right;
    } while (x >= f->n);
    return x;
}

int
pt_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int
petal_partition_iid(uint64_t n, uint32_t num_partitions, uint32_t partition_id, uint64_t seed,
                    uint64_t **idx_out, uint64_t *count_out)
{
    if (idx_out == NULL || count_out == NULL || num_partitions == 0 ||
        partition_id >= num_partitions || n > (UINT64_C(1) << 62)) {
        return PETAL_EINVAL;
    }
    uint64_t base = n / num_partitions;
    uint64_t rem = n % num_partitions;
    uint64_t count = base + (partition_id < rem ? 1 : 0);
    uint64_t start = base * partition_id + (partition_id < rem ? partition_id : rem);
    if (count == 0) {
        *idx_out = NULL;
        *count_out = 0;
        return 0;
    }
    uint64_t *idx = malloc(sizeof(*idx) * count);
    if (idx == NULL) {
        return PETAL_ENOMEM;
    }
    pt_feistel_t f;
    pt_feistel_init(&f, n, seed);
    for (uint64_t i = 0; i < count; i++) {
        idx[i] = pt_feistel_apply(&f, start + i);
    }
    qsort(idx, count, sizeof(*idx), pt_cmp_u64);
    *idx_out = idx;
    *count_out = count;
    return 0;
}

/* ---- Dirichlet label skew ------------------------------------------------------------------ */

#define DIRICHLET_ATTEMPTS 10

/* Gamma(shape, 1) by Marsaglia and Tsang (2000); shape < 1 through Gamma(shape + 1) * U^(1/shape).
 */
double
pt_gamma_sample(petal_rng_t *r, double shape)
{
    if (shape < 1.0) {
        double u = 1.0 - petal_rng_uniform(r);
        return pt_gamma_sample(r, shape + 1.0) * pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = petal_rng_normal(r);
        double v = 1.0 + c * x;
        if (v <= 0.0) {
            continue;
        }
        v = v * v * v;
        double u = 1.0 - petal_rng_uniform(r);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) {
            return d * v;
        }
    }
}

int
petal_partition_dirichlet(const uint8_t *labels, uint64_t n, uint32_t num_classes,
                          uint32_t num_partitions, uint32_t partition_id, double alpha,
                          uint64_t min_partition_size, uint64_t seed, uint64_t **idx_out,
                          uint64_t *count_out)
{
    if (labels == NULL || idx_out == NULL || count_out == NULL || num_classes == 0 ||
        num_classes > 256 || num_partitions == 0 || partition_id >= num_partitions ||
        !(alpha > 0.0) || !isfinite(alpha)) {
        return PETAL_EINVAL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (labels[i] >= num_classes) {
            return PETAL_EINVAL;
        }
    }
    int rc = PETAL_ENOMEM;
    uint64_t *class_start = calloc((size_t)num_classes + 1, sizeof(uint64_t));
    uint64_t *by_class = malloc(sizeof(uint64_t) * (n > 0 ? n : 1));
    uint64_t *mine = malloc(sizeof(uint64_t) * (n > 0 ? n : 1));
    uint64_t *sizes = malloc(sizeof(uint64_t) * num_partitions);
    double *share = malloc(sizeof(double) * num_partitions);
    if (class_start == NULL || by_class == NULL || mine == NULL || sizes == NULL || share == NULL) {
        goto fail;
    }
    for (uint64_t i = 0; i < n; i++) {
        class_start[labels[i] + 1]++;
    }
    for (uint32_t c = 0; c < num_classes; c++) {
        class_start[c + 1] += class_start[c];
    }

    uint64_t count = 0;
    rc = PETAL_EAGAIN;
    for (int attempt = 0; attempt < DIRICHLET_ATTEMPTS && rc == PETAL_EAGAIN; attempt++) {
        petal_rng_t r;
        petal_rng_seed(&r, petal_seed_combine(seed, (uint64_t)attempt));
        /* Indices bucketed by class, ascending inside each class, then shuffled per class. */
        uint64_t fill[256];
        memcpy(fill, class_start, sizeof(uint64_t) * num_classes);
        for (uint64_t i = 0; i < n; i++) {
            by_class[fill[labels[i]]++] = i;
        }
        memset(sizes, 0, sizeof(uint64_t) * num_partitions);
        count = 0;
        for (uint32_t c = 0; c < num_classes; c++) {
            uint64_t m = class_start[c + 1] - class_start[c];
            uint64_t *items = by_class + class_start[c];
            petal_rng_shuffle_u64(&r, items, m);
            double sum = 0.0;
            for (uint32_t j = 0; j < num_partitions; j++) {
                share[j] = pt_gamma_sample(&r, alpha);
                sum += share[j];
            }
            if (!(sum > 0.0) || !isfinite(sum)) {
                /* Every draw underflowed (tiny alpha): the whole class goes to one partition. */
                memset(share, 0, sizeof(double) * num_partitions);
                share[petal_rng_below(&r, num_partitions)] = 1.0;
                sum = 1.0;
            }
            double cum = 0.0;
            uint64_t prev = 0;
            for (uint32_t j = 0; j < num_partitions; j++) {
                cum += share[j];
                uint64_t cut = j + 1 == num_partitions ? m : (uint64_t)floor(cum / sum * (double)m);
                if (cut > m) {
                    cut = m;
                }
                if (cut < prev) {
                    cut = prev;
                }
                sizes[j] += cut - prev;
                if (j == partition_id) {
                    memcpy(mine + count, items + prev, sizeof(uint64_t) * (cut - prev));
                    count += cut - prev;
                }
                prev = cut;
            }
        }
        rc = 0;
        for (uint32_t j = 0; j < num_partitions; j++) {
            if (sizes[j] < min_partition_size) {
                rc = PETAL_EAGAIN;
                break;
            }
        }
    }
    if (rc < 0) {
        goto fail;
    }
    qsort(mine, count, sizeof(*mine), pt_cmp_u64);
    if (count == 0) {
        free(mine);
        mine = NULL;
    }
    *idx_out = mine;
    *count_out = count;
    mine = NULL;

fail:
    free(class_start);
    free(by_class);
    free(mine);
    free(sizes);
    free(share);
    return rc;
}

int
pt_bucket_by_class(const uint8_t *labels, uint64_t n, uint32_t num_classes, uint64_t **by_class,
                   uint64_t **class_start)
{
    *by_class = NULL;
    *class_start = NULL;
    if (num_classes == 0 || num_classes > 256 || (labels == NULL && n > 0)) {
        return PETAL_EINVAL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (labels[i] >= num_classes) {
            return PETAL_EINVAL;
        }
    }
    uint64_t *start = calloc((size_t)num_classes + 1, sizeof(uint64_t));
    uint64_t *items = malloc(sizeof(uint64_t) * (n > 0 ? n : 1));
    if (start == NULL || items == NULL) {
        free(start);
        free(items);
        return PETAL_ENOMEM;
    }
    for (uint64_t i = 0; i < n; i++) {
        start[labels[i] + 1]++;
    }
    for (uint32_t c = 0; c < num_classes; c++) {
        start[c + 1] += start[c];
    }
    uint64_t fill[256];
    memcpy(fill, start, sizeof(uint64_t) * num_classes);
    for (uint64_t i = 0; i < n; i++) {
        items[fill[labels[i]]++] = i;
    }
    *by_class = items;
    *class_start = start;
    return 0;
}

int
pt_partition_emit(const uint64_t *src, uint64_t count, uint64_t **idx_out, uint64_t *count_out)
{
    if (count == 0) {
        *idx_out = NULL;
        *count_out = 0;
        return 0;
    }
    uint64_t *idx = malloc(sizeof(*idx) * count);
    if (idx == NULL) {
        return PETAL_ENOMEM;
    }
    memcpy(idx, src, sizeof(*idx) * count);
    qsort(idx, count, sizeof(*idx), pt_cmp_u64);
    *idx_out = idx;
    *count_out = count;
    return 0;
}
