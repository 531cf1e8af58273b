/* codec.c - msgpack encoding of messages and RecordDicts: zero-copy arrays, strict decoding. */
#include "runtime/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "runtime/message.h"

/*
 * Wire layout, version 1 (docs/protocol.md, "Message encoding"):
 *   message    = [ "petal.message", 1, metadata, body_kind, body ]
 *   metadata   = [ run_id, message_id, src_node_id, dst_node_id, reply_to_message_id,
 *                  ttl, created_at, group_id, message_type ]
 *   body_kind  = 1 (body is a recorddict) | 2 (body is [ code, reason ])
 *   recorddict = { name: [ kind, entries ] }             kind 1 arrays, 2 metrics, 3 config
 *   arrays     = { name: [ dtype, [dims...], pad, bin(pad zero bytes + data) ] }
 *   values     = { name: [ value_type, payload ] }
 *   standalone = [ "petal.recorddict", 1, recorddict ]
 */

#define MESSAGE_TAG "petal.message"
#define RECORDDICT_TAG "petal.recorddict"
#define CODEC_VERSION 1
#define BODY_CONTENT 1
#define BODY_ERROR 2
#define METADATA_FIELDS 9
#define ALIGN 64

void
pt_codec_limits_default(pt_codec_limits_t *l)
{
    l->max_frame_bytes = (uint64_t)1 << 31;    /* 2 GiB, as gRPC's largest message in Flower */
    l->max_records = 65536;                    /* records per dict and entries per record */
    l->max_ndim = PETAL_MAX_NDIM;              /* 16 */
    l->max_array_elements = (uint64_t)1 << 31; /* still bounded by max_frame_bytes */
    l->max_string_bytes = (uint64_t)16 << 20;  /* 16 MiB */
    l->max_list_elements = (uint64_t)1 << 20;  /* 1 Mi */
}

/* ---- Encoding ------------------------------------------------------------------------------ */

typedef struct seg {
    const void *ptr; /* array bytes, or NULL for header bytes at `off` in the sbuffer */
    size_t off;
    size_t len;
} seg_t;

typedef struct enc {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    seg_t *segs;
    size_t nsegs;
    size_t capsegs;
    pt_buf_t **bufs; /* one reference each */
    size_t nbufs;
    size_t capbufs;
    size_t hdr_start;    /* where the current header segment starts in sb */
    uint64_t data_bytes; /* array bytes referenced so far */
} enc_t;

#define PACK(call)                                                                                 \
    do {                                                                                           \
        if ((call) != 0) {                                                                         \
            return PETAL_ENOMEM;                                                                   \
        }                                                                                          \
    } while (0)

static int
enc_push_seg(enc_t *e, const void *ptr, size_t off, size_t len)
{
    if (e->nsegs == e->capsegs) {
        size_t n = e->capsegs != 0 ? e->capsegs * 2 : 8;
        seg_t *s = realloc(e->segs, n * sizeof(*s));
        if (s == NULL) {
            return PETAL_ENOMEM;
        }
        e->segs = s;
        e->capsegs = n;
    }
    e->segs[e->nsegs].ptr = ptr;
    e->segs[e->nsegs].off = off;
    e->segs[e->nsegs].len = len;
    e->nsegs++;
    return 0;
}

static int
enc_hold_buf(enc_t *e, pt_buf_t *b)
{
    if (e->nbufs == e->capbufs) {
        size_t n = e->capbufs != 0 ? e->capbufs * 2 : 8;
        pt_buf_t **nb = realloc(e->bufs, n * sizeof(*nb));
        if (nb == NULL) {
            return PETAL_ENOMEM;
        }
        e->bufs = nb;
        e->capbufs = n;
    }
    pt_buf_hold(b);
    e->bufs[e->nbufs++] = b;
    return 0;
}

static int
pack_string(msgpack_packer *pk, const char *s, size_t len)
{
    PACK(msgpack_pack_str(pk, len));
    PACK(msgpack_pack_str_body(pk, s, len));
    return 0;
}

static int
pack_name(msgpack_packer *pk, const char *s)
{
    return pack_string(pk, s, strlen(s));
}

static int
encode_array(enc_t *e, const petal_array_t *a)
{
    msgpack_packer *pk = &e->pk;
    uint32_t ndim = petal_array_ndim(a);
    const uint64_t *shape = petal_array_shape(a);
    uint64_t nbytes = petal_array_nbytes(a);
    uint64_t end;
    uint32_t pad;
    uint8_t hdr[6 + ALIGN];

    PACK(msgpack_pack_array(pk, 4));
    PACK(msgpack_pack_uint32(pk, (uint32_t)petal_array_dtype(a)));
    PACK(msgpack_pack_array(pk, ndim));
    for (uint32_t i = 0; i < ndim; i++) {
        PACK(msgpack_pack_uint64(pk, shape[i]));
    }
    /* pad (positive fixint), bin32 header, pad zero bytes, then the data at a multiple of 64 */
    end = e->data_bytes + e->sb.size + 6;
    pad = (uint32_t)((ALIGN - end % ALIGN) % ALIGN);
    if (nbytes > UINT32_MAX - pad) {
        return PETAL_EMSGSIZE; /* msgpack bin holds at most 4 GiB - 1 */
    }
    memset(hdr, 0, sizeof(hdr));
    hdr[0] = (uint8_t)pad;
    hdr[1] = 0xc6;
    hdr[2] = (uint8_t)((nbytes + pad) >> 24);
    hdr[3] = (uint8_t)((nbytes + pad) >> 16);
    hdr[4] = (uint8_t)((nbytes + pad) >> 8);
    hdr[5] = (uint8_t)(nbytes + pad);
    PACK(msgpack_sbuffer_write(&e->sb, (const char *)hdr, 6 + pad));
    if (nbytes == 0) {
        return 0;
    }
    if (enc_push_seg(e, NULL, e->hdr_start, e->sb.size - e->hdr_start) != 0 ||
        enc_push_seg(e, petal_array_data(a), 0, (size_t)nbytes) != 0 ||
        enc_hold_buf(e, pt_array_buf(a)) != 0) {
        return PETAL_ENOMEM;
    }
    e->hdr_start = e->sb.size;
    e->data_bytes += nbytes;
    return 0;
}

