/* outbox.c - a FIFO of frames in front of pt_conn_send(). */
#include "runtime/log.h"

#include "outbox.h"

static void
push_back(pt_outbox_t *ob, pt_frame_t *f)
{
    f->hdr.next = NULL;
    if (ob->tail != NULL) {
        ob->tail->hdr.next = &f->hdr;
    } else {
        ob->head = f;
    }
    ob->tail = f;
    ob->count++;
}

void
pt_outbox_send(pt_outbox_t *ob, pt_conn_t *c, pt_frame_t *f)
{
    if (ob->head == NULL) {
        int rc = pt_conn_send(c, f);
        if (rc == 0) {
            return;
        }
        if (rc != PETAL_EAGAIN) {
            PT_DEBUG("send to %s failed: %s", pt_conn_peer(c), petal_strerror(rc));
            pt_msg_free(&f->hdr);
            return;
        }
    }
    push_back(ob, f);
}

void
pt_outbox_flush(pt_outbox_t *ob, pt_conn_t *c)
{
    while (ob->head != NULL) {
        pt_frame_t *f = ob->head;
        pt_frame_t *next = (pt_frame_t *)f->hdr.next;
        f->hdr.next = NULL;
        int rc = pt_conn_send(c, f);
        if (rc == PETAL_EAGAIN) {
            f->hdr.next = next != NULL ? &next->hdr : NULL; /* still queued: keep the rest */
            return;
        }
        if (rc != 0) {
            pt_msg_free(&f->hdr);
        }
        ob->head = next;
        ob->count--;
        if (next == NULL) {
            ob->tail = NULL;
        }
    }
}

void
pt_outbox_clear(pt_outbox_t *ob)
{
    while (ob->head != NULL) {
        pt_frame_t *f = ob->head;
        ob->head = (pt_frame_t *)f->hdr.next;
        pt_msg_free(&f->hdr);
    }
    ob->tail = NULL;
    ob->count = 0;
}
