/* internal.h - internal: the dataset cache, shared partition helpers and samplers of petal_data. */
#ifndef PT_DATA_INTERNAL_H
#define PT_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <petal/data.h>

/* What a loader produces: the arrays become the dataset's (freed with it). */
typedef struct pt_dataset_body {
    uint64_t n;
    uint32_t dim;
    uint32_t num_classes;
    float *x;          /* from pt_data_alloc_floats() */
    uint8_t *y;        /* malloc'd */
    uint64_t *offsets; /* optional, malloc'd: returned by pt_dataset_cache_get() as *extra */
} pt_dataset_body_t;

/* Fills *body (zeroed on entry) or returns a negative code with a message in err. */
typedef int (*pt_dataset_loader_fn)(void *arg, pt_dataset_body_t *body, char *err, size_t cap);

/*
 * The process-wide cache: returns the dataset cached under `key` (adding a reference), or runs
 * `load` once (other callers with the same key wait for it) and caches the result. Failures are
 * not cached. *extra (may be NULL) receives body.offsets.
 */
int pt_dataset_cache_get(const char *key, pt_dataset_loader_fn load, void *arg,
                         const petal_dataset_t **out, const uint64_t **extra, char *err,
                         size_t cap);

/* 64-byte aligned floats (free() them); NULL when out of memory or count too large. */
float *pt_data_alloc_floats(uint64_t count);

/* ---- partition helpers (partition.c) ---- */

/* A keyed pseudo-random permutation of [0, n) (Feistel network with cycle walking). */
#define PT_FEISTEL_ROUNDS 6
typedef struct pt_feistel {
    uint64_t n;
    uint32_t half;
    uint64_t mask;
    uint64_t keys[PT_FEISTEL_ROUNDS];
} pt_feistel_t;

void pt_feistel_init(pt_feistel_t *f, uint64_t n, uint64_t seed);
uint64_t pt_feistel_apply(const pt_feistel_t *f, uint64_t x);

/* qsort comparator for uint64_t. */
int pt_cmp_u64(const void *a, const void *b);

/* Gamma(shape, 1), shape > 0 (Marsaglia-Tsang). */
double pt_gamma_sample(petal_rng_t *r, double shape);

/*
 * Indices [0, n) bucketed by label: on success *by_class (n entries) lists the indices of class
 * 0, then class 1, ... (ascending inside a class) and *class_start (num_classes + 1 entries) the
 * bucket bounds. Checks labels < num_classes (PETAL_EINVAL). Both malloc'd.
 */
int pt_bucket_by_class(const uint8_t *labels, uint64_t n, uint32_t num_classes, uint64_t **by_class,
                       uint64_t **class_start);

/* Copies src[0..count) into a new sorted malloc'd array in *idx_out (NULL when count is 0). */
int pt_partition_emit(const uint64_t *src, uint64_t count, uint64_t **idx_out, uint64_t *count_out);

#endif
