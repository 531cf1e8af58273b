/* secure.h - the secure channel: a signed X25519 handshake, then sealed records under frames. */
#ifndef PT_SECURE_H
#define PT_SECURE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/actor.h"
#include "../runtime/keys.h"
#include "transport.h"

/*
 * A secure connection is a tcp (or ipc) stream connection whose bytes go through a handshake
 * and then a record layer; the frames above it are the same as on a plain stream (stream.h).
 * Wire format, byte by byte: docs/protocol.md, "Secure channel". In short:
 *
 *   both sides send the magic "PETALSC2", then records [u32 big-endian length][body];
 *   handshake (SIGMA-I: ephemeral X25519 keys, each side signs the transcript with its Ed25519
 *   identity, identities travel encrypted under keys derived from the ephemeral DH):
 *     server -> client  HELLO(e_S, ciphers)               (sent as soon as the TCP accept is done)
 *     client -> server  HELLO(e_C, ciphers)               (sent as soon as the TCP connect is done)
 *     server -> client  AUTH(AEAD{pk_S, sig_S(H1)})
 *     client -> server  AUTH(AEAD{pk_C, sig_C(H2)}), STREAM(AEAD{client's stream header})
 *     server -> client  RESULT(AEAD{accepted + server's stream header | refused + reason})
 *   then every record body is one AEAD message of the record cipher both HELLOs agreed on:
 *   AES-256-GCM when both sides offer it (hardware AES), else crypto_secretstream_xchacha20poly1305
 *   (one stream per direction, keys = BLAKE2b(DH, direction label, transcript hash)). A record
 *   that fails authentication (modified, replayed, reordered, cut or from another connection)
 *   ends the connection: "127.0.0.1:5555: record 12 failed authentication: closing".
 *
 * The owner sees PT_MSG_CONN_UP only once the handshake has succeeded (the dialer: after the
 * server accepted it; the listener: after it accepted the client), so every frame it receives
 * came from the peer whose key pt_conn_peer_key() returns. A dial whose handshake fails gets
 * PT_MSG_CONN_DOWN (never UP) with PETAL_EPROTO and a reason such as
 *   "127.0.0.1:5555: server key ed25519:1111111111111111 is not the pinned ed25519:2222..."
 *   "127.0.0.1:5555: refused by the server: key ed25519:... is not in /etc/petal/nodes"
 *   "127.0.0.1:5555: the server closed the connection during the secure handshake (is it
 *    running with --insecure?)"
 * (PETAL_ETIMEDOUT when the handshake takes longer than handshake_timeout). An accepted
 * connection whose handshake fails is closed and logged (PT_WARN) without any event to the
 * owner. A plain peer is recognised at once: a plain client on a secure port receives the magic
 * and its stream reports "the peer speaks Petal's secure channel"; a secure client on a plain
 * port is closed by the plain side as soon as its magic arrives.
 */

#define PT_SECURE_MAGIC "PETALSC2" /* 8 bytes, the first ones each side sends */
#define PT_SECURE_MAGIC_LEN 8
#define PT_SECURE_DEFAULT_HANDSHAKE_TIMEOUT 10.0 /* seconds */
#define PT_SECURE_DEFAULT_MAX_HANDSHAKES 256     /* per listener, at once */

/*
 * Record ciphers (bits of pt_secure_opts_t.ciphers and of the HELLO's offer). Both seal a record
 * with a 17-byte overhead and number records per direction, so a replayed, reordered or dropped
 * record fails authentication. The HELLOs are signed with the transcript, so an attacker cannot
 * strike AES-256-GCM from an offer to force the other cipher.
 */
#define PT_SECURE_XCHACHA20POLY1305 0x01u /* crypto_secretstream_xchacha20poly1305: everywhere */
#define PT_SECURE_AES256GCM 0x02u         /* crypto_aead_aes256gcm: with AES-NI and PCLMUL only */

/* Options of a secure listener or dial. Copied by the call; what the pointers point to must
 * stay valid while the listener or the connection lives. Loop thread. */
