/* partition_name.c - selecting a partitioner by name, with parameter checks and messages. */
#include <math.h>
#include <stdio.h>
#include <strings.h>

#include <petal/data.h>

#include "idx.h"

#define KNOWN_NAMES "iid, dirichlet, pathological, shard, linear, square, exponential"

void
petal_partition_params_init(petal_partition_params_t *p)
{
    if (p == NULL) {
        return;
    }
    p->seed = 0;
    p->alpha = 0.5;
    p->min_partition_size = 0;
    p->k = 2;
    p->shards_per_partition = 2;
    p->shard_size = 0;
    p->tau = 1.0;
}

/* Checks labels for the label-based partitioners; 0 or PETAL_EINVAL with a message. */
static int
check_labels(const char *name, const uint8_t *labels, uint64_t n, uint32_t num_classes, char *err,
             size_t cap)
{
    if (num_classes == 0 || num_classes > 256) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "partitioner \"%s\": num_classes must be 1..256 (got %u)", name,
                            num_classes);
    }
    if (labels == NULL && n > 0) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "partitioner \"%s\" needs the labels", name);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (labels[i] >= num_classes) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"%s\": label %u of example %llu is not below "
                                "num_classes %u",
                                name, labels[i], (unsigned long long)i, num_classes);
        }
    }
    return 0;
}

static int
finish(int rc, const char *name, char *err, size_t cap)
{
    if (rc == PETAL_ENOMEM) {
        return pt_data_errf(rc, err, cap, "partitioner \"%s\": out of memory", name);
    }
    if (rc < 0) {
        return pt_data_errf(rc, err, cap, "partitioner \"%s\": invalid arguments", name);
    }
    return rc;
}

int
petal_partition_by_name(const char *name, const petal_partition_params_t *p, const uint8_t *labels,
                        uint64_t n, uint32_t num_classes, uint32_t num_partitions,
                        uint32_t partition_id, uint64_t **idx_out, uint64_t *count_out, char *err,
                        size_t cap)
{
    if (err != NULL && cap > 0) {
        err[0] = '\0';
    }
    if (name == NULL || p == NULL || idx_out == NULL || count_out == NULL) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "partition: NULL name, params or output");
    }
    if (num_partitions == 0) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "partitioner \"%s\": num_partitions is 0",
                            name);
    }
    if (partition_id >= num_partitions) {
        return pt_data_errf(PETAL_EINVAL, err, cap,
                            "partitioner \"%s\": partition_id %u is out of range (0..%u)", name,
                            partition_id, num_partitions - 1);
    }
    if (n > (UINT64_C(1) << 62)) {
        return pt_data_errf(PETAL_EINVAL, err, cap, "partitioner \"%s\": too many examples", name);
    }
    int rc;
    if (strcasecmp(name, "iid") == 0) {
        rc = petal_partition_iid(n, num_partitions, partition_id, p->seed, idx_out, count_out);
        return finish(rc, name, err, cap);
    }
    if (strcasecmp(name, "dirichlet") == 0) {
        if (!(p->alpha > 0.0) || !isfinite(p->alpha)) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"dirichlet\": alpha must be a finite number > 0 "
                                "(got %g)",
                                p->alpha);
        }
        rc = check_labels(name, labels, n, num_classes, err, cap);
        if (rc < 0) {
            return rc;
        }
        rc =
            petal_partition_dirichlet(labels, n, num_classes, num_partitions, partition_id,
                                      p->alpha, p->min_partition_size, p->seed, idx_out, count_out);
        if (rc == PETAL_EAGAIN) {
            return pt_data_errf(rc, err, cap,
                                "partitioner \"dirichlet\": some partition got fewer than "
                                "min_partition_size = %llu examples in 10 draws (raise alpha "
                                "or lower min_partition_size)",
                                (unsigned long long)p->min_partition_size);
        }
        return finish(rc, name, err, cap);
    }
    if (strcasecmp(name, "pathological") == 0) {
        rc = check_labels(name, labels, n, num_classes, err, cap);
        if (rc < 0) {
            return rc;
        }
        if (p->k == 0 || p->k > num_classes) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"pathological\": k (classes per partition) must be "
                                "1..%u (got %u)",
                                num_classes, p->k);
        }
        rc = petal_partition_pathological(labels, n, num_classes, num_partitions, partition_id,
                                          p->k, p->seed, idx_out, count_out);
        return finish(rc, name, err, cap);
    }
    if (strcasecmp(name, "shard") == 0) {
        if (labels == NULL && n > 0) {
            return pt_data_errf(PETAL_EINVAL, err, cap, "partitioner \"shard\" needs the labels");
        }
        if (p->shards_per_partition == 0) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"shard\": shards_per_partition must be > 0");
        }
        uint64_t shards = (uint64_t)num_partitions * p->shards_per_partition;
        if (p->shard_size > 0 && p->shard_size > n / shards) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"shard\": %llu shards of %llu examples need more "
                                "than the %llu examples there are",
                                (unsigned long long)shards, (unsigned long long)p->shard_size,
                                (unsigned long long)n);
        }
        rc = petal_partition_shard(labels, n, num_partitions, partition_id, p->shards_per_partition,
                                   p->shard_size, p->seed, idx_out, count_out);
        return finish(rc, name, err, cap);
    }
    petal_size_law_t law;
    if (strcasecmp(name, "linear") == 0) {
        law = PETAL_SIZE_LINEAR;
    } else if (strcasecmp(name, "square") == 0) {
        law = PETAL_SIZE_SQUARE;
    } else if (strcasecmp(name, "exponential") == 0) {
        law = PETAL_SIZE_EXPONENTIAL;
        if (!(p->tau > 0.0) || !isfinite(p->tau)) {
            return pt_data_errf(PETAL_EINVAL, err, cap,
                                "partitioner \"exponential\": tau must be a finite number > 0 "
                                "(got %g)",
                                p->tau);
        }
    } else {
        return pt_data_errf(PETAL_EINVAL, err, cap, "unknown partitioner \"%s\" (known: %s)", name,
                            KNOWN_NAMES);
    }
    rc = petal_partition_size_skewed(n, num_partitions, partition_id, law, p->tau, p->seed, idx_out,
                                     count_out);
    return finish(rc, name, err, cap);
}
