/* test_codec.c - message encoding: round trips, zero-copy, alignment, limits and broken input. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "runtime/codec.h"
#include "runtime/message.h"
#include "transport/stream.h"

#define ERR_CAP 512

/* ---- helpers ------------------------------------------------------------------------------- */

static void
fill_pattern(void *data, uint64_t nbytes, int32_t dtype, unsigned seed)
{
    unsigned char *p = data;

    for (uint64_t i = 0; i < nbytes; i++) {
        p[i] = dtype == PETAL_DTYPE_BOOL ? (unsigned char)((i + seed) % 2)
                                         : (unsigned char)(i * 31 + seed);
    }
}

/* Every value type, every dtype, unicode names, scalar/empty arrays and empty records. */
static petal_recorddict_t *
sample_dict(void)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "params");
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "metrics");
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");
    petal_metricrecord_t *u = petal_recorddict_add_metrics(d, "réseau-🌸");
    uint64_t shape2[] = {2, 3};
    uint64_t shape1[] = {7};
    uint64_t empty_shape[] = {0, 5};
    int64_t li[] = {INT64_MIN, -1, 0, INT64_MAX};
    uint64_t lu[] = {0, 1, UINT64_MAX};
    double ld[] = {0.5, -0.0, INFINITY, NAN, 1e-300};
    uint8_t lb[] = {1, 0, 1};
    const char *ls[] = {"a", "", "ünï ✓"};
    const char raw[] = {0, 1, 2, (char)0xff, 0};
    petal_value_t v;
    char name[32];

    for (int32_t dt = PETAL_DTYPE_FLOAT32; dt <= PETAL_DTYPE_BOOL; dt++) {
        petal_array_t *x;
        snprintf(name, sizeof(name), "w_%s", petal_dtype_name(dt));
        x = petal_arrayrecord_add(a, name, dt, 2, shape2);
        fill_pattern(petal_array_data_mut(x), petal_array_nbytes(x), dt, (unsigned)dt);
        /* an odd-sized array after each one moves the next array off any natural alignment */
        snprintf(name, sizeof(name), "odd_%d", dt);
        x = petal_arrayrecord_add(a, name, PETAL_DTYPE_INT8, 1, shape1);
        fill_pattern(petal_array_data_mut(x), 7, PETAL_DTYPE_INT8, 3);
    }
    *(double *)petal_array_data_mut(
        petal_arrayrecord_add(a, "scalar", PETAL_DTYPE_FLOAT64, 0, NULL)) = 3.25;
    petal_arrayrecord_add(a, "empty", PETAL_DTYPE_FLOAT32, 2, empty_shape);
    petal_arrayrecord_add(a, "权重", PETAL_DTYPE_UINT16, 1, shape1);

    v = petal_value_i64(-5);
    petal_metricrecord_set(m, "i64", &v);
    v = petal_value_i64(INT64_MIN);
    petal_metricrecord_set(m, "i64min", &v);
    v = petal_value_u64(UINT64_MAX);
    petal_metricrecord_set(m, "u64", &v);
    v = petal_value_f64(0.25);
    petal_metricrecord_set(m, "f64", &v);
    v = (petal_value_t){PETAL_VALUE_INT64_LIST, 0, 4, {.i64s = li}};
    petal_metricrecord_set(m, "li", &v);
    v = (petal_value_t){PETAL_VALUE_UINT64_LIST, 0, 3, {.u64s = lu}};
    petal_metricrecord_set(m, "lu", &v);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 5, {.f64s = ld}};
    petal_metricrecord_set(m, "ld", &v);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 0, {.f64s = NULL}};
    petal_metricrecord_set(m, "ld_empty", &v);

    v = petal_value_bool(1);
    petal_configrecord_set(c, "flag", &v);
    v = petal_value_bool(0);
    petal_configrecord_set(c, "off", &v);
    v = petal_value_str("héllo wörld ✓", strlen("héllo wörld ✓"));
    petal_configrecord_set(c, "greeting", &v);
    v = petal_value_str("", 0);
    petal_configrecord_set(c, "empty_str", &v);
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, sizeof(raw), {.bytes = raw}};
    petal_configrecord_set(c, "raw", &v);
    v = (petal_value_t){PETAL_VALUE_BYTES, 0, 0, {.bytes = NULL}};
    petal_configrecord_set(c, "raw_empty", &v);
    v = (petal_value_t){PETAL_VALUE_BOOL_LIST, 0, 3, {.bools = lb}};
    petal_configrecord_set(c, "lb", &v);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 3, {.strs = ls}};
    petal_configrecord_set(c, "ls", &v);
    v = (petal_value_t){PETAL_VALUE_STRING_LIST, 0, 0, {.strs = NULL}};
    petal_configrecord_set(c, "ls_empty", &v);
    v = petal_value_i64(12);
    petal_configrecord_set(c, "i", &v);
    v = petal_value_u64(13);
    petal_configrecord_set(c, "u", &v);
    v = petal_value_f64(-1.5);
    petal_configrecord_set(c, "f", &v);
    v = (petal_value_t){PETAL_VALUE_INT64_LIST, 0, 4, {.i64s = li}};
    petal_configrecord_set(c, "li", &v);
    v = (petal_value_t){PETAL_VALUE_UINT64_LIST, 0, 3, {.u64s = lu}};
    petal_configrecord_set(c, "lu", &v);
    v = (petal_value_t){PETAL_VALUE_DOUBLE_LIST, 0, 5, {.f64s = ld}};
    petal_configrecord_set(c, "ld", &v);

    v = petal_value_f64(0.99);
    petal_metricrecord_set(u, "точность", &v);
    petal_recorddict_add_arrays(d, "no-arrays");
    petal_recorddict_add_metrics(d, "no-metrics");
    petal_recorddict_add_config(d, "no-config");
    return d;
}

