/* test_secure.c - the secure channel: handshake and records over bytes, then over tcp sockets. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include <petal/petal.h>

#include "conformance.h"
#include "runtime/actor.h"
#include "runtime/keys.h"
#include "transport/secure.h"
#include "transport/stream.h"
#include "transport/transport.h"

#define GUARD_MS 20000
#define MSG_GO 1u
#define MSG_DIAL 2u
#define KIND_PING 9

static pt_keypair_t *server_kp, *client_kp, *other_kp;

static void
keys_setup(void)
{
    if (server_kp == NULL &&
        (pt_keypair_generate(&server_kp) != 0 || pt_keypair_generate(&client_kp) != 0 ||
         pt_keypair_generate(&other_kp) != 0)) {
        fprintf(stderr, "test_secure: cannot generate keys\n");
        abort();
    }
}

/* ---- Over bytes: two sessions talking through memory --------------------------------------- */

/* Moves output between the sessions until neither has more; returns the last results. */
static void
pump_sessions(pt_secure_session_t *cli, pt_secure_session_t *srv, int *rc, int *rs)
{
    uint8_t *to_srv = NULL, *to_cli = NULL;
    size_t ns = 0, nc = 0;

    *rc = PT_SECURE_MORE;
    *rs = PT_SECURE_MORE;
    for (int round = 0; round < 10; round++) {
        uint8_t *d;
        size_t n, used;

        ck_assert_int_eq(pt_secure_take_output(cli, &d, &n), 0);
        to_srv = realloc(to_srv, ns + n + 1);
        if (n > 0) {
            memcpy(to_srv + ns, d, n);
        }
        ns += n;
        free(d);
        ck_assert_int_eq(pt_secure_take_output(srv, &d, &n), 0);
        to_cli = realloc(to_cli, nc + n + 1);
        if (n > 0) {
            memcpy(to_cli + nc, d, n);
        }
        nc += n;
        free(d);
        if (ns == 0 && nc == 0) {
            break;
        }
        if (*rs == PT_SECURE_MORE) {
            *rs = pt_secure_handshake_input(srv, to_srv, ns, &used);
            memmove(to_srv, to_srv + used, ns - used);
            ns -= used;
        }
        if (*rc == PT_SECURE_MORE) {
            *rc = pt_secure_handshake_input(cli, to_cli, nc, &used);
            memmove(to_cli, to_cli + used, nc - used);
            nc -= used;
        }
    }
    free(to_srv);
    free(to_cli);
}

/* The record ciphers new_pair offers on both sides (0: all); set by the cipher loop tests. */
static unsigned pair_ciphers;

/* Loop index -> the cipher a loop test runs with; 0 when this machine lacks it (skip). */
static unsigned
loop_cipher(int i)
{
    unsigned c = i == 0 ? PT_SECURE_XCHACHA20POLY1305 : PT_SECURE_AES256GCM;

    return (pt_secure_ciphers_available() & c) ? c : 0;
}

static void
new_pair(const uint8_t *pin, int (*authorize)(void *, const uint8_t *, char *, size_t), void *ctx,
         pt_secure_session_t **cli, pt_secure_session_t **srv)
{
    pt_secure_opts_t co = {.identity = client_kp, .pinned_peer_pk = pin, .ciphers = pair_ciphers};
    pt_secure_opts_t so = {
        .identity = server_kp, .authorize = authorize, .ctx = ctx, .ciphers = pair_ciphers};

    keys_setup();
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_CLIENT, &co, cli), 0);
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, srv), 0);
}

