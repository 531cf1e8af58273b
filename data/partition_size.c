/* partition_size.c - size-skewed partitioners: sizes proportional to i, i^2 or e^(i / tau). */
#include <math.h>
#include <stdlib.h>

#include <petal/data.h>

#include "internal.h"

static double
law_weight(petal_size_law_t law, double tau, uint32_t i, uint32_t num_partitions)
{
    double x = (double)i + 1.0;
    switch (law) {
    case PETAL_SIZE_LINEAR:
        return x;
    case PETAL_SIZE_SQUARE:
        return x * x;
    case PETAL_SIZE_EXPONENTIAL:
        /* e^((i + 1) / tau) divided by the largest, e^(P / tau): no overflow. */
        return exp((x - (double)num_partitions) / tau);
    }
    return 0.0;
}

static int
law_valid(petal_size_law_t law, double tau)
{
    if (law == PETAL_SIZE_LINEAR || law == PETAL_SIZE_SQUARE) {
        return 1;
    }
    return law == PETAL_SIZE_EXPONENTIAL && tau > 0.0 && isfinite(tau);
}

/*
 * Boundaries B(0) = 0, B(j) = round(n * (w_0 + ... + w_{j-1}) / W), B(P) = n: rounding a
 * non-decreasing sequence keeps it non-decreasing, so the sizes B(j + 1) - B(j) are >= 0, sum to
 * n, and each is within one of its exact share n * w_j / W.
 */
static uint64_t
boundary(uint64_t n, double cum, double total)
{
    double b = floor((double)n * (cum / total) + 0.5);
    if (!(b >= 0.0)) {
        return 0;
    }
    if (b >= (double)n) {
        return n;
    }
    return (uint64_t)b;
}

int
petal_partition_size_law(petal_size_law_t law, double tau, uint64_t n, uint32_t num_partitions,
                         uint64_t *sizes)
{
    if (sizes == NULL || num_partitions == 0 || !law_valid(law, tau)) {
        return PETAL_EINVAL;
    }
    double total = 0.0;
    for (uint32_t i = 0; i < num_partitions; i++) {
        total += law_weight(law, tau, i, num_partitions);
    }
    double cum = 0.0;
    uint64_t prev = 0;
    for (uint32_t i = 0; i < num_partitions; i++) {
        cum += law_weight(law, tau, i, num_partitions);
        uint64_t b = i + 1 == num_partitions ? n : boundary(n, cum, total);
        if (b < prev) {
            b = prev;
        }
        sizes[i] = b - prev;
        prev = b;
    }
    return 0;
}

int
petal_partition_size_skewed(uint64_t n, uint32_t num_partitions, uint32_t partition_id,
                            petal_size_law_t law, double tau, uint64_t seed, uint64_t **idx_out,
                            uint64_t *count_out)
{
    if (idx_out == NULL || count_out == NULL || num_partitions == 0 ||
        partition_id >= num_partitions || !law_valid(law, tau) || n > (UINT64_C(1) << 62)) {
        return PETAL_EINVAL;
    }
    /* Only this partition's bounds are needed: the same arithmetic as petal_partition_size_law. */
    double total = 0.0;
    for (uint32_t i = 0; i < num_partitions; i++) {
        total += law_weight(law, tau, i, num_partitions);
    }
    double cum = 0.0;
    uint64_t prev = 0;
    uint64_t start = 0;
    uint64_t end = 0;
    for (uint32_t i = 0; i <= partition_id; i++) {
        cum += law_weight(law, tau, i, num_partitions);
        uint64_t b = i + 1 == num_partitions ? n : boundary(n, cum, total);
        if (b < prev) {
            b = prev;
        }
        start = prev;
        end = b;
        prev = b;
    }
    uint64_t count = end - start;
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