static petal_message_t *
sample_message(petal_recorddict_t *content)
{
    petal_message_t *m = petal_message_alloc(content, "query.stats", 987654321, "round-7", 600);
    petal_metadata_t *md = pt_message_md(m);

    md->run_id = UINT64_MAX;
    md->message_id = 0x0123456789abcdefULL;
    md->src_node_id = 5;
    md->reply_to_message_id = 17;
    return m;
}

static void
assert_same_metadata(const petal_message_t *a, const petal_message_t *b)
{
    const petal_metadata_t *x = pt_message_md_const(a);
    const petal_metadata_t *y = pt_message_md_const(b);

    ck_assert_uint_eq(x->run_id, y->run_id);
    ck_assert_uint_eq(x->message_id, y->message_id);
    ck_assert_uint_eq(x->src_node_id, y->src_node_id);
    ck_assert_uint_eq(x->dst_node_id, y->dst_node_id);
    ck_assert_uint_eq(x->reply_to_message_id, y->reply_to_message_id);
    ck_assert(x->ttl == y->ttl);
    ck_assert(x->created_at == y->created_at);
    ck_assert_str_eq(x->group_id, y->group_id);
    ck_assert_str_eq(x->message_type, y->message_type);
}

/* Checks that every array of d lies inside [lo, hi) and is 64-byte aligned. */
static void
assert_views_inside(const petal_recorddict_t *d, const void *lo, size_t len)
{
    for (uint64_t i = 0; i < petal_recorddict_count(d); i++) {
        const petal_arrayrecord_t *r = petal_recorddict_arrays(d, petal_recorddict_name_at(d, i));
        for (uint64_t j = 0; j < petal_arrayrecord_count(r); j++) {
            const petal_array_t *a = petal_arrayrecord_at(r, j);
            const char *p = petal_array_data(a);
            ck_assert_msg(p >= (const char *)lo &&
                              p + petal_array_nbytes(a) <= (const char *)lo + len,
                          "array %s is not a view into the frame", petal_arrayrecord_name_at(r, j));
            if (petal_array_nbytes(a) > 0) {
                ck_assert_uint_eq((uintptr_t)p % 64, 0);
            }
        }
    }
}

static pt_buf_t *
buf_of(const void *bytes, size_t len)
{
    pt_buf_t *b = pt_buf_alloc(len, 0);

    ck_assert_ptr_nonnull(b);
    if (len > 0) {
        memcpy(pt_buf_data(b), bytes, len);
    }
    return b;
}

/* Decodes bytes as a message; returns the error (or 0), with *out released on success. */
static int
decode_bytes(const void *bytes, size_t len, const pt_codec_limits_t *lim, char *err)
{
    pt_buf_t *b = buf_of(bytes, len);
    petal_message_t *m = NULL;
    int rc;

    err[0] = '\0';
    rc = pt_codec_decode(b, 0, len, lim, &m, NULL, err, ERR_CAP);
    if (rc == 0) {
        ck_assert_ptr_nonnull(m);
        petal_message_free(m);
    } else {
        ck_assert_msg(rc == PETAL_EPROTO || rc == PETAL_EMSGSIZE, "unexpected error %d", rc);
        ck_assert_msg(err[0] != '\0', "error %d without a text", rc);
        ck_assert_ptr_null(m);
    }
    pt_buf_release(b);
    return rc;
}

static int
decode_dict_bytes(const void *bytes, size_t len, const pt_codec_limits_t *lim, char *err)
{
    pt_buf_t *b = buf_of(bytes, len);
    petal_recorddict_t *d = NULL;
    int rc;

    err[0] = '\0';
    rc = pt_codec_decode_recorddict(b, 0, len, lim, &d, err, ERR_CAP);
    if (rc == 0) {
        petal_recorddict_free(d);
    } else {
        ck_assert_msg(rc == PETAL_EPROTO || rc == PETAL_EMSGSIZE, "unexpected error %d", rc);
        ck_assert_msg(err[0] != '\0', "error %d without a text", rc);
    }
    pt_buf_release(b);
    return rc;
}

/* Encodes and flattens m; the caller releases the buffer. */
static pt_buf_t *
encode_flat(const petal_message_t *m)
{
    pt_encoded_t e;
    pt_buf_t *flat;

    ck_assert_int_eq(pt_codec_encode(m, &e), 0);
    ck_assert_uint_eq(e.copied, 0);
    flat = pt_encoded_flatten(&e);
    ck_assert_ptr_nonnull(flat);
    ck_assert_uint_eq(pt_buf_len(flat), e.total);
    pt_encoded_fini(&e);
    return flat;
}

/* ---- msgpack builders for hand-made inputs -------------------------------------------------- */

typedef struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static void
mp_init(mp_t *w)
{
    msgpack_sbuffer_init(&w->sb);
    msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
}

static void
mp_str(mp_t *w, const char *s)
{
    msgpack_pack_str_with_body(&w->pk, s, strlen(s));
}

/* [tag, 1, metadata, 1, ...] up to the RecordDict, which the caller writes. */
static void
mp_message_head(mp_t *w)
{
    mp_init(w);
    msgpack_pack_array(&w->pk, 5);
    mp_str(w, "petal.message");
    msgpack_pack_uint8(&w->pk, 1);
    msgpack_pack_array(&w->pk, 9);
    for (int i = 0; i < 5; i++) {
        msgpack_pack_uint64(&w->pk, (uint64_t)i + 1);
    }
    msgpack_pack_double(&w->pk, 60.0);
    msgpack_pack_double(&w->pk, 1.7e9);
    mp_str(w, "g");
    mp_str(w, "train");
    msgpack_pack_uint8(&w->pk, 1);
}