START_TEST(test_bytes_handshake)
{
    pt_secure_session_t *cli, *srv;
    uint8_t pk[PT_KEY_PUBLIC_BYTES], rec[64 + PT_SECURE_RECORD_OVERHEAD], out[64];
    uint8_t rec2[sizeof(rec)];
    size_t got = 0;
    int rc, rs;

    pair_ciphers = loop_cipher(_i);
    if (pair_ciphers == 0) {
        return; /* no hardware AES here */
    }
    keys_setup();
    new_pair(server_kp->pk, NULL, NULL, &cli, &srv);
    ck_assert(!pt_secure_established(cli));
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_msg(rc == PT_SECURE_DONE, "client: %d %s", rc, pt_secure_error(cli));
    ck_assert_msg(rs == PT_SECURE_DONE, "server: %d %s", rs, pt_secure_error(srv));
    ck_assert_uint_eq((unsigned)pt_secure_cipher(cli), pair_ciphers);
    ck_assert_uint_eq((unsigned)pt_secure_cipher(srv), pair_ciphers);
    ck_assert_int_eq(pt_secure_peer_key(cli, pk), 0);
    ck_assert_mem_eq(pk, server_kp->pk, sizeof(pk));
    ck_assert_int_eq(pt_secure_peer_key(srv, pk), 0);
    ck_assert_mem_eq(pk, client_kp->pk, sizeof(pk));

    /* Both directions carry bytes. */
    ck_assert_int_eq(pt_secure_seal(cli, (const uint8_t *)"hello server", 12, rec),
                     12 + PT_SECURE_RECORD_OVERHEAD);
    ck_assert_int_eq(pt_secure_open(srv, rec, 12 + PT_SECURE_RECORD_OVERHEAD, out, &got), 0);
    ck_assert_uint_eq(got, 12);
    ck_assert_mem_eq(out, "hello server", 12);
    ck_assert_int_eq(pt_secure_seal(srv, (const uint8_t *)"hello client", 12, rec),
                     12 + PT_SECURE_RECORD_OVERHEAD);
    ck_assert_int_eq(pt_secure_open(cli, rec, 12 + PT_SECURE_RECORD_OVERHEAD, out, &got), 0);
    ck_assert_mem_eq(out, "hello client", 12);

    /* A replay of a record already opened fails, and the session is dead from then on. */
    ck_assert_int_eq(pt_secure_open(cli, rec, 12 + PT_SECURE_RECORD_OVERHEAD, out, &got),
                     PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(cli), "record 2 failed authentication: closing");
    ck_assert_int_eq(pt_secure_seal(srv, (const uint8_t *)"x", 1, rec2), 1 + 21);
    ck_assert_int_ne(pt_secure_open(cli, rec2, 1 + PT_SECURE_RECORD_OVERHEAD, out, &got), 0);

    pt_secure_session_free(cli);
    pt_secure_session_free(srv);

    /* A modified byte fails. */
    new_pair(NULL, NULL, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(pt_secure_seal(cli, (const uint8_t *)"abc", 3, rec), 3 + 21);
    ck_assert_int_eq(pt_secure_open(srv, rec, 3 + PT_SECURE_RECORD_OVERHEAD, out, &got), 0);
    ck_assert_int_eq(pt_secure_seal(cli, (const uint8_t *)"abc", 3, rec), 3 + 21);
    rec[PT_SECURE_RECORD_HEAD + 2] ^= 1;
    ck_assert_int_eq(pt_secure_open(srv, rec, 3 + PT_SECURE_RECORD_OVERHEAD, out, &got),
                     PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(srv), "record 2 failed authentication: closing");
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);

    /* So does a modified length in a record's head (it is the body's additional data). */
    new_pair(NULL, NULL, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(pt_secure_seal(cli, (const uint8_t *)"abcd", 4, rec), 4 + 21);
    rec[3] -= 1;
    ck_assert_int_eq(pt_secure_open(srv, rec, 3 + PT_SECURE_RECORD_OVERHEAD, out, &got),
                     PETAL_EPROTO);
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);
}
END_TEST

START_TEST(test_bytes_reorder_and_cut)
{
    pt_secure_session_t *cli, *srv;
    uint8_t r1[8 + 21], r2[8 + 21], out[8];
    size_t got;
    int rc, rs;

    pair_ciphers = loop_cipher(_i);
    if (pair_ciphers == 0) {
        return;
    }
    new_pair(NULL, NULL, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(rc, PT_SECURE_DONE);
    ck_assert_int_eq(rs, PT_SECURE_DONE);
    pt_secure_seal(cli, (const uint8_t *)"record-1", 8, r1);
    pt_secure_seal(cli, (const uint8_t *)"record-2", 8, r2);
    ck_assert_int_eq(pt_secure_open(srv, r2, sizeof(r2), out, &got), PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(srv), "record 1 failed authentication: closing");
    pt_secure_session_free(srv);
    pt_secure_session_free(cli);

    /* A record cut short (its head announcing more) fails too. */
    new_pair(NULL, NULL, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    pt_secure_seal(cli, (const uint8_t *)"record-1", 8, r1);
    ck_assert_int_eq(pt_secure_open(srv, r1, sizeof(r1) - 1, out, &got), PETAL_EPROTO);
    pt_secure_session_free(srv);
    pt_secure_session_free(cli);
}
END_TEST

/* Client and server offers -> the cipher both use, or the handshake fails. */
START_TEST(test_bytes_cipher_choice)
{
    static const unsigned X = PT_SECURE_XCHACHA20POLY1305, A = PT_SECURE_AES256GCM;
    pt_secure_opts_t co = {0}, so = {0};
    pt_secure_session_t *cli, *srv;
    int rc, rs;

    keys_setup();
    co.identity = client_kp;
    so.identity = server_kp;
    if (!(pt_secure_ciphers_available() & A)) {
        co.ciphers = A;
        ck_assert_int_eq(pt_secure_session_new(PT_SECURE_CLIENT, &co, &cli), PETAL_EINVAL);
        return;
    }
    /* Both offer everything: AES-256-GCM. One side XChaCha20-Poly1305 only: that one. */
    for (int k = 0; k < 3; k++) {
        co.ciphers = k == 1 ? X : 0;
        so.ciphers = k == 2 ? X : 0;
        ck_assert_int_eq(pt_secure_session_new(PT_SECURE_CLIENT, &co, &cli), 0);
        ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, &srv), 0);
        ck_assert_int_eq(pt_secure_cipher(cli), 0);
        pump_sessions(cli, srv, &rc, &rs);
        ck_assert_int_eq(rc, PT_SECURE_DONE);
        ck_assert_int_eq(rs, PT_SECURE_DONE);
        ck_assert_uint_eq((unsigned)pt_secure_cipher(cli), k == 0 ? A : X);
        ck_assert_uint_eq((unsigned)pt_secure_cipher(srv), k == 0 ? A : X);
        ck_assert_str_eq(pt_secure_cipher_name(pt_secure_cipher(cli)),
                         k == 0 ? "AES-256-GCM" : "XChaCha20-Poly1305");
        pt_secure_session_free(cli);
        pt_secure_session_free(srv);
    }
    /* Nothing in common: both fail and say so. */
    co.ciphers = A;
    so.ciphers = X;
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_CLIENT, &co, &cli), 0);
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, &srv), 0);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(rc, PETAL_EPROTO);
    ck_assert_int_eq(rs, PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(cli), "no record cipher in common with the server (it offers "
                                           "0x01, this side 0x02)");
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);
    /* An offer of no known cipher is refused at once. */
    co.ciphers = 0x80;
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_CLIENT, &co, &cli), PETAL_EINVAL);
}
END_TEST

