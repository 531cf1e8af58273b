/* partition_label.c - pathological (k classes per partition) and shard partitioners. */
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>

#include "internal.h"

/* Seed offsets, so the streams of one seed used for different purposes are unrelated. */
#define SEED_LAYOUT UINT64_C(0x7061746c61796f75) /* "patlayou" */
#define SEED_CLASS UINT64_C(0x636c617373000000)  /* "class" + class id */
#define SEED_SHARDS UINT64_C(0x7368617264730000) /* "shards" */

/* ---- Pathological ------------------------------------------------------------------------ */

/*
 * The layout is a num_partitions x k matrix of classes, row p being partition p's classes:
 * 1. classes in a seeded random order pi; class pi[j] gets base + (j < rem) of the P * k slots
 *    (base = P * k / C, rem = P * k % C), so every class is held when P * k >= C;
 * 2. the sequence S = pi[0] repeated count times, pi[1] ..., is laid out column by column
 *    (cell (p, s) = S[s * P + p]); a class has at most ceil(P * k / C) <= P consecutive slots,
 *    so no row holds a class twice;
 * 3. 8 * P * k random swaps of two cells in different rows, each done only if both rows still
 *    hold distinct classes after it, mix the combinations (every state stays valid).
 */
typedef struct layout {
    uint32_t rows;
    uint32_t k;
    uint8_t *cell;  /* rows * k classes */
    uint64_t *bits; /* rows * 4 words: the set of classes in each row */
} layout_t;

static int
has_class(const layout_t *l, uint64_t row, uint8_t c)
{
    return (int)((l->bits[row * 4 + (c >> 6)] >> (c & 63)) & 1u);
}

static void
flip_class(layout_t *l, uint64_t row, uint8_t c)
{
    l->bits[row * 4 + (c >> 6)] ^= UINT64_C(1) << (c & 63);
}

static int
layout_build(layout_t *l, uint32_t num_classes, uint32_t rows, uint32_t k, uint64_t seed)
{
    uint64_t total = (uint64_t)rows * k;
    l->rows = rows;
    l->k = k;
    l->cell = malloc((size_t)total);
    l->bits = calloc((size_t)rows * 4, sizeof(uint64_t));
    if (l->cell == NULL || l->bits == NULL) {
        return PETAL_ENOMEM;
    }
    petal_rng_t r;
    petal_rng_seed(&r, petal_seed_combine(seed, SEED_LAYOUT));
    uint64_t pi[256];
    for (uint32_t c = 0; c < num_classes; c++) {
        pi[c] = c;
    }
    petal_rng_shuffle_u64(&r, pi, num_classes);
    uint64_t base = total / num_classes;
    uint64_t rem = total % num_classes;
    uint64_t s = 0;
    for (uint32_t j = 0; j < num_classes; j++) {
        uint64_t cnt = base + (j < rem ? 1 : 0);
        for (uint64_t t = 0; t < cnt; t++, s++) {
            uint64_t row = s % rows;
            uint64_t col = s / rows;
            l->cell[row * k + col] = (uint8_t)pi[j];
            flip_class(l, row, (uint8_t)pi[j]);
        }
    }
    if (rows < 2) {
        return 0;
    }
    uint64_t swaps = 8 * total;
    for (uint64_t t = 0; t < swaps; t++) {
        uint64_t a = petal_rng_below(&r, total);
        uint64_t b = petal_rng_below(&r, total);
        uint64_t ra = a / k;
        uint64_t rb = b / k;
        uint8_t ca = l->cell[a];
        uint8_t cb = l->cell[b];
        if (ra == rb || ca == cb || has_class(l, ra, cb) || has_class(l, rb, ca)) {
            continue;
        }
        l->cell[a] = cb;
        l->cell[b] = ca;
        flip_class(l, ra, ca);
        flip_class(l, ra, cb);
        flip_class(l, rb, cb);
        flip_class(l, rb, ca);
    }
    return 0;
}