/* An array entry: [dtype, shape, 0, bin(nbytes)] with zero bytes of data. */
static void
mp_array(mp_t *w, uint64_t dtype, uint32_t ndim, const uint64_t *shape, uint32_t nbytes)
{
    char *zeros = calloc(1, nbytes + 1);

    msgpack_pack_array(&w->pk, 4);
    msgpack_pack_uint64(&w->pk, dtype);
    msgpack_pack_array(&w->pk, ndim);
    for (uint32_t i = 0; i < ndim; i++) {
        msgpack_pack_uint64(&w->pk, shape[i]);
    }
    msgpack_pack_uint8(&w->pk, 0);
    msgpack_pack_bin_with_body(&w->pk, zeros, nbytes);
    free(zeros);
}

static int
mp_decode(mp_t *w, const pt_codec_limits_t *lim, char *err)
{
    int rc = decode_bytes(w->sb.data, w->sb.size, lim, err);
    msgpack_sbuffer_destroy(&w->sb);
    return rc;
}

/* ---- round trips --------------------------------------------------------------------------- */

START_TEST(test_roundtrip_every_type)
{
    petal_recorddict_t *d = sample_dict();
    petal_message_t *m = sample_message(d);
    pt_encoded_t e;
    pt_buf_t *flat;
    petal_message_t *back = NULL;
    uint64_t copied = 99;
    char err[ERR_CAP];

    ck_assert_int_eq(pt_codec_encode(m, &e), 0);
    ck_assert_uint_eq(e.copied, 0);
    /* array bytes are referenced, not copied: some iovec starts at each array's data */
    for (uint64_t j = 0; j < petal_arrayrecord_count(petal_recorddict_arrays(d, "params")); j++) {
        const petal_array_t *a = petal_arrayrecord_at(petal_recorddict_arrays(d, "params"), j);
        int found = petal_array_nbytes(a) == 0;
        for (size_t i = 0; i < e.niov && !found; i++) {
            found = e.iov[i].base == petal_array_data(a) && e.iov[i].len == petal_array_nbytes(a);
        }
        ck_assert_msg(found, "array %llu is not referenced by an iovec", (unsigned long long)j);
    }
    flat = pt_encoded_flatten(&e);
    pt_encoded_fini(&e);
    ck_assert_int_eq(
        pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, &copied, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "");
    ck_assert_uint_eq(copied, 0);
    ck_assert(pt_recorddict_equal(petal_message_content(m), petal_message_content(back)));
    assert_same_metadata(m, back);
    assert_views_inside(petal_message_content(back), pt_buf_data(flat), pt_buf_len(flat));
    ck_assert_uint_gt(pt_buf_refs(flat), 1); /* the views hold the frame */
    pt_buf_release(flat);
    /* the decoded message outlives our reference to the frame */
    ck_assert(pt_recorddict_equal(petal_message_content(m), petal_message_content(back)));
    petal_message_free(back);
    petal_message_free(m);
}
END_TEST

START_TEST(test_roundtrip_unaligned_frame_copies)
{
    petal_message_t *m = sample_message(sample_dict());
    pt_buf_t *flat = encode_flat(m);
    size_t len = pt_buf_len(flat);
    pt_buf_t *shifted = pt_buf_alloc(len + 1, 0);
    petal_message_t *back = NULL;
    uint64_t copied = 0;
    char err[ERR_CAP];

    memcpy((char *)pt_buf_data(shifted) + 1, pt_buf_data(flat), len);
    ck_assert_int_eq(pt_codec_decode(shifted, 1, len, NULL, &back, &copied, err, sizeof(err)), 0);
    ck_assert_uint_gt(copied, 0); /* multi-byte dtypes could not be views */
    ck_assert(pt_recorddict_equal(petal_message_content(m), petal_message_content(back)));
    for (uint64_t j = 0; j < petal_arrayrecord_count(
                                 petal_recorddict_arrays(petal_message_content(back), "params"));
         j++) {
        const petal_array_t *a =
            petal_arrayrecord_at(petal_recorddict_arrays(petal_message_content(back), "params"), j);
        ck_assert_uint_eq((uintptr_t)petal_array_data(a) % petal_dtype_size(petal_array_dtype(a)),
                          0);
    }
    petal_message_free(back);
    pt_buf_release(shifted);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_roundtrip_empty_content)
{
    petal_message_t *m = petal_message_alloc(NULL, "train", 1, NULL, 0);
    pt_buf_t *flat = encode_flat(m);
    petal_message_t *back = NULL;
    char err[ERR_CAP];

    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, NULL, err, ERR_CAP),
                     0);
    ck_assert_ptr_nonnull(petal_message_content(back));
    ck_assert_uint_eq(petal_recorddict_count(petal_message_content(back)), 0);
    ck_assert_int_eq(petal_message_error_code(back), 0);
    assert_same_metadata(m, back);
    petal_message_free(back);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_roundtrip_error_message)
{
    petal_message_t *to = sample_message(NULL);
    petal_message_t *m = pt_message_alloc_error_reply(to, PETAL_E_CLIENT_APP_CRASHED,
                                                      "ClientApp crashed: SIGSEGV in train() ✗");
    pt_buf_t *flat = encode_flat(m);
    petal_message_t *back = NULL;
    char err[ERR_CAP];

    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, NULL, err, ERR_CAP),
                     0);
    ck_assert_ptr_null(petal_message_content(back));
    ck_assert_int_eq(petal_message_error_code(back), PETAL_E_CLIENT_APP_CRASHED);
    ck_assert_str_eq(petal_message_error_reason(back), "ClientApp crashed: SIGSEGV in train() ✗");
    assert_same_metadata(m, back);
    ck_assert_uint_eq(pt_message_md_const(back)->reply_to_message_id, 0x0123456789abcdefULL);
    petal_message_free(back);
    pt_buf_release(flat);
    petal_message_free(m);

    m = pt_message_alloc_error_reply(to, PETAL_E_NODE_UNAVAILABLE, NULL);
    flat = encode_flat(m);
    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, NULL, err, ERR_CAP),
                     0);
    ck_assert_int_eq(petal_message_error_code(back), PETAL_E_NODE_UNAVAILABLE);
    ck_assert_str_eq(petal_message_error_reason(back), "");
    petal_message_free(back);
    pt_buf_release(flat);
    petal_message_free(m);
    petal_message_free(to);
}
END_TEST