/* A man in the middle strikes AES-256-GCM from the server's offer: the client would pick the
 * other cipher, but the HELLOs are in the signed transcript, so the handshake fails. Likewise a
 * changed byte in the client's STREAM record (its header is sealed under the handshake key). */
START_TEST(test_bytes_downgrade_and_stream)
{
    pt_secure_session_t *cli, *srv;
    uint8_t *d, *to_cli;
    size_t n, nc, used;
    int rc, rs;

    keys_setup();
    pair_ciphers = 0;
    if (!(pt_secure_ciphers_available() & PT_SECURE_AES256GCM)) {
        return;
    }
    new_pair(NULL, NULL, NULL, &cli, &srv);
    /* The server's first bytes: magic, [u32 len][HELLO type][role][e: 32][ciphers]. */
    ck_assert_int_eq(pt_secure_take_output(srv, &to_cli, &nc), 0);
    ck_assert_uint_eq(nc, PT_SECURE_MAGIC_LEN + 4 + 35);
    ck_assert_uint_eq(to_cli[nc - 1], PT_SECURE_XCHACHA20POLY1305 | PT_SECURE_AES256GCM);
    to_cli[nc - 1] = PT_SECURE_XCHACHA20POLY1305;
    ck_assert_int_eq(pt_secure_handshake_input(cli, to_cli, nc, &used), PT_SECURE_MORE);
    free(to_cli);
    ck_assert_uint_eq((unsigned)pt_secure_cipher(cli), PT_SECURE_XCHACHA20POLY1305);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(rc, PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(pt_secure_error(cli), "AUTH failed authentication"));
    ck_assert_int_ne(rs, PT_SECURE_DONE);
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);

    /* The STREAM record: the last 4 + 1 + 24 + 16 bytes the client sends before the RESULT. */
    new_pair(NULL, NULL, NULL, &cli, &srv);
    for (int step = 0; step < 2; step++) { /* HELLOs, then the server's AUTH to the client */
        ck_assert_int_eq(pt_secure_take_output(srv, &d, &n), 0);
        ck_assert_int_ge(pt_secure_handshake_input(cli, d, n, &used), 0);
        free(d);
        ck_assert_int_eq(pt_secure_take_output(cli, &d, &n), 0);
        if (step == 1) {
            ck_assert_uint_gt(n, 45);
            d[n - 10] ^= 0x01; /* inside the sealed header */
        }
        rs = pt_secure_handshake_input(srv, d, n, &used);
        free(d);
    }
    ck_assert_int_eq(rs, PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(srv), "the client's STREAM failed authentication (the "
                                           "handshake was tampered with)");
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);
}
END_TEST

START_TEST(test_bytes_wrong_pin)
{
    pt_secure_session_t *cli, *srv;
    char want[PT_KEY_FPR_SIZE], got[PT_KEY_FPR_SIZE], msg[200];
    int rc, rs;

    keys_setup();
    new_pair(other_kp->pk, NULL, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(rc, PETAL_EPROTO);
    ck_assert_int_ne(rs, PT_SECURE_DONE);
    pt_key_fingerprint(server_kp->pk, got);
    pt_key_fingerprint(other_kp->pk, want);
    snprintf(msg, sizeof(msg), "server key %s is not the pinned %s", got, want);
    ck_assert_str_eq(pt_secure_error(cli), msg);
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);
}
END_TEST

static int
refuse_all(void *ctx, const uint8_t pk[PT_KEY_PUBLIC_BYTES], char *why, size_t cap)
{
    (void)ctx;
    (void)pk;
    snprintf(why, cap, "node is not on the list");
    return -1;
}

START_TEST(test_bytes_refused)
{
    pt_secure_session_t *cli, *srv;
    int rc, rs;

    new_pair(NULL, refuse_all, NULL, &cli, &srv);
    pump_sessions(cli, srv, &rc, &rs);
    ck_assert_int_eq(rs, PETAL_EPROTO);
    ck_assert_int_eq(rc, PETAL_EPROTO);
    ck_assert_str_eq(pt_secure_error(cli), "refused by the server: node is not on the list");
    ck_assert_ptr_nonnull(strstr(pt_secure_error(srv), "refused: node is not on the list"));
    pt_secure_session_free(cli);
    pt_secure_session_free(srv);
}
END_TEST

