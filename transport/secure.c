/* secure.c - the secure channel: SIGMA-I handshake, sealed records, and its stream glue. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "../runtime/log.h"
#include "gcm.h"
#include "secure.h"
#include "stream.h"

/*
 * Part 1 is the protocol over byte buffers (docs/protocol.md, "Secure channel"): a session
 * consumes handshake bytes and produces the bytes to send, then seals and opens records. Part 2
 * puts it under a stream connection: stream.c hands over each frame's bytes (sealed here in
 * batches as the socket drains) and gets opened plaintext back through pt_stream_rx_reserve /
 * pt_stream_rx_commit. Part 3 is the API: secure listen and dial, peer keys, "tcp+secure://".
 */

/* ---- Wire constants ------------------------------------------------------------------------- */

#define HS_HELLO 1
#define HS_AUTH 2
#define HS_RESULT 3
#define HS_ALERT 4
#define HS_STREAM 5

#define KEY_BYTES 32
#define AEAD_ABYTES crypto_aead_xchacha20poly1305_ietf_ABYTES       /* 16 */
#define AEAD_NPUB crypto_aead_xchacha20poly1305_ietf_NPUBBYTES      /* 24 */
#define SS_HEADER crypto_secretstream_xchacha20poly1305_HEADERBYTES /* 24 */
#define HELLO_LEN (3 + KEY_BYTES)                                   /* type, role, e, ciphers */
#define AUTH_PLAIN (KEY_BYTES + PT_KEY_SIG_BYTES)                   /* pk, sig */
#define AUTH_LEN (1 + AUTH_PLAIN + AEAD_ABYTES)
#define STREAM_LEN (1 + SS_HEADER + AEAD_ABYTES) /* type, AEAD(header) */
#define GCM_NPUB PT_GCM_NONCE_BYTES              /* 12 */
#define GCM_ABYTES PT_GCM_TAG_BYTES              /* 16 */
#define GCM_AD (PT_SECURE_RECORD_HEAD + 1)       /* the head and the record type */
#define REC_TYPE_DATA 0x00                       /* an AES-256-GCM record's first byte */
#define CIPHERS_KNOWN (PT_SECURE_XCHACHA20POLY1305 | PT_SECURE_AES256GCM)
#define REASON_MAX 300 /* bytes of a refusal or alert text */

#define LABEL_TRANSCRIPT "petal secure channel v1"
#define LABEL_SIG_SERVER "petal-sc-v1 server signature"
#define LABEL_SIG_CLIENT "petal-sc-v1 client signature"
#define LABEL_HS_S2C "petal-sc-v1 handshake s2c"
#define LABEL_HS_C2S "petal-sc-v1 handshake c2s"
#define LABEL_TR_S2C "petal-sc-v1 traffic s2c"
#define LABEL_TR_C2S "petal-sc-v1 traffic c2s"

_Static_assert(PT_SECURE_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES, "ABYTES");
_Static_assert(PT_SECURE_ABYTES == 1 + GCM_ABYTES, "both ciphers have the same record overhead");
_Static_assert(PT_KEY_PUBLIC_BYTES == crypto_sign_PUBLICKEYBYTES, "public key size");
_Static_assert(PT_SECURE_MAX_HANDSHAKE_RECORD >= 2 + REASON_MAX + AEAD_ABYTES, "room");

/* ---- Part 1: the session -------------------------------------------------------------------- */

enum { ST_MAGIC, ST_HELLO, ST_AUTH, ST_RESULT, ST_STREAM, ST_EST, ST_FAILED };

/*
 * The handshake's secrets, in sodium_malloc memory (its size is a multiple of 64, so it is
 * aligned), freed (wiped) when the handshake ends. The two stream states then move to `streams`
 * in ordinary memory, wiped when the session is freed: each guarded allocation costs three
 * memory mappings, and Linux allows a process 65,530, so keeping one per connection would cap
 * a SuperLink at about 20,000 nodes.
 */
struct secrets {
    crypto_generichash_state th; /* the transcript */
    crypto_secretstream_xchacha20poly1305_state tx, rx;
    uint8_t e_sk[KEY_BYTES];
    uint8_t dh[KEY_BYTES];
    uint8_t k_hs_s2c[KEY_BYTES];
    uint8_t k_hs_c2s[KEY_BYTES];
    uint8_t k_tmp[KEY_BYTES];
    uint8_t k_gcm_tx[KEY_BYTES]; /* AES-256-GCM: the traffic keys until established */
    uint8_t k_gcm_rx[KEY_BYTES];
};

_Static_assert(sizeof(struct secrets) % 64 == 0, "sodium_malloc aligns a multiple of 64 bytes");

/* The record states of the session's cipher. */
struct streams {
    union {
        struct {
            crypto_secretstream_xchacha20poly1305_state tx, rx;
        } ss;
        struct {
            pt_gcm_t *tx, *rx; /* expanded keys; the nonces are record numbers */
        } gcm;
    } u;
};

struct pt_secure_session {
    int role;
    int state;
    int status; /* the error once failed */
    char err[400];
    const pt_keypair_t *identity;
    unsigned offered; /* the record ciphers this side offers (PT_SECURE_* bits) */
    int cipher;       /* the one both chose in the HELLOs, 0 before */
    int has_pin;
    uint8_t pin[KEY_BYTES];
    int (*authorize)(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap);
    void *ctx;
    uint8_t my_hello[HELLO_LEN];
    uint8_t h[KEY_BYTES]; /* the transcript hash at the last step */
    uint8_t peer_pk[KEY_BYTES];
    int peer_known;
    size_t magic_got;
    uint8_t first[PT_SECURE_MAGIC_LEN]; /* the peer's first bytes, for error messages */
    size_t first_n;
    struct secrets *sk; /* during the handshake */
    struct streams *st; /* once established */
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t rec_in, rec_out;
};

static void
be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t
be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *
peer_name(const pt_secure_session_t *s)
{
    return s->role == PT_SECURE_CLIENT ? "server" : "client";
}

/* The handshake is over: its secrets go (sodium_free wipes them). */
static void
wipe_handshake(pt_secure_session_t *s)
{
    if (s->sk != NULL) {
        sodium_free(s->sk);
        s->sk = NULL;
    }
}

static void
free_streams(pt_secure_session_t *s)
{
    if (s->st != NULL) {
        if (s->cipher == PT_SECURE_AES256GCM) {
            pt_gcm_free(s->st->u.gcm.tx);
            pt_gcm_free(s->st->u.gcm.rx);
        }
        sodium_memzero(s->st, sizeof(*s->st));
        free(s->st);
        s->st = NULL;
    }
}

/* Established: the stream states move out of guarded memory, the rest is wiped. */
static int
establish(pt_secure_session_t *s)
{
    s->st = calloc(1, sizeof(*s->st));
    if (s->st == NULL) {
        return -1;
    }
    if (s->cipher == PT_SECURE_AES256GCM) {
        if (pt_gcm_new(s->sk->k_gcm_tx, 1, &s->st->u.gcm.tx) != 0 ||
            pt_gcm_new(s->sk->k_gcm_rx, 0, &s->st->u.gcm.rx) != 0) {
            free_streams(s);
            return -1;
        }
    } else {
        memcpy(&s->st->u.ss.tx, &s->sk->tx, sizeof(s->st->u.ss.tx));
        memcpy(&s->st->u.ss.rx, &s->sk->rx, sizeof(s->st->u.ss.rx));
    }
    wipe_handshake(s);
    s->state = ST_EST;
    return 0;
}

