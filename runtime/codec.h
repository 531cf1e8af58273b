/* codec.h - msgpack encoding of messages: headers built, array bytes referenced as iovecs. */
#ifndef PT_CODEC_H
#define PT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

#include "buf.h"

/* Limits applied while decoding untrusted bytes. pt_codec_limits_default() gives sane values. */
typedef struct pt_codec_limits {
    uint64_t max_frame_bytes;    /* whole encoded message */
    uint32_t max_records;        /* records in a RecordDict, and entries in one record */
    uint32_t max_ndim;           /* array rank, <= PETAL_MAX_NDIM */
    uint64_t max_array_elements; /* elements in one array */
    uint64_t max_string_bytes;   /* one string, bytes value or name */
    uint64_t max_list_elements;  /* elements in one value list */
} pt_codec_limits_t;

void pt_codec_limits_default(pt_codec_limits_t *l);

/* One piece of an encoded message: either bytes in the encoder's header storage or a span of
 * an array's buffer. The encoder holds a reference to each array buffer it points into. */
typedef struct pt_iov {
    const void *base;
    size_t len;
} pt_iov_t;

/*
 * An encoded message: a list of iovecs whose concatenation is the wire bytes. Owned by the
 * caller; pt_encoded_fini() releases the header storage and the array buffer references.
 * Array spans are placed so that, in the concatenated bytes, every array's data starts at a
 * multiple of 64 from the beginning of the encoding (padding is inside the msgpack bin).
 */
typedef struct pt_encoded {
    pt_iov_t *iov;
    size_t niov;
    size_t total;    /* sum of iov lengths */
    uint64_t copied; /* array payload bytes copied while encoding (0 by design) */
    void *internal;  /* header storage and held buffers */
} pt_encoded_t;

/* Encodes m. 0 and *out filled on success; negative error otherwise (*out untouched). */
int pt_codec_encode(const petal_message_t *m, pt_encoded_t *out);
void pt_encoded_fini(pt_encoded_t *e);
/* Copies the concatenated bytes into one new buffer (for tests and transports without iovecs). */
pt_buf_t *pt_encoded_flatten(const pt_encoded_t *e);

/*
 * Decodes one message from buf[offset, offset+len). Array data stays in `buf` (views take a
 * reference), so decoding copies only scalars and strings; when an array's bytes would be
 * misaligned for its dtype they are copied and counted in *copied (if non-NULL). On error
 * returns PETAL_EPROTO or PETAL_EMSGSIZE and, when err_text is non-NULL, writes a sentence
 * saying what was wrong and at which byte offset.
 */
int pt_codec_decode(pt_buf_t *buf, size_t offset, size_t len, const pt_codec_limits_t *limits,
                    petal_message_t **out, uint64_t *copied, char *err_text, size_t err_cap);

/* Standalone RecordDict encoding (same layout as a message's content), used for
 * --save-arrays and Context state. Same ownership rules as above. */
int pt_codec_encode_recorddict(const petal_recorddict_t *d, pt_encoded_t *out);
int pt_codec_decode_recorddict(pt_buf_t *buf, size_t offset, size_t len,
                               const pt_codec_limits_t *limits, petal_recorddict_t **out,
                               char *err_text, size_t err_cap);

#endif