START_TEST(test_bytes_garbage)
{
    static const uint8_t plain_frame[] = {0, 0, 0, 7, 0x96, 1, 7, 0, 1, 0, 0xc2};
    pt_secure_opts_t so = {0};
    pt_secure_session_t *srv;
    size_t used;

    keys_setup();
    so.identity = server_kp;
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, &srv), 0);
    ck_assert_int_eq(pt_secure_handshake_input(srv, plain_frame, sizeof(plain_frame), &used),
                     PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(pt_secure_error(srv), "plain Petal frame"));
    pt_secure_session_free(srv);

    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, &srv), 0);
    ck_assert_int_eq(pt_secure_handshake_input(srv, (const uint8_t *)"GET / HTTP/1.1", 14, &used),
                     PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(pt_secure_error(srv), "its first bytes: \"GET / HT\""));
    pt_secure_session_free(srv);

    /* The magic, then a record that is too long. */
    ck_assert_int_eq(pt_secure_session_new(PT_SECURE_SERVER, &so, &srv), 0);
    ck_assert_int_eq(pt_secure_handshake_input(
                         srv, (const uint8_t *)PT_SECURE_MAGIC "\xff\xff\xff\xff", 12, &used),
                     PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(pt_secure_error(srv), "handshake record of"));
    pt_secure_session_free(srv);
}
END_TEST

/* ---- Over sockets ---------------------------------------------------------------------------- */

typedef struct side {
    pt_actor_t *actor;
    pt_conn_t *conn;
    int ups, downs, frames;
    int status;
    char reason[sizeof(((pt_conn_event_t *)0)->reason)];
    uint8_t peer[PT_KEY_PUBLIC_BYTES];
    int has_peer;
    int secure;
} side_t;

typedef struct scen scen_t;

struct scen {
    pt_runtime_t *rt;
    int srv_secure, cli_secure;
    pt_secure_opts_t srv_opts, cli_opts;
    const char *dial_addr;          /* NULL: the listener's address */
    void *(*raw_client)(void *arg); /* a thread speaking the protocol by hand, instead of dialing */
    int raw_mode;
    int (*done)(scen_t *s);
    pt_listener_t *l;
    char bound[200];
    int port;
    side_t srv, cli;
    pt_timer_t *guard;
    int guard_fired;
    int finished;
    uint64_t t0, t_cli_down;
    pthread_t th;
    int th_started;
};

static scen_t S;

static void
plain_free(pt_msg_t *m)
{
    free(m);
}

static void
send_msg(pt_actor_t *to, uint32_t type)
{
    pt_msg_t *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->type = type;
    m->free = plain_free;
    ck_assert_int_eq(pt_actor_send(to, m), 0);
}

static void
check_done(void)
{
    if (!S.finished && S.done(&S)) {
        __atomic_store_n(&S.finished, 1, __ATOMIC_SEQ_CST); /* silent_client reads it */
        pt_runtime_shutdown(S.rt);
    }
}

static void
send_ping(pt_conn_t *c, uint64_t seq)
{
    pt_frame_t *f = pt_frame_alloc(KIND_PING, NULL);

    ck_assert_ptr_nonnull(f);
    f->seq = seq;
    ck_assert_int_eq(pt_conn_send(c, f), 0);
}

static void
side_event(side_t *sd, int is_server, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;

    switch (m->type) {
    case PT_MSG_CONN_UP:
        sd->ups++;
        sd->conn = ev->conn;
        sd->secure = pt_conn_is_secure(ev->conn);
        sd->has_peer = pt_conn_peer_key(ev->conn, sd->peer) == 0;
        if (!is_server) {
            send_ping(ev->conn, 1); /* the server answers with seq 2 */
        }
        break;
    case PT_MSG_FRAME: {
        pt_frame_t *f = (pt_frame_t *)m;

        sd->frames++;
        if (is_server && f->seq == 1 && S.raw_client == NULL) {
            send_ping(f->conn, 2);
        }
        break;
    }
    case PT_MSG_CONN_DOWN:
        __atomic_add_fetch(&sd->downs, 1, __ATOMIC_SEQ_CST); /* silent_client reads it */
        sd->status = ev->status;
        snprintf(sd->reason, sizeof(sd->reason), "%s", ev->reason);
        sd->conn = NULL;
        if (!is_server) {
            S.t_cli_down = uv_hrtime();
        }
        break;
    default:
        break;
    }
}

