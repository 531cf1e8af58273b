/* test_records.c - arrays, ArrayRecord, MetricRecord, ConfigRecord, RecordDict and messages. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/message.h"

/* ---- arrays and ArrayRecord ---------------------------------------------------------------- */

START_TEST(test_dtype_sizes_and_names)
{
    static const struct {
        int32_t dtype;
        uint32_t size;
        const char *name;
    } expect[] = {
        {PETAL_DTYPE_FLOAT32, 4, "float32"}, {PETAL_DTYPE_FLOAT64, 8, "float64"},
        {PETAL_DTYPE_INT8, 1, "int8"},       {PETAL_DTYPE_INT16, 2, "int16"},
        {PETAL_DTYPE_INT32, 4, "int32"},     {PETAL_DTYPE_INT64, 8, "int64"},
        {PETAL_DTYPE_UINT8, 1, "uint8"},     {PETAL_DTYPE_UINT16, 2, "uint16"},
        {PETAL_DTYPE_UINT32, 4, "uint32"},   {PETAL_DTYPE_UINT64, 8, "uint64"},
        {PETAL_DTYPE_BOOL, 1, "bool"},
    };

    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        ck_assert_uint_eq(petal_dtype_size(expect[i].dtype), expect[i].size);
        ck_assert_str_eq(petal_dtype_name(expect[i].dtype), expect[i].name);
    }
    ck_assert_uint_eq(petal_dtype_size(0), 0);
    ck_assert_uint_eq(petal_dtype_size(12), 0);
    ck_assert_str_eq(petal_dtype_name(-1), "?");
}
END_TEST