static int fail(pt_secure_session_t *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(pt_secure_session_t *s, int status, const char *fmt, ...)
{
    va_list ap;

    if (s->state == ST_FAILED) {
        return s->status;
    }
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->state = ST_FAILED;
    s->status = status;
    wipe_handshake(s);
    free_streams(s);
    return status;
}

static int
out_append(pt_secure_session_t *s, const uint8_t *p, size_t n)
{
    if (s->out_len + n > s->out_cap) {
        size_t cap = s->out_cap == 0 ? 256 : s->out_cap;
        uint8_t *o;

        while (cap < s->out_len + n) {
            cap *= 2;
        }
        o = realloc(s->out, cap);
        if (o == NULL) {
            return PETAL_ENOMEM;
        }
        s->out = o;
        s->out_cap = cap;
    }
    memcpy(s->out + s->out_len, p, n);
    s->out_len += n;
    return 0;
}

/* Appends a handshake record: [u32 length][type][body]. */
static int
out_record(pt_secure_session_t *s, uint8_t type, const uint8_t *body, size_t n)
{
    uint8_t head[5];

    be32_put(head, (uint32_t)(n + 1));
    head[4] = type;
    if (out_append(s, head, sizeof(head)) != 0 || out_append(s, body, n) != 0) {
        return PETAL_ENOMEM;
    }
    return 0;
}

/* Queues an ALERT (best effort) and fails with the same text. */
static int fail_alert(pt_secure_session_t *s, int status, const char *alert, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
fail_alert(pt_secure_session_t *s, int status, const char *alert, const char *fmt, ...)
{
    char msg[sizeof(s->err)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->state != ST_FAILED) {
        size_t n = strlen(alert);

        out_record(s, HS_ALERT, (const uint8_t *)alert, n < REASON_MAX ? n : REASON_MAX);
    }
    return fail(s, status, "%s", msg);
}

/* A peer's text, printable ASCII only, into out (cap >= 1). */
static void
sanitize(const uint8_t *p, size_t n, char *out, size_t cap)
{
    size_t j = 0;

    for (size_t i = 0; i < n && j + 1 < cap; i++) {
        out[j++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    }
    out[j] = '\0';
}

static void
transcript_snapshot(pt_secure_session_t *s)
{
    crypto_generichash_state copy;

    memcpy(&copy, &s->sk->th, sizeof(copy));
    crypto_generichash_final(&copy, s->h, sizeof(s->h));
    sodium_memzero(&copy, sizeof(copy));
}

static void
transcript_add(pt_secure_session_t *s, const uint8_t *p, size_t n)
{
    crypto_generichash_update(&s->sk->th, p, n);
    transcript_snapshot(s);
}

/* out = BLAKE2b-256(key = DH result, label || transcript hash). */
static void
kdf(pt_secure_session_t *s, const char *label, uint8_t out[KEY_BYTES])
{
    uint8_t in[64 + KEY_BYTES];
    size_t n = strlen(label);

    memcpy(in, label, n);
    memcpy(in + n, s->h, KEY_BYTES);
    crypto_generichash(out, KEY_BYTES, in, n + KEY_BYTES, s->sk->dh, KEY_BYTES);
}

static void
nonce(uint8_t npub[AEAD_NPUB], uint8_t counter)
{
    memset(npub, 0, AEAD_NPUB);
    npub[0] = counter;
}

/* The signed message: label || transcript hash || the signer's public key. */
static size_t
sig_message(const char *label, const uint8_t h[KEY_BYTES], const uint8_t pk[KEY_BYTES],
            uint8_t out[96])
{
    size_t n = strlen(label);

    memcpy(out, label, n);
    memcpy(out + n, h, KEY_BYTES);
    memcpy(out + n + KEY_BYTES, pk, KEY_BYTES);
    return n + 2 * KEY_BYTES;
}

int
pt_secure_session_new(int role, const pt_secure_opts_t *opts, pt_secure_session_t **out)
{
    pt_secure_session_t *s;
    uint8_t e_pk[KEY_BYTES];
    unsigned offered;

    if ((role != PT_SECURE_CLIENT && role != PT_SECURE_SERVER) || opts == NULL ||
        opts->identity == NULL || opts->identity->sk == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (pt_keys_init() != 0) {
        return PETAL_ENOMEM;
    }
    offered = pt_secure_ciphers_available() & (opts->ciphers != 0 ? opts->ciphers : CIPHERS_KNOWN);
    if (offered == 0) {
        return PETAL_EINVAL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PETAL_ENOMEM;
    }
    s->offered = offered;
    s->sk = sodium_malloc(sizeof(struct secrets));
    if (s->sk == NULL) {
        free(s);
        return PETAL_ENOMEM;
    }
    memset(s->sk, 0, sizeof(struct secrets));
    s->role = role;
    s->identity = opts->identity;
    if (opts->pinned_peer_pk != NULL) {
        s->has_pin = 1;
        memcpy(s->pin, opts->pinned_peer_pk, KEY_BYTES);
    }
    s->authorize = opts->authorize;
    s->ctx = opts->ctx;
    randombytes_buf(s->sk->e_sk, KEY_BYTES);
    crypto_scalarmult_base(e_pk, s->sk->e_sk);
    s->my_hello[0] = HS_HELLO;
    s->my_hello[1] = role == PT_SECURE_SERVER ? 'S' : 'C';
    memcpy(s->my_hello + 2, e_pk, KEY_BYTES);
    s->my_hello[2 + KEY_BYTES] = (uint8_t)offered;
    crypto_generichash_init(&s->sk->th, NULL, 0, KEY_BYTES);
    crypto_generichash_update(&s->sk->th, (const uint8_t *)LABEL_TRANSCRIPT,
                              strlen(LABEL_TRANSCRIPT));
    s->state = ST_MAGIC;
    if (out_append(s, (const uint8_t *)PT_SECURE_MAGIC, PT_SECURE_MAGIC_LEN) != 0 ||
        out_record(s, HS_HELLO, s->my_hello + 1, HELLO_LEN - 1) != 0) {
        pt_secure_session_free(s);
        return PETAL_ENOMEM;
    }
    *out = s;
    return 0;
}

void
pt_secure_session_free(pt_secure_session_t *s)
{
    if (s == NULL) {
        return;
    }
    wipe_handshake(s);
    free_streams(s);
    free(s->out);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

int
pt_secure_session_refuse(pt_secure_session_t *s, int status, const char *why)
{
    if (s == NULL || why == NULL) {
        return PETAL_EINVAL;
    }
    return fail_alert(s, status, why, "%s", why);
}

int
pt_secure_take_output(pt_secure_session_t *s, uint8_t **data, size_t *len)
{
    if (s == NULL || data == NULL || len == NULL) {
        return PETAL_EINVAL;
    }
    *data = s->out;
    *len = s->out_len;
    s->out = NULL;
    s->out_len = 0;
    s->out_cap = 0;
    return 0;
}

const char *
pt_secure_error(const pt_secure_session_t *s)
{
    return s != NULL && s->state == ST_FAILED ? s->err : "";
}

int
pt_secure_established(const pt_secure_session_t *s)
{
    return s != NULL && s->state == ST_EST;
}

int
pt_secure_peer_key(const pt_secure_session_t *s, uint8_t out[PT_KEY_PUBLIC_BYTES])
{
    if (s == NULL || out == NULL || !s->peer_known) {
        return PETAL_EINVAL;
    }
    memcpy(out, s->peer_pk, KEY_BYTES);
    return 0;
}

unsigned
pt_secure_ciphers_available(void)
{
    if (pt_keys_init() != 0) {
        return 0;
    }
    return PT_SECURE_XCHACHA20POLY1305 |
           (crypto_aead_aes256gcm_is_available() ? PT_SECURE_AES256GCM : 0u);
}

int
pt_secure_cipher(const pt_secure_session_t *s)
{
    return s != NULL ? s->cipher : 0;
}

const char *
pt_secure_cipher_name(int cipher)
{
    switch (cipher) {
    case PT_SECURE_XCHACHA20POLY1305:
        return "XChaCha20-Poly1305";
    case PT_SECURE_AES256GCM:
        return "AES-256-GCM";
    default:
        return "none";
    }
}

uint64_t
pt_secure_records_out(const pt_secure_session_t *s)
{
    return s->rec_out;
}

uint64_t
pt_secure_records_in(const pt_secure_session_t *s)
{
    return s->rec_in;
}

/* What the peer's first bytes say when they are not the magic. */
static int
fail_magic(pt_secure_session_t *s)
{
    char shown[3 * PT_SECURE_MAGIC_LEN + 1];
    int printable = 1;

    for (size_t i = 0; i < s->first_n; i++) {
        if (s->first[i] < 0x20 || s->first[i] >= 0x7f) {
            printable = 0;
        }
    }
    if (s->first[0] == 0x00) {
        return fail(s, PETAL_EPROTO,
                    "the %s sent a plain Petal frame: it does not use the secure channel (is it "
                    "running with --insecure?)",
                    peer_name(s));
    }
    if (printable) {
        sanitize(s->first, s->first_n, shown, sizeof(shown));
    } else {
        size_t j = 0;

        for (size_t i = 0; i < s->first_n && i < 4; i++) {
            j +=
                (size_t)snprintf(shown + j, sizeof(shown) - j, "%s%02x", i ? " " : "", s->first[i]);
        }
    }
    return fail(s, PETAL_EPROTO,
                "the %s does not speak Petal's secure channel (its first bytes: %s%s%s)",
                peer_name(s), printable ? "\"" : "", shown, printable ? "\"" : "");
}

/* Pin, then authorize: 0 when the peer is accepted; else 1 with `why` for our log and `told`
 * for the peer. */
static int
peer_refused(pt_secure_session_t *s, char *why, size_t cap, char *told, size_t tcap)
{
    char got[PT_KEY_FPR_SIZE], want[PT_KEY_FPR_SIZE], reason[256];

    pt_key_fingerprint(s->peer_pk, got);
    if (s->has_pin && sodium_memcmp(s->peer_pk, s->pin, KEY_BYTES) != 0) {
        pt_key_fingerprint(s->pin, want);
        snprintf(why, cap, "%s key %s is not the pinned %s", peer_name(s), got, want);
        snprintf(told, tcap, "key %s is not the one this %s expects", got,
                 s->role == PT_SECURE_SERVER ? "server" : "client");
        return 1;
    }
    if (s->authorize != NULL) {
        reason[0] = '\0';
        if (s->authorize(s->ctx, s->peer_pk, reason, sizeof(reason)) != 0) {
            reason[sizeof(reason) - 1] = '\0';
            if (reason[0] == '\0') {
                snprintf(reason, sizeof(reason), "key %s is not authorized", got);
            }
            snprintf(why, cap, "%s key %s refused: %s", peer_name(s), got, reason);
            snprintf(told, tcap, "%s", reason);
            return 1;
        }
    }
    return 0;
}

/* Both sides: the peer's HELLO. The server answers with its AUTH. */
static int
on_hello(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    struct secrets *k = s->sk;
    uint8_t want_role = s->role == PT_SECURE_CLIENT ? 'S' : 'C';
    const uint8_t *hello_s, *hello_c;
    uint8_t peer_hello[HELLO_LEN];
    uint8_t msg[96], plain[AUTH_PLAIN], ct[AUTH_PLAIN + AEAD_ABYTES], npub[AEAD_NPUB];
    unsigned long long clen = 0;
    unsigned common;

    if (n != HELLO_LEN || b[1] != want_role) {
        return fail_alert(s, PETAL_EPROTO, "malformed HELLO",
                          "malformed HELLO from the %s (%zu bytes, role 0x%02x)", peer_name(s), n,
                          b[n > 1 ? 1 : 0]);
    }
    memcpy(peer_hello, b, HELLO_LEN);
    /* Both HELLOs enter the transcript that both sides sign: a changed offer fails AUTH. */
    common = s->offered & peer_hello[2 + KEY_BYTES];
    if (common == 0) {
        return fail_alert(s, PETAL_EPROTO, "no record cipher in common",
                          "no record cipher in common with the %s (it offers 0x%02x, this side "
                          "0x%02x)",
                          peer_name(s), peer_hello[2 + KEY_BYTES], s->offered);
    }
    s->cipher = (common & PT_SECURE_AES256GCM) ? PT_SECURE_AES256GCM : PT_SECURE_XCHACHA20POLY1305;
    if (crypto_scalarmult(k->dh, k->e_sk, peer_hello + 2) != 0) {
        return fail_alert(s, PETAL_EPROTO, "invalid ephemeral key",
                          "the %s sent an invalid ephemeral key", peer_name(s));
    }
    sodium_memzero(k->e_sk, sizeof(k->e_sk)); /* one DH per session */
    hello_s = s->role == PT_SECURE_SERVER ? s->my_hello : peer_hello;
    hello_c = s->role == PT_SECURE_SERVER ? peer_hello : s->my_hello;
    crypto_generichash_update(&k->th, hello_s, HELLO_LEN);
    transcript_add(s, hello_c, HELLO_LEN); /* h = H1 */
    kdf(s, LABEL_HS_S2C, k->k_hs_s2c);
    kdf(s, LABEL_HS_C2S, k->k_hs_c2s);
    s->state = ST_AUTH;
    if (s->role == PT_SECURE_CLIENT) {
        return PT_SECURE_MORE;
    }
    /* AUTH_S = AEAD(k_hs_s2c, nonce 0, ad H1, pk_S || sig_S(label || H1 || pk_S)) */
    memcpy(plain, s->identity->pk, KEY_BYTES);
    if (pt_keypair_sign(s->identity, msg, sig_message(LABEL_SIG_SERVER, s->h, plain, msg),
                        plain + KEY_BYTES) != 0) {
        return fail(s, PETAL_EINVAL, "cannot sign with this server's key");
    }
    nonce(npub, 0);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, plain, sizeof(plain), s->h, KEY_BYTES,
                                               NULL, npub, k->k_hs_s2c);
    if (out_record(s, HS_AUTH, ct, sizeof(ct)) != 0) {
        return fail(s, PETAL_ENOMEM, "out of memory");
    }
    {
        uint8_t body[AUTH_LEN];

        body[0] = HS_AUTH;
        memcpy(body + 1, ct, sizeof(ct));
        transcript_add(s, body, sizeof(body)); /* h = H2 */
    }
    return PT_SECURE_MORE;
}

/* Opens an AUTH body and verifies its signature; fills s->peer_pk. */
static int
open_auth(pt_secure_session_t *s, const uint8_t *b, size_t n, const uint8_t *key, const char *label)
{
    uint8_t plain[AUTH_PLAIN], msg[96], npub[AEAD_NPUB];
    unsigned long long plen = 0;

    if (n != AUTH_LEN) {
        return fail_alert(s, PETAL_EPROTO, "malformed AUTH",
                          "malformed AUTH from the %s (%zu bytes)", peer_name(s), n);
    }
    nonce(npub, 0);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, b + 1, n - 1, s->h,
                                                   KEY_BYTES, npub, key) != 0 ||
        plen != AUTH_PLAIN) {
        return fail_alert(s, PETAL_EPROTO, "AUTH failed authentication",
                          "the %s's AUTH failed authentication (the handshake was tampered "
                          "with)",
                          peer_name(s));
    }
    if (pt_key_verify(plain, msg, sig_message(label, s->h, plain, msg), plain + KEY_BYTES) != 0) {
        return fail_alert(s, PETAL_EPROTO, "bad signature",
                          "the %s's signature does not verify: it does not hold the secret key "
                          "of the identity it claims",
                          peer_name(s));
    }
    memcpy(s->peer_pk, plain, KEY_BYTES);
    s->peer_known = 1;
    return 0;
}

/* AES-256-GCM: a direction's key = BLAKE2b-256(key = its traffic key, the 24-byte header). */
static void
gcm_key(const uint8_t traffic[KEY_BYTES], const uint8_t hdr[SS_HEADER], uint8_t out[KEY_BYTES])
{
    crypto_generichash(out, KEY_BYTES, hdr, SS_HEADER, traffic, KEY_BYTES);
}

/* Derives the traffic keys from H3 and starts this side's sending stream; hdr = its header
 * (secretstream's, or 24 random bytes salting the AES-256-GCM key). */
static void
traffic_keys(pt_secure_session_t *s, uint8_t hdr[SS_HEADER])
{
    struct secrets *k = s->sk;

    kdf(s, s->role == PT_SECURE_CLIENT ? LABEL_TR_C2S : LABEL_TR_S2C, k->k_tmp);
    if (s->cipher == PT_SECURE_AES256GCM) {
        randombytes_buf(hdr, SS_HEADER);
        gcm_key(k->k_tmp, hdr, k->k_gcm_tx);
    } else {
        crypto_secretstream_xchacha20poly1305_init_push(&k->tx, hdr, k->k_tmp);
    }
    sodium_memzero(k->k_tmp, sizeof(k->k_tmp));
}

static void
start_pull(pt_secure_session_t *s, const uint8_t hdr[SS_HEADER])
{
    struct secrets *k = s->sk;

    /* The transcript hash of the pull key is the one the push keys came from (H3). */
    kdf(s, s->role == PT_SECURE_CLIENT ? LABEL_TR_S2C : LABEL_TR_C2S, k->k_tmp);
    if (s->cipher == PT_SECURE_AES256GCM) {
        gcm_key(k->k_tmp, hdr, k->k_gcm_rx);
    } else {
        crypto_secretstream_xchacha20poly1305_init_pull(&k->rx, hdr, k->k_tmp);
    }
    sodium_memzero(k->k_tmp, sizeof(k->k_tmp));
}

/* Client: the server's AUTH. Answers with AUTH_C and STREAM. */
static int
client_on_auth(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    struct secrets *k = s->sk;
    uint8_t plain[AUTH_PLAIN], msg[96], ct[AUTH_PLAIN + AEAD_ABYTES], npub[AEAD_NPUB];
    uint8_t body[AUTH_LEN], hdr[SS_HEADER], shdr[SS_HEADER + AEAD_ABYTES];
    char why[400], told[300];
    unsigned long long clen = 0;
    int r;

    r = open_auth(s, b, n, k->k_hs_s2c, LABEL_SIG_SERVER);
    if (r != 0) {
        return r;
    }
    if (peer_refused(s, why, sizeof(why), told, sizeof(told))) {
        return fail(s, PETAL_EPROTO, "%s", why);
    }
    transcript_add(s, b, n); /* h = H2 */
    memcpy(plain, s->identity->pk, KEY_BYTES);
    if (pt_keypair_sign(s->identity, msg, sig_message(LABEL_SIG_CLIENT, s->h, plain, msg),
                        plain + KEY_BYTES) != 0) {
        return fail(s, PETAL_EINVAL, "cannot sign with this client's key");
    }
    nonce(npub, 0);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, plain, sizeof(plain), s->h, KEY_BYTES,
                                               NULL, npub, k->k_hs_c2s);
    body[0] = HS_AUTH;
    memcpy(body + 1, ct, sizeof(ct));
    transcript_add(s, body, sizeof(body)); /* h = H3 */
    traffic_keys(s, hdr);
    /* STREAM = AEAD(k_hs_c2s, nonce 1, ad H3, header): the header is authenticated too. */
    nonce(npub, 1);
    crypto_aead_xchacha20poly1305_ietf_encrypt(shdr, &clen, hdr, sizeof(hdr), s->h, KEY_BYTES, NULL,
                                               npub, k->k_hs_c2s);
    if (out_record(s, HS_AUTH, ct, sizeof(ct)) != 0 ||
        out_record(s, HS_STREAM, shdr, sizeof(shdr)) != 0) {
        return fail(s, PETAL_ENOMEM, "out of memory");
    }
    s->state = ST_RESULT;
    return PT_SECURE_MORE;
}

/* Server: the client's AUTH. Answers with RESULT (accepted or refused). */
static int
server_on_auth(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    struct secrets *k = s->sk;
    uint8_t plain[2 + REASON_MAX], ct[sizeof(plain) + AEAD_ABYTES], npub[AEAD_NPUB];
    char why[400], told[300];
    unsigned long long clen = 0;
    size_t plen;
    int refused, r;

    r = open_auth(s, b, n, k->k_hs_c2s, LABEL_SIG_CLIENT);
    if (r != 0) {
        return r;
    }
    transcript_add(s, b, n); /* h = H3 */
    refused = peer_refused(s, why, sizeof(why), told, sizeof(told));
    if (refused) {
        size_t tn = strlen(told);

        tn = tn < REASON_MAX ? tn : REASON_MAX;
        plain[0] = 1;
        memcpy(plain + 1, told, tn);
        plen = 1 + tn;
    } else {
        plain[0] = 0;
        traffic_keys(s, plain + 1);
        plen = 1 + SS_HEADER;
    }
    nonce(npub, 1);
    crypto_aead_xchacha20poly1305_ietf_encrypt(ct, &clen, plain, plen, s->h, KEY_BYTES, NULL, npub,
                                               k->k_hs_s2c);
    if (out_record(s, HS_RESULT, ct, (size_t)clen) != 0) {
        return fail(s, PETAL_ENOMEM, "out of memory");
    }
    if (refused) {
        return fail(s, PETAL_EPROTO, "%s", why);
    }
    s->state = ST_STREAM;
    return PT_SECURE_MORE;
}

/* Client: the server's RESULT. */
static int
client_on_result(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    uint8_t plain[2 + REASON_MAX], npub[AEAD_NPUB];
    char reason[REASON_MAX + 1];
    unsigned long long plen = 0;

    nonce(npub, 1);
    if (n < 1 + 1 + AEAD_ABYTES || n - 1 > sizeof(plain) + AEAD_ABYTES ||
        crypto_aead_xchacha20poly1305_ietf_decrypt(plain, &plen, NULL, b + 1, n - 1, s->h,
                                                   KEY_BYTES, npub, s->sk->k_hs_s2c) != 0) {
        return fail(s, PETAL_EPROTO,
                    "the server's RESULT failed authentication (the handshake was tampered "
                    "with)");
    }
    if (plain[0] == 1) {
        sanitize(plain + 1, (size_t)plen - 1, reason, sizeof(reason));
        return fail(s, PETAL_EPROTO, "refused by the server: %s", reason);
    }
    if (plain[0] != 0 || plen != 1 + SS_HEADER) {
        return fail(s, PETAL_EPROTO, "malformed RESULT from the server");
    }
    start_pull(s, plain + 1);
    if (establish(s) != 0) {
        return fail(s, PETAL_ENOMEM, "out of memory");
    }
    return PT_SECURE_DONE;
}

/* Server: the client's STREAM header. */
static int
server_on_stream(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    uint8_t hdr[SS_HEADER], npub[AEAD_NPUB];
    unsigned long long hlen = 0;

    if (n != STREAM_LEN) {
        return fail_alert(s, PETAL_EPROTO, "malformed STREAM",
                          "malformed STREAM from the client (%zu bytes)", n);
    }
    nonce(npub, 1);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(hdr, &hlen, NULL, b + 1, n - 1, s->h, KEY_BYTES,
                                                   npub, s->sk->k_hs_c2s) != 0 ||
        hlen != SS_HEADER) {
        return fail_alert(s, PETAL_EPROTO, "STREAM failed authentication",
                          "the client's STREAM failed authentication (the handshake was "
                          "tampered with)");
    }
    start_pull(s, hdr);
    if (establish(s) != 0) {
        return fail(s, PETAL_ENOMEM, "out of memory");
    }
    return PT_SECURE_DONE;
}