static void
server_handler(pt_actor_t *self, pt_msg_t *m)
{
    int r;

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &S.guard), 0);
        r = S.srv_secure ? pt_listen_secure(S.rt, "tcp://127.0.0.1:0", self, &S.srv_opts, &S.l)
                         : pt_listen(S.rt, "tcp://127.0.0.1:0", self, &S.l);
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(pt_listener_addr(S.l, S.bound, sizeof(S.bound)), 0);
        S.port = atoi(strrchr(S.bound, ':') + 1);
        S.t0 = uv_hrtime();
        if (S.raw_client != NULL) {
            ck_assert_int_eq(pthread_create(&S.th, NULL, S.raw_client, &S), 0);
            S.th_started = 1;
        } else {
            send_msg(S.cli.actor, MSG_DIAL);
        }
        break;
    case PT_MSG_TIMER:
        S.guard_fired = 1;
        pt_runtime_shutdown(S.rt);
        break;
    case PT_MSG_STOP:
        if (S.srv.conn != NULL) {
            pt_conn_close(S.srv.conn);
            S.srv.conn = NULL;
        }
        if (S.l != NULL) {
            pt_listener_close(S.l);
            S.l = NULL;
        }
        break;
    default:
        side_event(&S.srv, 1, m);
        check_done();
        break;
    }
    pt_msg_free(m);
}

static void
client_handler(pt_actor_t *self, pt_msg_t *m)
{
    const char *addr = S.dial_addr != NULL ? S.dial_addr : S.bound;
    pt_conn_t *c;
    int r;

    switch (m->type) {
    case MSG_DIAL:
        r = S.cli_secure ? pt_dial_secure(S.rt, addr, self, &S.cli_opts, &c)
                         : pt_dial(S.rt, addr, self, &c);
        ck_assert_int_eq(r, 0);
        S.cli.conn = c;
        break;
    case PT_MSG_STOP:
        if (S.cli.conn != NULL) {
            pt_conn_close(S.cli.conn);
            S.cli.conn = NULL;
        }
        break;
    default:
        side_event(&S.cli, 0, m);
        check_done();
        break;
    }
    pt_msg_free(m);
}

static void
scen_init(int srv_secure, int cli_secure, int (*done)(scen_t *))
{
    keys_setup();
    memset(&S, 0, sizeof(S));
    S.srv_secure = srv_secure;
    S.cli_secure = cli_secure;
    S.srv_opts.identity = server_kp;
    S.cli_opts.identity = client_kp;
    S.cli_opts.pinned_peer_pk = server_kp->pk;
    S.done = done;
}