START_TEST(test_arrayrecord_add_and_get)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "params");
    uint64_t shape[] = {3, 4};
    petal_array_t *w;
    float *f;

    ck_assert_ptr_nonnull(r);
    w = petal_arrayrecord_add(r, "w", PETAL_DTYPE_FLOAT32, 2, shape);
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(petal_array_dtype(w), PETAL_DTYPE_FLOAT32);
    ck_assert_uint_eq(petal_array_ndim(w), 2);
    ck_assert_uint_eq(petal_array_shape(w)[0], 3);
    ck_assert_uint_eq(petal_array_shape(w)[1], 4);
    ck_assert_uint_eq(petal_array_numel(w), 12);
    ck_assert_uint_eq(petal_array_nbytes(w), 48);
    ck_assert_uint_eq((uintptr_t)petal_array_data(w) % 64, 0);
    f = petal_array_data_mut(w);
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 12; i++) {
        ck_assert(f[i] == 0.0f); /* zeroed */
        f[i] = (float)i;
    }
    ck_assert_ptr_nonnull(petal_arrayrecord_add(r, "b", PETAL_DTYPE_INT64, 1, shape));
    ck_assert_uint_eq(petal_arrayrecord_count(r), 2);
    ck_assert_str_eq(petal_arrayrecord_name_at(r, 0), "w");
    ck_assert_str_eq(petal_arrayrecord_name_at(r, 1), "b");
    ck_assert_ptr_eq(petal_arrayrecord_get(r, "w"), w);
    ck_assert_ptr_eq(petal_arrayrecord_at(r, 0), w);
    ck_assert_ptr_null(petal_arrayrecord_get(r, "missing"));
    ck_assert_ptr_null(petal_arrayrecord_at(r, 2));
    ck_assert_ptr_null(petal_arrayrecord_name_at(r, 2));
    ck_assert(((const float *)petal_array_data(petal_arrayrecord_get(r, "w")))[11] == 11.0f);
    ck_assert_uint_eq(pt_recorddict_array_bytes(d), 48 + 24);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_arrayrecord_replace_keeps_position)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    uint64_t shape[] = {2};
    petal_array_t *a;

    petal_arrayrecord_add(r, "first", PETAL_DTYPE_INT8, 1, shape);
    petal_arrayrecord_add(r, "second", PETAL_DTYPE_INT8, 1, shape);
    a = petal_arrayrecord_add(r, "first", PETAL_DTYPE_FLOAT64, 1, shape);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(petal_arrayrecord_count(r), 2);
    ck_assert_str_eq(petal_arrayrecord_name_at(r, 0), "first");
    ck_assert_ptr_eq(petal_arrayrecord_at(r, 0), a);
    ck_assert_int_eq(petal_array_dtype(petal_arrayrecord_get(r, "first")), PETAL_DTYPE_FLOAT64);
    /* replacing a name with a reference to itself keeps the bytes alive */
    ck_assert_int_eq(petal_arrayrecord_add_ref(r, "first", a), 0);
    ck_assert_uint_eq(petal_array_nbytes(petal_arrayrecord_get(r, "first")), 16);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_arrayrecord_refuses_bad_arguments)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    uint64_t shape[PETAL_MAX_NDIM + 1];
    uint64_t huge[] = {UINT64_MAX / 2, 3};

    for (int i = 0; i <= PETAL_MAX_NDIM; i++) {
        shape[i] = 1;
    }
    ck_assert_ptr_null(petal_arrayrecord_add(r, "x", 0, 1, shape));
    ck_assert_ptr_null(petal_arrayrecord_add(r, "x", 99, 1, shape));
    ck_assert_ptr_null(petal_arrayrecord_add(r, "x", PETAL_DTYPE_INT8, PETAL_MAX_NDIM + 1, shape));
    ck_assert_ptr_null(petal_arrayrecord_add(r, "x", PETAL_DTYPE_INT8, 2, NULL));
    ck_assert_ptr_null(petal_arrayrecord_add(r, "x", PETAL_DTYPE_FLOAT64, 2, huge));
    ck_assert_ptr_null(petal_arrayrecord_add(r, "", PETAL_DTYPE_INT8, 1, shape));
    ck_assert_ptr_null(petal_arrayrecord_add(r, NULL, PETAL_DTYPE_INT8, 1, shape));
    ck_assert_ptr_null(petal_arrayrecord_add(NULL, "x", PETAL_DTYPE_INT8, 1, shape));
    ck_assert_ptr_nonnull(petal_arrayrecord_add(r, "max", PETAL_DTYPE_INT8, PETAL_MAX_NDIM, shape));
    ck_assert_uint_eq(petal_arrayrecord_count(r), 1);
    ck_assert_int_eq(petal_arrayrecord_add_ref(r, "y", NULL), PETAL_EINVAL);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_array_scalar_and_empty)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    uint64_t empty_shape[] = {4, 0, 7};
    petal_array_t *s = petal_arrayrecord_add(r, "scalar", PETAL_DTYPE_FLOAT64, 0, NULL);
    petal_array_t *e = petal_arrayrecord_add(r, "empty", PETAL_DTYPE_INT32, 3, empty_shape);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(petal_array_numel(s), 1);
    ck_assert_uint_eq(petal_array_nbytes(s), 8);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(petal_array_numel(e), 0);
    ck_assert_uint_eq(petal_array_nbytes(e), 0);
    ck_assert_ptr_nonnull(petal_array_data(e));
    petal_recorddict_free(d);
}
END_TEST

static int wrap_frees;

static void
wrap_free(void *data, void *ctx)
{
    ck_assert_ptr_eq(ctx, &wrap_frees);
    free(data);
    wrap_frees++;
}

START_TEST(test_arrayrecord_wrap_and_ref_share_bytes)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    petal_recorddict_t *d2 = petal_recorddict_alloc();
    petal_arrayrecord_t *r2 = petal_recorddict_add_arrays(d2, "q");
    uint64_t shape[] = {16};
    double *mem = malloc(16 * sizeof(double));
    petal_array_t *a;
    const petal_array_t *b;

    for (int i = 0; i < 16; i++) {
        mem[i] = i * 0.5;
    }
    wrap_frees = 0;
    a = petal_arrayrecord_add_wrap(r, "w", PETAL_DTYPE_FLOAT64, 1, shape, mem, wrap_free,
                                   &wrap_frees);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_eq(petal_array_data(a), mem); /* no copy */
    ck_assert_ptr_eq(petal_array_data_mut(a), mem);
    ck_assert_int_eq(petal_arrayrecord_add_ref(r2, "w2", a), 0);
    b = petal_arrayrecord_get(r2, "w2");
    ck_assert_ptr_eq(petal_array_data(b), mem);
    ck_assert_uint_eq(pt_buf_refs(pt_array_buf(a)), 2);
    ck_assert_ptr_null(petal_array_data_mut(a)); /* shared: read-only */
    petal_recorddict_free(d);
    ck_assert_int_eq(wrap_frees, 0);
    ck_assert(((const double *)petal_array_data(b))[15] == 7.5);
    petal_recorddict_free(d2);
    ck_assert_int_eq(wrap_frees, 1);
}
END_TEST