static const char *
state_wants(const pt_secure_session_t *s)
{
    switch (s->state) {
    case ST_HELLO:
        return "HELLO";
    case ST_AUTH:
        return "AUTH";
    case ST_RESULT:
        return "RESULT";
    case ST_STREAM:
        return "STREAM";
    default:
        return "nothing";
    }
}

static int
on_record(pt_secure_session_t *s, const uint8_t *b, size_t n)
{
    static const uint8_t want_client[] = {0, HS_HELLO, HS_AUTH, HS_RESULT, 0};
    static const uint8_t want_server[] = {0, HS_HELLO, HS_AUTH, 0, HS_STREAM};
    uint8_t want = s->role == PT_SECURE_CLIENT ? want_client[s->state] : want_server[s->state];
    char text[REASON_MAX + 1];

    if (b[0] == HS_ALERT) {
        sanitize(b + 1, n - 1, text, sizeof(text));
        return fail(s, PETAL_EPROTO, "the %s ended the handshake: %s", peer_name(s), text);
    }
    if (b[0] != want) {
        return fail_alert(s, PETAL_EPROTO, "unexpected handshake record",
                          "unexpected handshake record type %u from the %s (waiting for %s)", b[0],
                          peer_name(s), state_wants(s));
    }
    switch (s->state) {
    case ST_HELLO:
        return on_hello(s, b, n);
    case ST_AUTH:
        return s->role == PT_SECURE_CLIENT ? client_on_auth(s, b, n) : server_on_auth(s, b, n);
    case ST_RESULT:
        return client_on_result(s, b, n);
    default:
        return server_on_stream(s, b, n);
    }
}

