/* waiter.h - where a Grid call waits for its replies; filled by the SuperLink on the loop thread.
 */
#ifndef PT_WAITER_H
#define PT_WAITER_H

#include <stdint.h>

#include <petal/petal.h>

/*
 * One waiter per Grid call that expects replies. Two threads share it: the ServerApp thread
 * (creates it, waits, takes replies) and the loop thread (the SuperLink assigns message ids and
 * delivers replies). It is reference-counted; both sides release their reference.
 */
typedef struct pt_waiter pt_waiter_t;

/* A waiter for n messages; the creator holds one reference. NULL if out of memory. */
pt_waiter_t *pt_waiter_alloc(uint64_t n);
void pt_waiter_hold(pt_waiter_t *w);
void pt_waiter_release(pt_waiter_t *w);
uint64_t pt_waiter_count(const pt_waiter_t *w);

/* Loop thread: records the message id assigned to slot i. */
void pt_waiter_set_id(pt_waiter_t *w, uint64_t slot, uint64_t message_id);
/* Any thread: queues `reply` for slot i and wakes the waiting thread. Takes the reply; drops
 * it when the slot was answered already or the waiter was cancelled. */
void pt_waiter_deliver(pt_waiter_t *w, uint64_t slot, petal_message_t *reply);
/* ServerApp thread: waits until a reply is queued or `deadline_ms` (pt_waiter_now_ms clock)
 * passes; returns the reply (the caller's) or NULL on timeout. */
petal_message_t *pt_waiter_next(pt_waiter_t *w, uint64_t deadline_ms);
/* How many slots have been answered (delivered, taken or not). */
uint64_t pt_waiter_answered(pt_waiter_t *w);
/* Any thread: stops accepting replies and wakes a thread waiting in pt_waiter_next (which then
 * returns what is queued, then NULL at once). Returns how many slots never got a reply and
 * writes their message ids (0 when none was assigned) into ids[0..] when ids is non-NULL. */
uint64_t pt_waiter_cancel(pt_waiter_t *w, uint64_t *ids, uint64_t *slots);
/* A monotonic millisecond clock for deadlines. */
uint64_t pt_waiter_now_ms(void);

#endif
