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

typedef struct share {
    double frac;
    uint32_t i;
} share_t;

/* Larger fractional part first; ties: lower index first. */
static int
cmp_share(const void *a, const void *b)
{
    const share_t *x = a;
    const share_t *y = b;
    if (x->frac != y->frac) {
        return x->frac > y->frac ? -1 : 1;
    }
    return (x->i > y->i) - (x->i < y->i);
}

/*
 * Largest remainders: sizes[i] = floor(n * w_i / W), then the examples left over go one each to
 * the partitions with the largest fractional parts. The weights grow with i, so the sizes never
 * decrease, and each is within one of its exact share.
 */
static int
law_sizes(petal_size_law_t law, double tau, uint64_t n, uint32_t num_partitions, uint64_t *sizes)
{
    share_t *sh = malloc(sizeof(*sh) * num_partitions);
    if (sh == NULL) {
        return PETAL_ENOMEM;
    }
    double total = 0.0;
    for (uint32_t i = 0; i < num_partitions; i++) {
        total += law_weight(law, tau, i, num_partitions);
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < num_partitions; i++) {
        double exact = (double)n * (law_weight(law, tau, i, num_partitions) / total);
        double fl = floor(exact);
        if (fl > (double)n) {
            fl = (double)n;
        }
        sizes[i] = (uint64_t)fl;
        sh[i].frac = exact - fl;
        sh[i].i = i;
        sum += sizes[i];
    }
    qsort(sh, num_partitions, sizeof(*sh), cmp_share);
    /* Rounding can leave sum a little off either way; fix it one example at a time. */
    for (uint32_t j = 0; sum < n; j = (j + 1) % num_partitions) {
        sizes[sh[j].i]++;
        sum++;
    }
    for (uint32_t i = num_partitions; sum > n; i = i > 1 ? i - 1 : num_partitions) {
        if (sizes[i - 1] > 0) {
            sizes[i - 1]--;
            sum--;
        }
    }
    free(sh);
    return 0;
}

int
petal_partition_size_law(petal_size_law_t law, double tau, uint64_t n, uint32_t num_partitions,
                         uint64_t *sizes)
{
    if (sizes == NULL || num_partitions == 0 || !law_valid(law, tau) || n > (UINT64_C(1) << 62)) {
        return PETAL_EINVAL;
    }
    return law_sizes(law, tau, n, num_partitions, sizes);
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
    uint64_t *sizes = malloc(sizeof(uint64_t) * num_partitions);
    if (sizes == NULL) {
        return PETAL_ENOMEM;
    }
    int rc = law_sizes(law, tau, n, num_partitions, sizes);
    if (rc < 0) {
        free(sizes);
        return rc;
    }
    uint64_t start = 0;
    for (uint32_t i = 0; i < partition_id; i++) {
        start += sizes[i];
    }
    uint64_t end = start + sizes[partition_id];
    free(sizes);
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
