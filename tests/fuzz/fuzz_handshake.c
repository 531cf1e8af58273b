/* fuzz_handshake.c - fuzz target: the secure channel's handshake and record layer (secure.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "runtime/keys.h"
#include "transport/secure.h"

/*
 * The first byte picks a mode (low 2 bits) and a key policy (next 2 bits); the rest drives it.
 *  0  raw bytes to a server session: the fuzzer plays a client (magic, HELLO, AUTH, ...).
 *  1  raw bytes to a client session: the fuzzer plays a server.
 *     Neither may ever reach DONE: the peer's AUTH must sign a transcript holding our fresh
 *     ephemeral key, which the fuzzer cannot know.
 *  2  a real client and server, with the fuzzer in the middle: byte 1 is the size of the pieces
 *     bytes are fed in (0: all at once), then 4-byte edits [direction, offset hi, offset lo,
 *     xor]. Untouched, both must finish and agree on keys (or fail as the policy says);
 *     if any byte a side sent was changed, they must not end up with a working channel.
 *  3  a real, established pair, then the fuzzer reorders, drops, duplicates and corrupts
 *     sealed records (one op byte each): a record opens only if it is the next one, intact, and
 *     after the first failure nothing opens any more.
 * Policies (modes 2 and 3 use 0): 0 any key, 1 the client pins the right server key, 2 the
 * client pins a wrong key (must fail), 3 the server's authorize refuses the client (must fail).
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_handshake: %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_ROUNDS 16
#define MAX_EDITS 64
#define MAX_RECORDS 32

static pt_keypair_t *server_id;
static pt_keypair_t *client_id;
static uint8_t wrong_pk[PT_KEY_PUBLIC_BYTES];

static int
refuse_all(void *ctx, const uint8_t peer_pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap)
{
    (void)ctx;
    (void)peer_pk;
    snprintf(why, cap, "refused by the fuzzer");
    return PETAL_EPROTO;
}

static void
setup(void)
{
    CHECK(pt_keys_init() == 0);
    CHECK(pt_keypair_generate(&server_id) == 0);
    CHECK(pt_keypair_generate(&client_id) == 0);
    memset(wrong_pk, 0x5a, sizeof(wrong_pk));
}

static pt_secure_session_t *
session(int role, int policy)
{
    pt_secure_opts_t o;
    pt_secure_session_t *s = NULL;

    memset(&o, 0, sizeof(o));
    o.identity = role == PT_SECURE_SERVER ? server_id : client_id;
    if (role == PT_SECURE_CLIENT && policy == 1) {
        o.pinned_peer_pk = server_id->pk;
    } else if (role == PT_SECURE_CLIENT && policy == 2) {
        o.pinned_peer_pk = wrong_pk;
    } else if (role == PT_SECURE_SERVER && policy == 3) {
        o.authorize = refuse_all;
    }
    CHECK(pt_secure_session_new(role, &o, &s) == 0);
    CHECK(s != NULL);
    return s;
}

/* Takes and discards the session's pending output; returns its length. */
static size_t
drain(pt_secure_session_t *s)
{
    uint8_t *out = NULL;
    size_t len = 0;

    CHECK(pt_secure_take_output(s, &out, &len) == 0);
    CHECK(len == 0 || out != NULL);
    free(out);
    return len;
}

/* A session fed bytes must keep its promises: used within range, errors explained and final. */
static int
feed(pt_secure_session_t *s, const uint8_t *p, size_t n, size_t *used)
{
    int rc;

    *used = 0;
    rc = pt_secure_handshake_input(s, p, n, used);
    CHECK(*used <= n);
    if (rc < 0) {
        size_t again = 0;

        CHECK(rc == PETAL_EPROTO || rc == PETAL_ENOMEM);
        CHECK(pt_secure_error(s)[0] != '\0');
        CHECK(!pt_secure_established(s));
        CHECK(pt_secure_handshake_input(s, p, n, &again) < 0); /* dead from now on */
    } else {
        CHECK(rc == PT_SECURE_MORE || rc == PT_SECURE_DONE);
        CHECK((rc == PT_SECURE_DONE) == (pt_secure_established(s) != 0));
    }
    return rc;
}