START_TEST(test_roundtrip_recorddict)
{
    petal_recorddict_t *d = sample_dict();
    petal_recorddict_t *back = NULL;
    petal_recorddict_t *empty = petal_recorddict_alloc();
    petal_message_t *msg = NULL;
    pt_encoded_t e;
    pt_buf_t *flat;
    char err[ERR_CAP];

    ck_assert_int_eq(pt_codec_encode_recorddict(d, &e), 0);
    ck_assert_uint_eq(e.copied, 0);
    flat = pt_encoded_flatten(&e);
    pt_encoded_fini(&e);
    ck_assert_int_eq(
        pt_codec_decode_recorddict(flat, 0, pt_buf_len(flat), NULL, &back, err, ERR_CAP), 0);
    ck_assert(pt_recorddict_equal(d, back));
    assert_views_inside(back, pt_buf_data(flat), pt_buf_len(flat));
    petal_recorddict_free(back);
    /* a RecordDict is not a message */
    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &msg, NULL, err, ERR_CAP),
                     PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "petal.message"));
    pt_buf_release(flat);

    ck_assert_int_eq(pt_codec_encode_recorddict(empty, &e), 0);
    flat = pt_encoded_flatten(&e);
    pt_encoded_fini(&e);
    ck_assert_int_eq(
        pt_codec_decode_recorddict(flat, 0, pt_buf_len(flat), NULL, &back, err, ERR_CAP), 0);
    ck_assert_uint_eq(petal_recorddict_count(back), 0);
    petal_recorddict_free(back);
    pt_buf_release(flat);
    petal_recorddict_free(empty);
    petal_recorddict_free(d);
}
END_TEST

START_TEST(test_roundtrip_large_array)
{
    const uint64_t n = (64u << 20) / 4; /* 64 MiB of float32 */
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *r = petal_recorddict_add_arrays(d, "params");
    petal_array_t *a = petal_arrayrecord_add(r, "w", PETAL_DTYPE_FLOAT32, 1, &n);
    float *f = petal_array_data_mut(a);
    petal_message_t *m;
    petal_message_t *back = NULL;
    pt_encoded_t e;
    pt_buf_t *flat;
    uint64_t copied = 1;
    char err[ERR_CAP];
    const petal_array_t *ba;

    for (uint64_t i = 0; i < n; i += 4096) {
        f[i] = (float)i;
    }
    f[n - 1] = -1.0f;
    m = petal_message_alloc(d, "train", 2, NULL, 0);
    ck_assert_int_eq(pt_codec_encode(m, &e), 0);
    ck_assert_uint_eq(e.copied, 0);
    ck_assert_uint_lt(e.total - n * 4, 4096); /* headers are small */
    flat = pt_encoded_flatten(&e);
    pt_encoded_fini(&e);
    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, &copied, err, ERR_CAP),
                     0);
    ck_assert_uint_eq(copied, 0);
    ba = petal_arrayrecord_get(petal_recorddict_arrays(petal_message_content(back), "params"), "w");
    ck_assert_uint_eq(petal_array_numel(ba), n);
    ck_assert(((const float *)petal_array_data(ba))[n - 1] == -1.0f);
    ck_assert(((const float *)petal_array_data(ba))[4096] == 4096.0f);
    assert_views_inside(petal_message_content(back), pt_buf_data(flat), pt_buf_len(flat));
    ck_assert(pt_recorddict_equal(d, petal_message_content(back)));
    petal_message_free(back);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_roundtrip_10k_entries)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *m = petal_recorddict_add_metrics(d, "m");
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "a");
    petal_message_t *msg;
    petal_message_t *back = NULL;
    pt_buf_t *flat;
    uint64_t shape[] = {3};
    char name[32];
    char err[ERR_CAP];

    for (int i = 0; i < 10000; i++) {
        petal_value_t v = petal_value_f64(i / 7.0);
        snprintf(name, sizeof(name), "k%d", i);
        petal_metricrecord_set(m, name, &v);
        petal_arrayrecord_add(a, name, PETAL_DTYPE_FLOAT32, 1, shape);
    }
    msg = petal_message_alloc(d, "evaluate", 1, NULL, 0);
    flat = encode_flat(msg);
    ck_assert_int_eq(pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, NULL, err, ERR_CAP),
                     0);
    ck_assert(pt_recorddict_equal(d, petal_message_content(back)));
    petal_message_free(back);
    pt_buf_release(flat);
    petal_message_free(msg);
}
END_TEST

START_TEST(test_encoding_is_deterministic_and_aligned)
{
    petal_message_t *m = sample_message(sample_dict());
    pt_encoded_t e;
    size_t pos = 0;
    int arrays = 0;

    ck_assert_int_eq(pt_codec_encode(m, &e), 0);
    for (size_t i = 0; i < e.niov; i++) {
        const petal_recorddict_t *d = petal_message_content(m);
        const petal_arrayrecord_t *r = petal_recorddict_arrays(d, "params");
        for (uint64_t j = 0; j < petal_arrayrecord_count(r); j++) {
            if (e.iov[i].base == petal_array_data(petal_arrayrecord_at(r, j))) {
                ck_assert_uint_eq(pos % 64, 0); /* data starts at a multiple of 64 */
                arrays++;
            }
        }
        pos += e.iov[i].len;
    }
    ck_assert_uint_eq(pos, e.total);
    ck_assert_int_gt(arrays, 10);
    pt_encoded_fini(&e);
    petal_message_free(m);
}
END_TEST

