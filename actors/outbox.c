/* outbox.c - a FIFO of frames in front of pt_conn_send(). */
#include "runtime/log.h"

#include "outbox.h"

int
pt_outbox_send(pt_outbox_t *ob, pt_conn_t *c, pt_frame_t *f)
{
    if (ob->q.head == NULL) {
        int rc = pt_conn_send(c, f);
        if (rc == 0) {
            return 0;
        }
        if (rc != PETAL_EAGAIN) {
            PT_DEBUG("send to %s failed: %s", pt_conn_peer(c), petal_strerror(rc));
            pt_msg_free(&f->hdr);
            return rc;
        }
    }
    pt_frameq_push(&ob->q, f);
    return 0;
}

void
pt_outbox_flush(pt_outbox_t *ob, pt_conn_t *c)
{
    pt_frame_t *f;
    while ((f = pt_frameq_pop(&ob->q)) != NULL) {
        int rc = pt_conn_send(c, f);
        if (rc == PETAL_EAGAIN) {
            pt_frameq_push_front(&ob->q, f); /* still first in line */
            return;
        }
        if (rc != 0) {
            pt_msg_free(&f->hdr);
        }
    }
}

void
pt_outbox_clear(pt_outbox_t *ob)
{
    pt_frameq_clear(&ob->q);
}