START_TEST(test_arrayrecord_wrap_refuses_misaligned)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    uint64_t shape[] = {2};
    char *mem = malloc(64);

    wrap_frees = 0;
    ck_assert_ptr_null(petal_arrayrecord_add_wrap(r, "w", PETAL_DTYPE_FLOAT32, 1, shape, mem + 1,
                                                  wrap_free, &wrap_frees));
    ck_assert_ptr_null(petal_arrayrecord_add_wrap(r, "w", PETAL_DTYPE_FLOAT32, 1, shape, NULL,
                                                  wrap_free, &wrap_frees));
    ck_assert_ptr_null(petal_arrayrecord_add_wrap(r, "", PETAL_DTYPE_FLOAT32, 1, shape, mem,
                                                  wrap_free, &wrap_frees));
    ck_assert_int_eq(wrap_frees, 0); /* on error the callback is not called */
    ck_assert_uint_eq(petal_arrayrecord_count(r), 0);
    petal_recorddict_free(d);
    free(mem);
}
END_TEST

START_TEST(test_arrayrecord_views)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "p");
    pt_buf_t *buf = pt_buf_alloc(256, 1);
    uint64_t shape[] = {8};
    petal_array_t *v;

    v = pt_arrayrecord_add_view(r, "v", PETAL_DTYPE_INT32, 1, shape, buf, 64);
    ck_assert_ptr_nonnull(v);
    ck_assert_ptr_eq(pt_array_buf(v), buf);
    ck_assert_uint_eq(pt_array_offset(v), 64);
    ck_assert_ptr_eq(petal_array_data(v), (char *)pt_buf_data(buf) + 64);
    ck_assert_uint_eq(pt_buf_refs(buf), 2);
    /* out of range, overflowing, misaligned */
    ck_assert_ptr_null(pt_arrayrecord_add_view(r, "x", PETAL_DTYPE_INT32, 1, shape, buf, 240));
    ck_assert_ptr_null(pt_arrayrecord_add_view(r, "x", PETAL_DTYPE_INT32, 1, shape, buf, 1000));
    ck_assert_ptr_null(
        pt_arrayrecord_add_view(r, "x", PETAL_DTYPE_INT32, 1, shape, buf, SIZE_MAX - 3));
    ck_assert_ptr_null(pt_arrayrecord_add_view(r, "x", PETAL_DTYPE_INT32, 1, shape, buf, 2));
    ck_assert_ptr_nonnull(pt_arrayrecord_add_view(r, "i8", PETAL_DTYPE_INT8, 1, shape, buf, 3));
    ck_assert_uint_eq(pt_buf_refs(buf), 3);
    petal_recorddict_free(d);
    ck_assert_uint_eq(pt_buf_refs(buf), 1);
    pt_buf_release(buf);
}
END_TEST

/* ---- MetricRecord and ConfigRecord ---------------------------------------------------------- */