START_TEST(test_encoder_holds_array_buffers)
{
    petal_recorddict_t *d = sample_dict();
    petal_message_t *m = petal_message_alloc(d, "train", 1, NULL, 0);
    const petal_array_t *a = petal_arrayrecord_at(petal_recorddict_arrays(d, "params"), 0);
    pt_buf_t *b = pt_array_buf(a);
    pt_encoded_t e;

    pt_buf_hold(b);
    ck_assert_int_eq(pt_codec_encode(m, &e), 0);
    ck_assert_uint_eq(pt_buf_refs(b), 3);
    petal_message_free(m); /* the encoding stays valid without the message */
    ck_assert_uint_eq(pt_buf_refs(b), 2);
    pt_encoded_fini(&e);
    ck_assert_uint_eq(pt_buf_refs(b), 1);
    pt_buf_release(b);
}
END_TEST

/* ---- broken input -------------------------------------------------------------------------- */

START_TEST(test_every_truncation_fails_cleanly)
{
    petal_message_t *m = sample_message(sample_dict());
    pt_buf_t *flat = encode_flat(m);
    const unsigned char *bytes = pt_buf_data(flat);
    size_t len = pt_buf_len(flat);
    char err[ERR_CAP];

    for (size_t cut = 0; cut < len; cut++) {
        int rc = decode_bytes(bytes, cut, NULL, err);
        ck_assert_msg(rc == PETAL_EPROTO, "prefix of %zu bytes: %d (%s)", cut, rc, err);
    }
    ck_assert_int_eq(decode_bytes(bytes, len, NULL, err), 0);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_byte_flips_never_crash)
{
    petal_message_t *m = sample_message(sample_dict());
    pt_buf_t *flat = encode_flat(m);
    size_t len = pt_buf_len(flat);
    unsigned char *copy = malloc(len);
    static const unsigned char masks[] = {0x01, 0x80, 0xff};
    char err[ERR_CAP];
    int failures = 0;

    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof(masks); k++) {
            memcpy(copy, pt_buf_data(flat), len);
            copy[i] ^= masks[k];
            if (decode_bytes(copy, len, NULL, err) != 0) {
                failures++;
            }
            if (decode_dict_bytes(copy, len, NULL, err) == 0) {
                ck_abort_msg("a message decoded as a RecordDict");
            }
        }
    }
    ck_assert_int_gt(failures, 0);
    free(copy);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_trailing_bytes_refused)
{
    petal_message_t *m = sample_message(NULL);
    pt_buf_t *flat = encode_flat(m);
    size_t len = pt_buf_len(flat);
    unsigned char *copy = calloc(1, len + 3);
    char err[ERR_CAP];

    memcpy(copy, pt_buf_data(flat), len);
    ck_assert_int_eq(decode_bytes(copy, len + 3, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "3 unexpected bytes after the end"));
    free(copy);
    pt_buf_release(flat);
    petal_message_free(m);
}
END_TEST

START_TEST(test_shape_mismatch_error_text)
{
    mp_t w;
    char err[ERR_CAP];
    uint64_t shape[] = {10};

    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "params");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, PETAL_RECORD_ARRAYS);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "w");
    mp_array(&w, PETAL_DTYPE_FLOAT32, 1, shape, 36);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_msg(strstr(err, "array 'w' in record 'params': shape product 10 does not match 36 "
                              "data bytes for float32 at byte ") == err,
                  "got: %s", err);
}
END_TEST

/* Builds a message whose only record is `kind` named "r" with one entry "e", written by fn. */
typedef void (*entry_fn)(mp_t *w);

static int
decode_one_entry(int kind, entry_fn fn, const pt_codec_limits_t *lim, char *err)
{
    mp_t w;

    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "r");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, (uint8_t)kind);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "e");
    fn(&w);
    return mp_decode(&w, lim, err);
}

static void
e_bad_dtype(mp_t *w)
{
    uint64_t s[] = {1};
    mp_array(w, 12, 1, s, 1);
}

static void
e_ndim_17(mp_t *w)
{
    uint64_t s[17];
    for (int i = 0; i < 17; i++) {
        s[i] = 1;
    }
    mp_array(w, PETAL_DTYPE_UINT8, 17, s, 1);
}

static void
e_shape_overflow(mp_t *w)
{
    uint64_t s[] = {UINT64_MAX, UINT64_MAX, 2};
    mp_array(w, PETAL_DTYPE_UINT8, 3, s, 0);
}

static void
e_bool_two(mp_t *w)
{
    msgpack_pack_array(&w->pk, 4);
    msgpack_pack_uint8(&w->pk, PETAL_DTYPE_BOOL);
    msgpack_pack_array(&w->pk, 1);
    msgpack_pack_uint8(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, 0);
    msgpack_pack_bin_with_body(&w->pk, "\x01\x02", 2);
}

static void
e_big_pad(mp_t *w)
{
    char zeros[70] = {0};
    msgpack_pack_array(&w->pk, 4);
    msgpack_pack_uint8(&w->pk, PETAL_DTYPE_UINT8);
    msgpack_pack_array(&w->pk, 1);
    msgpack_pack_uint8(&w->pk, 1);
    msgpack_pack_uint8(&w->pk, 64);
    msgpack_pack_bin_with_body(&w->pk, zeros, 65);
}

static void
e_nonzero_pad(mp_t *w)
{
    msgpack_pack_array(&w->pk, 4);
    msgpack_pack_uint8(&w->pk, PETAL_DTYPE_UINT8);
    msgpack_pack_array(&w->pk, 1);
    msgpack_pack_uint8(&w->pk, 1);
    msgpack_pack_uint8(&w->pk, 2);
    msgpack_pack_bin_with_body(&w->pk, "\x00\x07\x01", 3);
}