static int
encode_value(msgpack_packer *pk, const petal_value_t *v)
{
    PACK(msgpack_pack_array(pk, 2));
    PACK(msgpack_pack_uint32(pk, v->type));
    switch (v->type) {
    case PETAL_VALUE_INT64:
        PACK(msgpack_pack_int64(pk, v->as.i64));
        break;
    case PETAL_VALUE_UINT64:
        PACK(msgpack_pack_uint64(pk, v->as.u64));
        break;
    case PETAL_VALUE_DOUBLE:
        PACK(msgpack_pack_double(pk, v->as.f64));
        break;
    case PETAL_VALUE_BOOL:
        PACK(v->as.boolean ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        break;
    case PETAL_VALUE_STRING:
        PACK(pack_string(pk, v->as.str, (size_t)v->len));
        break;
    case PETAL_VALUE_BYTES:
        PACK(msgpack_pack_bin(pk, (size_t)v->len));
        PACK(msgpack_pack_bin_body(pk, v->as.bytes, (size_t)v->len));
        break;
    case PETAL_VALUE_INT64_LIST:
        PACK(msgpack_pack_array(pk, (size_t)v->len));
        for (uint64_t i = 0; i < v->len; i++) {
            PACK(msgpack_pack_int64(pk, v->as.i64s[i]));
        }
        break;
    case PETAL_VALUE_UINT64_LIST:
        PACK(msgpack_pack_array(pk, (size_t)v->len));
        for (uint64_t i = 0; i < v->len; i++) {
            PACK(msgpack_pack_uint64(pk, v->as.u64s[i]));
        }
        break;
    case PETAL_VALUE_DOUBLE_LIST:
        PACK(msgpack_pack_array(pk, (size_t)v->len));
        for (uint64_t i = 0; i < v->len; i++) {
            PACK(msgpack_pack_double(pk, v->as.f64s[i]));
        }
        break;
    case PETAL_VALUE_BOOL_LIST:
        PACK(msgpack_pack_array(pk, (size_t)v->len));
        for (uint64_t i = 0; i < v->len; i++) {
            PACK(v->as.bools[i] ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
        }
        break;
    case PETAL_VALUE_STRING_LIST:
        PACK(msgpack_pack_array(pk, (size_t)v->len));
        for (uint64_t i = 0; i < v->len; i++) {
            PACK(pack_name(pk, v->as.strs[i]));
        }
        break;
    default:
        return PETAL_EINVAL;
    }
    return 0;
}

static int
encode_recorddict(enc_t *e, const petal_recorddict_t *d)
{
    msgpack_packer *pk = &e->pk;
    uint64_t n = petal_recorddict_count(d);
    int rc;

    PACK(msgpack_pack_map(pk, (size_t)n));
    for (uint64_t i = 0; i < n; i++) {
        const char *name = petal_recorddict_name_at(d, i);
        int32_t kind = petal_recorddict_kind_at(d, i);

        PACK(pack_name(pk, name));
        PACK(msgpack_pack_array(pk, 2));
        PACK(msgpack_pack_uint32(pk, (uint32_t)kind));
        if (kind == PETAL_RECORD_ARRAYS) {
            const petal_arrayrecord_t *r = petal_recorddict_arrays(d, name);
            uint64_t m = petal_arrayrecord_count(r);

            PACK(msgpack_pack_map(pk, (size_t)m));
            for (uint64_t j = 0; j < m; j++) {
                PACK(pack_name(pk, petal_arrayrecord_name_at(r, j)));
                rc = encode_array(e, petal_arrayrecord_at(r, j));
                if (rc != 0) {
                    return rc;
                }
            }
        } else if (kind == PETAL_RECORD_METRICS) {
            const petal_metricrecord_t *r = petal_recorddict_metrics(d, name);
            uint64_t m = petal_metricrecord_count(r);

            PACK(msgpack_pack_map(pk, (size_t)m));
            for (uint64_t j = 0; j < m; j++) {
                const char *vname;
                petal_value_t v;

                PACK(petal_metricrecord_at(r, j, &vname, &v));
                PACK(pack_name(pk, vname));
                rc = encode_value(pk, &v);
                if (rc != 0) {
                    return rc;
                }
            }
        } else {
            const petal_configrecord_t *r = petal_recorddict_config(d, name);
            uint64_t m = petal_configrecord_count(r);

            PACK(msgpack_pack_map(pk, (size_t)m));
            for (uint64_t j = 0; j < m; j++) {
                const char *vname;
                petal_value_t v;

                PACK(petal_configrecord_at(r, j, &vname, &v));
                PACK(pack_name(pk, vname));
                rc = encode_value(pk, &v);
                if (rc != 0) {
                    return rc;
                }
            }
        }
    }
    return 0;
}

static void
enc_free(enc_t *e)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < e->nbufs; i++) {
        pt_buf_release(e->bufs[i]);
    }
    free(e->bufs);
    free(e->segs);
    msgpack_sbuffer_destroy(&e->sb);
    free(e);
}

static enc_t *
enc_new(void)
{
    enc_t *e = calloc(1, sizeof(*e));

    if (e == NULL) {
        return NULL;
    }
    msgpack_sbuffer_init(&e->sb);
    msgpack_packer_init(&e->pk, &e->sb, msgpack_sbuffer_write);
    return e;
}

/* Closes the last header segment and turns segments into iovecs; consumes e on success. */
static int
enc_finish(enc_t *e, pt_encoded_t *out)
{
    pt_iov_t *iov;
    size_t total = 0;

    if (e->sb.size > e->hdr_start &&
        enc_push_seg(e, NULL, e->hdr_start, e->sb.size - e->hdr_start) != 0) {
        return PETAL_ENOMEM;
    }
    iov = malloc((e->nsegs != 0 ? e->nsegs : 1) * sizeof(*iov));
    if (iov == NULL) {
        return PETAL_ENOMEM;
    }
    for (size_t i = 0; i < e->nsegs; i++) {
        iov[i].base = e->segs[i].ptr != NULL ? e->segs[i].ptr : e->sb.data + e->segs[i].off;
        iov[i].len = e->segs[i].len;
        total += e->segs[i].len;
    }
    out->iov = iov;
    out->niov = e->nsegs;
    out->total = total;
    out->copied = 0;
    out->internal = e;
    free(e->segs);
    e->segs = NULL;
    e->nsegs = e->capsegs = 0;
    return 0;
}