START_TEST(test_metricrecord_types)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "m");
    int64_t li[] = {INT64_MIN, -1, 0, INT64_MAX};
    uint64_t lu[] = {0, UINT64_MAX};
    double ld[] = {0.5, -2.25, 1e300};
    petal_value_t v;
    petal_value_t list = {PETAL_VALUE_INT64_LIST, 0, 4, {.i64s = li}};
    const char *name;

    ck_assert_int_eq(petal_metricrecord_set(m, "loss", &(petal_value_t){0}), PETAL_ETYPE);
    v = petal_value_f64(0.125);
    ck_assert_int_eq(petal_metricrecord_set(m, "loss", &v), 0);
    v = petal_value_i64(-42);
    ck_assert_int_eq(petal_metricrecord_set(m, "n", &v), 0);
    v = petal_value_u64(UINT64_MAX);
    ck_assert_int_eq(petal_metricrecord_set(m, "big", &v), 0);
    ck_assert_int_eq(petal_metricrecord_set(m, "li", &list), 0);
    li[0] = 7; /* the record copied the list */
    list = (petal_value_t){PETAL_VALUE_UINT64_LIST, 0, 2, {.u64s = lu}};
    ck_assert_int_eq(petal_metricrecord_set(m, "lu", &list), 0);
    list = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 3, {.f64s = ld}};
    ck_assert_int_eq(petal_metricrecord_set(m, "ld", &list), 0);
    list = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 0, {.f64s = NULL}};
    ck_assert_int_eq(petal_metricrecord_set(m, "empty", &list), 0);

    /* ConfigRecord-only types are refused */
    v = petal_value_bool(1);
    ck_assert_int_eq(petal_metricrecord_set(m, "b", &v), PETAL_ETYPE);
    v = petal_value_str("x", 1);
    ck_assert_int_eq(petal_metricrecord_set(m, "s", &v), PETAL_ETYPE);
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, 1, {.bytes = "x"}};
    ck_assert_int_eq(petal_metricrecord_set(m, "y", &v), PETAL_ETYPE);
    v = (petal_value_t){PETAL_VALUE_BOOL_LIST, 0, 1, {.bools = (const uint8_t *)"x"}};
    ck_assert_int_eq(petal_metricrecord_set(m, "bl", &v), PETAL_ETYPE);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 0, {.strs = NULL}};
    ck_assert_int_eq(petal_metricrecord_set(m, "sl", &v), PETAL_ETYPE);
    /* bad pointers and names */
    list = (petal_value_t){PETAL_VALUE_INT64_LIST, 0, 3, {.i64s = NULL}};
    ck_assert_int_eq(petal_metricrecord_set(m, "bad", &list), PETAL_EINVAL);
    v = petal_value_i64(1);
    ck_assert_int_eq(petal_metricrecord_set(m, "", &v), PETAL_EINVAL);
    ck_assert_int_eq(petal_metricrecord_set(m, NULL, &v), PETAL_EINVAL);

    ck_assert_uint_eq(petal_metricrecord_count(m), 7);
    ck_assert_int_eq(petal_metricrecord_get(m, "loss", &v), 0);
    ck_assert_uint_eq(v.type, PETAL_VALUE_DOUBLE);
    ck_assert(v.as.f64 == 0.125);
    ck_assert_int_eq(petal_metricrecord_get(m, "n", &v), 0);
    ck_assert_int_eq(v.as.i64, -42);
    ck_assert_int_eq(petal_metricrecord_get(m, "big", &v), 0);
    ck_assert_uint_eq(v.as.u64, UINT64_MAX);
    ck_assert_int_eq(petal_metricrecord_get(m, "li", &v), 0);
    ck_assert_uint_eq(v.len, 4);
    ck_assert_int_eq(v.as.i64s[0], INT64_MIN);
    ck_assert_int_eq(v.as.i64s[3], INT64_MAX);
    ck_assert_int_eq(petal_metricrecord_get(m, "ld", &v), 0);
    ck_assert(v.as.f64s[2] == 1e300);
    ck_assert_int_eq(petal_metricrecord_get(m, "empty", &v), 0);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_int_eq(petal_metricrecord_get(m, "nope", &v), PETAL_ENOENT);
    ck_assert_int_eq(petal_metricrecord_at(m, 2, &name, &v), 0);
    ck_assert_str_eq(name, "big");
    ck_assert_int_eq(petal_metricrecord_at(m, 7, &name, &v), PETAL_ENOENT);

    /* set on an existing name replaces the value in place, even with another type */
    v = petal_value_i64(3);
    ck_assert_int_eq(petal_metricrecord_set(m, "loss", &v), 0);
    ck_assert_int_eq(petal_metricrecord_at(m, 0, &name, &v), 0);
    ck_assert_str_eq(name, "loss");
    ck_assert_uint_eq(v.type, PETAL_VALUE_INT64);
    ck_assert_int_eq(v.as.i64, 3);
    /* ... also from a value borrowed from the record itself */
    ck_assert_int_eq(petal_metricrecord_get(m, "li", &v), 0);
    ck_assert_int_eq(petal_metricrecord_set(m, "li", &v), 0);
    ck_assert_int_eq(petal_metricrecord_get(m, "li", &v), 0);
    ck_assert_int_eq(v.as.i64s[3], INT64_MAX);
    ck_assert_uint_eq(petal_metricrecord_count(m), 7);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_configrecord_all_types)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_configrecord_t *c = petal_recorddict_add_config(d, "c");
    const char *strs[] = {"alpha", "", "ünïcødé ✓"};
    uint8_t bools[] = {0, 1, 7};
    const char bytes[] = {'a', 0, 'b', (char)0xff};
    char mutable_str[] = "hello";
    petal_value_t v;

    v = petal_value_bool(5);
    ck_assert_int_eq(petal_configrecord_set(c, "flag", &v), 0);
    v = petal_value_str(mutable_str, 5);
    ck_assert_int_eq(petal_configrecord_set(c, "greeting", &v), 0);
    mutable_str[0] = 'J';
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, sizeof(bytes), {.bytes = bytes}};
    ck_assert_int_eq(petal_configrecord_set(c, "raw", &v), 0);
    v = (petal_value_t){PETAL_VALUE_BOOL_LIST, 0, 3, {.bools = bools}};
    ck_assert_int_eq(petal_configrecord_set(c, "bools", &v), 0);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 3, {.strs = strs}};
    ck_assert_int_eq(petal_configrecord_set(c, "names", &v), 0);
    v = petal_value_i64(-1);
    ck_assert_int_eq(petal_configrecord_set(c, "i", &v), 0);
    v = petal_value_str("", 0);
    ck_assert_int_eq(petal_configrecord_set(c, "empty", &v), 0);
    /* refused */
    v = petal_value_str("a\0b", 3);
    ck_assert_int_eq(petal_configrecord_set(c, "nul", &v), PETAL_EINVAL);
    v = (petal_value_t){99, 0, 0, {.i64 = 0}};
    ck_assert_int_eq(petal_configrecord_set(c, "weird", &v), PETAL_ETYPE);
    strs[1] = NULL;
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 3, {.strs = strs}};
    ck_assert_int_eq(petal_configrecord_set(c, "nullstr", &v), PETAL_EINVAL);

    ck_assert_uint_eq(petal_configrecord_count(c), 7);
    ck_assert_int_eq(petal_configrecord_get(c, "flag", &v), 0);
    ck_assert_uint_eq(v.type, PETAL_VALUE_BOOL);
    ck_assert_int_eq(v.as.boolean, 1);
    ck_assert_int_eq(petal_configrecord_get(c, "greeting", &v), 0);
    ck_assert_str_eq(v.as.str, "hello");
    ck_assert_uint_eq(v.len, 5);
    ck_assert_int_eq(petal_configrecord_get(c, "raw", &v), 0);
    ck_assert_uint_eq(v.len, 4);
    ck_assert_mem_eq(v.as.bytes, bytes, 4);
    ck_assert_int_eq(petal_configrecord_get(c, "bools", &v), 0);
    ck_assert_uint_eq(v.as.bools[0], 0);
    ck_assert_uint_eq(v.as.bools[1], 1);
    ck_assert_uint_eq(v.as.bools[2], 1); /* normalized */
    ck_assert_int_eq(petal_configrecord_get(c, "names", &v), 0);
    ck_assert_uint_eq(v.len, 3);
    ck_assert_str_eq(v.as.strs[0], "alpha");
    ck_assert_str_eq(v.as.strs[1], "");
    ck_assert_str_eq(v.as.strs[2], "ünïcødé ✓");
    ck_assert_int_eq(petal_configrecord_get(c, "empty", &v), 0);
    ck_assert_str_eq(v.as.str, "");
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_large_records_lookup)
{
    enum { N = 10000 };
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "m");
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "a");
    uint64_t shape[] = {1};
    char name[32];
    petal_value_t v;

    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "metric-%d", i);
        v = petal_value_i64(i);
        ck_assert_int_eq(petal_metricrecord_set(m, name, &v), 0);
        snprintf(name, sizeof(name), "layer.%d.weight", i);
        ck_assert_ptr_nonnull(petal_arrayrecord_add(a, name, PETAL_DTYPE_UINT8, 1, shape));
    }
    /* overwrite every other one: count stays, order stays */
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof(name), "metric-%d", i);
        v = petal_value_i64(-i);
        ck_assert_int_eq(petal_metricrecord_set(m, name, &v), 0);
    }
    ck_assert_uint_eq(petal_metricrecord_count(m), N);
    ck_assert_uint_eq(petal_arrayrecord_count(a), N);
    for (int i = 0; i < N; i++) {
        const char *at;
        snprintf(name, sizeof(name), "metric-%d", i);
        ck_assert_int_eq(petal_metricrecord_get(m, name, &v), 0);
        ck_assert_int_eq(v.as.i64, i % 2 == 0 ? -i : i);
        ck_assert_int_eq(petal_metricrecord_at(m, (uint64_t)i, &at, &v), 0);
        ck_assert_str_eq(at, name);
        snprintf(name, sizeof(name), "layer.%d.weight", i);
        ck_assert_ptr_eq(petal_arrayrecord_get(a, name), petal_arrayrecord_at(a, (uint64_t)i));
    }
    ck_assert_int_eq(petal_metricrecord_get(m, "metric-10000", &v), PETAL_ENOENT);
    petal_recorddict_free(d);
}
END_TEST