/* Modes 0 and 1. */
static void
fuzz_raw(int role, const uint8_t *data, size_t size)
{
    pt_secure_session_t *s = session(role, 0);
    uint8_t *copy = malloc(size > 0 ? size : 1); /* exact size: ASan sees over-reads */
    size_t off = 0;
    int rc = PT_SECURE_MORE;

    CHECK(copy != NULL);
    if (size > 0) {
        memcpy(copy, data, size);
    }
    drain(s);
    while (off < size) {
        size_t used;

        rc = feed(s, copy + off, size - off, &used);
        off += used;
        drain(s);
        if (rc != PT_SECURE_MORE || used == 0) {
            break;
        }
    }
    if (rc == PT_SECURE_DONE) {
        fprintf(stderr, "fuzz_handshake: a %s session accepted a forged handshake\n",
                role == PT_SECURE_SERVER ? "server" : "client");
        abort();
    }
    /* the record layer refuses to work without a handshake */
    {
        uint8_t rec[PT_SECURE_RECORD_OVERHEAD + 1];

        CHECK(pt_secure_seal(s, (const uint8_t *)"x", 1, rec) < 0);
    }
    pt_secure_session_free(s);
    free(copy);
}

typedef struct edit {
    int dir; /* 0: client -> server, 1: server -> client */
    size_t pos;
    uint8_t x;
} edit_t;

typedef struct side {
    pt_secure_session_t *s;
    int rc;        /* last result of its handshake_input */
    size_t sent;   /* bytes it has sent (the offsets edits refer to) */
    int tampered;  /* an edit changed a byte this side sent */
    uint8_t *pend; /* bytes sent but not consumed yet */
    size_t npend;
} side_t;

/* Moves a's output to b: edits applied, fed in pieces of `piece` bytes (0: at once). */
static int
transfer(side_t *a, side_t *b, int dir, const edit_t *edits, size_t nedits, size_t piece)
{
    uint8_t *out = NULL;
    size_t len = 0;
    size_t off = 0;
    int moved = 0;

    CHECK(pt_secure_take_output(a->s, &out, &len) == 0);
    if (len > 0) {
        uint8_t *p = realloc(a->pend, a->npend + len);

        CHECK(p != NULL);
        for (size_t i = 0; i < nedits; i++) {
            if (edits[i].dir == dir && edits[i].pos >= a->sent && edits[i].pos < a->sent + len) {
                out[edits[i].pos - a->sent] ^= edits[i].x;
                a->tampered = 1; /* a changed length may stall b without b consuming it */
            }
        }
        memcpy(p + a->npend, out, len);
        a->pend = p;
        a->npend += len;
        a->sent += len;
        moved = 1;
    }
    free(out);
    while (off < a->npend && b->rc == PT_SECURE_MORE) {
        size_t avail = a->npend - off;
        size_t n = piece > 0 && avail > piece ? piece : avail;
        size_t used;

        b->rc = feed(b->s, a->pend + off, n, &used);
        off += used;
        moved |= used > 0;
        if (used == 0) {
            if (n == avail) {
                break; /* b waits for bytes a has not sent yet */
            }
            piece = n * 2; /* the piece was too small to consume any of it: offer more */
        }
    }
    memmove(a->pend, a->pend + off, a->npend - off);
    a->npend -= off;
    return moved;
}

/* One record from `from` to `to`; 1 if it opened to the same bytes (a failed open kills `to`). */
static int
record_works(pt_secure_session_t *from, pt_secure_session_t *to)
{
    static const uint8_t msg[] = "a record across the channel";
    uint8_t rec[sizeof(msg) + PT_SECURE_RECORD_OVERHEAD];
    uint8_t plain[sizeof(msg)];
    size_t body_len = 0;
    size_t out_len = 0;
    int64_t n = pt_secure_seal(from, msg, sizeof(msg), rec);

    if (n < 0) {
        CHECK(n == PETAL_EINVAL && !pt_secure_established(from)); /* it failed earlier */
        return 0;
    }
    CHECK(n == (int64_t)sizeof(rec));
    CHECK(pt_secure_record_len(rec, &body_len) == 0);
    CHECK(body_len == sizeof(rec) - PT_SECURE_RECORD_HEAD);
    if (pt_secure_open(to, rec, sizeof(rec), plain, &out_len) != 0) {
        return 0;
    }
    return out_len == sizeof(msg) && memcmp(plain, msg, sizeof(msg)) == 0;
}

