/* message.h - internal side of records and messages: reference counts, full metadata, errors. */
#ifndef PT_MESSAGE_H
#define PT_MESSAGE_H

#include <petal/petal.h>

#include "buf.h"

/*
 * Messages are reference-counted so that inproc delivery and broadcast share one message;
 * petal_message_free() is pt_message_release(). A held message is read-only: nobody changes a
 * message once a second reference exists (pt_message_refs() > 1).
 */
petal_message_t *pt_message_hold(petal_message_t *m);
void pt_message_release(petal_message_t *m);
uint32_t pt_message_refs(const petal_message_t *m);

/* A message with full metadata (copied) and content (owned on success). */
petal_message_t *pt_message_alloc_meta(const petal_metadata_t *md, petal_recorddict_t *content);
/* An error message: metadata copied, code one of PETAL_E_*, reason copied (may be NULL). */
petal_message_t *pt_message_alloc_error(const petal_metadata_t *md, int32_t code,
                                        const char *reason);
/* A reply to `to`: run id, group id and message type copied, src/dst swapped,
 * reply_to_message_id = to's message id; content owned on success. */
petal_message_t *pt_message_alloc_reply(const petal_message_t *to, petal_recorddict_t *content);
petal_message_t *pt_message_alloc_error_reply(const petal_message_t *to, int32_t code,
                                              const char *reason);
/* Direct access to the metadata, for the runtime (which owns message ids, timestamps). */
petal_metadata_t *pt_message_md(petal_message_t *m);
const petal_metadata_t *pt_message_md_const(const petal_message_t *m);
petal_recorddict_t *pt_message_content_mut(petal_message_t *m);
/* Fills a petal_metadata_t with struct_size/abi_version set and everything else zero. */
void pt_metadata_init(petal_metadata_t *md);
/* Seconds since the Unix epoch, as in Metadata.created_at. */
double pt_now_seconds(void);

/* ---- Arrays as views into shared buffers -------------------------------------------------- */

/* Adds an array whose bytes are [offset, offset + nbytes) of `buf`, taking a new reference on
 * buf. Fails with NULL when the range does not fit or data is misaligned for dtype. */
petal_array_t *pt_arrayrecord_add_view(petal_arrayrecord_t *r, const char *name, int32_t dtype,
                                       uint32_t ndim, const uint64_t *shape, pt_buf_t *buf,
                                       size_t offset);
/* The buffer an array's bytes live in, and where in it (for iovec encoding). */
pt_buf_t *pt_array_buf(const petal_array_t *a);
size_t pt_array_offset(const petal_array_t *a);

/* Deep structure copy that shares array bytes (no array data copied). NULL if out of memory. */
petal_recorddict_t *pt_recorddict_clone(const petal_recorddict_t *d);
/* Structural equality (names, order, kinds, values, dtypes, shapes and array bytes). */
int pt_recorddict_equal(const petal_recorddict_t *a, const petal_recorddict_t *b);
/* Sum of array payload bytes in a RecordDict. */
uint64_t pt_recorddict_array_bytes(const petal_recorddict_t *d);

#endif