static void
e_huge_bin(mp_t *w)
{
    static const unsigned char hdr[] = {0xc6, 0x7f, 0xff, 0xff, 0xf0};
    msgpack_pack_array(&w->pk, 4);
    msgpack_pack_uint8(&w->pk, PETAL_DTYPE_UINT8);
    msgpack_pack_array(&w->pk, 1);
    msgpack_pack_uint32(&w->pk, 0x7ffffff0u);
    msgpack_pack_uint8(&w->pk, 0);
    msgpack_sbuffer_write(&w->sb, (const char *)hdr, sizeof(hdr));
}

static void
e_many_elements(mp_t *w)
{
    uint64_t s[] = {1000, 1000};
    mp_array(w, PETAL_DTYPE_UINT8, 2, s, 1000000);
}

static void
e_metric_bool(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_BOOL);
    msgpack_pack_true(&w->pk);
}

static void
e_unknown_value_type(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, 12);
    msgpack_pack_true(&w->pk);
}

static void
e_wrong_payload(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_DOUBLE);
    mp_str(w, "0.5");
}

static void
e_nul_string(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_STRING);
    msgpack_pack_str_with_body(&w->pk, "a\0b", 3);
}

static void
e_long_string(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_STRING);
    mp_str(w, "0123456789abcdef0123");
}

static void
e_huge_string(mp_t *w)
{
    static const unsigned char hdr[] = {0xdb, 0x7f, 0xff, 0xff, 0xff, 'x'};
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_STRING);
    msgpack_sbuffer_write(&w->sb, (const char *)hdr, sizeof(hdr));
}

static void
e_long_list(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_INT64_LIST);
    msgpack_pack_array(&w->pk, 20);
    for (int i = 0; i < 20; i++) {
        msgpack_pack_int8(&w->pk, (int8_t)-i);
    }
}

static void
e_huge_list(mp_t *w)
{
    static const unsigned char hdr[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_DOUBLE_LIST);
    msgpack_sbuffer_write(&w->sb, (const char *)hdr, sizeof(hdr));
}

static void
e_int_out_of_range(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_INT64);
    msgpack_pack_uint64(&w->pk, UINT64_MAX);
}

static void
e_negative_uint(mp_t *w)
{
    msgpack_pack_array(&w->pk, 2);
    msgpack_pack_uint8(&w->pk, PETAL_VALUE_UINT64);
    msgpack_pack_int8(&w->pk, -3);
}

static void
e_nil_value(mp_t *w)
{
    msgpack_pack_nil(&w->pk);
}

typedef struct bad_case {
    const char *label;
    int kind;
    entry_fn fn;
    int expect;
    const char *text; /* expected in err */
} bad_case_t;

START_TEST(test_malformed_entries)
{
    static const bad_case_t cases[] = {
        {"dtype", PETAL_RECORD_ARRAYS, e_bad_dtype, PETAL_EPROTO, "unknown dtype 12"},
        {"ndim", PETAL_RECORD_ARRAYS, e_ndim_17, PETAL_EPROTO, "17 dimensions"},
        {"overflow", PETAL_RECORD_ARRAYS, e_shape_overflow, PETAL_EMSGSIZE, "elements"},
        {"bool", PETAL_RECORD_ARRAYS, e_bool_two, PETAL_EPROTO, "not 0 or 1"},
        {"pad", PETAL_RECORD_ARRAYS, e_big_pad, PETAL_EPROTO, "padding 64"},
        {"padbytes", PETAL_RECORD_ARRAYS, e_nonzero_pad, PETAL_EPROTO, "padding byte 1"},
        {"hugebin", PETAL_RECORD_ARRAYS, e_huge_bin, PETAL_EPROTO, "truncated array data"},
        {"metricbool", PETAL_RECORD_METRICS, e_metric_bool, PETAL_EPROTO, "cannot hold a bool"},
        {"valuetype", PETAL_RECORD_CONFIG, e_unknown_value_type, PETAL_EPROTO,
         "unknown value type 12"},
        {"payload", PETAL_RECORD_CONFIG, e_wrong_payload, PETAL_EPROTO,
         "expected float for double value, got str"},
        {"nul", PETAL_RECORD_CONFIG, e_nul_string, PETAL_EPROTO, "NUL"},
        {"hugestr", PETAL_RECORD_CONFIG, e_huge_string, PETAL_EMSGSIZE, "string value"},
        {"hugelist", PETAL_RECORD_METRICS, e_huge_list, PETAL_EMSGSIZE, "list"},
        {"int64", PETAL_RECORD_METRICS, e_int_out_of_range, PETAL_EPROTO, "int64 range"},
        {"uint64", PETAL_RECORD_METRICS, e_negative_uint, PETAL_EPROTO, "non-negative"},
        {"nil", PETAL_RECORD_CONFIG, e_nil_value, PETAL_EPROTO, "got nil"},
    };
    char err[ERR_CAP];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = decode_one_entry(cases[i].kind, cases[i].fn, NULL, err);
        ck_assert_msg(rc == cases[i].expect, "%s: got %d (%s)", cases[i].label, rc, err);
        ck_assert_msg(strstr(err, cases[i].text) != NULL, "%s: '%s' not in '%s'", cases[i].label,
                      cases[i].text, err);
        ck_assert_msg(strstr(err, "in record 'r'") != NULL, "%s: no context in '%s'",
                      cases[i].label, err);
    }
}
END_TEST

