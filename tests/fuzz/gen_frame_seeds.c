/* gen_frame_seeds.c - writes the seed corpus of fuzz_frame: byte streams of valid stream frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/codec.h"
#include "runtime/message.h"
#include "transport/stream.h"
#include "transport/transport.h"

/*
 * The frame layout of transport/stream.h, written independently of stream.c's writer (so a
 * change there that breaks the documented format shows up as refused seeds): [u32 BE L][header]
 * and, with a message, zero pad to 64 bytes from the frame's first byte, then the encoding.
 */

#define CHUNK_FRAME 4096 /* the small listener's max_frame: chunks are cut to fit it */

typedef struct out {
    uint8_t *p;
    size_t n, cap;
} out_t;

static void
put(out_t *o, const void *p, size_t n)
{
    if (o->n + n > o->cap) {
        size_t cap = (o->n + n) * 2;
        uint8_t *q = realloc(o->p, cap);

        if (q == NULL) {
            fprintf(stderr, "gen_frame_seeds: out of memory\n");
            exit(1);
        }
        o->p = q;
        o->cap = cap;
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
}

static void
put_byte(out_t *o, uint8_t b)
{
    put(o, &b, 1);
}

static void
put_be(out_t *o, uint64_t v, size_t w)
{
    for (size_t i = 0; i < w; i++) {
        put_byte(o, (uint8_t)(v >> (8 * (w - 1 - i))));
    }
}

/* A msgpack unsigned integer; `wide` forces the 0xcf form (a legal, unusual encoding). */
static void
put_uint(out_t *o, uint64_t v, int wide)
{
    if (wide) {
        put_byte(o, 0xcf);
        put_be(o, v, 8);
    } else if (v <= 0x7f) {
        put_byte(o, (uint8_t)v);
    } else if (v <= 0xff) {
        put_byte(o, 0xcc);
        put_be(o, v, 1);
    } else if (v <= 0xffff) {
        put_byte(o, 0xcd);
        put_be(o, v, 2);
    } else if (v <= 0xffffffffu) {
        put_byte(o, 0xce);
        put_be(o, v, 4);
    } else {
        put_byte(o, 0xcf);
        put_be(o, v, 8);
    }
}

typedef struct hdr {
    uint64_t kind, flags, seq, ack;
    int chunk;
    uint64_t total, offset;
    int wide;    /* 0xcf integers */
    int array16; /* 0xdc array header */
} hdr_t;

/* One frame; msg may be NULL (no message). */
static void
put_frame(out_t *o, const hdr_t *h, const uint8_t *msg, size_t mlen)
{
    out_t hd = {0};
    size_t L;

    if (h->array16) {
        put_byte(&hd, 0xdc);
        put_be(&hd, h->chunk ? 8 : 6, 2);
    } else {
        put_byte(&hd, h->chunk ? 0x98 : 0x96);
    }
    put_uint(&hd, PT_PROTOCOL_VERSION, h->wide);
    put_uint(&hd, h->kind, h->wide);
    put_uint(&hd, h->chunk ? h->flags | PT_FRAME_FLAG_CHUNK : h->flags, h->wide);
    put_uint(&hd, h->seq, h->wide);
    put_uint(&hd, h->ack, h->wide);
    put_byte(&hd, msg != NULL ? 0xc3 : 0xc2);
    if (h->chunk) {
        put_uint(&hd, h->total, h->wide);
        put_uint(&hd, h->offset, h->wide);
    }
    if (msg == NULL) {
        put_be(o, hd.n, 4);
        put(o, hd.p, hd.n);
    } else {
        size_t moff = (4 + hd.n + 63) / 64 * 64;

        L = moff - 4 + mlen;
        put_be(o, L, 4);
        put(o, hd.p, hd.n);
        for (size_t i = 4 + hd.n; i < moff; i++) {
            put_byte(o, 0);
        }
        put(o, msg, mlen);
    }
    free(hd.p);
}

/* A message cut into chunk frames of at most CHUNK_FRAME bytes. */
static void
put_chunked(out_t *o, uint64_t kind, uint64_t seq, const uint8_t *msg, size_t mlen)
{
    const size_t room = CHUNK_FRAME - 60; /* 64-byte head minus the length prefix */

    for (size_t off = 0; off < mlen; off += room) {
        hdr_t h = {kind, 0, seq, 0, 1, mlen, off, 0, 0};
        size_t n = mlen - off < room ? mlen - off : room;

        put_frame(o, &h, msg + off, n);
    }
}

static uint8_t *
encode(petal_message_t *m, size_t *len)
{
    pt_encoded_t e;
    pt_buf_t *flat;
    uint8_t *p;

    if (m == NULL || pt_codec_encode(m, &e) != 0 || (flat = pt_encoded_flatten(&e)) == NULL) {
        fprintf(stderr, "gen_frame_seeds: cannot encode a message\n");
        exit(1);
    }
    pt_encoded_fini(&e);
    *len = pt_buf_len(flat);
    p = malloc(*len);
    if (p == NULL) {
        exit(1);
    }
    memcpy(p, pt_buf_data(flat), *len);
    pt_buf_release(flat);
    petal_message_free(m);
    return p;
}

static petal_message_t *
message_with(uint64_t floats)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *a = petal_recorddict_add_arrays(d, "arrays");
    petal_metricrecord_t *mr = petal_recorddict_add_metrics(d, "metrics");
    petal_configrecord_t *c = petal_recorddict_add_config(d, "config");
    uint64_t shape[] = {floats};
    petal_array_t *x = petal_arrayrecord_add(a, "w", PETAL_DTYPE_FLOAT32, 1, shape);
    petal_value_t v;
    petal_message_t *m;

    for (uint64_t i = 0; i < floats; i++) {
        ((float *)petal_array_data_mut(x))[i] = (float)i * 0.5f;
    }
    v = petal_value_i64(10);
    petal_metricrecord_set(mr, "num-examples", &v);
    v = petal_value_str("fedavg", 6);
    petal_configrecord_set(c, "strategy", &v);
    m = petal_message_alloc(d, "train", 2, "round-1", 60);
    pt_message_md(m)->run_id = 1;
    pt_message_md(m)->message_id = 77;
    pt_message_md(m)->created_at = 1700000000.0; /* fixed, so seeds are reproducible */
    return m;
}