/* ---- RecordDict ---------------------------------------------------------------------------- */

START_TEST(test_recorddict_kinds)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "arrays");
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "metrics");
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_eq(petal_recorddict_add_arrays(d, "arrays"), a); /* get-or-create */
    ck_assert_ptr_null(petal_recorddict_add_metrics(d, "arrays")); /* another kind */
    ck_assert_ptr_null(petal_recorddict_add_config(d, ""));
    ck_assert_uint_eq(petal_recorddict_count(d), 3);
    ck_assert_str_eq(petal_recorddict_name_at(d, 1), "metrics");
    ck_assert_int_eq(petal_recorddict_kind_at(d, 0), PETAL_RECORD_ARRAYS);
    ck_assert_int_eq(petal_recorddict_kind_at(d, 1), PETAL_RECORD_METRICS);
    ck_assert_int_eq(petal_recorddict_kind_at(d, 2), PETAL_RECORD_CONFIG);
    ck_assert_int_eq(petal_recorddict_kind_at(d, 3), PETAL_ENOENT);
    ck_assert_ptr_eq(petal_recorddict_arrays(d, "arrays"), a);
    ck_assert_ptr_eq(petal_recorddict_metrics(d, "metrics"), m);
    ck_assert_ptr_eq(petal_recorddict_config(d, "config"), c);
    ck_assert_ptr_null(petal_recorddict_metrics(d, "arrays"));
    ck_assert_ptr_null(petal_recorddict_config(d, "nope"));
    ck_assert_uint_eq(petal_recorddict_count(NULL), 0);
    petal_recorddict_free(d);
    petal_recorddict_free(NULL);
}
END_TEST