static int
encode_metadata(msgpack_packer *pk, const petal_metadata_t *md)
{
    size_t glen = strnlen(md->group_id, PETAL_GROUP_ID_MAX);
    size_t tlen = strnlen(md->message_type, PETAL_MESSAGE_TYPE_MAX);

    if (glen == PETAL_GROUP_ID_MAX || tlen == PETAL_MESSAGE_TYPE_MAX) {
        return PETAL_EINVAL; /* not NUL-terminated */
    }
    PACK(msgpack_pack_array(pk, METADATA_FIELDS));
    PACK(msgpack_pack_uint64(pk, md->run_id));
    PACK(msgpack_pack_uint64(pk, md->message_id));
    PACK(msgpack_pack_uint64(pk, md->src_node_id));
    PACK(msgpack_pack_uint64(pk, md->dst_node_id));
    PACK(msgpack_pack_uint64(pk, md->reply_to_message_id));
    PACK(msgpack_pack_double(pk, md->ttl));
    PACK(msgpack_pack_double(pk, md->created_at));
    PACK(pack_string(pk, md->group_id, glen));
    PACK(pack_string(pk, md->message_type, tlen));
    return 0;
}

static int
encode_message(enc_t *e, const petal_message_t *m)
{
    msgpack_packer *pk = &e->pk;
    const petal_recorddict_t *content = petal_message_content(m);
    int rc;

    PACK(msgpack_pack_array(pk, 5));
    PACK(pack_name(pk, MESSAGE_TAG));
    PACK(msgpack_pack_uint32(pk, CODEC_VERSION));
    rc = encode_metadata(pk, pt_message_md_const(m));
    if (rc != 0) {
        return rc;
    }
    if (content == NULL && petal_message_error_code(m) != 0) {
        const char *reason = petal_message_error_reason(m);

        PACK(msgpack_pack_uint32(pk, BODY_ERROR));
        PACK(msgpack_pack_array(pk, 2));
        PACK(msgpack_pack_int32(pk, petal_message_error_code(m)));
        return pack_name(pk, reason);
    }
    PACK(msgpack_pack_uint32(pk, BODY_CONTENT));
    return encode_recorddict(e, content); /* NULL content encodes as an empty map */
}

int
pt_codec_encode(const petal_message_t *m, pt_encoded_t *out)
{
    enc_t *e;
    int rc;

    if (m == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    e = enc_new();
    if (e == NULL) {
        return PETAL_ENOMEM;
    }
    rc = encode_message(e, m);
    if (rc == 0) {
        rc = enc_finish(e, out);
    }
    if (rc != 0) {
        enc_free(e);
    }
    return rc;
}

int
pt_codec_encode_recorddict(const petal_recorddict_t *d, pt_encoded_t *out)
{
    enc_t *e;
    int rc = PETAL_ENOMEM;

    if (d == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    e = enc_new();
    if (e == NULL) {
        return PETAL_ENOMEM;
    }
    if (msgpack_pack_array(&e->pk, 3) == 0 && pack_name(&e->pk, RECORDDICT_TAG) == 0 &&
        msgpack_pack_uint32(&e->pk, CODEC_VERSION) == 0) {
        rc = encode_recorddict(e, d);
    }
    if (rc == 0) {
        rc = enc_finish(e, out);
    }
    if (rc != 0) {
        enc_free(e);
    }
    return rc;
}

void
pt_encoded_fini(pt_encoded_t *e)
{
    if (e == NULL) {
        return;
    }
    enc_free(e->internal);
    free(e->iov);
    memset(e, 0, sizeof(*e));
}

pt_buf_t *
pt_encoded_flatten(const pt_encoded_t *e)
{
    pt_buf_t *b;
    char *p;

    if (e == NULL) {
        return NULL;
    }
    b = pt_buf_alloc(e->total, 0);
    if (b == NULL) {
        return NULL;
    }
    p = pt_buf_data(b);
    for (size_t i = 0; i < e->niov; i++) {
        if (e->iov[i].len > 0) {
            memcpy(p, e->iov[i].base, e->iov[i].len);
            p += e->iov[i].len;
        }
    }
    return b;
}

/* ---- Decoding ------------------------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p; /* the encoding */
    size_t len;
    size_t pos;
    pt_buf_t *buf;
    size_t base; /* offset of p in buf */
    pt_codec_limits_t lim;
    uint64_t copied;
    char *err;
    size_t errcap;
    const char *where; /* "metadata", "message", ... when not inside a record */
    char *rec;         /* current record name (NUL-terminated), or NULL */
    size_t rec_cap;
    char *ent; /* current entry name, or NULL */
    size_t ent_cap;
    int in_rec;
    int in_ent;
    const char *ent_kind; /* "array" or "value" */
} rd_t;

/* Writes a printable, bounded copy of a wire name for error texts. */
static void
quote_name(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    size_t i;

    for (i = 0; s[i] != '\0' && n + 1 < cap && i < 48; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[n++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (s[i] != '\0' && n + 4 < cap) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }
    dst[n] = '\0';
}

__attribute__((format(printf, 4, 5))) static int
fail(rd_t *r, int code, size_t at, const char *fmt, ...)
{
    char what[256];
    char ctx[320];
    char qr[64];
    char qe[64];
    va_list ap;

    if (r->err == NULL || r->errcap == 0) {
        return code;
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (r->in_rec && r->in_ent) {
        quote_name(qr, sizeof(qr), r->rec);
        quote_name(qe, sizeof(qe), r->ent);
        snprintf(ctx, sizeof(ctx), "%s '%s' in record '%s'", r->ent_kind, qe, qr);
    } else if (r->in_rec) {
        quote_name(qr, sizeof(qr), r->rec);
        snprintf(ctx, sizeof(ctx), "record '%s'", qr);
    } else {
        snprintf(ctx, sizeof(ctx), "%s", r->where);
    }
    snprintf(r->err, r->errcap, "%s: %s at byte %zu", ctx, what, at);
    return code;
}

static int
oom(rd_t *r)
{
    return fail(r, PETAL_ENOMEM, r->pos, "out of memory");
}

static const char *
type_name(uint8_t b)
{
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
        return "int";
    }
    if (b <= 0x8f || b == 0xde || b == 0xdf) {
        return "map";
    }
    if (b <= 0x9f || b == 0xdc || b == 0xdd) {
        return "array";
    }
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb)) {
        return "str";
    }
    switch (b) {
    case 0xc0:
        return "nil";
    case 0xc2:
    case 0xc3:
        return "bool";
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return "bin";
    case 0xca:
    case 0xcb:
        return "float";
    case 0xc1:
        return "reserved byte 0xc1";
    default:
        return "ext";
    }
}