static void
handshake_pair(side_t *c, side_t *s, int policy, const edit_t *edits, size_t nedits, size_t piece)
{
    memset(c, 0, sizeof(*c));
    memset(s, 0, sizeof(*s));
    c->s = session(PT_SECURE_CLIENT, policy);
    s->s = session(PT_SECURE_SERVER, policy);
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int moved = transfer(s, c, 1, edits, nedits, piece);

        moved |= transfer(c, s, 0, edits, nedits, piece);
        if (!moved) {
            break;
        }
    }
}

static void
free_side(side_t *x)
{
    pt_secure_session_free(x->s);
    free(x->pend);
}

/* Mode 2. */
static void
fuzz_mitm(int policy, const uint8_t *data, size_t size)
{
    edit_t edits[MAX_EDITS];
    size_t nedits = 0;
    size_t piece = size > 0 ? data[0] : 0;
    side_t c;
    side_t s;
    uint8_t pk[PT_KEY_PUBLIC_BYTES];

    for (size_t i = 1; i + 4 <= size && nedits < MAX_EDITS; i += 4) {
        edit_t e = {data[i] & 1, ((size_t)data[i + 1] << 8) | data[i + 2], data[i + 3]};
        size_t j = 0;

        /* edits of one byte combine (two equal ones cancel out: no change) */
        while (j < nedits && (edits[j].dir != e.dir || edits[j].pos != e.pos)) {
            j++;
        }
        if (j < nedits) {
            edits[j].x ^= e.x;
        } else {
            edits[nedits++] = e;
        }
    }
    for (size_t j = 0; j < nedits;) {
        if (edits[j].x == 0) {
            edits[j] = edits[--nedits];
        } else {
            j++;
        }
    }
    handshake_pair(&c, &s, policy, edits, nedits, piece);
    if (getenv("FUZZ_HANDSHAKE_VERBOSE") != NULL) {
        fprintf(stderr,
                "fuzz_handshake: policy %d, %zu edits: client %d%s (%s), server %d%s (%s)\n",
                policy, nedits, c.rc, c.tampered ? " tampered" : "", pt_secure_error(c.s), s.rc,
                s.tampered ? " tampered" : "", pt_secure_error(s.s));
    }
    if (!c.tampered && !s.tampered) {
        if (policy == 2 || policy == 3) {
            /* refused: the client learns it, the server (policy 3) too */
            CHECK(c.rc < 0);
            CHECK(policy != 3 || s.rc < 0);
        } else {
            if (c.rc != PT_SECURE_DONE || s.rc != PT_SECURE_DONE) {
                fprintf(stderr,
                        "fuzz_handshake: an untouched handshake failed: client %d (%s), "
                        "server %d (%s)\n",
                        c.rc, pt_secure_error(c.s), s.rc, pt_secure_error(s.s));
                abort();
            }
            CHECK(pt_secure_peer_key(c.s, pk) == 0);
            CHECK(memcmp(pk, server_id->pk, sizeof(pk)) == 0);
            CHECK(pt_secure_peer_key(s.s, pk) == 0);
            CHECK(memcmp(pk, client_id->pk, sizeof(pk)) == 0);
            CHECK(record_works(c.s, s.s));
            CHECK(record_works(s.s, c.s));
        }
    } else if (c.rc == PT_SECURE_DONE && s.rc == PT_SECURE_DONE) {
        /* a changed byte went unnoticed by the handshake: the channel itself must then fail */
        int c2s = record_works(c.s, s.s);
        int s2c = record_works(s.s, c.s);

        if (c2s && s2c) {
            fprintf(stderr, "fuzz_handshake: a tampered handshake gave a working channel\n");
            abort();
        }
    }
    free_side(&c);
    free_side(&s);
}

