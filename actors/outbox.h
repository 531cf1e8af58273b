/* outbox.h - frames waiting for a connection to become writable again (backpressure). */
#ifndef PT_OUTBOX_H
#define PT_OUTBOX_H

#include "actors/frameq.h"
#include "transport/transport.h"

/* Caller-owned storage, zero-initialized; loop thread only. */
typedef struct pt_outbox {
    pt_frameq_t q;
} pt_outbox_t;

/* Sends f now when nothing is waiting and the peer accepts it; queues it on PETAL_EAGAIN; frees
 * it when it cannot be sent. Takes f in every case. Returns 0 (sent or queued), or why it was
 * dropped (PETAL_ECLOSED, PETAL_EMSGSIZE for a message over the transport's limit, ...). */
int pt_outbox_send(pt_outbox_t *ob, pt_conn_t *c, pt_frame_t *f);
/* On PT_MSG_CONN_WRITABLE: sends what waits until the peer pushes back again. */
void pt_outbox_flush(pt_outbox_t *ob, pt_conn_t *c);
/* Frees every waiting frame. */
void pt_outbox_clear(pt_outbox_t *ob);

#endif