static void
scen_run(void)
{
    pt_runtime_opts_t o = {.workers = 1};

    ck_assert_int_eq(pt_runtime_alloc(&o, &S.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(S.rt, "server", server_handler, NULL, &S.srv.actor), 0);
    ck_assert_int_eq(pt_actor_spawn(S.rt, "client", client_handler, NULL, &S.cli.actor), 0);
    send_msg(S.srv.actor, MSG_GO);
    ck_assert_int_eq(pt_runtime_run(S.rt), 0);
    if (S.th_started) {
        pthread_join(S.th, NULL);
    }
    ck_assert_int_eq(pt_runtime_free(S.rt), 0);
    ck_assert_msg(!S.guard_fired,
                  "the guard timer fired (srv: up %d down %d \"%s\"; cli: up %d "
                  "down %d \"%s\")",
                  S.srv.ups, S.srv.downs, S.srv.reason, S.cli.ups, S.cli.downs, S.cli.reason);
}

/* Both sides up, a ping each way. */
static int
done_pinged(scen_t *s)
{
    return s->srv.frames == 1 && s->cli.frames == 1;
}

START_TEST(test_secure_up)
{
    scen_init(1, 1, done_pinged);
    scen_run();
    ck_assert_int_eq(S.srv.ups, 1);
    ck_assert_int_eq(S.cli.ups, 1);
    ck_assert_int_eq(S.srv.downs, 0);
    ck_assert_int_eq(S.cli.downs, 0);
    ck_assert(S.srv.secure && S.cli.secure);
    ck_assert(S.srv.has_peer && S.cli.has_peer);
    ck_assert_mem_eq(S.srv.peer, client_kp->pk, PT_KEY_PUBLIC_BYTES);
    ck_assert_mem_eq(S.cli.peer, server_kp->pk, PT_KEY_PUBLIC_BYTES);
}
END_TEST

/* Plain tcp is unchanged: no peer key, not secure. */
START_TEST(test_plain_has_no_key)
{
    scen_init(0, 0, done_pinged);
    scen_run();
    ck_assert_int_eq(S.srv.ups, 1);
    ck_assert(!S.srv.secure && !S.cli.secure);
    ck_assert(!S.srv.has_peer && !S.cli.has_peer);
}
END_TEST

static int
done_cli_down(scen_t *s)
{
    return s->cli.downs == 1;
}

START_TEST(test_wrong_pin)
{
    char want[PT_KEY_FPR_SIZE], got[PT_KEY_FPR_SIZE], msg[200];

    scen_init(1, 1, done_cli_down);
    S.cli_opts.pinned_peer_pk = other_kp->pk;
    scen_run();
    ck_assert_int_eq(S.cli.ups, 0);
    ck_assert_int_eq(S.srv.ups, 0);
    ck_assert_int_eq(S.cli.status, PETAL_EPROTO);
    pt_key_fingerprint(server_kp->pk, got);
    pt_key_fingerprint(other_kp->pk, want);
    snprintf(msg, sizeof(msg), "127.0.0.1:%d: server key %s is not the pinned %s", S.port, got,
             want);
    ck_assert_str_eq(S.cli.reason, msg);
}
END_TEST

START_TEST(test_unauthorized_client)
{
    pt_keylist_t *allow;
    char fpr[PT_KEY_FPR_SIZE], msg[200];

    scen_init(1, 1, done_cli_down);
    ck_assert_int_eq(pt_keylist_alloc(&allow), 0);
    ck_assert_int_eq(pt_keylist_add(allow, other_kp->pk), 0);
    S.srv_opts.authorize = pt_keylist_authorize;
    S.srv_opts.ctx = allow;
    scen_run();
    ck_assert_int_eq(S.cli.ups, 0);
    ck_assert_int_eq(S.srv.ups, 0);
    ck_assert_int_eq(S.cli.status, PETAL_EPROTO);
    pt_key_fingerprint(client_kp->pk, fpr);
    snprintf(msg, sizeof(msg), "127.0.0.1:%d: refused by the server: key %s is not allowed", S.port,
             fpr);
    ck_assert_str_eq(S.cli.reason, msg);
    pt_keylist_free(allow);
}
END_TEST

START_TEST(test_authorized_client)
{
    pt_keylist_t *allow;

    scen_init(1, 1, done_pinged);
    ck_assert_int_eq(pt_keylist_alloc(&allow), 0);
    ck_assert_int_eq(pt_keylist_add(allow, client_kp->pk), 0);
    S.srv_opts.authorize = pt_keylist_authorize;
    S.srv_opts.ctx = allow;
    scen_run();
    ck_assert_int_eq(S.srv.ups, 1);
    ck_assert_int_eq(S.cli.ups, 1);
    pt_keylist_free(allow);
}
END_TEST

static double
cli_down_seconds(void)
{
    return (double)(S.t_cli_down - S.t0) / 1e9;
}

START_TEST(test_plain_client_secure_server)
{
    scen_init(1, 0, done_cli_down);
    S.srv_opts.handshake_timeout = 30;
    scen_run();
    /* The plain client came up (plain tcp has no handshake), then its stream saw the magic. */
    ck_assert_int_eq(S.srv.ups, 0);
    ck_assert_int_eq(S.cli.status, PETAL_EPROTO);
    ck_assert_msg(strstr(S.cli.reason, "the peer uses the secure channel but this side is plain") !=
                      NULL,
                  "%s", S.cli.reason);
    printf("plain client -> secure server: \"%s\" after %.3f s\n", S.cli.reason,
           cli_down_seconds());
    ck_assert_msg(cli_down_seconds() < 5.0, "%.3f s", cli_down_seconds());
}
END_TEST

static int
done_both_down(scen_t *s)
{
    return s->cli.downs == 1 && s->srv.downs == 1;
}

START_TEST(test_secure_client_plain_server)
{
    char msg[200];

    scen_init(0, 1, done_both_down);
    S.cli_opts.handshake_timeout = 30;
    scen_run();
    ck_assert_int_eq(S.cli.ups, 0);
    ck_assert_int_eq(S.cli.status, PETAL_ECLOSED);
    snprintf(msg, sizeof(msg),
             "127.0.0.1:%d: the server closed the connection during the secure handshake (is it "
             "running with --insecure?)",
             S.port);
    ck_assert_str_eq(S.cli.reason, msg);
    ck_assert_int_eq(S.srv.status, PETAL_EPROTO);
    ck_assert_ptr_nonnull(strstr(S.srv.reason, "the peer uses the secure channel"));
    printf("secure client -> plain server: \"%s\" after %.3f s\n", S.cli.reason,
           cli_down_seconds());
    ck_assert_msg(cli_down_seconds() < 5.0, "%.3f s", cli_down_seconds());
}
END_TEST

START_TEST(test_handshake_timeout)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    char addr[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    /* A listening socket nobody accepts from: the connect completes, nothing is ever said. */
    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(listen(fd, 4), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, sizeof(addr), "tcp://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    scen_init(1, 1, done_cli_down);
    S.dial_addr = addr;
    S.cli_opts.handshake_timeout = 0.3;
    scen_run();
    close(fd);
    ck_assert_int_eq(S.cli.ups, 0);
    ck_assert_int_eq(S.cli.status, PETAL_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(S.cli.reason, "secure handshake timed out after 0.3 s"));
}
END_TEST

/* ---- The limit on handshakes in progress ----------------------------------------------------- */

/* A raw connection that never answers holds the listener's only handshake slot: a dial is
 * refused with the reason; once the silent one times out, a dial gets through. */
static void *
silent_client(void *arg)
{
    scen_t *sc = arg;
    struct sockaddr_in sa;
    struct timeval tv = {.tv_sec = 10};
    uint8_t buf[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ssize_t got = 0, n;

    ck_assert_int_ge(fd, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)sc->port);
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    /* The server's magic and HELLO: it has accepted us, so the slot is taken. */
    while (got < PT_SECURE_MAGIC_LEN + 4 + 35 && (n = read(fd, buf, sizeof(buf))) > 0) {
        got += n;
    }
    send_msg(sc->cli.actor, MSG_DIAL);
    while (__atomic_load_n(&sc->cli.downs, __ATOMIC_SEQ_CST) == 0 &&
           !__atomic_load_n(&sc->finished, __ATOMIC_SEQ_CST)) {
        usleep(10000);
    }
    /* The server gives up on us after its handshake timeout and closes. */
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
    send_msg(sc->cli.actor, MSG_DIAL);
    return NULL;
}

static int
done_refused_then_up(scen_t *s)
{
    return s->cli.downs == 1 && s->srv.frames == 1; /* the ping over the second dial */
}

START_TEST(test_handshake_limit)
{
    scen_init(1, 1, done_refused_then_up);
    S.srv_opts.max_handshakes = 1;
    /* Long enough that the refused dial surely comes while the silent one holds the slot, even
     * on a loaded machine; short enough to keep the test quick. */
    S.srv_opts.handshake_timeout = 2.0;
    S.raw_client = silent_client;
    scen_run();
    ck_assert_int_eq(S.cli.ups, 1);
    ck_assert_int_eq(S.cli.status, PETAL_EPROTO);
    ck_assert_msg(strstr(S.cli.reason,
                         "the server ended the handshake: too many secure "
                         "handshakes in progress (1, the limit); try again later") != NULL,
                  "%s", S.cli.reason);
}
END_TEST

/* ---- A client written by hand: valid records, then a bad one -------------------------------- */

enum { RAW_TAMPER, RAW_REPLAY, RAW_REORDER, RAW_CUT };

static int
write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The plain stream bytes of a frame without a message, seq < 128. */
static void
ping_bytes(uint8_t out[11], uint8_t seq)
{
    static const uint8_t f[11] = {0, 0, 0, 7, 0x96, 1, KIND_PING, 0, 0, 0, 0xc2};

    memcpy(out, f, sizeof(f));
    out[8] = seq;
}

static void *
raw_client(void *arg)
{
    scen_t *s = arg;
    pt_secure_opts_t o = {.identity = client_kp, .pinned_peer_pk = server_kp->pk};
    pt_secure_session_t *sess = NULL;
    struct sockaddr_in sa;
    struct timeval tv = {10, 0};
    uint8_t in[4096], frame[11], r1[11 + 21], r2[11 + 21], r3[11 + 21];
    size_t have = 0, used;
    int fd, r = PT_SECURE_MORE;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        pt_secure_session_new(PT_SECURE_CLIENT, &o, &sess) != 0) {
        goto out;
    }
    while (r == PT_SECURE_MORE) {
        uint8_t *d;
        size_t n;
        ssize_t got;

        pt_secure_take_output(sess, &d, &n);
        if (n > 0 && write_all(fd, d, n) != 0) {
            free(d);
            goto out;
        }
        free(d);
        got = read(fd, in + have, sizeof(in) - have);
        if (got <= 0) {
            goto out;
        }
        have += (size_t)got;
        r = pt_secure_handshake_input(sess, in, have, &used);
        memmove(in, in + used, have - used);
        have -= used;
    }
    if (r != PT_SECURE_DONE) {
        goto out;
    }
    ping_bytes(frame, 1);
    pt_secure_seal(sess, frame, sizeof(frame), r1);
    ping_bytes(frame, 2);
    pt_secure_seal(sess, frame, sizeof(frame), r2);
    ping_bytes(frame, 3);
    pt_secure_seal(sess, frame, sizeof(frame), r3);
    switch (s->raw_mode) {
    case RAW_TAMPER:
        r2[PT_SECURE_RECORD_HEAD + 5] ^= 0x40;
        write_all(fd, r1, sizeof(r1));
        write_all(fd, r2, sizeof(r2));
        break;
    case RAW_REPLAY:
        write_all(fd, r1, sizeof(r1));
        write_all(fd, r1, sizeof(r1));
        break;
    case RAW_REORDER:
        write_all(fd, r1, sizeof(r1));
        write_all(fd, r3, sizeof(r3));
        write_all(fd, r2, sizeof(r2));
        break;
    default:
        write_all(fd, r1, sizeof(r1));
        write_all(fd, r2, sizeof(r2) - 5);
        shutdown(fd, SHUT_WR);
        break;
    }
    /* Until the server closes (or the read timeout). */
    while (read(fd, in, sizeof(in)) > 0) {
    }
out:
    pt_secure_session_free(sess);
    close(fd);
    return NULL;
}

static int
done_srv_down(scen_t *s)
{
    return s->srv.downs == 1;
}

static void
run_raw(int mode, const char *want_suffix)
{
    size_t n, w;

    scen_init(1, 1, done_srv_down);
    S.raw_client = raw_client;
    S.raw_mode = mode;
    scen_run();
    ck_assert_int_eq(S.srv.ups, 1);
    ck_assert_int_eq(S.srv.frames, 1); /* the first record's frame got through */
    n = strlen(S.srv.reason);
    w = strlen(want_suffix);
    ck_assert_msg(n >= w && strcmp(S.srv.reason + n - w, want_suffix) == 0, "reason: %s",
                  S.srv.reason);
    ck_assert(strncmp(S.srv.reason, "127.0.0.1:", 10) == 0);
}

START_TEST(test_tampered_record)
{
    run_raw(RAW_TAMPER, ": record 2 failed authentication: closing");
    ck_assert_int_eq(S.srv.status, PETAL_EPROTO);
}
END_TEST

START_TEST(test_replayed_record)
{
    run_raw(RAW_REPLAY, ": record 2 failed authentication: closing");
    ck_assert_int_eq(S.srv.status, PETAL_EPROTO);
}
END_TEST

START_TEST(test_reordered_record)
{
    run_raw(RAW_REORDER, ": record 2 failed authentication: closing");
    ck_assert_int_eq(S.srv.status, PETAL_EPROTO);
}
END_TEST

START_TEST(test_truncated_record)
{
    run_raw(RAW_CUT, ": closed by peer in the middle of a record");
    ck_assert_int_eq(S.srv.status, PETAL_ECLOSED);
}
END_TEST

/* ---- Options ----------------------------------------------------------------------------------
 */

static void
opts_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_secure_opts_t none = {0};
    pt_listener_t *l;
    pt_conn_t *c;

    if (m->type == MSG_GO) {
        ck_assert_int_eq(pt_listen_secure(S.rt, "tcp://127.0.0.1:0", self, &none, &l),
                         PETAL_EINVAL);
        ck_assert_int_eq(pt_listen_secure(S.rt, "tcp://127.0.0.1:0", self, NULL, &l), PETAL_EINVAL);
        ck_assert_int_eq(pt_dial_secure(S.rt, "inproc://x", self, &S.cli_opts, &c), PETAL_EINVAL);
        ck_assert_int_eq(pt_dial_secure(S.rt, "tcp://127.0.0.1", self, &S.cli_opts, &c),
                         PETAL_EINVAL);
        ck_assert_int_eq(pt_conn_peer_key(NULL, S.srv.peer), PETAL_EINVAL);
        ck_assert(!pt_conn_is_secure(NULL));
        ck_assert_ptr_eq(pt_tran_find("tcp+secure://127.0.0.1:1"), &pt_tcp_secure_ops);
        pt_runtime_shutdown(S.rt);
    }
    pt_msg_free(m);
}

