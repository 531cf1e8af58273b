/* data.h - datasets (IDX, CSV, FedProx Synthetic; cached), partitioners, a PRNG, config keys. */
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

/* ---- CSV ------------------------------------------------------------------------------------- */

/* Whether the first non-blank line of a CSV file names the columns. */
enum {
    PETAL_CSV_HEADER_AUTO = 0, /* a header if any of its cells is not a number */
    PETAL_CSV_HEADER_YES = 1,
    PETAL_CSV_HEADER_NO = 2,
};

/* How to read a CSV file. All zeros (or NULL) means: label in column 0, header detected,
 * comma-separated. */
typedef struct petal_csv_options {
    const char *label_name; /* the label column by its header name (needs a header); NULL: use
                               label_column */
    int32_t label_column;   /* the label column by 0-based index; negative counts from the end
                               (-1: the last column) */
    int header;             /* PETAL_CSV_HEADER_* */
    char delimiter;         /* cell separator; 0 means ',' */
} petal_csv_options_t;

/*
 * Loads a CSV file (gzip-compressed or plain) of numeric features and one integer label column
 * (0..255): every other column is a feature, in file order. Cells may be surrounded by spaces or
 * double quotes; blank lines are skipped. Same cache (keyed by the canonical path and the
 * options), same release rule and same dataset struct as petal_dataset_load_idx(). A bad cell is
 * PETAL_EPROTO with a message "FILE:LINE: column C (NAME): ...". Returns 0 and sets *out, or
 * PETAL_EIO, PETAL_EPROTO (bad cell, ragged row, no examples), PETAL_EINVAL (bad options, label
 * column not found), PETAL_EMSGSIZE or PETAL_ENOMEM.
 */
int petal_dataset_load_csv(const char *path, const petal_csv_options_t *opts,
                           const petal_dataset_t **out, char *err, size_t cap);

/* ---- Synthetic(alpha, beta) of FedProx (Li et al. 2020) -------------------------------------- */

typedef struct petal_synthetic_params {
    double alpha;         /* model heterogeneity: u_k ~ N(0, alpha) (alpha is a std deviation;
                             it shifts all logits alike, so alone it changes no label) */
    double beta;          /* feature heterogeneity: B_k ~ N(0, beta) (std deviation) */
    uint32_t num_devices; /* default 30 */
    uint32_t dim;         /* features, default 60 */
    uint32_t num_classes; /* default 10 (at most 256) */
    int iid;              /* nonzero: Synthetic-IID (one W, b ~ N(0, 1) for all, v_k = B_k) */
    double size_mu;       /* device k holds floor(exp(N(size_mu, size_sigma))) + min_size */
    double size_sigma;    /* examples: defaults 4, 2 and 50, as the paper's generator */
    uint64_t min_size;
    uint64_t seed;
} petal_synthetic_params_t;

/* Fills the defaults above, alpha = beta = 0, iid = 0, seed = 0. */
void petal_synthetic_params_init(petal_synthetic_params_t *p);

/*
 * Generates (or finds in the process-wide cache: same params => same pointer) the Synthetic
 * dataset: one dataset holding every device's examples, device k's being the contiguous range
 * [offsets[k], offsets[k + 1]) of *device_offsets (num_devices + 1 entries, owned by the
 * dataset, valid until petal_dataset_release()). device_offsets may be NULL. Deterministic by
 * seed. Returns 0, PETAL_EINVAL (a bad parameter, message in err), PETAL_EMSGSIZE (more than
 * 2^31 examples) or PETAL_ENOMEM.
 */
int petal_dataset_synthetic(const petal_synthetic_params_t *p, const petal_dataset_t **out,
                            const uint64_t **device_offsets, char *err, size_t cap);

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

/*
 * Pathological label skew (McMahan et al. 2017, as Flower's PathologicalPartitioner): every
 * partition is given k distinct classes (a seeded random assignment in which each class is held
 * by floor or ceil of num_partitions * k / num_classes partitions), and each class's examples,
 * shuffled, are split evenly among the partitions holding it. So a partition has at most k
 * classes, and every example is assigned exactly once when num_partitions * k >= num_classes
 * (otherwise the classes nobody holds are left out). Costs O(n + num_partitions * k) per call.
 * Returns 0, PETAL_EINVAL (k 0 or > num_classes, ...) or PETAL_ENOMEM.
 */
int petal_partition_pathological(const uint8_t *labels, uint64_t n, uint32_t num_classes,
                                 uint32_t num_partitions, uint32_t partition_id, uint32_t k,
                                 uint64_t seed, uint64_t **idx_out, uint64_t *count_out);

/*
 * Shards (McMahan et al. 2017, as Flower's ShardPartitioner): the examples are sorted by label
 * (seeded shuffle inside each label), cut into num_partitions * shards_per_partition shards of
 * shard_size consecutive examples, and the shards, shuffled, are dealt shards_per_partition to
 * each partition. shard_size 0 cuts all n examples into shards whose sizes differ by at most one
 * (every example assigned); otherwise the n - num_partitions * shards_per_partition * shard_size
 * examples at the end of the sorted order are left out. Returns 0, PETAL_EINVAL (shards 0, more
 * shard examples than n, ...) or PETAL_ENOMEM.
 */
int petal_partition_shard(const uint8_t *labels, uint64_t n, uint32_t num_partitions,
                          uint32_t partition_id, uint32_t shards_per_partition, uint64_t shard_size,
                          uint64_t seed, uint64_t **idx_out, uint64_t *count_out);

/* Size laws: partition i (0-based) gets a share proportional to (i + 1), (i + 1)^2 or
 * e^((i + 1) / tau). */