int
pt_secure_handshake_input(pt_secure_session_t *s, const uint8_t *in, size_t n, size_t *used)
{
    size_t pos = 0;
    int r = PT_SECURE_MORE;

    if (s == NULL || (in == NULL && n > 0) || used == NULL) {
        return PETAL_EINVAL;
    }
    *used = 0;
    if (s->state == ST_FAILED) {
        return s->status;
    }
    if (s->state == ST_EST) {
        return PT_SECURE_DONE;
    }
    while (pos < n) {
        uint32_t len;

        if (s->state == ST_MAGIC) {
            while (pos < n && s->magic_got < PT_SECURE_MAGIC_LEN) {
                s->first[s->first_n++] = in[pos];
                if (in[pos] != (uint8_t)PT_SECURE_MAGIC[s->magic_got]) {
                    /* Show a few more of its bytes in the message. */
                    for (size_t i = pos + 1; i < n && s->first_n < sizeof(s->first); i++) {
                        s->first[s->first_n++] = in[i];
                    }
                    *used = n;
                    return fail_magic(s);
                }
                s->magic_got++;
                pos++;
            }
            if (s->magic_got == PT_SECURE_MAGIC_LEN) {
                s->state = ST_HELLO;
            }
            continue;
        }
        if (n - pos < 4) {
            break;
        }
        len = be32_get(in + pos);
        if (len == 0 || len > PT_SECURE_MAX_HANDSHAKE_RECORD) {
            *used = pos + 4;
            return fail_alert(s, PETAL_EPROTO, "malformed handshake record",
                              "handshake record of %u bytes from the %s (at most %d)",
                              (unsigned)len, peer_name(s), PT_SECURE_MAX_HANDSHAKE_RECORD);
        }
        if (n - pos - 4 < len) {
            break;
        }
        r = on_record(s, in + pos + 4, len);
        pos += 4 + (size_t)len;
        if (r != PT_SECURE_MORE) {
            break;
        }
    }
    *used = pos;
    return r;
}

/* ---- Records -------------------------------------------------------------------------------- */

/* AES-256-GCM's nonce of record number i (0, 1, ... per direction; the keys are per
 * direction and per connection, so a nonce is never used twice with one key). */
static void
gcm_nonce(uint8_t npub[GCM_NPUB], uint64_t i)
{
    memset(npub, 0, GCM_NPUB);
    for (int b = 0; b < 8; b++) {
        npub[GCM_NPUB - 1 - b] = (uint8_t)(i >> (8 * b));
    }
}

/* AES-256-GCM: seals m[0, n) as record number i: [head][type][ciphertext][tag], the head and
 * the type being the additional data. 0, or -1. */
static int
gcm_seal(pt_secure_session_t *s, uint64_t i, const uint8_t *m, size_t n, uint8_t *out)
{
    uint8_t npub[GCM_NPUB];

    be32_put(out, (uint32_t)(n + PT_SECURE_ABYTES));
    out[PT_SECURE_RECORD_HEAD] = REC_TYPE_DATA;
    gcm_nonce(npub, i);
    return pt_gcm_seal(s->st->u.gcm.tx, npub, out, GCM_AD, m, n, out + GCM_AD, out + GCM_AD + n);
}