int
petal_partition_pathological(const uint8_t *labels, uint64_t n, uint32_t num_classes,
                             uint32_t num_partitions, uint32_t partition_id, uint32_t k,
                             uint64_t seed, uint64_t **idx_out, uint64_t *count_out)
{
    if (idx_out == NULL || count_out == NULL || num_classes == 0 || num_classes > 256 ||
        num_partitions == 0 || partition_id >= num_partitions || k == 0 || k > num_classes ||
        (labels == NULL && n > 0)) {
        return PETAL_EINVAL;
    }
    uint64_t *by_class = NULL;
    uint64_t *class_start = NULL;
    uint64_t *mine = NULL;
    layout_t l;
    memset(&l, 0, sizeof(l));
    int rc = pt_bucket_by_class(labels, n, num_classes, &by_class, &class_start);
    if (rc < 0) {
        goto fail;
    }
    rc = layout_build(&l, num_classes, num_partitions, k, seed);
    if (rc < 0) {
        goto fail;
    }
    rc = PETAL_ENOMEM;
    mine = malloc(sizeof(uint64_t) * (n > 0 ? n : 1));
    if (mine == NULL) {
        goto fail;
    }
    uint64_t count = 0;
    for (uint32_t s = 0; s < k; s++) {
        uint8_t c = l.cell[(uint64_t)partition_id * k + s];
        /* Holders of c, in partition order: this partition's rank among them, and their number. */
        uint64_t rank = 0;
        uint64_t holders = 0;
        for (uint32_t p = 0; p < num_partitions; p++) {
            if (has_class(&l, p, c)) {
                rank += p < partition_id ? 1 : 0;
                holders++;
            }
        }
        uint64_t m = class_start[c + 1] - class_start[c];
        uint64_t *items = by_class + class_start[c];
        petal_rng_t r;
        petal_rng_seed(&r, petal_seed_combine(seed, SEED_CLASS + c));
        petal_rng_shuffle_u64(&r, items, m);
        /* Holder j takes [j * m / h, (j + 1) * m / h): sizes differ by at most one. */
        uint64_t q = m / holders;
        uint64_t rr = m % holders;
        uint64_t from = rank * q + (rank < rr ? rank : rr);
        uint64_t len = q + (rank < rr ? 1 : 0);
        memcpy(mine + count, items + from, sizeof(uint64_t) * len);
        count += len;
    }
    rc = pt_partition_emit(mine, count, idx_out, count_out);

fail:
    free(by_class);
    free(class_start);
    free(mine);
    free(l.cell);
    free(l.bits);
    return rc;
}

/* ---- Shards ------------------------------------------------------------------------------ */

int
petal_partition_shard(const uint8_t *labels, uint64_t n, uint32_t num_partitions,
                      uint32_t partition_id, uint32_t shards_per_partition, uint64_t shard_size,
                      uint64_t seed, uint64_t **idx_out, uint64_t *count_out)
{
    if (idx_out == NULL || count_out == NULL || num_partitions == 0 ||
        partition_id >= num_partitions || shards_per_partition == 0 || (labels == NULL && n > 0) ||
        n > (UINT64_C(1) << 62)) {
        return PETAL_EINVAL;
    }
    uint64_t num_shards = (uint64_t)num_partitions * shards_per_partition;
    if (shard_size > 0 && shard_size > n / num_shards) {
        return PETAL_EINVAL; /* num_shards * shard_size > n */
    }
    uint64_t *by_class = NULL;
    uint64_t *class_start = NULL;
    uint64_t *mine = NULL;
    int rc = pt_bucket_by_class(labels, n, 256, &by_class, &class_start);
    if (rc < 0) {
        goto fail;
    }
    /* Sorted by label, a seeded shuffle inside each label. */
    petal_rng_t r;
    petal_rng_seed(&r, petal_seed_combine(seed, SEED_CLASS));
    for (uint32_t c = 0; c < 256; c++) {
        petal_rng_shuffle_u64(&r, by_class + class_start[c], class_start[c + 1] - class_start[c]);
    }
    /* Shard j covers [start(j), start(j + 1)) of that order. */
    uint64_t base = shard_size > 0 ? shard_size : n / num_shards;
    uint64_t rem = shard_size > 0 ? 0 : n % num_shards;
    uint64_t max_len = (uint64_t)shards_per_partition * (base + 1);
    mine = malloc(sizeof(uint64_t) * (max_len > 0 ? max_len : 1));
    if (mine == NULL) {
        rc = PETAL_ENOMEM;
        goto fail;
    }
    /* The shards dealt to partition p: positions [p * s, (p + 1) * s) of a seeded permutation
     * of the shards (the same Feistel permutation as the IID partitioner). */
    pt_feistel_t f;
    pt_feistel_init(&f, num_shards, petal_seed_combine(seed, SEED_SHARDS));
    uint64_t count = 0;
    for (uint32_t i = 0; i < shards_per_partition; i++) {
        uint64_t j = pt_feistel_apply(&f, (uint64_t)partition_id * shards_per_partition + i);
        uint64_t from = j * base + (j < rem ? j : rem);
        uint64_t len = base + (j < rem ? 1 : 0);
        memcpy(mine + count, by_class + from, sizeof(uint64_t) * len);
        count += len;
    }
    rc = pt_partition_emit(mine, count, idx_out, count_out);

fail:
    free(by_class);
    free(class_start);
    free(mine);
    return rc;
}