START_TEST(test_bad_options)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;

    scen_init(1, 1, NULL);
    ck_assert_int_eq(pt_runtime_alloc(&o, &S.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(S.rt, "opts", opts_handler, NULL, &a), 0);
    send_msg(a, MSG_GO);
    ck_assert_int_eq(pt_runtime_run(S.rt), 0);
    ck_assert_int_eq(pt_runtime_free(S.rt), 0);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("secure");
    TCase *bytes = tcase_create("secure-bytes");
    TCase *tcp = tcase_create("secure-tcp");
    pt_secure_opts_t conf_opts = {0};
    SRunner *sr;
    int failed;

    keys_setup();
    tcase_add_loop_test(bytes, test_bytes_handshake, 0, 2);
    tcase_add_loop_test(bytes, test_bytes_reorder_and_cut, 0, 2);
    tcase_add_test(bytes, test_bytes_cipher_choice);
    tcase_add_test(bytes, test_bytes_downgrade_and_stream);
    tcase_add_test(bytes, test_bytes_wrong_pin);
    tcase_add_test(bytes, test_bytes_refused);
    tcase_add_test(bytes, test_bytes_garbage);
    suite_add_tcase(s, bytes);
    tcase_set_timeout(tcp, 120);
    tcase_add_test(tcp, test_secure_up);
    tcase_add_test(tcp, test_plain_has_no_key);
    tcase_add_test(tcp, test_wrong_pin);
    tcase_add_test(tcp, test_unauthorized_client);
    tcase_add_test(tcp, test_authorized_client);
    tcase_add_test(tcp, test_plain_client_secure_server);
    tcase_add_test(tcp, test_secure_client_plain_server);
    tcase_add_test(tcp, test_handshake_timeout);
    tcase_add_test(tcp, test_handshake_limit);
    tcase_add_test(tcp, test_tampered_record);
    tcase_add_test(tcp, test_replayed_record);
    tcase_add_test(tcp, test_reordered_record);
    tcase_add_test(tcp, test_truncated_record);
    tcase_add_test(tcp, test_bad_options);
    suite_add_tcase(s, tcp);
    /* The transport conformance suite over the secure channel (one identity both sides, pinned). */
    conf_opts.identity = server_kp;
    conf_opts.pinned_peer_pk = server_kp->pk;
    if (pt_secure_set_default_opts(&conf_opts) != 0) {
        abort();
    }
    suite_add_tcase(s, pt_conformance_tcase("tcp+secure", "tcp+secure://127.0.0.1:0"));
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    pt_secure_set_default_opts(NULL);
    pt_keypair_free(server_kp);
    pt_keypair_free(client_kp);
    pt_keypair_free(other_kp);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