typedef struct pt_secure_opts {
    /* This side's long-term identity (required). */
    const pt_keypair_t *identity;
    /* The only peer key accepted (PT_KEY_PUBLIC_BYTES; copied): a client pins the SuperLink's
     * key with it. NULL: any key (subject to authorize). */
    const uint8_t *pinned_peer_pk;
    /* Called on the loop thread with the authenticated peer key (after the pin check): return 0
     * to accept, anything else to refuse, with a reason in why[0, cap) that is logged and, on a
     * listener, sent to the refused client. NULL: accept. pt_keylist_authorize fits. */
    int (*authorize)(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap);
    void *ctx;
    /* Seconds from connect/accept to the end of the handshake; 0: the default (10 s). */
    double handshake_timeout;
    /* The record ciphers offered (PT_SECURE_* bits) among those this machine runs; 0: all of
     * them. A connection uses AES-256-GCM when both sides offer it (about 1.5x the speed of
     * XChaCha20-Poly1305 with libsodium 1.0.18 on AES-NI machines), else XChaCha20-Poly1305;
     * with nothing in common the handshake fails ("no record cipher in common"). */
    unsigned ciphers;
    /* A listener: handshakes in progress at once (each holds guarded memory and a timer until
     * it ends); a client beyond them is told "too many secure handshakes in progress (N, the
     * limit); try again later" and closed. 0: PT_SECURE_DEFAULT_MAX_HANDSHAKES. */
    uint64_t max_handshakes;
} pt_secure_opts_t;

/*
 * Like pt_listen / pt_dial, for "tcp://HOST:PORT" (or "tcp+secure://HOST:PORT", or
 * "ipc:///path") with the secure channel. 0 or an error as pt_listen / pt_dial, plus
 * PETAL_EINVAL when opts or opts->identity is NULL. Loop thread.
 * Limits (pt_stream_opts_t) and events are those of the stream transports; max_frame and
 * max_message limit the decrypted frames as they do plain ones.
 */
int pt_listen_secure(pt_runtime_t *rt, const char *addr, pt_actor_t *owner,
                     const pt_secure_opts_t *opts, pt_listener_t **out);
int pt_dial_secure(pt_runtime_t *rt, const char *addr, pt_actor_t *owner,
                   const pt_secure_opts_t *opts, pt_conn_t **out);

/* The authenticated peer key of a secure connection that is up. 0, or PETAL_EINVAL (not a
 * secure connection, or its handshake is not done). Loop thread. */
int pt_conn_peer_key(pt_conn_t *c, uint8_t out[PT_KEY_PUBLIC_BYTES]);
/* 1 if c is a secure connection, else 0. */
int pt_conn_is_secure(pt_conn_t *c);

/*
 * "tcp+secure://HOST:PORT" addresses given to pt_listen / pt_dial (e.g. by tests that run the
 * transport conformance suite) use these process-wide options; until they are set, such a
 * listen or dial fails with PETAL_EINVAL. Copied (the pointers as above); NULL unsets. Call
 * before the runtimes that use them start.
 */
int pt_secure_set_default_opts(const pt_secure_opts_t *opts);
extern const pt_tran_ops_t pt_tcp_secure_ops; /* scheme "tcp+secure" */

/* ---- The protocol over byte buffers (no sockets: for the stream glue, tests and fuzzing) ----- */

typedef struct pt_secure_session pt_secure_session_t;

enum { PT_SECURE_CLIENT = 0, PT_SECURE_SERVER = 1 };

/* Return values of pt_secure_handshake_input besides errors. */
enum { PT_SECURE_MORE = 0, PT_SECURE_DONE = 1 };

#define PT_SECURE_RECORD_HEAD 4 /* the big-endian length of a record's body */
#define PT_SECURE_ABYTES 17     /* secretstream: tag + MAC; AES-256-GCM: type + tag */
#define PT_SECURE_RECORD_OVERHEAD (PT_SECURE_RECORD_HEAD + PT_SECURE_ABYTES)
#define PT_SECURE_MAX_RECORD (256 * 1024) /* plaintext bytes of one record */
#define PT_SECURE_MAX_HANDSHAKE_RECORD 512
/* Records per direction and connection (2^40, a quarter of an exabyte in full records): past it
 * the connection fails and a reconnect brings fresh keys. */
#define PT_SECURE_MAX_RECORDS (UINT64_C(1) << 40)

/* The record ciphers this machine can run (PT_SECURE_* bits; XChaCha20-Poly1305 always). */
unsigned pt_secure_ciphers_available(void);
/* The record cipher a session agreed on (a PT_SECURE_* bit; 0 before the peer's HELLO), and its
 * name ("AES-256-GCM", "XChaCha20-Poly1305"; "none" for 0). */