typedef enum petal_size_law {
    PETAL_SIZE_LINEAR = 0,
    PETAL_SIZE_SQUARE = 1,
    PETAL_SIZE_EXPONENTIAL = 2,
} petal_size_law_t;

/*
 * The partition sizes of a size law: sizes[0..num_partitions) sum to n and never decrease with
 * i; each is the floor of its exact share n * w_i / sum(w), plus one for the partitions with the
 * largest fractional parts (ties: lower index). tau > 0 is used by PETAL_SIZE_EXPONENTIAL only.
 * Costs O(P log P). Returns 0, PETAL_EINVAL or PETAL_ENOMEM.
 */
int petal_partition_size_law(petal_size_law_t law, double tau, uint64_t n, uint32_t num_partitions,
                             uint64_t *sizes);

/*
 * Size-skewed partition: partition p gets petal_partition_size_law()'s sizes[p] examples, the
 * positions [sizes[0] + ... + sizes[p-1], ... + sizes[p]) of the same seeded permutation as
 * petal_partition_iid(), so labels are IID and every example is assigned exactly once.
 * Returns 0, PETAL_EINVAL or PETAL_ENOMEM.
 */
int petal_partition_size_skewed(uint64_t n, uint32_t num_partitions, uint32_t partition_id,
                                petal_size_law_t law, double tau, uint64_t seed, uint64_t **idx_out,
                                uint64_t *count_out);

/* Parameters of petal_partition_by_name(); each partitioner reads the fields it needs. */
typedef struct petal_partition_params {
    uint64_t seed;
    double alpha;                  /* "dirichlet": concentration, > 0 (default 0.5) */
    uint64_t min_partition_size;   /* "dirichlet": redraw below this size (default 0) */
    uint32_t k;                    /* "pathological": classes per partition (default 2) */
    uint32_t shards_per_partition; /* "shard": (default 2) */
    uint64_t shard_size;           /* "shard": 0 = cut all examples evenly (default 0) */
    double tau;                    /* "exponential": sizes ~ e^((i + 1) / tau) (default 1) */
} petal_partition_params_t;

/* Fills the defaults above and seed 0. */
void petal_partition_params_init(petal_partition_params_t *p);

/*
 * Partition `partition_id` of `num_partitions` by the partitioner named `name`: "iid",
 * "dirichlet", "pathological", "shard", "linear", "square" or "exponential". labels (n labels,
 * each < num_classes) may be NULL for "iid", "linear", "square" and "exponential". Indices come
 * back sorted in a malloc'd *idx_out as above. An unknown name or a bad parameter is
 * PETAL_EINVAL with a message in err naming it (and listing the known names).
 */
int petal_partition_by_name(const char *name, const petal_partition_params_t *p,
                            const uint8_t *labels, uint64_t n, uint32_t num_classes,
                            uint32_t num_partitions, uint32_t partition_id, uint64_t **idx_out,
                            uint64_t *count_out, char *err, size_t cap);

/* ---- Config values: typed run/node/message config keys with defaults ------------------------ */

/*
 * Reading a key of a ConfigRecord (a run config, a node config, a message's "config") as the
 * example apps do: a missing key or a NULL record leaves *out alone and returns 0, so *out keeps
 * the default the caller put there; a value of another type returns PETAL_ETYPE and leaves *out
 * alone too. Numbers may come as strings ("0.05" from `--run-config` on a command line): the
 * whole string must parse. Callers turn PETAL_ETYPE into their own message naming the key.
 *
 * petal_data calls nothing of the host, so the lookup is passed in: the petal_cfg_* macros pass
 * petal_configrecord_get, which in a plugin is the host table's entry (<petal/plugin.h>) and in
 * host code the function of <petal/petal.h> (include it first). The petal_cfg_read_* functions
 * take any lookup of that type.
 */
typedef int32_t (*petal_cfg_get_fn)(const petal_configrecord_t *r, const char *name,
                                    petal_value_t *value);

/* A number: int, uint or double, or a string strtod() reads completely. */
int petal_cfg_read_f64(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                       double *out);
/* An integer: int, uint <= INT64_MAX, a double with an integral value, or a base-10 string. */
int petal_cfg_read_i64(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                       int64_t *out);
/* A boolean: bool, the strings "true" / "false", or the integers 0 / 1. *out is 0 or 1. */
int petal_cfg_read_bool(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                        int *out);
/* A string copied into out with its NUL (cap bytes); one that does not fit is PETAL_ETYPE. */
int petal_cfg_read_str(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                       char *out, size_t cap);
/*
 * This node's partition from its node config: "partition-id" of "num-partitions" (default 0 of
 * 1). Returns 0, or PETAL_ECONFIG with a message in err ("node config: ...") when either is not
 * an integer or the id is not in 0..num-partitions-1 (num-partitions at most UINT32_MAX).
 */
int petal_cfg_read_partition(petal_cfg_get_fn get, const petal_configrecord_t *node_config,
                             uint32_t *partition_id, uint32_t *num_partitions, char *err,
                             size_t cap);

#define petal_cfg_f64(r, key, out) petal_cfg_read_f64(petal_configrecord_get, (r), (key), (out))
#define petal_cfg_i64(r, key, out) petal_cfg_read_i64(petal_configrecord_get, (r), (key), (out))
#define petal_cfg_bool(r, key, out) petal_cfg_read_bool(petal_configrecord_get, (r), (key), (out))
#define petal_cfg_str(r, key, out, cap)                                                            \
    petal_cfg_read_str(petal_configrecord_get, (r), (key), (out), (cap))
#define petal_cfg_partition(node_config, partition_id, num_partitions, err, cap)                   \
    petal_cfg_read_partition(petal_configrecord_get, (node_config), (partition_id),                \
                             (num_partitions), (err), (cap))

#ifdef __cplusplus
}
#endif

#endif /* PETAL_DATA_H */