/* Mode 3. */
static void
fuzz_records(const uint8_t *data, size_t size)
{
    static uint8_t recs[MAX_RECORDS][64 + PT_SECURE_RECORD_OVERHEAD];
    size_t lens[MAX_RECORDS];
    side_t c;
    side_t s;
    size_t next = 0; /* the record the receiver expects */
    size_t cursor = 0;
    int dead = 0;
    size_t i = 0;

    handshake_pair(&c, &s, 0, NULL, 0, 0);
    CHECK(c.rc == PT_SECURE_DONE && s.rc == PT_SECURE_DONE);
    for (size_t r = 0; r < MAX_RECORDS; r++) {
        uint8_t m[64];
        size_t n = r % sizeof(m);
        int64_t len;

        memset(m, (int)r, n);
        len = pt_secure_seal(c.s, m, n, recs[r]);
        CHECK(len == (int64_t)(n + PT_SECURE_RECORD_OVERHEAD));
        lens[r] = (size_t)len;
    }
    CHECK(pt_secure_records_out(c.s) == MAX_RECORDS);
    while (i < size && cursor < MAX_RECORDS) {
        uint8_t op = data[i++];
        size_t which = cursor;
        uint8_t rec[64 + PT_SECURE_RECORD_OVERHEAD];
        uint8_t plain[64 + PT_SECURE_RECORD_OVERHEAD];
        size_t len;
        size_t body_len = 0;
        size_t out_len = 0;
        int intact = 1;
        int rc;

        switch (op & 3) {
        case 0: /* deliver the next record */
            cursor++;
            break;
        case 1: /* deliver the next record with one byte changed */
            cursor++;
            intact = 0;
            break;
        case 2: /* deliver an earlier (or this) record again: a replay */
            which = cursor > 0 ? (op >> 2) % cursor : 0;
            if (cursor == 0) {
                cursor++;
            }
            break;
        default: /* drop the next record, deliver the one after: reordering */
            cursor += 2;
            which = cursor - 1;
            if (which >= MAX_RECORDS) {
                continue; /* nothing delivered */
            }
            break;
        }
        len = lens[which];
        memcpy(rec, recs[which], len);
        if (!intact) {
            size_t at = i < size ? data[i++] % len : 0;

            rec[at] ^= 0x01 | (op & 0xfe);
        }
        if (pt_secure_record_len(rec, &body_len) != 0 || body_len != len - PT_SECURE_RECORD_HEAD) {
            /* a changed length: open refuses the record, and a stream would close here */
            CHECK(!intact);
            CHECK(pt_secure_open(s.s, rec, len, plain, &out_len) == PETAL_EPROTO);
            break;
        }
        rc = pt_secure_open(s.s, rec, len, plain, &out_len);
        if (rc == 0) {
            CHECK(!dead);
            CHECK(intact && which == next);
            CHECK(out_len == which % 64);
            for (size_t k = 0; k < out_len; k++) {
                CHECK(plain[k] == (uint8_t)which);
            }
            next++;
            CHECK(pt_secure_records_in(s.s) == next);
        } else {
            CHECK(rc == PETAL_EPROTO);
            CHECK(!(intact && which == next && !dead)); /* the right record must open */
            CHECK(pt_secure_error(s.s)[0] != '\0');
            dead = 1;
        }
    }
    free_side(&c);
    free_side(&s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    int mode;
    int policy;

    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0) {
        return 0;
    }
    mode = data[0] & 3;
    policy = (data[0] >> 2) & 3;
    switch (mode) {
    case 0:
        fuzz_raw(PT_SECURE_SERVER, data + 1, size - 1);
        break;
    case 1:
        fuzz_raw(PT_SECURE_CLIENT, data + 1, size - 1);
        break;
    case 2:
        fuzz_mitm(policy, data + 1, size - 1);
        break;
    default:
        fuzz_records(data + 1, size - 1);
        break;
    }
    return 0;
}
