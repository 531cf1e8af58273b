/* frameq.h - a FIFO of frames linked through their message headers (no allocation). */
#ifndef PT_FRAMEQ_H
#define PT_FRAMEQ_H

#include <stdint.h>

#include "transport/transport.h"

/* Caller-owned storage, zero-initialized; one thread. A queued frame is the queue's until popped.
 */
typedef struct pt_frameq {
    pt_frame_t *head, *tail;
    uint64_t count;
} pt_frameq_t;

void pt_frameq_push(pt_frameq_t *q, pt_frame_t *f);
/* The oldest frame (now the caller's), or NULL when empty. */
pt_frame_t *pt_frameq_pop(pt_frameq_t *q);
/* Puts f back at the front (it stays the next to pop). */
void pt_frameq_push_front(pt_frameq_t *q, pt_frame_t *f);
/* Frees every queued frame. */
void pt_frameq_clear(pt_frameq_t *q);

#endif