int pt_secure_cipher(const pt_secure_session_t *s);
const char *pt_secure_cipher_name(int cipher);

/*
 * A new session for one side (PT_SECURE_CLIENT dials, PT_SECURE_SERVER accepts). The session
 * copies opts and the pinned key; secrets (ephemeral key, DH result, derived keys, stream
 * states) live in sodium_malloc memory and are wiped by pt_secure_session_free. Its first
 * output (the magic and HELLO) is ready at once. 0, PETAL_EINVAL (also: opts->ciphers names
 * no cipher this machine runs) or PETAL_ENOMEM. Sessions
 * share nothing: any thread, one thread per session at a time.
 */
int pt_secure_session_new(int role, const pt_secure_opts_t *opts, pt_secure_session_t **out);
void pt_secure_session_free(pt_secure_session_t *s);

/* Fails the session with `why`, queued for the peer as an ALERT (a server refusing before the
 * handshake has run). Returns status. */
int pt_secure_session_refuse(pt_secure_session_t *s, int status, const char *why);

/*
 * Hands over the bytes the session wants sent (handshake messages; after a failure, an alert
 * or a refusal for the peer), or *len = 0. *data is malloc'd and becomes the caller's (free()).
 * 0, or PETAL_ENOMEM.
 */
int pt_secure_take_output(pt_secure_session_t *s, uint8_t **data, size_t *len);

/*
 * Feeds received handshake bytes in[0, n); *used = bytes consumed (bytes after the end of the
 * handshake are records and are left unconsumed). Returns PT_SECURE_MORE (waiting for bytes),
 * PT_SECURE_DONE (established: pt_secure_seal/open work now) or a negative error, with
 * pt_secure_error() telling why: PETAL_EPROTO (bad bytes, failed verification, pin mismatch,
 * refusal by authorize on either side), PETAL_ENOMEM. After an error the session is dead
 * (every call fails) but may still have output to flush (take it before closing).
 */
int pt_secure_handshake_input(pt_secure_session_t *s, const uint8_t *in, size_t n, size_t *used);

/* Why the session failed ("" while it has not), without the peer prefix. */
const char *pt_secure_error(const pt_secure_session_t *s);
/* 1 once established. */
int pt_secure_established(const pt_secure_session_t *s);
/* The authenticated peer key (valid once established, or once the peer's AUTH verified). 0, or
 * PETAL_EINVAL. */
int pt_secure_peer_key(const pt_secure_session_t *s, uint8_t out[PT_KEY_PUBLIC_BYTES]);

/*
 * Seals m[0, n) (n <= PT_SECURE_MAX_RECORD) as the next record, head and body, into out, which
 * has room for n + PT_SECURE_RECORD_OVERHEAD bytes (m and out must not overlap; the head is
 * the body's additional data). Returns the record's length (n + PT_SECURE_RECORD_OVERHEAD), or
 * a negative error (PETAL_EINVAL: too long, or the session is not established).
 */
int64_t pt_secure_seal(pt_secure_session_t *s, const uint8_t *m, size_t n, uint8_t *out);

/*
 * The body length announced by a record head (4 bytes). 0 and *body_len, or PETAL_EPROTO
 * (shorter than PT_SECURE_ABYTES or longer than PT_SECURE_MAX_RECORD + PT_SECURE_ABYTES).
 */
int pt_secure_record_len(const uint8_t head[PT_SECURE_RECORD_HEAD], size_t *body_len);

/*
 * Opens the next record rec[0, len) (head and body: len = PT_SECURE_RECORD_HEAD + body length)
 * into out, which has room for len - PT_SECURE_RECORD_OVERHEAD bytes (rec and out must not
 * overlap). 0 and *out_len, or PETAL_EPROTO when it fails authentication (modified, replayed,
 * reordered, cut, or a length that does not match its head); the session is dead from then
 * on and pt_secure_error() says "record N failed authentication: closing". PETAL_EINVAL when
 * the session is not established.
 */
int pt_secure_open(pt_secure_session_t *s, const uint8_t *rec, size_t len, uint8_t *out,
                   size_t *out_len);

/* Records sealed / opened so far (the N of error messages is records_in + 1). */
uint64_t pt_secure_records_out(const pt_secure_session_t *s);
uint64_t pt_secure_records_in(const pt_secure_session_t *s);

#endif
