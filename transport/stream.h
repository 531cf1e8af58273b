/* stream.h - length-prefixed frames over a uv_stream_t: the framing shared by tcp and ipc. */
#ifndef PT_STREAM_H
#define PT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "../runtime/buf.h"
#include "../runtime/codec.h"
#include "transport.h"

/*
 * A frame on the wire (docs/protocol.md, "Frames on a stream"):
 *
 *   [u32 big-endian L][header][zero pad][message encoding]
 *                     <------------- L bytes ------------->
 *
 * header = msgpack [version, kind, flags, seq, ack, has_msg], or, for a chunk of a message
 * larger than the max frame, [version, kind, flags | PT_FRAME_FLAG_CHUNK, seq, ack, true, total,
 * offset]. The pad makes the message start at a multiple of 64 bytes from the frame's first
 * byte; a frame without a message ends with its header.
 *
 * Sending writes the header and the codec's iovecs with one uv_write (array bytes are never
 * copied; a chunked message is the same iovec list cut into frames). Receiving reads the frame
 * header into a small staging buffer and the message bytes straight into one 64-aligned
 * pt_buf_t (for a chunked message, one buffer of the total size that every chunk lands in), then
 * decodes it with pt_codec_decode: arrays are views into that buffer.
 *
 * Everything here runs on the runtime's loop thread. Connections follow transport.h: UP once
 * (accepted or dialled), DOWN exactly once (after every frame delivered before it), frames owned
 * by the receiver, PETAL_EAGAIN + PT_MSG_CONN_WRITABLE for write backpressure. Reading stops
 * while the owner's mailbox is over its high-water mark and resumes once it has drained
 * (pt_actor_watch_drain). A connection or listener never outlives its owner: when the owner has
 * handled PT_MSG_STOP it is closed and freed (its DOWN, refused by the stopped actor, is not
 * seen). The first tcp/ipc listen or dial sets SIGPIPE to SIG_IGN if it was SIG_DFL (writes to a
 * reset socket must fail with EPIPE, not kill the process).
 */

/* Reserved in pt_frame_t.flags by stream transports: protocols never set it. */
#define PT_FRAME_FLAG_CHUNK 0x80000000u

#define PT_STREAM_DEFAULT_MAX_FRAME (UINT64_C(64) << 20)   /* 64 MiB */
#define PT_STREAM_DEFAULT_MAX_MESSAGE (UINT64_C(16) << 30) /* 16 GiB */
#define PT_STREAM_DEFAULT_IDLE_TIMEOUT_MS UINT64_C(30000)  /* 30 s */
#define PT_STREAM_DEFAULT_WRITE_HWM (UINT64_C(8) << 20)    /* 8 MiB */
#define PT_STREAM_DEFAULT_SERIAL_RX (UINT64_C(1) << 30)    /* 1 GiB */
#define PT_STREAM_MIN_MAX_FRAME UINT64_C(4096)
#define PT_STREAM_NO_TIMEOUT UINT64_MAX

/* Limits of tcp and ipc connections. A field left 0 takes its default. */
typedef struct pt_stream_opts {
    /* L of one frame (everything after the length prefix); 4096 to 2^32-1. A longer announced
     * length is refused before anything is allocated (PETAL_EMSGSIZE) and the connection
     * closed. Messages whose frame would be longer are sent as chunks of at most this size. */
    uint64_t max_frame;
    /* One message's encoding, chunked or not (the buffer a chunked message is received in). */
    uint64_t max_message;
    /* A peer that stops sending in the middle of a frame (or between the chunks of a message)
     * for this long is disconnected (PETAL_ETIMEDOUT). PT_STREAM_NO_TIMEOUT: never. */
    uint64_t idle_timeout_ms;
    /* send() returns PETAL_EAGAIN while more than this many bytes wait to be written;
     * PT_MSG_CONN_WRITABLE follows once they are down to half. */
    uint64_t write_hwm;
    /* Messages of at least this many bytes are received one at a time per event loop: a
     * connection that would start a second one stops reading (its sender waits) until the
     * first is in. N peers sending a multi-GiB message at once then cost one message buffer
     * being filled instead of N, and each sender can free its copy before the next starts.
     * PT_STREAM_NO_SERIAL_RX: never. */
    uint64_t serial_rx_min;
} pt_stream_opts_t;

#define PT_STREAM_NO_SERIAL_RX UINT64_MAX

/* Fills o with the defaults above. */
void pt_stream_opts_default(pt_stream_opts_t *o);
/*
 * Process-wide limits for the tcp and ipc listeners and dials created from now on (accepted
 * connections take their listener's). 0 fields take defaults; NULL restores every default. Any
 * thread. 0, or PETAL_EINVAL for an out-of-range value (nothing changed).
 */
int pt_stream_set_opts(const pt_stream_opts_t *o);
void pt_stream_get_opts(pt_stream_opts_t *o);
/*
 * Process-wide decoding limits (codec.h) of the tcp and ipc connections created from now on. 0
 * fields take the codec's defaults; max_frame_bytes is ignored (max_message rules), and
 * max_array_elements 0 means as many as max_message allows. NULL restores the defaults. Any
 * thread. 0, or PETAL_EINVAL for a max_ndim above PETAL_MAX_NDIM (nothing changed).
 */