static petal_recorddict_t *
small_dict(void)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "params");
    petal_configrecord_t *c = petal_recorddict_add_config(d, "cfg");
    uint64_t shape[] = {5};
    int32_t *x = petal_array_data_mut(petal_arrayrecord_add(a, "x", PETAL_DTYPE_INT32, 1, shape));
    const char *strs[] = {"a", "b"};
    petal_value_t v = {PETAL_VALUE_STRING_LIST, 0, 2, {.strs = strs}};

    for (int i = 0; i < 5; i++) {
        x[i] = i * i;
    }
    petal_configrecord_set(c, "names", &v);
    v = petal_value_f64(0.1);
    petal_configrecord_set(c, "lr", &v);
    return d;
}

START_TEST(test_recorddict_clone_and_equal)
{
    petal_recorddict_t *d = small_dict();
    petal_recorddict_t *c = pt_recorddict_clone(d);
    petal_recorddict_t *other;
    const petal_array_t *xa;
    const petal_array_t *xc;
    petal_value_t v;
    uint64_t shape[] = {5};

    ck_assert_ptr_nonnull(c);
    ck_assert(pt_recorddict_equal(d, c));
    xa = petal_arrayrecord_get(petal_recorddict_arrays(d, "params"), "x");
    xc = petal_arrayrecord_get(petal_recorddict_arrays(c, "params"), "x");
    ck_assert_ptr_eq(petal_array_data(xa), petal_array_data(xc)); /* bytes shared */
    ck_assert_uint_eq(pt_recorddict_array_bytes(c), 20);

    /* a different value */
    v = petal_value_f64(0.2);
    petal_configrecord_set(petal_recorddict_add_config(c, "cfg"), "lr", &v);
    ck_assert(!pt_recorddict_equal(d, c));
    petal_recorddict_free(c);

    /* different bytes in an array */
    other = small_dict();
    ck_assert(pt_recorddict_equal(d, other));
    ((int32_t *)petal_array_data_mut((petal_array_t *)petal_arrayrecord_get(
        petal_recorddict_arrays(other, "params"), "x")))[4] = 0;
    ck_assert(!pt_recorddict_equal(d, other));
    petal_recorddict_free(other);

    /* a different dtype with the same bytes count */
    other = small_dict();
    petal_arrayrecord_add(petal_recorddict_add_arrays(other, "params"), "x", PETAL_DTYPE_FLOAT32, 1,
                          shape);
    ck_assert(!pt_recorddict_equal(d, other));
    petal_recorddict_free(other);

    /* another record order */
    other = petal_recorddict_alloc();
    petal_recorddict_add_config(other, "cfg");
    petal_recorddict_add_arrays(other, "params");
    ck_assert(!pt_recorddict_equal(d, other));
    petal_recorddict_free(other);

    ck_assert(pt_recorddict_equal(NULL, NULL));
    ck_assert(!pt_recorddict_equal(d, NULL));
    petal_recorddict_free(d);
}
END_TEST