static int
write_seed(const char *dir, const char *name, out_t *o)
{
    char path[4096];
    FILE *f;
    int rc = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(o->p, 1, o->n, f) != o->n) {
        perror(path);
        rc = -1;
    }
    if (f != NULL && fclose(f) != 0) {
        rc = -1;
    }
    free(o->p);
    memset(o, 0, sizeof(*o));
    return rc;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    size_t small_len, big_len, err_len, mid_len;
    uint8_t *small = encode(message_with(4), &small_len);
    uint8_t *mid = encode(message_with(3000), &mid_len);  /* ~12 KB: chunked at 4096 */
    uint8_t *big = encode(message_with(10000), &big_len); /* ~40 KB: read directly */
    petal_message_t *ref = message_with(1);
    uint8_t *errm = encode(pt_message_alloc_error(pt_message_md_const(ref),
                                                  PETAL_E_CLIENT_APP_RAISED_EXCEPTION, "boom"),
                           &err_len);
    out_t o = {0};
    int rc = 0;

    petal_message_free(ref);
    {
        hdr_t h = {3, 0, 1, 0, 0, 0, 0, 0, 0};
        put_frame(&o, &h, NULL, 0);
        rc |= write_seed(dir, "ping.bin", &o);
    }
    {
        hdr_t h = {5, 1, 2, 1, 0, 0, 0, 0, 0};
        put_frame(&o, &h, small, small_len);
        rc |= write_seed(dir, "message.bin", &o);
    }
    {
        hdr_t h = {5, 0, 9, 8, 0, 0, 0, 0, 0};
        put_frame(&o, &h, errm, err_len);
        rc |= write_seed(dir, "error-message.bin", &o);
    }
    {
        hdr_t p = {3, 0, 1, 0, 0, 0, 0, 0, 0};
        hdr_t m = {5, 0, 2, 1, 0, 0, 0, 0, 0};
        hdr_t q = {4, 0, 3, 2, 0, 0, 0, 0, 0};
        put_frame(&o, &p, NULL, 0);
        put_frame(&o, &m, small, small_len);
        put_frame(&o, &q, NULL, 0);
        put_frame(&o, &m, errm, err_len);
        rc |= write_seed(dir, "sequence.bin", &o);
    }
    {
        hdr_t h = {0x1234, 0x7fffffff, UINT64_C(1) << 40, 300, 0, 0, 0, 1, 1};
        put_frame(&o, &h, small, small_len);
        rc |= write_seed(dir, "wide-header.bin", &o);
    }
    {
        hdr_t p = {3, 0, 1, 0, 0, 0, 0, 0, 0};
        put_chunked(&o, 6, 4, mid, mid_len);
        put_frame(&o, &p, NULL, 0);
        rc |= write_seed(dir, "chunked.bin", &o);
    }
    {
        hdr_t h = {6, 0, 5, 0, 0, 0, 0, 0, 0};
        put_frame(&o, &h, big, big_len);
        rc |= write_seed(dir, "large.bin", &o);
    }
    free(small);
    free(mid);
    free(big);
    free(errm);
    if (rc != 0) {
        fprintf(stderr, "gen_frame_seeds: failed to write seeds into %s\n", dir);
        return 1;
    }
    return 0;
}