/* AES-256-GCM: opens record number i (a whole record, its length checked): 0 or -1. */
static int
gcm_open(pt_secure_session_t *s, uint64_t i, const uint8_t *rec, size_t len, uint8_t *out)
{
    uint8_t npub[GCM_NPUB];
    size_t clen = len - PT_SECURE_RECORD_OVERHEAD;

    if (rec[PT_SECURE_RECORD_HEAD] != REC_TYPE_DATA) {
        return -1;
    }
    gcm_nonce(npub, i);
    return pt_gcm_open(s->st->u.gcm.rx, npub, rec, GCM_AD, rec + GCM_AD, clen, rec + GCM_AD + clen,
                       out);
}

/* A record's length agrees with its head and the limits. */
static int
record_ok(const uint8_t *rec, size_t len)
{
    return len >= PT_SECURE_RECORD_OVERHEAD &&
           len - PT_SECURE_RECORD_OVERHEAD <= PT_SECURE_MAX_RECORD &&
           be32_get(rec) == len - PT_SECURE_RECORD_HEAD;
}

int64_t
pt_secure_seal(pt_secure_session_t *s, const uint8_t *m, size_t n, uint8_t *out)
{
    if (s == NULL || s->state != ST_EST || n > PT_SECURE_MAX_RECORD || out == NULL ||
        (m == NULL && n > 0)) {
        return PETAL_EINVAL;
    }
    if (s->rec_out >= PT_SECURE_MAX_RECORDS) {
        return fail(s, PETAL_EPROTO, "%llu records sealed: reconnect for fresh keys",
                    (unsigned long long)s->rec_out);
    }
    if (s->cipher == PT_SECURE_AES256GCM) {
        if (gcm_seal(s, s->rec_out, m, n, out) != 0) {
            return fail(s, PETAL_ENOMEM, "cannot seal record %llu",
                        (unsigned long long)s->rec_out + 1);
        }
    } else {
        be32_put(out, (uint32_t)(n + PT_SECURE_ABYTES));
        crypto_secretstream_xchacha20poly1305_push(&s->st->u.ss.tx, out + PT_SECURE_RECORD_HEAD,
                                                   NULL, m, n, out, PT_SECURE_RECORD_HEAD, 0);
    }
    s->rec_out++;
    return (int64_t)(n + PT_SECURE_RECORD_OVERHEAD);
}

int
pt_secure_record_len(const uint8_t head[PT_SECURE_RECORD_HEAD], size_t *body_len)
{
    uint32_t len = be32_get(head);

    if (len < PT_SECURE_ABYTES || len > PT_SECURE_MAX_RECORD + PT_SECURE_ABYTES) {
        return PETAL_EPROTO;
    }
    *body_len = len;
    return 0;
}

static int
fail_record(pt_secure_session_t *s, uint64_t k)
{
    return fail(s, PETAL_EPROTO, "record %llu failed authentication: closing",
                (unsigned long long)(s->rec_in + k + 1));
}

int
pt_secure_open(pt_secure_session_t *s, const uint8_t *rec, size_t len, uint8_t *out,
               size_t *out_len)
{
    unsigned long long mlen = 0;
    unsigned char tag = 0;
    int bad;

    if (s == NULL || s->state != ST_EST || rec == NULL || out == NULL || out_len == NULL) {
        return s != NULL && s->state == ST_FAILED ? s->status : PETAL_EINVAL;
    }
    if (!record_ok(rec, len)) {
        return fail_record(s, 0);
    }
    if (s->cipher == PT_SECURE_AES256GCM) {
        bad = gcm_open(s, s->rec_in, rec, len, out) != 0;
        mlen = len - PT_SECURE_RECORD_OVERHEAD;
    } else {
        bad = crypto_secretstream_xchacha20poly1305_pull(
                  &s->st->u.ss.rx, out, &mlen, &tag, rec + PT_SECURE_RECORD_HEAD,
                  len - PT_SECURE_RECORD_HEAD, rec, PT_SECURE_RECORD_HEAD) != 0 ||
              tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    }
    if (bad) {
        return fail_record(s, 0);
    }
    s->rec_in++;
    *out_len = (size_t)mlen;
    return 0;
}

/* ---- Part 2: under a stream connection ------------------------------------------------------ */

/*
 * Reading: socket bytes land in `crec` (room for the largest record and then some); handshake
 * bytes go to the session, then each complete record is opened straight into the buffer of
 * the message it belongs to (or into the stage for frame heads) and handed to the framing.
 * Writing: each send becomes a job (its iovecs and frame lengths); jobs are sealed in batches
 * of about BATCH_PLAIN bytes, at most MAX_BATCHES written at a time, so sealing keeps pace with
 * the socket and a job's arrays are released as soon as its last record is sealed. A frame
 * whose bytes fit one record is one record; a larger one is its head, then records of
 * PT_SECURE_MAX_RECORD message bytes (so they open straight into the message's buffer).
 */

#define CREC_CAP (PT_SECURE_RECORD_OVERHEAD + PT_SECURE_MAX_RECORD + 64 * 1024)
#define BATCH_PLAIN (512 * 1024)
#define MAX_BATCHES 4
/* Batches of bulk data reuse their buffers while the connection keeps sending. */
#define BATCH_STD (BATCH_PLAIN + 64 * 1024)
#define BATCH_REUSE_MIN (256 * 1024)
#define LINGER_MS 1000 /* a refused client has this long to read the refusal */

/* Handshakes in progress on one listener, shared with its connections (it may close before
 * they finish): freed by the last of them. Loop thread. */
typedef struct hs_gauge {
    unsigned refs;
    uint64_t n, max;
} hs_gauge_t;

struct pt_secure_listener {
    pt_secure_opts_t opts;
    uint8_t pin[KEY_BYTES];
    hs_gauge_t *gauge;
};

typedef struct sjob {
    struct sjob *next;
    uv_buf_t *bufs;
    size_t nbufs, bi, boff; /* the next byte: bufs[bi].base[boff] */
    pt_stream_wframe_t *frames;
    size_t nframes, fi; /* the frame being sealed */
    uint64_t fpos;      /* its bytes sealed so far */
    uint64_t nchunks;
    void *blob;
    void (*blob_free)(void *blob);
} sjob_t;

typedef struct sbatch {
    uv_write_t req;
    pt_stream_conn_t *c;
    uint64_t plain, wire, frames, chunks;
    int std; /* BATCH_STD bytes of data */
    uint8_t data[];
} sbatch_t;

typedef struct hswrite {
    uv_write_t req;
    uint8_t *data;
} hswrite_t;

struct pt_secure_conn {
    pt_secure_session_t *sess;
    pt_stream_listener_t *listener; /* accepted: for the UP event */
    int server;
    int established;
    int lingering; /* a failed accept flushing its refusal before it closes */
    uint64_t timeout_ms;
    uv_shutdown_t shut;
    uint8_t *crec;
    size_t crec_start, crec_end;
    uint8_t *scratch; /* gathers a record's bytes that span iovecs */
    sjob_t *jobs, **jobs_tail;
    int batches;
    struct sbatch *spare[MAX_BATCHES]; /* BATCH_STD buffers kept while sending bulk data */
    int nspare;
    hs_gauge_t *gauge; /* accepted: counted there while its handshake runs */
};

static void
gauge_release(hs_gauge_t *g)
{
    if (g != NULL && --g->refs == 0) {
        free(g);
    }
}

/* The connection's handshake is over (done, failed, or the connection is gone). */
static void
hs_uncount(struct pt_secure_conn *sc)
{
    if (sc->gauge != NULL) {
        sc->gauge->n--;
        gauge_release(sc->gauge);
        sc->gauge = NULL;
    }
}

static void rec_pump(pt_stream_conn_t *c);

static int
conn_attach(pt_stream_conn_t *c, const pt_secure_opts_t *opts, int role)
{
    struct pt_secure_conn *sc = calloc(1, sizeof(*sc));
    double t =
        opts->handshake_timeout > 0 ? opts->handshake_timeout : PT_SECURE_DEFAULT_HANDSHAKE_TIMEOUT;
    int r;

    if (sc == NULL) {
        return PETAL_ENOMEM;
    }
    r = pt_secure_session_new(role, opts, &sc->sess);
    if (r != 0) {
        free(sc);
        return r;
    }
    sc->server = role == PT_SECURE_SERVER;
    sc->timeout_ms = t * 1000.0 > 1e12 ? (uint64_t)1e12 : (uint64_t)(t * 1000.0);
    if (sc->timeout_ms == 0) {
        sc->timeout_ms = 1;
    }
    sc->jobs_tail = &sc->jobs;
    c->sec = sc;
    return 0;
}

static void
job_free(sjob_t *j)
{
    if (j->blob_free != NULL) {
        j->blob_free(j->blob);
    }
    free(j->bufs);
    free(j->frames);
    free(j);
}

