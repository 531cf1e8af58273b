/* gen_codec_seeds.c - writes the seed corpus of fuzz_codec: small valid encodings of each shape. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/codec.h"
#include "runtime/message.h"

static int
write_encoded(const char *dir, const char *name, const pt_encoded_t *e)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    for (size_t i = 0; i < e->niov; i++) {
        if (fwrite(e->iov[i].base, 1, e->iov[i].len, f) != e->iov[i].len) {
            fclose(f);
            return -1;
        }
    }
    return fclose(f);
}

static int
write_message(const char *dir, const char *name, petal_message_t *m)
{
    pt_encoded_t e;
    int rc;

    if (m == NULL || pt_codec_encode(m, &e) != 0) {
        return -1;
    }
    rc = write_encoded(dir, name, &e);
    pt_encoded_fini(&e);
    petal_message_free(m);
    return rc;
}

/* One record of each kind with every value type and a few dtypes; small. */
static petal_recorddict_t *
seed_dict(void)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "params");
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "metrics");
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");
    uint64_t shape[] = {2, 2};
    int64_t li[] = {-1, 2};
    uint64_t lu[] = {3, 4};
    double ld[] = {0.5, -1.5};
    uint8_t lb[] = {1, 0};
    const char *ls[] = {"x", "yz"};
    petal_value_t v;

    for (int32_t dt = PETAL_DTYPE_FLOAT32; dt <= PETAL_DTYPE_BOOL; dt += 2) {
        char name[16];
        petal_array_t *x;
        snprintf(name, sizeof(name), "w%d", dt);
        x = petal_arrayrecord_add(a, name, dt, 2, shape);
        memset(petal_array_data_mut(x), 1, petal_array_nbytes(x));
    }
    petal_arrayrecord_add(a, "scalar", PETAL_DTYPE_INT16, 0, NULL);
    v = petal_value_i64(-7);
    petal_metricrecord_set(m, "i", &v);
    v = petal_value_u64(7);
    petal_metricrecord_set(m, "u", &v);
    v = petal_value_f64(0.25);
    petal_metricrecord_set(m, "f", &v);
    v = (petal_value_t){PETAL_VALUE_INT64_LIST, 0, 2, {.i64s = li}};
    petal_metricrecord_set(m, "li", &v);
    v = (petal_value_t){PETAL_VALUE_UINT64_LIST, 0, 2, {.u64s = lu}};
    petal_metricrecord_set(m, "lu", &v);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 2, {.f64s = ld}};
    petal_metricrecord_set(m, "ld", &v);
    v = petal_value_bool(1);
    petal_configrecord_set(c, "b", &v);
    v = petal_value_str("héllo", strlen("héllo"));
    petal_configrecord_set(c, "s", &v);
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, 3, {.bytes = "a\0b"}};
    petal_configrecord_set(c, "y", &v);
    v = (petal_value_t){PETAL_VALUE_BOOL_LIST, 0, 2, {.bools = lb}};
    petal_configrecord_set(c, "lb", &v);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 2, {.strs = ls}};
    petal_configrecord_set(c, "ls", &v);
    return d;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    petal_message_t *to;
    petal_message_t *empty;
    petal_recorddict_t *d;
    pt_encoded_t e;
    int rc = 0;

    to = petal_message_alloc(seed_dict(), "train", 3, "round-1", 0);
    pt_message_md(to)->run_id = 1;
    pt_message_md(to)->message_id = 1000;
    pt_message_md(to)->created_at = 1700000000.0; /* fixed, so seeds are reproducible */
    rc |= write_message(dir, "message-all-types.bin", pt_message_hold(to));
    empty = petal_message_alloc(NULL, "evaluate", 1, NULL, 60);
    if (empty != NULL) {
        pt_message_md(empty)->created_at = 1700000000.0;
    }
    rc |= write_message(dir, "message-empty.bin", empty);
    rc |= write_message(dir, "message-error.bin",
                        pt_message_alloc_error(pt_message_md_const(to),
                                               PETAL_E_CLIENT_APP_RAISED_EXCEPTION, "boom"));
    petal_message_free(to);
    d = seed_dict();
    if (pt_codec_encode_recorddict(d, &e) == 0) {
        rc |= write_encoded(dir, "recorddict.bin", &e);
        pt_encoded_fini(&e);
    } else {
        rc = -1;
    }
    petal_recorddict_free(d);
    if (rc != 0) {
        fprintf(stderr, "gen_codec_seeds: failed to write seeds into %s\n", dir);
        return 1;
    }
    return 0;
}
