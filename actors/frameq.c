/* frameq.c - a FIFO of frames linked through hdr.next. */
#include "frameq.h"

void
pt_frameq_push(pt_frameq_t *q, pt_frame_t *f)
{
    f->hdr.next = NULL;
    if (q->tail != NULL) {
        q->tail->hdr.next = &f->hdr;
    } else {
        q->head = f;
    }
    q->tail = f;
    q->count++;
}

void
pt_frameq_push_front(pt_frameq_t *q, pt_frame_t *f)
{
    f->hdr.next = q->head != NULL ? &q->head->hdr : NULL;
    q->head = f;
    if (q->tail == NULL) {
        q->tail = f;
    }
    q->count++;
}

pt_frame_t *
pt_frameq_pop(pt_frameq_t *q)
{
    pt_frame_t *f = q->head;
    if (f != NULL) {
        q->head = (pt_frame_t *)f->hdr.next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        f->hdr.next = NULL;
        q->count--;
    }
    return f;
}

void
pt_frameq_clear(pt_frameq_t *q)
{
    pt_frame_t *f;
    while ((f = pt_frameq_pop(q)) != NULL) {
        pt_msg_free(&f->hdr);
    }
}
