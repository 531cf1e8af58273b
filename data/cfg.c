/* cfg.c - typed ConfigRecord keys with defaults (run, node and message config) for plugins. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/data.h>

/* Looks key up: 1 with *v filled, 0 when the record is NULL or has no such key. */
static int
lookup(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key, petal_value_t *v)
{
    return get != NULL && r != NULL && key != NULL && get(r, key, v) == 0;
}

int
petal_cfg_read_f64(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                   double *out)
{
    petal_value_t v;
    if (!lookup(get, r, key, &v)) {
        return 0;
    }
    if (v.type == PETAL_VALUE_STRING) {
        char *end = NULL;
        errno = 0;
        double d = strtod(v.as.str, &end);
        if (errno != 0 || end == v.as.str || *end != '\0') {
            return PETAL_ETYPE;
        }
        *out = d;
        return 0;
    }
    return petal_value_as_f64(&v, out);
}

int
petal_cfg_read_i64(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key,
                   int64_t *out)
{
    petal_value_t v;
    if (!lookup(get, r, key, &v)) {
        return 0;
    }
    if (v.type == PETAL_VALUE_STRING) {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(v.as.str, &end, 10);
        if (errno != 0 || end == v.as.str || *end != '\0') {
            return PETAL_ETYPE;
        }
        *out = x;
        return 0;
    }
    return petal_value_as_i64(&v, out);
}

int
petal_cfg_read_bool(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key, int *out)
{
    petal_value_t v;
    if (!lookup(get, r, key, &v)) {
        return 0;
    }
    if (v.type == PETAL_VALUE_BOOL) {
        *out = v.as.boolean != 0;
        return 0;
    }
    if (v.type == PETAL_VALUE_STRING &&
        (strcmp(v.as.str, "true") == 0 || strcmp(v.as.str, "false") == 0)) {
        *out = v.as.str[0] == 't';
        return 0;
    }
    int64_t x;
    if (petal_value_as_i64(&v, &x) == 0 && (x == 0 || x == 1)) {
        *out = (int)x;
        return 0;
    }
    return PETAL_ETYPE;
}

int
petal_cfg_read_str(petal_cfg_get_fn get, const petal_configrecord_t *r, const char *key, char *out,
                   size_t cap)
{
    petal_value_t v;
    if (!lookup(get, r, key, &v)) {
        return 0;
    }
    if (v.type != PETAL_VALUE_STRING || v.len >= cap) {
        return PETAL_ETYPE;
    }
    memcpy(out, v.as.str, v.len + 1);
    return 0;
}

int
petal_cfg_read_partition(petal_cfg_get_fn get, const petal_configrecord_t *node_config,
                         uint32_t *partition_id, uint32_t *num_partitions, char *err, size_t cap)
{
    int64_t id = 0, n = 1;
    if (petal_cfg_read_i64(get, node_config, "partition-id", &id) < 0 ||
        petal_cfg_read_i64(get, node_config, "num-partitions", &n) < 0) {
        if (err != NULL && cap > 0) {
            snprintf(err, cap,
                     "node config: \"partition-id\" and \"num-partitions\" must be integers");
        }
        return PETAL_ECONFIG;
    }
    if (n < 1 || n > UINT32_MAX || id < 0 || id >= n) {
        if (err != NULL && cap > 0) {
            snprintf(err, cap,
                     "node config: partition-id %lld is not in 0..num-partitions-1 (%lld)",
                     (long long)id, (long long)n - 1);
        }
        return PETAL_ECONFIG;
    }
    *partition_id = (uint32_t)id;
    *num_partitions = (uint32_t)n;
    return 0;
}