static size_t
left(const rd_t *r)
{
    return r->len - r->pos;
}

static int
need(rd_t *r, size_t n, const char *what)
{
    if (left(r) < n) {
        return fail(r, PETAL_EPROTO, r->pos, "truncated %s: needs %zu bytes, %zu left", what, n,
                    left(r));
    }
    return 0;
}

static uint64_t
be(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* Reads a tag byte and `n` following big-endian bytes as a length/value. */
static int
rd_tagged(rd_t *r, int n, uint64_t *v, const char *what)
{
    int rc = need(r, 1 + (size_t)n, what);

    if (rc != 0) {
        return rc;
    }
    *v = be(r->p + r->pos + 1, n);
    r->pos += 1 + (size_t)n;
    return 0;
}

static int
wrong_type(rd_t *r, const char *expected, const char *what)
{
    return fail(r, PETAL_EPROTO, r->pos, "expected %s for %s, got %s", expected, what,
                type_name(r->p[r->pos]));
}

/* Any msgpack integer: *neg set for a negative value (then *i), else *u. */
static int
rd_integer(rd_t *r, int *neg, uint64_t *u, int64_t *i, const char *what)
{
    uint64_t v;
    uint8_t b;
    int rc;

    rc = need(r, 1, what);
    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    *neg = 0;
    if (b <= 0x7f) {
        *u = b;
        r->pos++;
        return 0;
    }
    if (b >= 0xe0) {
        *neg = 1;
        *i = (int8_t)b;
        r->pos++;
        return 0;
    }
    if (b >= 0xcc && b <= 0xcf) {
        rc = rd_tagged(r, 1 << (b - 0xcc), u, what);
        return rc;
    }
    if (b >= 0xd0 && b <= 0xd3) {
        int n = 1 << (b - 0xd0);
        int64_t s;

        rc = rd_tagged(r, n, &v, what);
        if (rc != 0) {
            return rc;
        }
        if (n < 8 && (v >> (8 * n - 1)) != 0) {
            v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        }
        memcpy(&s, &v, sizeof(s));
        if (s < 0) {
            *neg = 1;
            *i = s;
        } else {
            *u = (uint64_t)s;
        }
        return 0;
    }
    return wrong_type(r, "int", what);
}

static int
rd_uint(rd_t *r, uint64_t *out, const char *what)
{
    size_t at = r->pos;
    int neg;
    uint64_t u = 0;
    int64_t i = 0;
    int rc = rd_integer(r, &neg, &u, &i, what);

    if (rc != 0) {
        return rc;
    }
    if (neg) {
        return fail(r, PETAL_EPROTO, at, "expected a non-negative integer for %s, got %lld", what,
                    (long long)i);
    }
    *out = u;
    return 0;
}

static int
rd_int(rd_t *r, int64_t *out, const char *what)
{
    size_t at = r->pos;
    int neg;
    uint64_t u = 0;
    int64_t i = 0;
    int rc = rd_integer(r, &neg, &u, &i, what);

    if (rc != 0) {
        return rc;
    }
    if (!neg && u > (uint64_t)INT64_MAX) {
        return fail(r, PETAL_EPROTO, at, "integer %llu for %s is out of the int64 range",
                    (unsigned long long)u, what);
    }
    *out = neg ? i : (int64_t)u;
    return 0;
}

static int
rd_f64(rd_t *r, double *out, const char *what)
{
    uint64_t v;
    uint8_t b;
    int rc = need(r, 1, what);

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (b == 0xcb) {
        rc = rd_tagged(r, 8, &v, what);
        if (rc == 0) {
            memcpy(out, &v, sizeof(*out));
        }
        return rc;
    }
    if (b == 0xca) {
        uint32_t v32;
        float f;

        rc = rd_tagged(r, 4, &v, what);
        if (rc == 0) {
            v32 = (uint32_t)v;
            memcpy(&f, &v32, sizeof(f));
            *out = f;
        }
        return rc;
    }
    return wrong_type(r, "float", what);
}

static int
rd_bool(rd_t *r, int *out, const char *what)
{
    int rc = need(r, 1, what);

    if (rc != 0) {
        return rc;
    }
    if (r->p[r->pos] != 0xc2 && r->p[r->pos] != 0xc3) {
        return wrong_type(r, "bool", what);
    }
    *out = r->p[r->pos] == 0xc3;
    r->pos++;
    return 0;
}

/* A str of at most `max` bytes, NUL-free; *s points into the input (not NUL-terminated). */
static int
rd_str(rd_t *r, uint64_t max, const char **s, size_t *len, const char *what)
{
    size_t at = r->pos;
    uint64_t n = 0;
    uint8_t b;
    int rc = need(r, 1, what);

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (b >= 0xa0 && b <= 0xbf) {
        n = b & 0x1f;
        r->pos++;
    } else if (b >= 0xd9 && b <= 0xdb) {
        rc = rd_tagged(r, 1 << (b - 0xd9), &n, what);
        if (rc != 0) {
            return rc;
        }
    } else {
        return wrong_type(r, "str", what);
    }
    if (n > max) {
        return fail(r, PETAL_EMSGSIZE, at, "%s of %llu bytes exceeds the limit of %llu bytes", what,
                    (unsigned long long)n, (unsigned long long)max);
    }
    if (n > left(r)) {
        return fail(r, PETAL_EPROTO, at, "truncated %s: declares %llu bytes, %zu left", what,
                    (unsigned long long)n, left(r));
    }
    if (n > 0 && memchr(r->p + r->pos, 0, (size_t)n) != NULL) {
        return fail(r, PETAL_EPROTO, at, "%s contains a NUL byte", what);
    }
    *s = (const char *)r->p + r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

/* A bin of at most `max` bytes; *off is where its bytes start in the input. */
static int
rd_bin(rd_t *r, uint64_t max, size_t *off, size_t *len, const char *what)
{
    size_t at = r->pos;
    uint64_t n = 0;
    uint8_t b;
    int rc = need(r, 1, what);

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (b < 0xc4 || b > 0xc6) {
        return wrong_type(r, "bin", what);
    }
    rc = rd_tagged(r, 1 << (b - 0xc4), &n, what);
    if (rc != 0) {
        return rc;
    }
    if (n > max) {
        return fail(r, PETAL_EMSGSIZE, at, "%s of %llu bytes exceeds the limit of %llu bytes", what,
                    (unsigned long long)n, (unsigned long long)max);
    }
    if (n > left(r)) {
        return fail(r, PETAL_EPROTO, at, "truncated %s: declares %llu bytes, %zu left", what,
                    (unsigned long long)n, left(r));
    }
    *off = r->pos;
    *len = (size_t)n;
    r->pos += (size_t)n;
    return 0;
}

/* An array (map when `map`) header with at most `max` elements (pairs). */
static int
rd_container(rd_t *r, int map, uint64_t max, uint64_t *count, const char *what)
{
    size_t at = r->pos;
    uint64_t n = 0;
    uint8_t b;
    uint8_t fix = map ? 0x80 : 0x90;
    uint8_t x16 = map ? 0xde : 0xdc;
    int rc = need(r, 1, what);

    if (rc != 0) {
        return rc;
    }
    b = r->p[r->pos];
    if (b >= fix && b <= fix + 0x0f) {
        n = b & 0x0f;
        r->pos++;
    } else if (b == x16 || b == x16 + 1) {
        rc = rd_tagged(r, b == x16 ? 2 : 4, &n, what);
        if (rc != 0) {
            return rc;
        }
    } else {
        return wrong_type(r, map ? "map" : "array", what);
    }
    if (n > max) {
        return fail(r, PETAL_EMSGSIZE, at, "%s has %llu entries, over the limit of %llu", what,
                    (unsigned long long)n, (unsigned long long)max);
    }
    /* Every element takes at least one byte: refuse counts the input cannot hold before
     * anything is allocated for them. */
    if (n > left(r) / (map ? 2 : 1)) {
        return fail(r, PETAL_EPROTO, at, "truncated %s: declares %llu entries, %zu bytes left",
                    what, (unsigned long long)n, left(r));
    }
    *count = n;
    return 0;
}

static int
rd_array_exact(rd_t *r, uint64_t expected, const char *what)
{
    size_t at = r->pos;
    uint64_t n = 0;
    int rc = rd_container(r, 0, UINT64_MAX, &n, what);

    if (rc != 0) {
        return rc;
    }
    if (n != expected) {
        return fail(r, PETAL_EPROTO, at, "%s has %llu elements, expected %llu", what,
                    (unsigned long long)n, (unsigned long long)expected);
    }
    return 0;
}

/* Reads a record or entry name into *dst (grown as needed), NUL-terminated. */
static int
rd_name(rd_t *r, char **dst, size_t *cap, const char *what)
{
    size_t at = r->pos;
    const char *s = NULL;
    size_t len = 0;
    int rc = rd_str(r, r->lim.max_string_bytes, &s, &len, what);

    if (rc != 0) {
        return rc;
    }
    if (len == 0) {
        return fail(r, PETAL_EPROTO, at, "empty %s", what);
    }
    if (len + 1 > *cap) {
        char *n = realloc(*dst, len + 1);
        if (n == NULL) {
            return oom(r);
        }
        *dst = n;
        *cap = len + 1;
    }
    memcpy(*dst, s, len);
    (*dst)[len] = '\0';
    return 0;
}

static int
decode_array(rd_t *r, petal_arrayrecord_t *rec)
{
    uint64_t dtype;
    uint64_t ndim;
    uint64_t shape[PETAL_MAX_NDIM];
    uint64_t numel = 1;
    uint64_t pad;
    uint64_t nbytes;
    uint32_t size;
    uint64_t max_ndim = r->lim.max_ndim < PETAL_MAX_NDIM ? r->lim.max_ndim : PETAL_MAX_NDIM;
    size_t at;
    size_t off;
    size_t binlen;
    int zero = 0;
    int rc;

    if ((rc = rd_array_exact(r, 4, "array")) != 0) {
        return rc;
    }
    at = r->pos;
    if ((rc = rd_uint(r, &dtype, "dtype")) != 0) {
        return rc;
    }
    size = dtype <= INT32_MAX ? petal_dtype_size((int32_t)dtype) : 0;
    if (size == 0) {
        return fail(r, PETAL_EPROTO, at, "unknown dtype %llu", (unsigned long long)dtype);
    }
    at = r->pos;
    if ((rc = rd_container(r, 0, UINT64_MAX, &ndim, "shape")) != 0) {
        return rc;
    }
    if (ndim > max_ndim) {
        return fail(r, ndim > PETAL_MAX_NDIM ? PETAL_EPROTO : PETAL_EMSGSIZE, at,
                    "shape has %llu dimensions, over the limit of %llu", (unsigned long long)ndim,
                    (unsigned long long)max_ndim);
    }
    for (uint64_t i = 0; i < ndim; i++) {
        if ((rc = rd_uint(r, &shape[i], "shape dimension")) != 0) {
            return rc;
        }
    }
    for (uint64_t i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            zero = 1;
        }
    }
    for (uint64_t i = 0; i < ndim && !zero; i++) {
        if (__builtin_mul_overflow(numel, shape[i], &numel) || numel > r->lim.max_array_elements) {
            return fail(r, PETAL_EMSGSIZE, at, "shape has more than the limit of %llu elements",
                        (unsigned long long)r->lim.max_array_elements);
        }
    }
    if (zero) {
        numel = 0;
    }
    if (__builtin_mul_overflow(numel, size, &nbytes)) {
        return fail(r, PETAL_EMSGSIZE, at, "shape of %llu elements is too large",
                    (unsigned long long)numel);
    }
    at = r->pos;
    if ((rc = rd_uint(r, &pad, "padding")) != 0) {
        return rc;
    }
    if (pad >= ALIGN) {
        return fail(r, PETAL_EPROTO, at, "padding %llu is not below %d", (unsigned long long)pad,
                    ALIGN);
    }
    at = r->pos;
    if ((rc = rd_bin(r, UINT64_MAX, &off, &binlen, "array data")) != 0) {
        return rc;
    }
    if (binlen < pad) {
        return fail(r, PETAL_EPROTO, at, "padding %llu exceeds the %zu data bytes",
                    (unsigned long long)pad, binlen);
    }
    if (binlen - pad != nbytes) {
        return fail(r, PETAL_EPROTO, at, "shape product %llu does not match %zu data bytes for %s",
                    (unsigned long long)numel, binlen - (size_t)pad,
                    petal_dtype_name((int32_t)dtype));
    }
    for (uint64_t i = 0; i < pad; i++) {
        if (r->p[off + i] != 0) {
            return fail(r, PETAL_EPROTO, at, "padding byte %llu is not zero",
                        (unsigned long long)i);
        }
    }
    off += (size_t)pad;
    if (dtype == PETAL_DTYPE_BOOL) {
        for (size_t i = 0; i < nbytes; i++) {
            if (r->p[off + i] > 1) {
                return fail(r, PETAL_EPROTO, at, "bool element %zu is %u, not 0 or 1", i,
                            r->p[off + i]);
            }
        }
    }
    if (((uintptr_t)(r->p + off)) % size == 0) {
        if (pt_arrayrecord_add_view(rec, r->ent, (int32_t)dtype, (uint32_t)ndim, shape, r->buf,
                                    r->base + off) == NULL) {
            return oom(r);
        }
    } else {
        /* The frame was not received at an aligned address: views would be misaligned. */
        petal_array_t *a =
            petal_arrayrecord_add(rec, r->ent, (int32_t)dtype, (uint32_t)ndim, shape);
        if (a == NULL) {
            return oom(r);
        }
        if (nbytes > 0) {
            memcpy(petal_array_data_mut(a), r->p + off, (size_t)nbytes);
        }
        r->copied += nbytes;
    }
    return 0;
}

static int
is_metric_type(uint64_t t)
{
    return t == PETAL_VALUE_INT64 || t == PETAL_VALUE_UINT64 || t == PETAL_VALUE_DOUBLE ||
           t == PETAL_VALUE_INT64_LIST || t == PETAL_VALUE_UINT64_LIST ||
           t == PETAL_VALUE_DOUBLE_LIST;
}

static const char *
value_type_name(uint64_t t)
{
    static const char *const names[] = {"?",           "int64",       "uint64",    "double",
                                        "bool",        "string",      "bytes",     "int64 list",
                                        "uint64 list", "double list", "bool list", "string list"};
    return t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

/* Reads a list value into v (memory in *mem, freed by the caller). */
static int
decode_list(rd_t *r, uint64_t type, petal_value_t *v, void **mem)
{
    uint64_t n = 0;
    size_t esize = type == PETAL_VALUE_BOOL_LIST     ? 1
                   : type == PETAL_VALUE_STRING_LIST ? sizeof(char *)
                                                     : 8;
    int rc = rd_container(r, 0, r->lim.max_list_elements, &n, "list");

    if (rc != 0) {
        return rc;
    }
    *mem = malloc(n != 0 ? (size_t)n * esize : 1);
    if (*mem == NULL) {
        return oom(r);
    }
    if (type == PETAL_VALUE_STRING_LIST) {
        memset(*mem, 0, n != 0 ? (size_t)n * esize : 1);
    }
    v->len = n;
    v->as.bytes = *mem;
    for (uint64_t i = 0; i < n; i++) {
        switch (type) {
        case PETAL_VALUE_INT64_LIST:
            rc = rd_int(r, &((int64_t *)*mem)[i], "list element");
            break;
        case PETAL_VALUE_UINT64_LIST:
            rc = rd_uint(r, &((uint64_t *)*mem)[i], "list element");
            break;
        case PETAL_VALUE_DOUBLE_LIST:
            rc = rd_f64(r, &((double *)*mem)[i], "list element");
            break;
        case PETAL_VALUE_BOOL_LIST: {
            int b = 0;
            rc = rd_bool(r, &b, "list element");
            ((uint8_t *)*mem)[i] = (uint8_t)b;
            break;
        }
        default: { /* string list: each element its own NUL-terminated copy */
            const char *s;
            size_t len;
            char *c;

            rc = rd_str(r, r->lim.max_string_bytes, &s, &len, "list element");
            if (rc != 0) {
                break;
            }
            c = malloc(len + 1);
            if (c == NULL) {
                return oom(r);
            }
            memcpy(c, s, len);
            c[len] = '\0';
            ((char **)*mem)[i] = c;
            break;
        }
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static void
free_list(uint64_t type, const petal_value_t *v, void *mem)
{
    if (mem != NULL && type == PETAL_VALUE_STRING_LIST) {
        for (uint64_t i = 0; i < v->len; i++) {
            free(((char **)mem)[i]);
        }
    }
    free(mem);
}

static int
decode_value(rd_t *r, int metrics, void *rec)
{
    petal_value_t v;
    void *mem = NULL;
    uint64_t type;
    size_t at;
    size_t len = 0;
    int rc;

    memset(&v, 0, sizeof(v));
    if ((rc = rd_array_exact(r, 2, "value")) != 0) {
        return rc;
    }
    at = r->pos;
    if ((rc = rd_uint(r, &type, "value type")) != 0) {
        return rc;
    }
    if (type < PETAL_VALUE_INT64 || type > PETAL_VALUE_STRING_LIST) {
        return fail(r, PETAL_EPROTO, at, "unknown value type %llu", (unsigned long long)type);
    }
    if (metrics && !is_metric_type(type)) {
        return fail(r, PETAL_EPROTO, at, "a MetricRecord cannot hold a %s", value_type_name(type));
    }
    v.type = (uint32_t)type;
    v.len = 1;
    switch (type) {
    case PETAL_VALUE_INT64:
        rc = rd_int(r, &v.as.i64, "int64 value");
        break;
    case PETAL_VALUE_UINT64:
        rc = rd_uint(r, &v.as.u64, "uint64 value");
        break;
    case PETAL_VALUE_DOUBLE:
        rc = rd_f64(r, &v.as.f64, "double value");
        break;
    case PETAL_VALUE_BOOL:
        rc = rd_bool(r, &v.as.boolean, "bool value");
        break;
    case PETAL_VALUE_STRING:
        rc = rd_str(r, r->lim.max_string_bytes, &v.as.str, &len, "string value");
        v.len = len;
        break;
    case PETAL_VALUE_BYTES: {
        size_t off;
        rc = rd_bin(r, r->lim.max_string_bytes, &off, &len, "bytes value");
        if (rc == 0) {
            v.as.bytes = r->p + off;
            v.len = len;
        }
        break;
    }
    default:
        rc = decode_list(r, type, &v, &mem);
        break;
    }
    if (rc == 0) {
        rc = metrics ? petal_metricrecord_set(rec, r->ent, &v)
                     : petal_configrecord_set(rec, r->ent, &v);
        if (rc != 0) {
            rc = rc == PETAL_ENOMEM ? oom(r) : fail(r, PETAL_EPROTO, at, "value refused (%d)", rc);
        }
    }
    free_list(type, &v, mem);
    return rc;
}

static int
entry_exists(int32_t kind, const void *rec, const char *name)
{
    switch (kind) {
    case PETAL_RECORD_ARRAYS:
        return petal_arrayrecord_get(rec, name) != NULL;
    case PETAL_RECORD_METRICS:
        return petal_metricrecord_get(rec, name, NULL) == 0;
    default:
        return petal_configrecord_get(rec, name, NULL) == 0;
    }
}

static int
decode_entries(rd_t *r, int32_t kind, void *rec)
{
    uint64_t n = 0;
    int rc;

    r->ent_kind = kind == PETAL_RECORD_ARRAYS ? "array" : "value";
    if ((rc = rd_container(r, 1, r->lim.max_records, &n, "record entries")) != 0) {
        return rc;
    }
    for (uint64_t i = 0; i < n; i++) {
        size_t at = r->pos;

        if ((rc = rd_name(r, &r->ent, &r->ent_cap, "entry name")) != 0) {
            return rc;
        }
        r->in_ent = 1;
        if (entry_exists(kind, rec, r->ent)) {
            return fail(r, PETAL_EPROTO, at, "duplicate name");
        }
        rc = kind == PETAL_RECORD_ARRAYS ? decode_array(r, rec)
                                         : decode_value(r, kind == PETAL_RECORD_METRICS, rec);
        if (rc != 0) {
            return rc;
        }
        r->in_ent = 0;
    }
    return 0;
}

static int
decode_recorddict(rd_t *r, petal_recorddict_t *d)
{
    uint64_t n = 0;
    int rc;

    if ((rc = rd_container(r, 1, r->lim.max_records, &n, "recorddict")) != 0) {
        return rc;
    }
    for (uint64_t i = 0; i < n; i++) {
        size_t at = r->pos;
        uint64_t kind;
        void *rec;

        if ((rc = rd_name(r, &r->rec, &r->rec_cap, "record name")) != 0) {
            return rc;
        }
        r->in_rec = 1;
        if (petal_recorddict_arrays(d, r->rec) != NULL ||
            petal_recorddict_metrics(d, r->rec) != NULL ||
            petal_recorddict_config(d, r->rec) != NULL) {
            return fail(r, PETAL_EPROTO, at, "duplicate record name");
        }
        if ((rc = rd_array_exact(r, 2, "record")) != 0) {
            return rc;
        }
        at = r->pos;
        if ((rc = rd_uint(r, &kind, "record kind")) != 0) {
            return rc;
        }
        switch (kind) {
        case PETAL_RECORD_ARRAYS:
            rec = petal_recorddict_add_arrays(d, r->rec);
            break;
        case PETAL_RECORD_METRICS:
            rec = petal_recorddict_add_metrics(d, r->rec);
            break;
        case PETAL_RECORD_CONFIG:
            rec = petal_recorddict_add_config(d, r->rec);
            break;
        default:
            return fail(r, PETAL_EPROTO, at, "unknown record kind %llu", (unsigned long long)kind);
        }
        if (rec == NULL) {
            return oom(r);
        }
        if ((rc = decode_entries(r, (int32_t)kind, rec)) != 0) {
            return rc;
        }
        r->in_rec = 0;
    }
    return 0;
}

/* Reads the [tag, version] prefix of an encoding with `fields` elements. */
static int
decode_prefix(rd_t *r, uint64_t fields, const char *tag)
{
    size_t at;
    const char *s = NULL;
    size_t len = 0;
    uint64_t version;
    uint64_t n = 0;
    int rc;

    /* The tag and version are checked before the element count, so that another format or
     * a later version is named as such. */
    if ((rc = rd_container(r, 0, UINT64_MAX, &n, "top-level array")) != 0) {
        return rc;
    }
    at = r->pos;
    if ((rc = rd_str(r, 64, &s, &len, "format tag")) != 0) {
        return rc;
    }
    if (len != strlen(tag) || memcmp(s, tag, len) != 0) {
        return fail(r, PETAL_EPROTO, at, "format tag is not \"%s\"", tag);
    }
    at = r->pos;
    if ((rc = rd_uint(r, &version, "encoding version")) != 0) {
        return rc;
    }
    if (version != CODEC_VERSION) {
        return fail(r, PETAL_EPROTO, at, "unsupported encoding version %llu (this build reads %d)",
                    (unsigned long long)version, CODEC_VERSION);
    }
    if (n != fields) {
        return fail(r, PETAL_EPROTO, 0, "top-level array has %llu elements, expected %llu",
                    (unsigned long long)n, (unsigned long long)fields);
    }
    return 0;
}

static int
rd_fixed_str(rd_t *r, char *dst, size_t cap, const char *what)
{
    const char *s = NULL;
    size_t len = 0;
    size_t at = r->pos;
    int rc = rd_str(r, UINT64_MAX, &s, &len, what);

    if (rc != 0) {
        return rc;
    }
    if (len >= cap) {
        return fail(r, PETAL_EPROTO, at, "%s has %zu bytes, the most is %zu", what, len, cap - 1);
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return 0;
}

static int
decode_metadata(rd_t *r, petal_metadata_t *md)
{
    int rc;

    r->where = "metadata";
    pt_metadata_init(md);
    if ((rc = rd_array_exact(r, METADATA_FIELDS, "metadata")) != 0 ||
        (rc = rd_uint(r, &md->run_id, "run_id")) != 0 ||
        (rc = rd_uint(r, &md->message_id, "message_id")) != 0 ||
        (rc = rd_uint(r, &md->src_node_id, "src_node_id")) != 0 ||
        (rc = rd_uint(r, &md->dst_node_id, "dst_node_id")) != 0 ||
        (rc = rd_uint(r, &md->reply_to_message_id, "reply_to_message_id")) != 0 ||
        (rc = rd_f64(r, &md->ttl, "ttl")) != 0 ||
        (rc = rd_f64(r, &md->created_at, "created_at")) != 0 ||
        (rc = rd_fixed_str(r, md->group_id, sizeof(md->group_id), "group_id")) != 0 ||
        (rc = rd_fixed_str(r, md->message_type, sizeof(md->message_type), "message_type")) != 0) {
        return rc;
    }
    return 0;
}

static int
rd_init(rd_t *r, pt_buf_t *buf, size_t offset, size_t len, const pt_codec_limits_t *limits,
        char *err_text, size_t err_cap, const char *where)
{
    memset(r, 0, sizeof(*r));
    r->err = err_text;
    r->errcap = err_cap;
    r->where = where;
    if (err_text != NULL && err_cap > 0) {
        err_text[0] = '\0';
    }
    if (limits != NULL) {
        r->lim = *limits;
    } else {
        pt_codec_limits_default(&r->lim);
    }
    if (buf == NULL || offset > pt_buf_len(buf) || len > pt_buf_len(buf) - offset) {
        fail(r, PETAL_EINVAL, 0, "the range [%zu, +%zu) is not inside the buffer", offset, len);
        return PETAL_EINVAL;
    }
    r->buf = buf;
    r->base = offset;
    r->p = (const uint8_t *)pt_buf_data(buf) + offset;
    r->len = len;
    if (len > r->lim.max_frame_bytes) {
        return fail(r, PETAL_EMSGSIZE, 0, "%zu bytes exceed the limit of %llu bytes", len,
                    (unsigned long long)r->lim.max_frame_bytes);
    }
    return 0;
}

static int
rd_end(rd_t *r, const char *where)
{
    r->where = where;
    if (r->pos != r->len) {
        return fail(r, PETAL_EPROTO, r->pos, "%zu unexpected bytes after the end", left(r));
    }
    return 0;
}

static void
rd_fini(rd_t *r)
{
    free(r->rec);
    free(r->ent);
}

int
pt_codec_decode(pt_buf_t *buf, size_t offset, size_t len, const pt_codec_limits_t *limits,
                petal_message_t **out, uint64_t *copied, char *err_text, size_t err_cap)
{
    rd_t r;
    petal_metadata_t md;
    petal_recorddict_t *d = NULL;
    petal_message_t *m = NULL;
    uint64_t kind;
    size_t at;
    int rc;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    rc = rd_init(&r, buf, offset, len, limits, err_text, err_cap, "message");
    if (rc != 0) {
        goto fail;
    }
    if ((rc = decode_prefix(&r, 5, MESSAGE_TAG)) != 0 || (rc = decode_metadata(&r, &md)) != 0) {
        goto fail;
    }
    r.where = "message body";
    at = r.pos;
    if ((rc = rd_uint(&r, &kind, "body kind")) != 0) {
        goto fail;
    }
    if (kind == BODY_CONTENT) {
        r.where = "content";
        d = petal_recorddict_alloc();
        if (d == NULL) {
            rc = oom(&r);
            goto fail;
        }
        if ((rc = decode_recorddict(&r, d)) != 0 || (rc = rd_end(&r, "message")) != 0) {
            goto fail;
        }
        m = pt_message_alloc_meta(&md, d);
        if (m == NULL) {
            rc = oom(&r);
            goto fail;
        }
        d = NULL;
    } else if (kind == BODY_ERROR) {
        int64_t code;
        const char *s;
        size_t slen;
        char *reason;

        r.where = "error";
        if ((rc = rd_array_exact(&r, 2, "error")) != 0) {
            goto fail;
        }
        at = r.pos;
        if ((rc = rd_int(&r, &code, "error code")) != 0) {
            goto fail;
        }
        if (code >= 0 || code < INT32_MIN) {
            rc = fail(&r, PETAL_EPROTO, at, "error code %lld is not a negative int32",
                      (long long)code);
            goto fail;
        }
        if ((rc = rd_str(&r, r.lim.max_string_bytes, &s, &slen, "error reason")) != 0 ||
            (rc = rd_end(&r, "message")) != 0) {
            goto fail;
        }
        reason = malloc(slen + 1);
        if (reason == NULL) {
            rc = oom(&r);
            goto fail;
        }
        memcpy(reason, s, slen);
        reason[slen] = '\0';
        m = pt_message_alloc_error(&md, (int32_t)code, reason);
        free(reason);
        if (m == NULL) {
            rc = oom(&r);
            goto fail;
        }
    } else {
        rc = fail(&r, PETAL_EPROTO, at, "unknown body kind %llu", (unsigned long long)kind);
        goto fail;
    }
    if (copied != NULL) {
        *copied = r.copied;
    }
    *out = m;
    rd_fini(&r);
    return 0;
fail:
    petal_recorddict_free(d);
    rd_fini(&r);
    return rc;
}

int
pt_codec_decode_recorddict(pt_buf_t *buf, size_t offset, size_t len,
                           const pt_codec_limits_t *limits, petal_recorddict_t **out,
                           char *err_text, size_t err_cap)
{
    rd_t r;
    petal_recorddict_t *d = NULL;
    int rc;

    if (out == NULL) {
        return PETAL_EINVAL;
    }
    rc = rd_init(&r, buf, offset, len, limits, err_text, err_cap, "recorddict");
    if (rc != 0) {
        goto fail;
    }
    if ((rc = decode_prefix(&r, 3, RECORDDICT_TAG)) != 0) {
        goto fail;
    }
    d = petal_recorddict_alloc();
    if (d == NULL) {
        rc = oom(&r);
        goto fail;
    }
    if ((rc = decode_recorddict(&r, d)) != 0 || (rc = rd_end(&r, "recorddict")) != 0) {
        goto fail;
    }
    *out = d;
    rd_fini(&r);
    return 0;
fail:
    petal_recorddict_free(d);
    rd_fini(&r);
    return rc;
}
