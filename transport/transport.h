/* transport.h - the transport interface: connections that carry protocol frames between actors. */
#ifndef PT_TRANSPORT_H
#define PT_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

#include "../runtime/actor.h"

/*
 * A frame is one protocol unit: a protocol version, a kind (the protocol's verb), sequence and
 * acknowledgement numbers, and optionally a Message. Transports move frames; protocols
 * (Fleet, Grid, Control in actors/) give kinds their meaning. The inproc transport hands the
 * frame itself to the peer (arrays shared by reference, nothing encoded); tcp and ipc encode it
 * with the codec.
 *
 * Ownership: pt_conn_send() takes the frame on success (0) only. Delivered frames belong to
 * the receiving actor, which frees them with pt_msg_free().
 */

#define PT_PROTOCOL_VERSION 1

typedef struct pt_conn pt_conn_t;
typedef struct pt_listener pt_listener_t;

typedef struct pt_frame {
    pt_msg_t hdr;     /* hdr.type == PT_MSG_FRAME when delivered */
    uint16_t version; /* PT_PROTOCOL_VERSION */
    uint16_t kind;    /* protocol verb */
    uint32_t flags;
    uint64_t seq;         /* sender's sequence number (0 = none) */
    uint64_t ack;         /* highest peer seq acknowledged (0 = none) */
    pt_conn_t *conn;      /* the connection it arrived on (set by the transport) */
    petal_message_t *msg; /* optional; owned by the frame */
} pt_frame_t;

/* Events delivered to the owning actor. */
#define PT_MSG_FRAME 0xff000101u         /* a pt_frame_t */
#define PT_MSG_CONN_UP 0xff000102u       /* a pt_conn_event_t: accepted, or dial completed */
#define PT_MSG_CONN_DOWN 0xff000103u     /* a pt_conn_event_t: closed by peer, error or us */
#define PT_MSG_CONN_WRITABLE 0xff000104u /* a pt_conn_event_t: send would not block now */

typedef struct pt_conn_event {
    pt_msg_t hdr;
    pt_conn_t *conn;
    int status;              /* 0, or why it went down / why the dial failed */
    char reason[512];        /* human-readable detail for logs */
    pt_listener_t *listener; /* CONN_UP of an accepted connection: its listener; else NULL */
} pt_conn_event_t;

/* A new frame owning `msg` (may be NULL); NULL if out of memory. */
pt_frame_t *pt_frame_alloc(uint16_t kind, petal_message_t *msg);

/*
 * Transport operations. Every function runs on the loop thread of `rt`. Addresses are
 * "inproc://name", "tcp://HOST:PORT", "ipc:///path". listen/dial deliver PT_MSG_CONN_UP to
 * `owner` for each connection; a dial that fails delivers PT_MSG_CONN_DOWN with the status.
 */
typedef struct pt_tran_ops {
    const char *scheme; /* "inproc", "tcp", "ipc" */
    int (*listen)(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out);
    /* The bound address (with the real port after binding port 0). */
    int (*listener_addr)(pt_listener_t *l, char *buf, size_t cap);
    void (*listener_close)(pt_listener_t *l);
    int (*dial)(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out);
    /* 0: queued (the frame is the transport's); PETAL_EAGAIN: the peer is over its high-water
     * mark and the caller keeps the frame until PT_MSG_CONN_WRITABLE; PETAL_ECLOSED: down. */
    int (*send)(pt_conn_t *c, pt_frame_t *f);
    /* Closes; the owner gets PT_MSG_CONN_DOWN(status PETAL_ECLOSED) once, then c is invalid
     * after the owner has handled that event. Frames queued but not sent are dropped. */
    void (*close)(pt_conn_t *c);
} pt_tran_ops_t;

/* Registered transports; NULL if the scheme is unknown. */
const pt_tran_ops_t *pt_tran_find(const char *addr);

/* Convenience wrappers that pick the transport from the address or the connection. */
int pt_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out);
int pt_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out);
int pt_conn_send(pt_conn_t *c, pt_frame_t *f);
void pt_conn_close(pt_conn_t *c);
/* Wrappers for a listener's ops: its bound address, and closing it (existing connections stay). */
int pt_listener_addr(pt_listener_t *l, char *buf, size_t cap);
void pt_listener_close(pt_listener_t *l);
/* Per-connection user pointer for the owning actor. */
void pt_conn_set_data(pt_conn_t *c, void *data);
void *pt_conn_data(pt_conn_t *c);
/* The peer's address for log lines ("inproc://x", "127.0.0.1:50712"). */
const char *pt_conn_peer(pt_conn_t *c);
/* The owner may change (e.g. after a handshake hands the connection to another actor). */
void pt_conn_set_owner(pt_conn_t *c, pt_actor_t *owner);

/* Every connection starts with this, so the generic wrappers reach its ops. */
struct pt_conn_base {
    const pt_tran_ops_t *ops;
    pt_actor_t *owner;
    void *data;
    char peer[64];
};
struct pt_listener_base {
    const pt_tran_ops_t *ops;
    pt_actor_t *owner;
};

extern const pt_tran_ops_t pt_inproc_ops;
extern const pt_tran_ops_t pt_tcp_ops, pt_ipc_ops; /* tcp.c, ipc.c; framing in stream.h */

#endif