void
pt_secure_stream_release(pt_stream_conn_t *c)
{
    struct pt_secure_conn *sc = c->sec;

    free(sc->crec);
    sc->crec = NULL;
    sc->crec_start = 0;
    sc->crec_end = 0;
    free(sc->scratch);
    sc->scratch = NULL;
    while (sc->jobs != NULL) {
        sjob_t *j = sc->jobs;

        sc->jobs = j->next;
        job_free(j);
    }
    sc->jobs_tail = &sc->jobs;
    while (sc->nspare > 0) {
        free(sc->spare[--sc->nspare]);
    }
}

void
pt_secure_stream_free(pt_stream_conn_t *c)
{
    struct pt_secure_conn *sc = c->sec;

    pt_secure_stream_release(c);
    hs_uncount(sc);
    pt_secure_session_free(sc->sess);
    free(sc);
    c->sec = NULL;
}

void
pt_secure_listener_free(pt_stream_listener_t *l)
{
    gauge_release(l->sec->gauge);
    free(l->sec);
    l->sec = NULL;
}

int
pt_secure_stream_mid_record(const pt_stream_conn_t *c)
{
    const struct pt_secure_conn *sc = c->sec;

    return sc->established && sc->crec != NULL && sc->crec_end > sc->crec_start;
}

/* ---- The handshake on a connection ---- */

static void
on_hs_written(uv_write_t *req, int status)
{
    hswrite_t *w = (hswrite_t *)req;

    (void)status; /* a failed write shows up as a read error or a timeout */
    free(w->data);
    free(w);
}

/* Writes what the session wants sent. 0, or a libuv / Petal error. */
static int
flush_output(pt_stream_conn_t *c)
{
    hswrite_t *w;
    uint8_t *data;
    size_t len;
    uv_buf_t b;
    int r;

    pt_secure_take_output(c->sec->sess, &data, &len);
    if (len == 0) {
        free(data);
        return 0;
    }
    w = malloc(sizeof(*w));
    if (w == NULL) {
        free(data);
        return PETAL_ENOMEM;
    }
    w->data = data;
    b = uv_buf_init((char *)data, (unsigned int)len);
    r = uv_write(&w->req, &c->h.stream, &b, 1, on_hs_written);
    if (r != 0) {
        free(data);
        free(w);
    }
    return r;
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

static void on_hs_timer(uv_timer_t *t);

static void
timer_set(pt_stream_conn_t *c, uint64_t ms)
{
    uv_timer_start(&c->idle, on_hs_timer, ms, 0);
    c->timer_on = 1;
}

/*
 * The handshake failed. A dial reports it to its owner (DOWN). An accepted connection, which
 * its owner never saw, is logged and closed; unless the client is gone already (`linger` 0),
 * what the session still has to say (a refusal, an alert) is written, the write side shut down,
 * and the client gets LINGER_MS to read it and close (its bytes meanwhile are dropped), so that
 * it sees the reason rather than a reset.
 */
static void
hs_fail(pt_stream_conn_t *c, int status, const char *why, int linger)
{
    struct pt_secure_conn *sc = c->sec;

    hs_uncount(sc);
    if (!sc->server) {
        flush_output(c); /* an alert, best effort */
        pt_stream_conn_fail(c, status, "%s: %s", c->base.peer, why);
        return;
    }
    if (sc->lingering) {
        return;
    }
    PT_WARN("%s: secure handshake failed: %s", c->base.peer, why);
    if (linger && flush_output(c) == 0 && uv_shutdown(&sc->shut, &c->h.stream, on_shutdown) == 0) {
        sc->lingering = 1;
        timer_set(c, LINGER_MS);
        return;
    }
    pt_stream_conn_discard(c);
}

static void
on_hs_timer(uv_timer_t *t)
{
    pt_stream_conn_t *c = t->data;
    struct pt_secure_conn *sc = c->sec;
    char why[128];

    c->timer_on = 0;
    if (c->closed || sc->established) {
        return;
    }
    if (sc->lingering) {
        pt_stream_conn_discard(c);
        return;
    }
    snprintf(why, sizeof(why), "secure handshake timed out after %.3g s",
             (double)sc->timeout_ms / 1000.0);
    hs_fail(c, PETAL_ETIMEDOUT, why, 0);
}

static void
hs_pump(pt_stream_conn_t *c)
{
    struct pt_secure_conn *sc = c->sec;
    size_t used = 0;
    int r;

    r = pt_secure_handshake_input(sc->sess, sc->crec + sc->crec_start,
                                  sc->crec_end - sc->crec_start, &used);
    sc->crec_start += used;
    if (r < 0) {
        hs_fail(c, r, pt_secure_error(sc->sess), 1);
        return;
    }
    if (flush_output(c) != 0) {
        hs_fail(c, PETAL_ECLOSED, "cannot write the handshake", 0);
        return;
    }
    if (r != PT_SECURE_DONE) {
        return;
    }
    uv_timer_stop(&c->idle);
    c->timer_on = 0;
    sc->established = 1;
    hs_uncount(sc);
    if (pt_log_level() >= PETAL_LOG_DEBUG) {
        uint8_t pk[KEY_BYTES];
        char fpr[PT_KEY_FPR_SIZE];

        pt_secure_peer_key(sc->sess, pk);
        pt_key_fingerprint(pk, fpr);
        PT_DEBUG("%s: secure channel up, peer %s, records sealed with %s", c->base.peer, fpr,
                 pt_secure_cipher_name(pt_secure_cipher(sc->sess)));
    }
    pt_stream_conn_up(c, sc->listener);
    if (!c->closed) {
        rec_pump(c);
    }
}

void
pt_secure_stream_start(pt_stream_conn_t *c, pt_stream_listener_t *l)
{
    struct pt_secure_conn *sc;
    int over = 0, r;

    if (c->sec == NULL) {
        r = conn_attach(c, &l->sec->opts, PT_SECURE_SERVER);
        if (r != 0) {
            PT_ERROR("%s: cannot start a secure handshake: %s", c->base.peer, petal_strerror(r));
            pt_stream_conn_discard(c);
            return;
        }
        c->sec->listener = l;
        over = l->sec->gauge->n >= l->sec->gauge->max;
        if (!over) {
            c->sec->gauge = l->sec->gauge;
            c->sec->gauge->n++;
            c->sec->gauge->refs++;
        }
    }
    sc = c->sec;
    c->last_rx = uv_now(c->h.handle.loop);
    timer_set(c, sc->timeout_ms);
    if (over) {
        /* Busy: the client reads why (after the HELLO already queued) and backs off. */
        char why[160];

        snprintf(why, sizeof(why),
                 "too many secure handshakes in progress (%llu, the limit); try again later",
                 (unsigned long long)l->sec->gauge->max);
        pt_secure_session_refuse(sc->sess, PETAL_EAGAIN, why);
        hs_fail(c, PETAL_EAGAIN, why, 1);
        return;
    }
    r = flush_output(c);
    if (r == 0) {
        r = uv_read_start(&c->h.stream, pt_secure_on_alloc, pt_secure_on_read);
    }
    if (r != 0) {
        hs_fail(c, r, "cannot start the secure handshake", 0);
    }
}

/* ---- Reading ---- */

void
pt_secure_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pt_stream_conn_t *c = h->data;
    struct pt_secure_conn *sc = c->sec;

    (void)suggested;
    if (sc->crec == NULL) {
        sc->crec = malloc(CREC_CAP);
        sc->crec_start = 0;
        sc->crec_end = 0;
        if (sc->crec == NULL) {
            buf->base = NULL;
            buf->len = 0; /* on_read gets UV_ENOBUFS */
            return;
        }
    }
    if (sc->crec_start > 0) {
        size_t live = sc->crec_end - sc->crec_start;
        size_t need = PT_SECURE_RECORD_HEAD;

        if (live >= PT_SECURE_RECORD_HEAD) {
            size_t blen;

            need = pt_secure_record_len(sc->crec + sc->crec_start, &blen) == 0
                       ? PT_SECURE_RECORD_HEAD + blen
                       : live;
        }
        /* Move the live bytes down when the current record would not fit, or room is short. */
        if (sc->crec_start + need > CREC_CAP || CREC_CAP - sc->crec_end < 64 * 1024 || live == 0) {
            memmove(sc->crec, sc->crec + sc->crec_start, live);
            sc->crec_start = 0;
            sc->crec_end = live;
        }
    }
    buf->base = (char *)sc->crec + sc->crec_end;
    buf->len = CREC_CAP - sc->crec_end;
}