/* ---- Messages ------------------------------------------------------------------------------ */

START_TEST(test_message_alloc_metadata)
{
    petal_recorddict_t *d = small_dict();
    double before = pt_now_seconds();
    petal_message_t *m = petal_message_alloc(d, "train", 42, "round-3", 0);
    petal_metadata_t md;

    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(petal_message_metadata(m, &md), 0);
    ck_assert_uint_eq(md.struct_size, sizeof(petal_metadata_t));
    ck_assert_uint_eq(md.abi_version, PETAL_ABI_VERSION);
    ck_assert_uint_eq(md.dst_node_id, 42);
    ck_assert_uint_eq(md.src_node_id, PETAL_SERVER_NODE_ID);
    ck_assert_str_eq(md.group_id, "round-3");
    ck_assert_str_eq(md.message_type, "train");
    ck_assert(md.ttl == 43200.0);
    ck_assert(md.created_at >= before - 1 && md.created_at <= pt_now_seconds() + 1);
    ck_assert_ptr_eq(petal_message_content(m), d);
    ck_assert_int_eq(petal_message_error_code(m), 0);
    ck_assert_str_eq(petal_message_error_reason(m), "");
    petal_message_free(m);

    m = petal_message_alloc(NULL, "query.stats", 1, NULL, 12.5);
    ck_assert_ptr_nonnull(m);
    ck_assert(pt_message_md_const(m)->ttl == 12.5);
    ck_assert_str_eq(pt_message_md_const(m)->group_id, "");
    ck_assert_uint_eq(petal_recorddict_count(petal_message_content(m)), 0);
    petal_message_free(m);
}
END_TEST

START_TEST(test_message_alloc_refuses_bad_types)
{
    char longtype[PETAL_MESSAGE_TYPE_MAX + 1];
    char longgroup[PETAL_GROUP_ID_MAX + 1];
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_message_t *m;

    memset(longtype, 'a', sizeof(longtype) - 1);
    longtype[sizeof(longtype) - 1] = '\0';
    memset(longgroup, 'g', sizeof(longgroup) - 1);
    longgroup[sizeof(longgroup) - 1] = '\0';
    ck_assert_ptr_null(petal_message_alloc(d, NULL, 1, NULL, 0));
    ck_assert_ptr_null(petal_message_alloc(d, "", 1, NULL, 0));
    ck_assert_ptr_null(petal_message_alloc(d, longtype, 1, NULL, 0));
    longtype[PETAL_MESSAGE_TYPE_MAX - 1] = '\0'; /* 63 characters fit */
    ck_assert_ptr_null(petal_message_alloc(d, "train", 1, longgroup, 0));
    m = petal_message_alloc(d, longtype, 1, NULL, 0); /* takes d */
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(pt_message_md_const(m)->message_type, longtype);
    petal_message_free(m);
}
END_TEST