START_TEST(test_limits_each_exceeded)
{
    pt_codec_limits_t lim;
    char err[ERR_CAP];
    mp_t w;

    pt_codec_limits_default(&lim);
    ck_assert_uint_eq(lim.max_ndim, PETAL_MAX_NDIM);
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_ARRAYS, e_many_elements, &lim, err), 0);

    lim.max_array_elements = 999999;
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_ARRAYS, e_many_elements, &lim, err),
                     PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "limit of 999999 elements"));

    pt_codec_limits_default(&lim);
    lim.max_ndim = 1;
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_ARRAYS, e_many_elements, &lim, err),
                     PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "2 dimensions, over the limit of 1"));

    pt_codec_limits_default(&lim);
    lim.max_string_bytes = 16;
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_CONFIG, e_long_string, &lim, err),
                     PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "string value of 20 bytes exceeds the limit of 16 bytes"));

    pt_codec_limits_default(&lim);
    lim.max_list_elements = 10;
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_METRICS, e_long_list, &lim, err),
                     PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "20 entries, over the limit of 10"));
    lim.max_list_elements = 20;
    ck_assert_int_eq(decode_one_entry(PETAL_RECORD_METRICS, e_long_list, &lim, err), 0);

    /* records in a dict, entries in a record, the frame */
    pt_codec_limits_default(&lim);
    lim.max_records = 2;
    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 3);
    for (int i = 0; i < 3; i++) {
        char name[] = {'r', (char)('0' + i), 0};
        mp_str(&w, name);
        msgpack_pack_array(&w.pk, 2);
        msgpack_pack_uint8(&w.pk, PETAL_RECORD_CONFIG);
        msgpack_pack_map(&w.pk, 0);
    }
    ck_assert_int_eq(mp_decode(&w, &lim, err), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "recorddict has 3 entries, over the limit of 2"));

    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "m");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, PETAL_RECORD_METRICS);
    msgpack_pack_map(&w.pk, 3);
    for (int i = 0; i < 3; i++) {
        char name[] = {'k', (char)('0' + i), 0};
        mp_str(&w, name);
        msgpack_pack_array(&w.pk, 2);
        msgpack_pack_uint8(&w.pk, PETAL_VALUE_INT64);
        msgpack_pack_int8(&w.pk, 1);
    }
    ck_assert_int_eq(mp_decode(&w, &lim, err), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "record 'm': record entries has 3 entries"));

    pt_codec_limits_default(&lim);
    lim.max_frame_bytes = 10;
    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 0);
    ck_assert_int_eq(mp_decode(&w, &lim, err), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "exceed the limit of 10 bytes"));

    /* a name longer than max_string_bytes */
    pt_codec_limits_default(&lim);
    lim.max_string_bytes = 4;
    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "a-long-record-name");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, PETAL_RECORD_CONFIG);
    msgpack_pack_map(&w.pk, 0);
    ck_assert_int_eq(mp_decode(&w, &lim, err), PETAL_EMSGSIZE);
    ck_assert_ptr_nonnull(strstr(err, "record name of 18 bytes"));
}
END_TEST

START_TEST(test_duplicates_refused)
{
    char err[ERR_CAP];
    mp_t w;
    uint64_t s[] = {1};

    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 2);
    for (int i = 0; i < 2; i++) {
        mp_str(&w, "same");
        msgpack_pack_array(&w.pk, 2);
        msgpack_pack_uint8(&w.pk, (uint8_t)(i == 0 ? PETAL_RECORD_CONFIG : PETAL_RECORD_ARRAYS));
        msgpack_pack_map(&w.pk, 0);
    }
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "record 'same': duplicate record name"));

    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "p");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, PETAL_RECORD_ARRAYS);
    msgpack_pack_map(&w.pk, 2);
    mp_str(&w, "w");
    mp_array(&w, PETAL_DTYPE_UINT8, 1, s, 1);
    mp_str(&w, "w");
    mp_array(&w, PETAL_DTYPE_UINT8, 1, s, 1);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "array 'w' in record 'p': duplicate name"));

    /* an empty name */
    mp_message_head(&w);
    msgpack_pack_map(&w.pk, 1);
    mp_str(&w, "");
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_uint8(&w.pk, PETAL_RECORD_ARRAYS);
    msgpack_pack_map(&w.pk, 0);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "empty record name"));
}
END_TEST

START_TEST(test_envelope_errors)
{
    char err[ERR_CAP];
    mp_t w;

    /* not an array at all */
    ck_assert_int_eq(decode_bytes("\xc0", 1, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "expected array for top-level array, got nil at byte 0"));
    ck_assert_int_eq(decode_bytes("", 0, NULL, err), PETAL_EPROTO);

    /* wrong tag */
    mp_init(&w);
    msgpack_pack_array(&w.pk, 5);
    mp_str(&w, "flower.message");
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "format tag is not \"petal.message\""));

    /* a future version */
    mp_init(&w);
    msgpack_pack_array(&w.pk, 5);
    mp_str(&w, "petal.message");
    msgpack_pack_uint8(&w.pk, 2);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "unsupported encoding version 2 (this build reads 1)"));

    /* metadata: a too long message type */
    mp_init(&w);
    msgpack_pack_array(&w.pk, 5);
    mp_str(&w, "petal.message");
    msgpack_pack_uint8(&w.pk, 1);
    msgpack_pack_array(&w.pk, 9);
    for (int i = 0; i < 5; i++) {
        msgpack_pack_uint8(&w.pk, 1);
    }
    msgpack_pack_double(&w.pk, 1);
    msgpack_pack_double(&w.pk, 1);
    mp_str(&w, "");
    mp_str(&w, "0123456789012345678901234567890123456789012345678901234567890123456789");
    msgpack_pack_uint8(&w.pk, 1);
    msgpack_pack_map(&w.pk, 0);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "metadata: message_type has 70 bytes, the most is 63"));

    /* metadata: a negative node id */
    mp_init(&w);
    msgpack_pack_array(&w.pk, 5);
    mp_str(&w, "petal.message");
    msgpack_pack_uint8(&w.pk, 1);
    msgpack_pack_array(&w.pk, 9);
    msgpack_pack_int8(&w.pk, -1);
    for (int i = 0; i < 8; i++) {
        msgpack_pack_uint8(&w.pk, 1);
    }
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_msg(strstr(err, "non-negative integer for run_id") != NULL, "got: %s", err);

    /* a body kind that does not exist, and a positive error code */
    mp_message_head(&w);
    w.sb.size--; /* drop body kind 1 */
    msgpack_pack_uint8(&w.pk, 3);
    msgpack_pack_map(&w.pk, 0);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "unknown body kind 3"));

    mp_message_head(&w);
    w.sb.size--;
    msgpack_pack_uint8(&w.pk, 2);
    msgpack_pack_array(&w.pk, 2);
    msgpack_pack_int32(&w.pk, 5);
    mp_str(&w, "nope");
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "error code 5 is not a negative int32"));

    /* a huge declared map count in a tiny input */
    mp_message_head(&w);
    msgpack_sbuffer_write(&w.sb, "\xdf\xff\xff\xff\xff", 5);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EMSGSIZE);
    mp_message_head(&w);
    msgpack_sbuffer_write(&w.sb, "\xdf\x00\x00\x01\x00", 5);
    ck_assert_int_eq(mp_decode(&w, NULL, err), PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(err, "declares 256 entries"));
}
END_TEST