static void
read_error(pt_stream_conn_t *c, ssize_t nread)
{
    struct pt_secure_conn *sc = c->sec;
    char why[200];

    if (sc->lingering) {
        pt_stream_conn_discard(c);
        return;
    }
    if (!sc->established) {
        if (nread == UV_EOF) {
            if (sc->server) {
                snprintf(why, sizeof(why),
                         "the client closed the connection during the secure "
                         "handshake");
            } else {
                snprintf(why, sizeof(why),
                         "the server closed the connection during the secure handshake (is it "
                         "running with --insecure?)");
            }
            hs_fail(c, PETAL_ECLOSED, why, 0);
        } else {
            snprintf(why, sizeof(why), "read during the secure handshake: %s",
                     uv_strerror((int)nread));
            hs_fail(c, nread == UV_ENOBUFS ? PETAL_ENOMEM : (int)nread, why, 0);
        }
        return;
    }
    if (nread == UV_EOF) {
        if (pt_secure_stream_mid_record(c)) {
            pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed by peer in the middle of a record",
                                c->base.peer);
        } else if (c->in_payload || c->asm_buf != NULL ||
                   (c->stage != NULL && c->stage_end > c->stage_start)) {
            pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed by peer in the middle of a frame",
                                c->base.peer);
        } else {
            pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed by peer", c->base.peer);
        }
    } else if (nread == UV_ENOBUFS) {
        pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory for a read buffer", c->base.peer);
    } else {
        pt_stream_conn_fail(c, (int)nread, "%s: read: %s", c->base.peer, uv_strerror((int)nread));
    }
}

void
pt_secure_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pt_stream_conn_t *c = s->data;
    struct pt_secure_conn *sc = c->sec;

    (void)buf;
    if (c->closed) {
        return;
    }
    if (nread < 0) {
        read_error(c, nread);
        return;
    }
    if (nread == 0) {
        return;
    }
    c->stats.bytes_in += (uint64_t)nread;
    c->last_rx = uv_now(s->loop);
    if (sc->lingering) {
        sc->crec_start = 0; /* a refused client's bytes are dropped */
        sc->crec_end = 0;
        return;
    }
    sc->crec_end += (size_t)nread;
    if (!sc->established) {
        hs_pump(c);
    } else {
        rec_pump(c);
    }
}

/* Opens the complete records in crec, in order, while the owner takes frames. */
static void
rec_pump(pt_stream_conn_t *c)
{
    struct pt_secure_conn *sc = c->sec;

    while (!c->closed && !c->paused && sc->crec != NULL) {
        size_t avail = sc->crec_end - sc->crec_start, blen, plen, got = 0;
        const uint8_t *rec = sc->crec + sc->crec_start;
        uint8_t *dst;

        if (avail < PT_SECURE_RECORD_HEAD) {
            break;
        }
        if (pt_secure_record_len(rec, &blen) != 0) {
            pt_stream_conn_fail(
                c, PETAL_EPROTO, "%s: record %llu announces %u bytes (at most %d): closing",
                c->base.peer, (unsigned long long)pt_secure_records_in(sc->sess) + 1,
                (unsigned)be32_get(rec), PT_SECURE_MAX_RECORD + PT_SECURE_ABYTES);
            return;
        }
        if (avail - PT_SECURE_RECORD_HEAD < blen) {
            break;
        }
        plen = blen - PT_SECURE_ABYTES;
        dst = pt_stream_rx_reserve(c, plen);
        if (dst == NULL) {
            pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory for a record of %zu bytes",
                                c->base.peer, plen);
            return;
        }
        if (pt_secure_open(sc->sess, rec, PT_SECURE_RECORD_HEAD + blen, dst, &got) != 0) {
            pt_stream_conn_fail(c, PETAL_EPROTO, "%s: %s", c->base.peer, pt_secure_error(sc->sess));
            return;
        }
        sc->crec_start += PT_SECURE_RECORD_HEAD + blen;
        pt_stream_rx_commit(c, dst, got);
    }
    if (!c->closed && sc->crec != NULL && sc->crec_start == sc->crec_end) {
        free(sc->crec); /* an idle connection keeps no buffer */
        sc->crec = NULL;
        sc->crec_start = 0;
        sc->crec_end = 0;
    }
    pt_stream_rx_commit(c, NULL, 0); /* the idle timer sees partial records too */
}

void
pt_secure_stream_resume(pt_stream_conn_t *c)
{
    if (c->sec->established) {
        rec_pump(c);
    }
}

/* ---- Writing ---- */

/* The next record's length of job j. */
static uint64_t
rec_len(const sjob_t *j)
{
    const pt_stream_wframe_t *f = &j->frames[j->fi];
    uint64_t flen = f->head + f->payload, rem;

    if (flen <= PT_SECURE_MAX_RECORD) {
        return flen;
    }
    if (j->fpos == 0) {
        return f->head;
    }
    rem = flen - j->fpos;
    return rem < PT_SECURE_MAX_RECORD ? rem : PT_SECURE_MAX_RECORD;
}

static void
rec_advance(sjob_t *j, uint64_t n)
{
    const pt_stream_wframe_t *f = &j->frames[j->fi];

    j->fpos += n;
    if (j->fpos == f->head + f->payload) {
        j->fi++;
        j->fpos = 0;
    }
}

/* How many records (and bytes) the next batch has: whole jobs' records up to BATCH_PLAIN. */
static size_t
batch_plan(const struct pt_secure_conn *sc, size_t *nrec)
{
    size_t wire = 0, plain = 0, n = 0;

    for (const sjob_t *j0 = sc->jobs; j0 != NULL && plain < BATCH_PLAIN; j0 = j0->next) {
        sjob_t j = *j0;

        while (j.fi < j.nframes && plain < BATCH_PLAIN) {
            uint64_t len = rec_len(&j);

            plain += (size_t)len;
            wire += (size_t)len + PT_SECURE_RECORD_OVERHEAD;
            n++;
            rec_advance(&j, len);
        }
    }
    *nrec = n;
    return wire;
}

/* The next len bytes of job j: a pointer into its buffers, or gathered into scratch. */
static const uint8_t *
job_bytes(struct pt_secure_conn *sc, sjob_t *j, size_t len)
{
    const uint8_t *p;
    size_t done = 0;

    while (j->bi < j->nbufs && j->bufs[j->bi].len == j->boff) {
        j->bi++;
        j->boff = 0;
    }
    if (j->bi < j->nbufs && j->bufs[j->bi].len - j->boff >= len) {
        p = (const uint8_t *)j->bufs[j->bi].base + j->boff;
        j->boff += len;
        return p;
    }
    if (sc->scratch == NULL) {
        sc->scratch = malloc(PT_SECURE_MAX_RECORD);
        if (sc->scratch == NULL) {
            return NULL;
        }
    }
    while (done < len && j->bi < j->nbufs) {
        size_t left = j->bufs[j->bi].len - j->boff;
        size_t take = left < len - done ? left : len - done;

        memcpy(sc->scratch + done, (const uint8_t *)j->bufs[j->bi].base + j->boff, take);
        done += take;
        j->boff += take;
        if (j->boff == j->bufs[j->bi].len) {
            j->bi++;
            j->boff = 0;
        }
    }
    return done == len ? sc->scratch : NULL;
}

static void seal_more(pt_stream_conn_t *c);

static void
on_batch_written(uv_write_t *req, int status)
{
    sbatch_t *b = (sbatch_t *)req;
    pt_stream_conn_t *c = b->c;
    uint64_t plain = b->plain, wire = b->wire, frames = b->frames, chunks = b->chunks;

    c->sec->batches--;
    if (b->std && !c->closed && c->sec->nspare < MAX_BATCHES) {
        c->sec->spare[c->sec->nspare++] = b;
    } else {
        free(b);
    }
    pt_stream_write_done(c, status, plain, wire, frames, chunks);
    if (!c->closed) {
        seal_more(c);
    }
    if (!c->closed && c->sec->jobs == NULL && c->sec->batches == 0) {
        while (c->sec->nspare > 0) { /* done sending: an idle connection keeps no buffer */
            free(c->sec->spare[--c->sec->nspare]);
        }
    }
}

/* Seals queued jobs into batches while fewer than MAX_BATCHES are being written. */
static void
seal_more(pt_stream_conn_t *c)
{
    struct pt_secure_conn *sc = c->sec;

    while (!c->closed && sc->batches < MAX_BATCHES && sc->jobs != NULL) {
        size_t nrec = 0, cap = batch_plan(sc, &nrec);
        int std = cap >= BATCH_REUSE_MIN && cap <= BATCH_STD;
        sbatch_t *b;
        uv_buf_t ub;
        int r;

        if (std && sc->nspare > 0) {
            b = sc->spare[--sc->nspare];
        } else {
            b = malloc(sizeof(*b) + (std ? BATCH_STD : cap));
        }
        if (b == NULL) {
            pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory sealing %zu bytes",
                                c->base.peer, cap);
            return;
        }
        b->c = c;
        b->std = std;
        b->plain = b->wire = b->frames = b->chunks = 0;
        for (size_t i = 0; i < nrec; i++) {
            sjob_t *j = sc->jobs;
            uint64_t len = rec_len(j);
            const uint8_t *m = job_bytes(sc, j, (size_t)len);
            int64_t w;

            w = m != NULL ? pt_secure_seal(sc->sess, m, (size_t)len, b->data + b->wire)
                          : PETAL_ENOMEM;
            if (w < 0) {
                free(b);
                pt_stream_conn_fail(c, (int)w, "%s: cannot seal a record: %s", c->base.peer,
                                    petal_strerror((int)w));
                return;
            }
            b->wire += (uint64_t)w;
            b->plain += len;
            rec_advance(j, len);
            if (j->fi == j->nframes) {
                b->frames++;
                b->chunks += j->nchunks;
                sc->jobs = j->next;
                if (sc->jobs == NULL) {
                    sc->jobs_tail = &sc->jobs;
                }
                job_free(j); /* its arrays are released: the records hold the bytes */
            }
        }
        ub = uv_buf_init((char *)b->data, (unsigned int)b->wire);
        r = uv_write(&b->req, &c->h.stream, &ub, 1, on_batch_written);
        if (r != 0) {
            free(b);
            pt_stream_conn_fail(c, r, "%s: write: %s", c->base.peer, uv_strerror(r));
            return;
        }
        sc->batches++;
    }
}