int pt_stream_set_codec_limits(const pt_codec_limits_t *l);

/*
 * Whether message m can be sent on this process's tcp and ipc connections: every array fits one
 * msgpack bin (at most 4 GiB - 1 bytes with its alignment pad) and the encoding fits the
 * process-wide max_message (pt_stream_set_opts). Encodes headers only (array bytes are
 * referenced, not read), so it is cheap for any model. 0; or PETAL_EMSGSIZE (or PETAL_ENOMEM)
 * with a sentence in why naming the array or the sizes, e.g. "array 'w' in 'arrays' has
 * 4800000000 bytes, over the wire limit of 4 GiB - 1 bytes for one array". Any thread.
 */
int pt_stream_check_message(const petal_message_t *m, char *why, size_t cap);

/* Counters of one tcp or ipc connection (for tests, benchmarks and logs). */
typedef struct pt_stream_stats {
    uint64_t frames_in;  /* frames delivered to the owner (a chunked message counts once) */
    uint64_t frames_out; /* frames whose write completed */
    uint64_t chunks_in;  /* chunk frames received */
    uint64_t chunks_out; /* chunk frames written */
    uint64_t bytes_in;   /* bytes read from the socket */
    uint64_t bytes_out;  /* bytes written (completed writes) */
    uint64_t copied_in;  /* array bytes the decoder had to copy (0 when aligned, by design) */
    uint64_t pauses;     /* times reading stopped because the owner's mailbox was full */
    uint64_t rx_waits;   /* times reading stopped for another large message (serial_rx_min) */
} pt_stream_stats_t;

/* Loop thread. 0, or PETAL_EINVAL when c is not a tcp or ipc connection. */
int pt_stream_conn_stats(pt_conn_t *c, pt_stream_stats_t *out);

/* ---- For the tcp and ipc transports ------------------------------------------------------- */

typedef union pt_stream_handle {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} pt_stream_handle_t;

typedef struct pt_stream_hdr {
    uint64_t version, kind, flags, seq, ack;
    int has_msg;
    uint64_t total, offset; /* chunks only */
} pt_stream_hdr_t;

typedef struct pt_stream_conn pt_stream_conn_t;
typedef struct pt_stream_listener pt_stream_listener_t;

struct pt_stream_conn {
    struct pt_conn_base base; /* first: the generic wrappers cast to it */
    pt_runtime_t *rt;
    pt_stream_handle_t h;
    uv_timer_t idle;
    uv_connect_t connect_req; /* dials */
    uv_getaddrinfo_t gai;     /* tcp dials of a host name */
    int is_pipe;
    int handles;     /* uv handles not yet through their close callback */
    int closing;     /* uv_close called on the handles */
    int gai_pending; /* gai's callback has yet to run */
    int up;          /* UP sent: sends are accepted */
    int closed;      /* down: no more sends or deliveries; DOWN queued or refused */
    int paused;      /* reading stopped for the owner's mailbox, or by rx_waiting */
    int rx_holding;  /* receiving a message of at least serial_rx_min bytes (the loop's one) */
    int rx_waiting;  /* paused until the large message another connection receives is in */
    int rx_resume;   /* the idle timer is set to resume reading (rx_waiting ended) */
    struct pt_stream_conn *rx_next; /* the waiting list */
    int timer_on;
    int first_done; /* a first frame header was read */
    int down_state;
    int up_busy, writable_busy, want_writable;
    pt_actor_t *watched; /* the actor owner_watch is registered on */
    pt_actor_watch_t owner_watch;
    pt_actor_watch_t drain_watch;
    pt_stream_opts_t opts;
    pt_codec_limits_t limits;
    uint64_t queued; /* bytes in write requests whose callback has not run */
    uint64_t last_rx;
    /* reading */
    uint8_t *stage;
    size_t stage_start, stage_end;
    int in_payload;
    pt_buf_t *dst; /* where the current frame's message bytes go */
    int dst_owned; /* dst is this frame's own buffer (not the chunk assembly buffer) */
    size_t dst_pos, dst_end;
    pt_stream_hdr_t cur;
    pt_buf_t *asm_buf; /* a chunked message being assembled */
    uint64_t asm_total, asm_next, asm_kind, asm_seq;
    pt_stream_stats_t stats;
    pt_conn_event_t ev_up, ev_writable, ev_down;
    size_t stage_cap;           /* the stage's size when the secure layer allocated it */
    struct pt_secure_conn *sec; /* the secure channel under the framing (secure.c); NULL: plain */
};

struct pt_stream_listener {
    struct pt_listener_base base; /* first */
    pt_runtime_t *rt;
    pt_stream_handle_t h;
    int is_pipe;
    int closing;
    pt_stream_opts_t opts;
    pt_actor_watch_t owner_watch;
    char addr[160]; /* listener_addr: "tcp://127.0.0.1:40123", "ipc:///tmp/x.sock" */
    /* Called once when the listener closes, before its handle is closed (ipc: unlink). */
    void (*on_close)(pt_stream_listener_t *l);
    char path[128];                 /* ipc: the socket file */
    struct pt_secure_listener *sec; /* accepted connections get the secure channel (secure.c) */
};

