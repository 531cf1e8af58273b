/* data.h - datasets (IDX readers with a process-wide cache), partitioners and a fixed PRNG. */
#ifndef PETAL_DATA_H
#define PETAL_DATA_H

/*
 * The data module is a small static library, petal_data, that plugins link into their .so. It
 * calls nothing of the host (no petal_* host function), so it works the same in a plugin, a
 * test or a tool. Errors are the negative PETAL_E* codes of <petal/plugin.h>; functions that
 * can fail for a reason a user must read also write a message into `err` (cap bytes, always
 * NUL-terminated when cap > 0; err may be NULL). See docs/datasets.md.
 *
 * Threads: every function may be called from any thread. Loaded datasets are immutable and
 * shared; a petal_rng_t is used by one thread at a time.
 */

#include <stddef.h>
#include <stdint.h>

#include <petal/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Datasets ------------------------------------------------------------------------------ */

/* A labelled dataset of n examples, each `dim` floats. Read-only: it is shared by every caller
 * that loaded the same files. */
typedef struct petal_dataset {
    uint64_t n;           /* number of examples */
    uint32_t dim;         /* features per example (28 * 28 = 784 for Fashion-MNIST) */
    uint32_t num_classes; /* 1 + the largest label */
    const float *x;       /* n * dim features, row-major, pixels scaled to [0, 1] */
    const uint8_t *y;     /* n labels, each < num_classes */
} petal_dataset_t;

#define PETAL_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define PETAL_FMNIST_DIR_ENV "PETAL_FMNIST_DIR"

/*
 * Loads an IDX image file (unsigned bytes, 2 or more dimensions: n x d1 x d2 ...) and its IDX
 * label file (unsigned bytes, 1 dimension: n), each gzip-compressed or plain (detected by the
 * gzip magic bytes). The first load of a pair of files reads them; later loads of the same
 * files (same canonical paths) return the same dataset and add a reference, and a caller that
 * arrives while another thread is reading waits for that read instead of reading again. Each
 * successful load must be paired with petal_dataset_release().
 * Returns 0 and sets *out, or PETAL_EIO (cannot open/read; gzip error), PETAL_EPROTO
 * (malformed: bad magic, unsupported type, truncated, trailing bytes, count mismatch),
 * PETAL_EMSGSIZE (dimensions too large), PETAL_ENOMEM or PETAL_EINVAL.
 */
int petal_dataset_load_idx(const char *images_path, const char *labels_path,
                           const petal_dataset_t **out, char *err, size_t cap);

/*
 * Loads Fashion-MNIST from `dir` (NULL: $PETAL_FMNIST_DIR, else PETAL_FMNIST_DEFAULT_DIR):
 * train != 0 reads train-{images-idx3,labels-idx1}-ubyte(.gz) (60000 examples), train == 0
 * reads t10k-* (10000). The .gz name is tried first, then the plain one. Same cache, same
 * errors and same release rule as petal_dataset_load_idx().
 */
int petal_dataset_load_fmnist(const char *dir, int train, const petal_dataset_t **out, char *err,
                              size_t cap);

/* Drops one reference from a load; the last one frees the dataset. NULL is ignored. */
void petal_dataset_release(const petal_dataset_t *d);

/* Counts labels of the examples idx[0..count) (all examples if idx is NULL, count ignored)
 * into counts[0..num_counts); labels >= num_counts are not counted. */
void petal_dataset_class_counts(const petal_dataset_t *d, const uint64_t *idx, uint64_t count,
                                uint64_t *counts, uint32_t num_counts);

/* ---- PRNG: xoshiro256** seeded through splitmix64 (identical on every machine) ------------- */

typedef struct petal_rng {
    uint64_t s[4];
} petal_rng_t;

/* One splitmix64 step on *state: the documented mixer used for seeding and hashing. */
uint64_t petal_splitmix64(uint64_t *state);
/* Derives a seed from a seed and a value (e.g. seed, round, partition id): order matters. */
uint64_t petal_seed_combine(uint64_t seed, uint64_t value);
/* Seeds the four words from four splitmix64 steps on `seed`. */
void petal_rng_seed(petal_rng_t *r, uint64_t seed);
uint64_t petal_rng_next(petal_rng_t *r);
/* Uniform in [0, bound) without modulo bias; 0 when bound is 0. */
uint64_t petal_rng_below(petal_rng_t *r, uint64_t bound);
/* Uniform double in [0, 1) (53 random bits). */
double petal_rng_uniform(petal_rng_t *r);
/* Standard normal (Box-Muller, no cached second value, so the stream is easy to reproduce). */
double petal_rng_normal(petal_rng_t *r);
/* Fisher-Yates shuffle of a[0..n), from the last element down. */
void petal_rng_shuffle_u64(petal_rng_t *r, uint64_t *a, uint64_t n);

/* ---- Partitioners -------------------------------------------------------------------------- */

/*
 * IID partition: the indices of partition `partition_id` of `num_partitions` over [0, n),
 * sorted ascending. Partitions are disjoint, cover [0, n), and their sizes differ by at most
 * one (the first n % num_partitions partitions have one more). Which indices land where is a
 * seeded pseudo-random permutation (a Feistel network keyed by splitmix64, docs/datasets.md),
 * so it costs O(size of the partition), not O(n), and is identical on every machine.
 * On success *idx_out is malloc'd (free() it; NULL when *count_out is 0).
 * Returns 0, PETAL_EINVAL (num_partitions 0, partition_id out of range) or PETAL_ENOMEM.
 */
int petal_partition_iid(uint64_t n, uint32_t num_partitions, uint32_t partition_id, uint64_t seed,
                        uint64_t **idx_out, uint64_t *count_out);

/*
 * Label-skewed partition (as Flower's DirichletPartitioner): for every class, the share that
 * each partition gets is drawn from Dirichlet(alpha, ..., alpha) and the class's examples,
 * shuffled, are cut in those shares. Smaller alpha => more skew. If some partition ends up with
 * fewer than `min_partition_size` examples the draw is repeated (up to 10 times, with derived
 * seeds), then PETAL_EAGAIN. Computing one partition costs O(n + classes * num_partitions).
 * labels: n labels, each < num_classes. Indices come back sorted; *idx_out as above.
 * Returns 0, PETAL_EINVAL, PETAL_EAGAIN or PETAL_ENOMEM.
 */
int petal_partition_dirichlet(const uint8_t *labels, uint64_t n, uint32_t num_classes,
                              uint32_t num_partitions, uint32_t partition_id, double alpha,
                              uint64_t min_partition_size, uint64_t seed, uint64_t **idx_out,
                              uint64_t *count_out);

#ifdef __cplusplus
}
#endif

#endif /* PETAL_DATA_H */
