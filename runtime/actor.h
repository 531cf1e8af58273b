/* actor.h - actors with MPSC mailboxes on one libuv loop; timers; the worker pool. */
#ifndef PT_ACTOR_H
#define PT_ACTOR_H

#include <stddef.h>
#include <stdint.h>

/*
 * Threads: one loop thread runs every actor handler (pt_runtime_run). Any thread may
 * pt_actor_send(); sends from other threads wake the loop with uv_async_send (coalesced; the
 * loop drains until empty). An actor handles at most `batch` messages per turn, then yields to
 * the others. Only runtime/ and transport/ see libuv; actors see this header.
 */

typedef struct pt_runtime pt_runtime_t;
typedef struct pt_actor pt_actor_t;

/* Every actor message starts with this header. The receiver owns the message and disposes of
 * it with pt_msg_free() (which calls `free`, if set) when done. */
typedef struct pt_msg {
    struct pt_msg *next; /* mailbox link; owned by the runtime while queued */
    uint32_t type;       /* the receiving actor's own numbering; PT_MSG_* below are reserved */
    uint32_t flags;
    void (*free)(struct pt_msg *m);
} pt_msg_t;

/* Reserved message types, >= 0xff000000. */
#define PT_MSG_TIMER 0xff000001u /* a pt_timer_msg_t */
#define PT_MSG_STOP 0xff000002u  /* delivered last to an actor being stopped; see pt_actor_stop */
#define PT_MSG_USER_MAX 0xfeffffffu

void pt_msg_free(pt_msg_t *m);

/* The handler runs on the loop thread and owns `m`. */
typedef void (*pt_actor_handler_fn)(pt_actor_t *self, pt_msg_t *m);

typedef struct pt_runtime_opts {
    uint32_t workers;     /* worker threads; 0 = number of cores */
    uint32_t batch;       /* messages per actor turn; 0 = 64 */
    uint32_t mailbox_hwm; /* pt_actor_over_hwm() threshold; 0 = 4096 */
} pt_runtime_opts_t;

/* Creates a runtime with its own uv loop and worker pool. 0 or a negative error. */
int pt_runtime_alloc(const pt_runtime_opts_t *opts, pt_runtime_t **out);
/* Runs the loop until pt_runtime_shutdown() and every actor has stopped. Loop thread only. */
int pt_runtime_run(pt_runtime_t *rt);
/* Asks every actor to stop (each gets PT_MSG_STOP) and the loop to end. Any thread. */
void pt_runtime_shutdown(pt_runtime_t *rt);
/* Frees everything; only after pt_runtime_run returned (or if it never ran). Checks that the
 * uv loop closed cleanly and returns its uv_loop_close() result. */
int pt_runtime_free(pt_runtime_t *rt);
/* The uv_loop_t of this runtime, as void* so that actors/ never names libuv types. */
void *pt_runtime_loop(pt_runtime_t *rt);
uint32_t pt_runtime_workers(pt_runtime_t *rt);
/* True on the loop thread. */
int pt_runtime_on_loop(pt_runtime_t *rt);

/* Spawns an actor. `name` is copied and appears on its log lines. state is the caller's. */
int pt_actor_spawn(pt_runtime_t *rt, const char *name, pt_actor_handler_fn handler, void *state,
                   pt_actor_t **out);
void *pt_actor_state(pt_actor_t *a);
const char *pt_actor_name(pt_actor_t *a);
pt_runtime_t *pt_actor_runtime(pt_actor_t *a);
/* Queues m for `to`; any thread. 0 on success (then `to` owns m), PETAL_ECLOSED if the actor
 * has stopped (the caller keeps m). */
int pt_actor_send(pt_actor_t *to, pt_msg_t *m);
/* Messages waiting in the mailbox (approximate when racing senders). */
uint64_t pt_actor_queued(pt_actor_t *a);
/* True while the mailbox holds more than the runtime's high-water mark. */
int pt_actor_over_hwm(pt_actor_t *a);
/* Stops the actor: it receives PT_MSG_STOP after the messages already queued, then no more
 * sends are accepted and it is freed by the runtime. Any thread; idempotent. */
void pt_actor_stop(pt_actor_t *a);

/*
 * Watches, for transports' backpressure and connection lifetimes. Loop thread only. The caller
 * owns the (zero-initialised) watch; cb runs once on the loop thread, with the watch already
 * removed, and may free it.
 *  - drain: when a's mailbox has drained to the low-water mark (half the high-water mark) after
 *    one of its turns (stopped = 0), or once a has handled PT_MSG_STOP (stopped = 1).
 *    Returns 0 when registered, 1 when the mailbox is already at or below the low-water mark
 *    (nothing registered), PETAL_ECLOSED when a has stopped, PETAL_EEXIST when w is in use.
 *  - stop: once a has handled PT_MSG_STOP (stopped = 1). 0, PETAL_ECLOSED or PETAL_EEXIST.
 */
typedef struct pt_actor_watch {
    struct pt_actor_watch *next;
    struct pt_actor_watch **pprev; /* non-NULL while registered */
    void (*cb)(struct pt_actor_watch *w, int stopped);
} pt_actor_watch_t;
int pt_actor_watch_drain(pt_actor_t *a, pt_actor_watch_t *w,
                         void (*cb)(pt_actor_watch_t *w, int stopped));
int pt_actor_watch_stop(pt_actor_t *a, pt_actor_watch_t *w,
                        void (*cb)(pt_actor_watch_t *w, int stopped));
/* Removes w if registered; no-op otherwise. */
void pt_actor_unwatch(pt_actor_watch_t *w);

/* Timers: after `ms`, then every `repeat_ms` if non-zero, `owner` receives a pt_timer_msg_t
 * (type PT_MSG_TIMER) carrying `tag`. Loop thread only. */
typedef struct pt_timer pt_timer_t;
typedef struct pt_timer_msg {
    pt_msg_t hdr;
    pt_timer_t *timer;
    uint64_t tag;
} pt_timer_msg_t;
int pt_timer_start(pt_actor_t *owner, uint64_t ms, uint64_t repeat_ms, uint64_t tag,
                   pt_timer_t **out);
/* Stops and frees the timer (asynchronously); no message is delivered after this returns. */
void pt_timer_stop(pt_timer_t *t);
/* Milliseconds of the loop's clock (monotonic). */
uint64_t pt_runtime_now_ms(pt_runtime_t *rt);

/* ---- Worker pool --------------------------------------------------------------------------- */

/*
 * A job runs `work` on a worker thread, then the job itself is sent to `reply_to` as a
 * message (hdr.type as the caller set it). The caller embeds pt_job_t at the start of its own
 * struct. If reply_to is NULL the job is freed with hdr.free after work.
 */
typedef struct pt_job {
    pt_msg_t hdr;
    void (*work)(struct pt_job *job); /* runs on a worker thread */
    pt_actor_t *reply_to;
} pt_job_t;

/* Queues the job; any thread. 0 on success, PETAL_ECLOSED during shutdown. */
int pt_pool_submit(pt_runtime_t *rt, pt_job_t *job);
/* Runs fn(i, arg) for i in [0, n) across the workers and the calling thread, returning when
 * all are done. For data-parallel loops (aggregation). Not from inside a worker's job. */
void pt_pool_parallel_for(pt_runtime_t *rt, uint32_t n, void (*fn)(uint32_t i, void *arg),
                          void *arg);

#endif