START_TEST(test_message_refcount)
{
    petal_message_t *m = petal_message_alloc(NULL, "evaluate", 3, NULL, 0);

    ck_assert_uint_eq(pt_message_refs(m), 1);
    ck_assert_ptr_eq(pt_message_hold(m), m);
    ck_assert_uint_eq(pt_message_refs(m), 2);
    petal_message_free(m);
    ck_assert_uint_eq(pt_message_refs(m), 1);
    ck_assert_str_eq(pt_message_md_const(m)->message_type, "evaluate");
    pt_message_release(m);
}
END_TEST

START_TEST(test_message_errors_and_replies)
{
    petal_message_t *m = petal_message_alloc(NULL, "train", 9, "g", 100);
    petal_message_t *r;
    petal_message_t *e;
    petal_metadata_t *md = pt_message_md(m);
    petal_metadata_t rmd;

    md->run_id = 77;
    md->message_id = 1234;
    r = pt_message_alloc_reply(m, small_dict());
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(petal_message_metadata(r, &rmd), 0);
    ck_assert_uint_eq(rmd.run_id, 77);
    ck_assert_uint_eq(rmd.src_node_id, 9);
    ck_assert_uint_eq(rmd.dst_node_id, PETAL_SERVER_NODE_ID);
    ck_assert_uint_eq(rmd.reply_to_message_id, 1234);
    ck_assert_uint_eq(rmd.message_id, 0);
    ck_assert_str_eq(rmd.group_id, "g");
    ck_assert_str_eq(rmd.message_type, "train");
    ck_assert(rmd.ttl <= 100 && rmd.ttl > 90);
    ck_assert_uint_eq(petal_recorddict_count(petal_message_content(r)), 2);
    petal_message_free(r);

    e = pt_message_alloc_error_reply(m, PETAL_E_CLIENT_APP_RAISED_EXCEPTION, "division by zero");
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_null(petal_message_content(e));
    ck_assert_int_eq(petal_message_error_code(e), PETAL_E_CLIENT_APP_RAISED_EXCEPTION);
    ck_assert_str_eq(petal_message_error_reason(e), "division by zero");
    ck_assert_uint_eq(pt_message_md_const(e)->reply_to_message_id, 1234);
    petal_message_free(e);

    e = pt_message_alloc_error(md, PETAL_E_NODE_UNAVAILABLE, NULL);
    ck_assert_ptr_nonnull(e);
    ck_assert_str_eq(petal_message_error_reason(e), "");
    petal_message_free(e);
    ck_assert_ptr_null(pt_message_alloc_error(md, 0, "no"));
    ck_assert_ptr_null(pt_message_alloc_error(NULL, PETAL_E_UNKNOWN, "no"));
    ck_assert_int_eq(petal_message_metadata(m, NULL), PETAL_EINVAL);
    petal_message_free(m);
}
END_TEST

static Suite *
records_suite(void)
{
    Suite *s = suite_create("records");
    TCase *arrays = tcase_create("arrays");
    TCase *values = tcase_create("values");
    TCase *dict = tcase_create("recorddict");
    TCase *msg = tcase_create("message");

    tcase_add_test(arrays, test_dtype_sizes_and_names);
    tcase_add_test(arrays, test_arrayrecord_add_and_get);
    tcase_add_test(arrays, test_arrayrecord_replace_keeps_position);
    tcase_add_test(arrays, test_arrayrecord_refuses_bad_arguments);
    tcase_add_test(arrays, test_array_scalar_and_empty);
    tcase_add_test(arrays, test_arrayrecord_wrap_and_ref_share_bytes);
    tcase_add_test(arrays, test_arrayrecord_wrap_refuses_misaligned);
    tcase_add_test(arrays, test_arrayrecord_views);
    tcase_add_test(values, test_metricrecord_types);
    tcase_add_test(values, test_configrecord_all_types);
    tcase_add_test(values, test_large_records_lookup);
    tcase_add_test(dict, test_recorddict_kinds);
    tcase_add_test(dict, test_recorddict_clone_and_equal);
    tcase_add_test(msg, test_message_alloc_metadata);
    tcase_add_test(msg, test_message_alloc_refuses_bad_types);
    tcase_add_test(msg, test_message_refcount);
    tcase_add_test(msg, test_message_errors_and_replies);
    suite_add_tcase(s, arrays);
    suite_add_tcase(s, values);
    suite_add_tcase(s, dict);
    suite_add_tcase(s, msg);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(records_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