int
pt_secure_stream_send(pt_stream_conn_t *c, uv_buf_t *bufs, size_t nbufs, pt_stream_wframe_t *frames,
                      size_t nframes, uint64_t nchunks, void *blob, void (*blob_free)(void *blob))
{
    struct pt_secure_conn *sc = c->sec;
    sjob_t *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        free(bufs);
        free(frames);
        blob_free(blob);
        return PETAL_ENOMEM;
    }
    j->bufs = bufs;
    j->nbufs = nbufs;
    j->frames = frames;
    j->nframes = nframes;
    j->nchunks = nchunks;
    j->blob = blob;
    j->blob_free = blob_free;
    *sc->jobs_tail = j;
    sc->jobs_tail = &j->next;
    seal_more(c);
    return c->closed ? PETAL_ECLOSED : 0;
}

/* ---- Part 3: the API ------------------------------------------------------------------------ */

#define SECURE_SCHEME "tcp+secure://"

/* The transport of a secure address: "tcp+secure://X" is tcp (and `scheme_ops` is set to the
 * tcp+secure ops), "tcp://" and "ipc://" are themselves. */
static const pt_tran_ops_t *
secure_target(const char *addr, char *plain, size_t cap, const pt_tran_ops_t **scheme_ops)
{
    const pt_tran_ops_t *ops;

    *scheme_ops = NULL;
    if (addr == NULL) {
        return NULL;
    }
    if (strncmp(addr, SECURE_SCHEME, strlen(SECURE_SCHEME)) == 0) {
        if ((size_t)snprintf(plain, cap, "tcp://%s", addr + strlen(SECURE_SCHEME)) >= cap) {
            return NULL;
        }
        *scheme_ops = &pt_tcp_secure_ops;
        return &pt_tcp_ops;
    }
    if ((size_t)snprintf(plain, cap, "%s", addr) >= cap) {
        return NULL;
    }
    ops = pt_tran_find(addr);
    return ops == &pt_tcp_ops || ops == &pt_ipc_ops ? ops : NULL;
}

static int
opts_valid(const pt_secure_opts_t *opts)
{
    return opts != NULL && opts->identity != NULL && opts->identity->sk != NULL &&
           opts->handshake_timeout >= 0;
}

int
pt_listen_secure(pt_runtime_t *rt, const char *addr, pt_actor_t *owner,
                 const pt_secure_opts_t *opts, pt_listener_t **out)
{
    char plain[512];
    const pt_tran_ops_t *scheme_ops, *ops = secure_target(addr, plain, sizeof(plain), &scheme_ops);
    struct pt_secure_listener *sl;
    pt_stream_listener_t *l;
    pt_listener_t *pl;
    int r;

    if (rt == NULL || owner == NULL || out == NULL || ops == NULL || !opts_valid(opts)) {
        return PETAL_EINVAL;
    }
    if (pt_keys_init() != 0) {
        return PETAL_ENOMEM;
    }
    sl = calloc(1, sizeof(*sl));
    if (sl == NULL) {
        return PETAL_ENOMEM;
    }
    sl->opts = *opts;
    sl->gauge = calloc(1, sizeof(*sl->gauge));
    if (sl->gauge == NULL) {
        free(sl);
        return PETAL_ENOMEM;
    }
    sl->gauge->refs = 1;
    sl->gauge->max =
        opts->max_handshakes > 0 ? opts->max_handshakes : PT_SECURE_DEFAULT_MAX_HANDSHAKES;
    if (opts->pinned_peer_pk != NULL) {
        memcpy(sl->pin, opts->pinned_peer_pk, KEY_BYTES);
        sl->opts.pinned_peer_pk = sl->pin;
    }
    r = ops->listen(rt, plain, owner, &pl);
    if (r != 0) {
        gauge_release(sl->gauge);
        free(sl);
        return r;
    }
    /* Nothing is accepted before the loop runs again: the listener is secure from the start. */
    l = (pt_stream_listener_t *)pl;
    l->sec = sl;
    if (scheme_ops != NULL) {
        l->base.ops = scheme_ops;
    }
    *out = pl;
    return 0;
}

int
pt_dial_secure(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, const pt_secure_opts_t *opts,
               pt_conn_t **out)
{
    char plain[512];
    const pt_tran_ops_t *scheme_ops, *ops = secure_target(addr, plain, sizeof(plain), &scheme_ops);
    pt_stream_conn_t *c;
    pt_conn_t *pc;
    int r;

    if (rt == NULL || owner == NULL || out == NULL || ops == NULL || !opts_valid(opts)) {
        return PETAL_EINVAL;
    }
    if (pt_keys_init() != 0) {
        return PETAL_ENOMEM;
    }
    r = ops->dial(rt, plain, owner, &pc);
    if (r != 0) {
        return r;
    }
    /* The connect completes on a later loop turn: the handshake starts then. */
    c = (pt_stream_conn_t *)pc;
    r = conn_attach(c, opts, PT_SECURE_CLIENT);
    if (r != 0) {
        pt_stream_conn_discard(c);
        return r;
    }
    if (scheme_ops != NULL) {
        c->base.ops = scheme_ops;
    }
    *out = pc;
    return 0;
}

static int
is_stream_conn(pt_conn_t *c)
{
    return c != NULL && ((struct pt_conn_base *)c)->ops != NULL &&
           ((struct pt_conn_base *)c)->ops->send == pt_stream_send;
}

int
pt_conn_is_secure(pt_conn_t *c)
{
    return is_stream_conn(c) && ((pt_stream_conn_t *)c)->sec != NULL;
}

int
pt_conn_peer_key(pt_conn_t *pc, uint8_t out[PT_KEY_PUBLIC_BYTES])
{
    pt_stream_conn_t *c = (pt_stream_conn_t *)pc;

    if (!pt_conn_is_secure(pc) || out == NULL || !c->sec->established) {
        return PETAL_EINVAL;
    }
    return pt_secure_peer_key(c->sec->sess, out);
}

/* ---- "tcp+secure://" with process-wide options ---- */

static pt_secure_opts_t default_opts;
static uint8_t default_pin[KEY_BYTES];
static int default_set;

int
pt_secure_set_default_opts(const pt_secure_opts_t *opts)
{
    if (opts == NULL) {
        memset(&default_opts, 0, sizeof(default_opts));
        default_set = 0;
        return 0;
    }
    if (!opts_valid(opts)) {
        return PETAL_EINVAL;
    }
    default_opts = *opts;
    if (opts->pinned_peer_pk != NULL) {
        memcpy(default_pin, opts->pinned_peer_pk, KEY_BYTES);
        default_opts.pinned_peer_pk = default_pin;
    }
    default_set = 1;
    return 0;
}

static int
scheme_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out)
{
    if (!default_set) {
        PT_WARN("%s: no keys for tcp+secure:// addresses (pt_secure_set_default_opts)", addr);
        return PETAL_EINVAL;
    }
    return pt_listen_secure(rt, addr, owner, &default_opts, out);
}

static int
scheme_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out)
{
    if (!default_set) {
        PT_WARN("%s: no keys for tcp+secure:// addresses (pt_secure_set_default_opts)", addr);
        return PETAL_EINVAL;
    }
    return pt_dial_secure(rt, addr, owner, &default_opts, out);
}

static int
scheme_listener_addr(pt_listener_t *l, char *buf, size_t cap)
{
    char tmp[256];
    int r = pt_stream_listener_addr(l, tmp, sizeof(tmp));

    if (r != 0) {
        return r;
    }
    if (strncmp(tmp, "tcp://", 6) != 0 ||
        (size_t)snprintf(buf, cap, "%s%s", SECURE_SCHEME, tmp + 6) >= cap) {
        return UV_ENOBUFS;
    }
    return 0;
}

const pt_tran_ops_t pt_tcp_secure_ops = {
    .scheme = "tcp+secure",
    .listen = scheme_listen,
    .listener_addr = scheme_listener_addr,
    .listener_close = pt_stream_listener_close,
    .dial = scheme_dial,
    .send = pt_stream_send,
    .close = pt_stream_close,
};