/*
 * A new connection of `ops` for `owner` with an initialised tcp or pipe handle (not connected)
 * and the current process-wide limits (or `opts`, if non-NULL). 0, or an error (nothing left).
 */
int pt_stream_conn_new(pt_runtime_t *rt, const pt_tran_ops_t *ops, pt_actor_t *owner, int is_pipe,
                       const pt_stream_opts_t *opts, pt_stream_conn_t **out);
/* Connected (dial done, or accepted from `l`): sends UP, starts reading. */
void pt_stream_conn_established(pt_stream_conn_t *c, pt_stream_listener_t *l);
/* Takes the connection down: DOWN(status, reason) to the owner, handles closed. Idempotent. */
void pt_stream_conn_fail(pt_stream_conn_t *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Frees a connection that was never handed to anyone (no event): for a dial or an accept that
 * failed synchronously. */
void pt_stream_conn_discard(pt_stream_conn_t *c);
/* For tcp's getaddrinfo callback: the request is over (frees c if it was waiting for that). */
void pt_stream_conn_gai_done(pt_stream_conn_t *c);

/* The ops a stream transport uses as they are. */
int pt_stream_send(pt_conn_t *c, pt_frame_t *f);
void pt_stream_close(pt_conn_t *c);

/* A new listener with an initialised (unbound) handle; the transport binds it, fills addr and
 * calls pt_stream_listener_start. On error after this, close it with pt_stream_listener_close. */
int pt_stream_listener_new(pt_runtime_t *rt, const pt_tran_ops_t *ops, pt_actor_t *owner,
                           int is_pipe, pt_stream_listener_t **out);
int pt_stream_listener_start(pt_stream_listener_t *l);
int pt_stream_listener_addr(pt_listener_t *l, char *buf, size_t cap);
void pt_stream_listener_close(pt_listener_t *l);

/* Sets the peer name shown in log lines and reasons (cut to fit). */
void pt_stream_set_peer(pt_stream_conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sets SIGPIPE to SIG_IGN once if it is SIG_DFL. */
void pt_stream_ignore_sigpipe(void);

/* Formats a socket address as "1.2.3.4:5" or "[::1]:5"; "?" when unknown. */
void pt_stream_format_addr(const struct sockaddr *sa, char *buf, size_t cap);

/* ---- A record layer under the framing: the secure channel (secure.h, secure.c) ------------- */

/*
 * A connection with `sec` set reads and writes through secure.c: stream.c hands it each frame's
 * bytes to seal (pt_secure_stream_send) and takes the opened plaintext back through
 * pt_stream_rx_reserve / pt_stream_rx_commit, where it goes through the same parsing, limits
 * and delivery as the bytes of a plain connection. UP waits for the handshake.
 */

/* Room for the next n plaintext bytes: straight in the current message's buffer when they all
 * belong to it, else at the end of the stage (grown as needed). NULL when out of memory. */
uint8_t *pt_stream_rx_reserve(pt_stream_conn_t *c, size_t n);
/* n bytes were written at p (from pt_stream_rx_reserve; n may be 0): parse and deliver. */
void pt_stream_rx_commit(pt_stream_conn_t *c, const uint8_t *p, size_t n);
/* The handshake is done: UP to the owner (with `l` as its listener), reading starts. */
void pt_stream_conn_up(pt_stream_conn_t *c, pt_stream_listener_t *l);
/* Writes completed: `queued` bytes leave c->queued, `wire` bytes were written; stats, errors and
 * PT_MSG_CONN_WRITABLE as for a plain write. */
void pt_stream_write_done(pt_stream_conn_t *c, int status, uint64_t queued, uint64_t wire,
                          uint64_t frames, uint64_t chunks);

/* One stream frame of a send: its head's length and its message bytes (the head is one buffer
 * of the send's list, the message bytes follow it). */
typedef struct pt_stream_wframe {
    uint64_t head;
    uint64_t payload;
} pt_stream_wframe_t;

/* secure.c: */
void pt_secure_stream_start(pt_stream_conn_t *c, pt_stream_listener_t *l);
void pt_secure_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
void pt_secure_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
void pt_secure_stream_resume(pt_stream_conn_t *c);
int pt_secure_stream_mid_record(const pt_stream_conn_t *c);
/* Takes bufs, frames and blob (freed with blob_free once sealed, or when the connection goes),
 * also on error: 0, PETAL_ENOMEM or PETAL_ECLOSED (the connection failed). */
int pt_secure_stream_send(pt_stream_conn_t *c, uv_buf_t *bufs, size_t nbufs,
                          pt_stream_wframe_t *frames, size_t nframes, uint64_t nchunks, void *blob,
                          void (*blob_free)(void *blob));
void pt_secure_stream_release(pt_stream_conn_t *c);
void pt_secure_stream_free(pt_stream_conn_t *c);
void pt_secure_listener_free(pt_stream_listener_t *l);

#endif