START_TEST(test_decode_argument_checks)
{
    pt_buf_t *b = pt_buf_alloc(16, 1);
    petal_message_t *m = NULL;
    char err[ERR_CAP];

    ck_assert_int_eq(pt_codec_decode(b, 8, 16, NULL, &m, NULL, err, ERR_CAP), PETAL_EINVAL);
    ck_assert_str_ne(err, "");
    ck_assert_int_eq(pt_codec_decode(NULL, 0, 0, NULL, &m, NULL, err, ERR_CAP), PETAL_EINVAL);
    ck_assert_int_eq(pt_codec_decode(b, 0, 16, NULL, &m, NULL, NULL, 0), PETAL_EPROTO);
    ck_assert_ptr_null(m);
    pt_buf_release(b);
}
END_TEST

/* A message whose "arrays" record holds one uint8 array "w" of `n` bytes that all point at one
 * small static block: encoding only references array bytes, so sizes past 4 GiB cost nothing. */
static petal_message_t *
message_with_array_of(uint64_t n)
{
    static unsigned char block[64] __attribute__((aligned(64)));
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = d != NULL ? petal_recorddict_add_arrays(d, "arrays") : NULL;
    uint64_t shape[1] = {n};
    ck_assert_ptr_nonnull(ar);
    ck_assert_ptr_nonnull(
        petal_arrayrecord_add_wrap(ar, "w", PETAL_DTYPE_UINT8, 1, shape, block, NULL, NULL));
    petal_message_t *m = petal_message_alloc(d, "train", 1, "1", 60.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

/* What the SuperNode and the SuperLink check before sending a reply or an instruction: an
 * array over the 4 GiB - 1 bytes of one msgpack bin, or a message over the process's
 * max_message, is refused with a sentence that names it (instead of failing at the send). */
START_TEST(test_check_message_wire_limits)
{
    char why[256] = "";
    petal_message_t *m = message_with_array_of(UINT64_C(5) << 30);
    ck_assert_int_eq(pt_stream_check_message(m, why, sizeof(why)), PETAL_EMSGSIZE);
    ck_assert_msg(strstr(why, "array 'w' in 'arrays' has 5368709120 bytes, over the wire limit "
                              "of 4 GiB - 1 bytes for one array") != NULL,
                  "why: %s", why);
    petal_message_free(m);

    m = message_with_array_of(UINT32_MAX - 64); /* the largest that fits with any pad */
    why[0] = '\0';
    ck_assert_int_eq(pt_stream_check_message(m, why, sizeof(why)), 0);

    pt_stream_opts_t o;
    pt_stream_opts_default(&o);
    o.max_message = 1 << 20;
    ck_assert_int_eq(pt_stream_set_opts(&o), 0);
    ck_assert_int_eq(pt_stream_check_message(m, why, sizeof(why)), PETAL_EMSGSIZE);
    ck_assert_msg(strstr(why, "over the limit of 1048576 bytes for one message") != NULL, "why: %s",
                  why);
    petal_message_free(m);
    m = message_with_array_of(1000);
    ck_assert_int_eq(pt_stream_check_message(m, why, sizeof(why)), 0);
    petal_message_free(m);
    ck_assert_int_eq(pt_stream_set_opts(NULL), 0);
}
END_TEST

static Suite *
codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *rt = tcase_create("roundtrip");
    TCase *bad = tcase_create("broken");

    tcase_set_timeout(rt, 120);
    tcase_set_timeout(bad, 120);
    tcase_add_test(rt, test_roundtrip_every_type);
    tcase_add_test(rt, test_roundtrip_unaligned_frame_copies);
    tcase_add_test(rt, test_roundtrip_empty_content);
    tcase_add_test(rt, test_roundtrip_error_message);
    tcase_add_test(rt, test_roundtrip_recorddict);
    tcase_add_test(rt, test_roundtrip_large_array);
    tcase_add_test(rt, test_roundtrip_10k_entries);
    tcase_add_test(rt, test_encoding_is_deterministic_and_aligned);
    tcase_add_test(rt, test_encoder_holds_array_buffers);
    tcase_add_test(bad, test_every_truncation_fails_cleanly);
    tcase_add_test(bad, test_byte_flips_never_crash);
    tcase_add_test(bad, test_trailing_bytes_refused);
    tcase_add_test(bad, test_shape_mismatch_error_text);
    tcase_add_test(bad, test_malformed_entries);
    tcase_add_test(bad, test_limits_each_exceeded);
    tcase_add_test(bad, test_duplicates_refused);
    tcase_add_test(bad, test_envelope_errors);
    tcase_add_test(bad, test_decode_argument_checks);
    tcase_add_test(bad, test_check_message_wire_limits);
    suite_add_tcase(s, rt);
    suite_add_tcase(s, bad);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(codec_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
