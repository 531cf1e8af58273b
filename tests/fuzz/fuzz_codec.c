/* fuzz_codec.c - fuzz target: message and RecordDict decoding of arbitrary bytes, re-encoding. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/codec.h"
#include "runtime/message.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_codec: %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static pt_buf_t *
frame_of(const uint8_t *data, size_t size, size_t shift)
{
    pt_buf_t *b = pt_buf_alloc(size + shift, 0);

    CHECK(b != NULL);
    if (size > 0) {
        memcpy((char *)pt_buf_data(b) + shift, data, size);
    }
    return b;
}

/* Whatever decoded must encode again and decode to the same thing. */
static void
check_message_roundtrip(const petal_message_t *m)
{
    pt_encoded_t e;
    pt_buf_t *flat;
    petal_message_t *back = NULL;
    uint64_t copied = 1;
    char err[256];

    CHECK(pt_codec_encode(m, &e) == 0);
    CHECK(e.copied == 0);
    flat = pt_encoded_flatten(&e);
    CHECK(flat != NULL);
    pt_encoded_fini(&e);
    if (pt_codec_decode(flat, 0, pt_buf_len(flat), NULL, &back, &copied, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_codec: re-encoding does not decode: %s\n", err);
        abort();
    }
    CHECK(copied == 0); /* our own frames are aligned */
    CHECK(memcmp(pt_message_md_const(m), pt_message_md_const(back), sizeof(petal_metadata_t)) == 0);
    CHECK(petal_message_error_code(m) == petal_message_error_code(back));
    CHECK(strcmp(petal_message_error_reason(m), petal_message_error_reason(back)) == 0);
    CHECK(pt_recorddict_equal(petal_message_content(m), petal_message_content(back)));
    petal_message_free(back);
    pt_buf_release(flat);
}

static void
check_recorddict_roundtrip(const petal_recorddict_t *d)
{
    pt_encoded_t e;
    pt_buf_t *flat;
    petal_recorddict_t *back = NULL;
    char err[256];

    CHECK(pt_codec_encode_recorddict(d, &e) == 0);
    flat = pt_encoded_flatten(&e);
    CHECK(flat != NULL);
    pt_encoded_fini(&e);
    if (pt_codec_decode_recorddict(flat, 0, pt_buf_len(flat), NULL, &back, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_codec: re-encoding does not decode: %s\n", err);
        abort();
    }
    CHECK(pt_recorddict_equal(d, back));
    petal_recorddict_free(back);
    pt_buf_release(flat);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pt_codec_limits_t lim;
    char err[256];

    pt_codec_limits_default(&lim);
    lim.max_frame_bytes = 1 << 24;
    /* aligned (views) and shifted by one byte (copies) */
    for (size_t shift = 0; shift < 2; shift++) {
        pt_buf_t *b = frame_of(data, size, shift);
        petal_message_t *m = NULL;
        petal_recorddict_t *d = NULL;
        int rc;

        err[0] = '\0';
        rc = pt_codec_decode(b, shift, size, &lim, &m, NULL, err, sizeof(err));
        if (rc == 0) {
            CHECK(m != NULL);
            pt_buf_release(b); /* the message must not need our reference */
            b = NULL;
            check_message_roundtrip(m);
            petal_message_free(m);
        } else {
            CHECK(rc == PETAL_EPROTO || rc == PETAL_EMSGSIZE || rc == PETAL_ENOMEM);
            CHECK(err[0] != '\0');
            CHECK(m == NULL);
        }
        if (b == NULL) {
            b = frame_of(data, size, shift);
        }
        err[0] = '\0';
        rc = pt_codec_decode_recorddict(b, shift, size, &lim, &d, err, sizeof(err));
        if (rc == 0) {
            check_recorddict_roundtrip(d);
            petal_recorddict_free(d);
        } else {
            CHECK(rc == PETAL_EPROTO || rc == PETAL_EMSGSIZE || rc == PETAL_ENOMEM);
            CHECK(err[0] != '\0');
        }
        pt_buf_release(b);
    }
    return 0;
}
