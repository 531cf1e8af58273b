/* conformance.c - transport tests written once, run for every scheme (see conformance.h). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <petal/petal.h>

#include "conformance.h"
#include "runtime/actor.h"
#include "transport/transport.h"

#define MAX_TRANSPORTS 8
#define GUARD_MS 120000
#define BURST 256 /* frames per actor turn before the sender yields */
#define KIND_TEST 7

#define MSG_START 1u /* to the server: listen, then tell the client to dial */
#define MSG_DIAL 2u  /* to the client */
#define MSG_MORE 3u  /* the client to itself: keep sending */

static const char *bases[MAX_TRANSPORTS];
static int nbases;

typedef struct conf conf_t;
typedef struct side side_t;

/* What one test does; the harness below runs the actors and calls these on the loop thread. */
typedef struct conf_test {
    const char *name;
    uint64_t total; /* frames the client sends (0: none) */
    uint32_t hwm;   /* the runtime's mailbox high-water mark (0: default) */
    pt_frame_t *(*make)(conf_t *cf, uint64_t seq);
    void (*on_up)(side_t *s);
    void (*on_frame)(side_t *s, pt_frame_t *f); /* server side; the harness frees f */
    void (*on_down)(side_t *s, pt_conn_event_t *ev);
} conf_test_t;

struct side {
    conf_t *cf;
    int is_server;
    pt_actor_t *actor;
    pt_conn_t *conn;
    int ups;
    int downs;
    int down_status;
};

struct conf {
    const conf_test_t *t;
    int inproc;
    char addr[200];  /* what the server listens on */
    char bound[200]; /* what the client dials */
    pt_runtime_t *rt;
    pt_listener_t *listener;
    side_t srv;
    side_t cli;
    pt_timer_t *guard;
    int guard_fired;
    int done;
    /* client */
    uint64_t sent;
    pt_frame_t *pending; /* refused with EAGAIN, to resend after WRITABLE */
    int blocked;
    int more_queued;
    int stop_sending;
    uint64_t eagain;
    uint64_t writable;
    uint64_t send_closed;
    /* server */
    uint64_t recv;
    uint64_t after_close;
    int server_closed;
    /* huge message */
    const void *huge_data;
    uint64_t huge_sum;
    int huge_ok;
};

static atomic_long tracked_alive;

/* ---- Helpers -------------------------------------------------------------------------------- */

static void
plain_free(pt_msg_t *m)
{
    free(m);
}

static void
send_plain(pt_actor_t *to, uint32_t type)
{
    pt_msg_t *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->type = type;
    m->free = plain_free;
    ck_assert_int_eq(pt_actor_send(to, m), 0);
}

static void
conf_done(conf_t *cf)
{
    if (!cf->done) {
        cf->done = 1;
        pt_runtime_shutdown(cf->rt);
    }
}

static petal_message_t *
small_message(uint64_t seq)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_metricrecord_t *mr;
    petal_value_t v = petal_value_u64(seq);
    petal_message_t *m;

    ck_assert_ptr_nonnull(d);
    mr = petal_recorddict_add_metrics(d, "m");
    ck_assert_ptr_nonnull(mr);
    ck_assert_int_eq(petal_metricrecord_set(mr, "seq", &v), 0);
    m = petal_message_alloc(d, "query", 1, "conf", 60.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

static uint64_t
message_seq(const petal_message_t *m)
{
    const petal_recorddict_t *d = petal_message_content(m);
    const petal_metricrecord_t *mr;
    petal_value_t v;
    int64_t seq;

    ck_assert_ptr_nonnull(d);
    mr = petal_recorddict_metrics(d, "m");
    ck_assert_ptr_nonnull(mr);
    ck_assert_int_eq(petal_metricrecord_get(mr, "seq", &v), 0);
    ck_assert_int_eq(petal_value_as_i64(&v, &seq), 0);
    return (uint64_t)seq;
}

static void
tracked_free(void *data, void *ctx)
{
    (void)ctx;
    free(data);
    atomic_fetch_sub(&tracked_alive, 1);
}

/* A small message whose array memory is counted, to prove that no frame is leaked. */
static petal_message_t *
tracked_message(uint64_t seq)
{
    petal_message_t *m = small_message(seq);
    petal_recorddict_t *d = (petal_recorddict_t *)petal_message_content(m);
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(d, "a");
    uint64_t shape[1] = {16};
    uint8_t *data = calloc(1, 16);

    ck_assert_ptr_nonnull(ar);
    ck_assert_ptr_nonnull(data);
    atomic_fetch_add(&tracked_alive, 1);
    ck_assert_ptr_nonnull(
        petal_arrayrecord_add_wrap(ar, "x", PETAL_DTYPE_UINT8, 1, shape, data, tracked_free, NULL));
    return m;
}

static pt_frame_t *
frame_with(uint64_t seq, petal_message_t *msg)
{
    pt_frame_t *f = pt_frame_alloc(KIND_TEST, msg);

    ck_assert_ptr_nonnull(f);
    f->seq = seq;
    return f;
}

static void
check_frame_header(side_t *s, pt_frame_t *f)
{
    ck_assert_uint_eq(f->hdr.type, PT_MSG_FRAME);
    ck_assert_uint_eq(f->version, PT_PROTOCOL_VERSION);
    ck_assert_uint_eq(f->kind, KIND_TEST);
    ck_assert_ptr_eq(f->conn, s->conn);
}

/* ---- The client's sending loop --------------------------------------------------------------- */

static void
pump(conf_t *cf)
{
    side_t *s = &cf->cli;
    int burst = 0;

    if (s->conn == NULL || cf->blocked || cf->stop_sending) {
        return;
    }
    while (cf->sent < cf->t->total) {
        pt_frame_t *f = cf->pending != NULL ? cf->pending : cf->t->make(cf, cf->sent + 1);
        int r;

        cf->pending = NULL;
        r = pt_conn_send(s->conn, f);
        if (r == 0) {
            cf->sent++;
            if (++burst == BURST) {
                if (!cf->more_queued) {
                    cf->more_queued = 1;
                    send_plain(s->actor, MSG_MORE);
                }
                return;
            }
            continue;
        }
        if (r == PETAL_EAGAIN) {
            cf->pending = f; /* still ours */
            cf->eagain++;
            cf->blocked = 1;
            return;
        }
        ck_assert_msg(r == PETAL_ECLOSED, "send: %s", petal_strerror(r));
        cf->send_closed++;
        cf->stop_sending = 1;
        pt_msg_free(&f->hdr);
        return;
    }
}

/* ---- The actors ------------------------------------------------------------------------------ */

static void
side_stop(side_t *s)
{
    conf_t *cf = s->cf;

    if (s->conn != NULL) {
        pt_conn_close(s->conn); /* its DOWN cannot be delivered any more; the transport frees it */
        s->conn = NULL;
    }
    if (s->is_server && cf->listener != NULL) {
        pt_listener_close(cf->listener);
        cf->listener = NULL;
    }
    if (!s->is_server && cf->pending != NULL) {
        pt_msg_free(&cf->pending->hdr);
        cf->pending = NULL;
    }
}

static void
side_handler(pt_actor_t *self, pt_msg_t *m)
{
    side_t *s = pt_actor_state(self);
    conf_t *cf = s->cf;
    pt_conn_event_t *ev = (pt_conn_event_t *)m;
    int r;

    switch (m->type) {
    case MSG_START:
        ck_assert(pt_runtime_on_loop(cf->rt));
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &cf->guard), 0);
        r = pt_listen(cf->rt, cf->addr, self, &cf->listener);
        ck_assert_msg(r == 0, "listen %s: %s", cf->addr, petal_strerror(r));
        ck_assert_int_eq(pt_listener_addr(cf->listener, cf->bound, sizeof(cf->bound)), 0);
        ck_assert(strlen(cf->bound) > 0);
        send_plain(cf->cli.actor, MSG_DIAL);
        break;
    case MSG_DIAL:
        r = pt_dial(cf->rt, cf->bound, self, &s->conn);
        ck_assert_msg(r == 0, "dial %s: %s", cf->bound, petal_strerror(r));
        break;
    case MSG_MORE:
        cf->more_queued = 0;
        pump(cf);
        break;
    case PT_MSG_CONN_UP:
        s->ups++;
        ck_assert_int_eq(s->ups, 1);
        ck_assert_int_eq(ev->status, 0);
        if (s->is_server) {
            s->conn = ev->conn;
        } else {
            ck_assert_ptr_eq(ev->conn, s->conn);
        }
        ck_assert_ptr_nonnull(pt_conn_peer(ev->conn));
        pt_conn_set_data(ev->conn, s);
        ck_assert_ptr_eq(pt_conn_data(ev->conn), s);
        if (cf->t->on_up != NULL) {
            cf->t->on_up(s);
        }
        break;
    case PT_MSG_FRAME:
        ck_assert(s->is_server);
        cf->t->on_frame(s, (pt_frame_t *)m);
        break;
    case PT_MSG_CONN_WRITABLE:
        ck_assert(!s->is_server);
        ck_assert_ptr_eq(ev->conn, s->conn);
        ck_assert(cf->blocked);
        cf->writable++;
        cf->blocked = 0;
        pump(cf);
        break;
    case PT_MSG_CONN_DOWN:
        s->downs++;
        ck_assert_int_eq(s->downs, 1);
        ck_assert_ptr_eq(ev->conn, s->conn);
        ck_assert_int_ne(ev->status, 0);
        s->down_status = ev->status;
        if (cf->t->on_down != NULL) {
            cf->t->on_down(s, ev);
        }
        /* The connection is invalid once this event is freed. */
        s->conn = NULL;
        if (!s->is_server && cf->pending != NULL) {
            pt_msg_free(&cf->pending->hdr);
            cf->pending = NULL;
        }
        break;
    case PT_MSG_TIMER:
        cf->guard_fired = 1;
        conf_done(cf);
        break;
    case PT_MSG_STOP:
        side_stop(s);
        break;
    default:
        ck_abort_msg("unexpected message type %#x", m->type);
    }
    pt_msg_free(m);
}

/* Runs one test: both actors, until the test calls conf_done() (or the guard fires). */
static conf_t *
conf_run(const conf_test_t *t, int base_index)
{
    static conf_t cf;
    pt_runtime_opts_t o = {.workers = 1, .mailbox_hwm = t->hwm};
    const char *base = bases[base_index];
    size_t n = strlen(base);

    memset(&cf, 0, sizeof(cf));
    atomic_store(&tracked_alive, 0);
    cf.t = t;
    cf.inproc = strncmp(base, "inproc://", 9) == 0;
    if (n >= 2 && strcmp(base + n - 2, ":0") == 0) {
        snprintf(cf.addr, sizeof(cf.addr), "%s", base);
    } else {
        snprintf(cf.addr, sizeof(cf.addr), "%s-%s-%ld", base, t->name, (long)getpid());
    }
    cf.srv.cf = &cf;
    cf.srv.is_server = 1;
    cf.cli.cf = &cf;
    ck_assert_int_eq(pt_runtime_alloc(&o, &cf.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(cf.rt, "server", side_handler, &cf.srv, &cf.srv.actor), 0);
    ck_assert_int_eq(pt_actor_spawn(cf.rt, "client", side_handler, &cf.cli, &cf.cli.actor), 0);
    send_plain(cf.srv.actor, MSG_START);
    ck_assert_int_eq(pt_runtime_run(cf.rt), 0);
    ck_assert_msg(!cf.guard_fired, "%s: the guard timer fired (sent %llu, received %llu)", t->name,
                  (unsigned long long)cf.sent, (unsigned long long)cf.recv);
    ck_assert_int_eq(pt_runtime_free(cf.rt), 0);
    ck_assert_ptr_null(cf.pending);
    return &cf;
}

/* ---- ordering: 10k frames arrive in order with their seq ------------------------------------- */

static pt_frame_t *
make_empty(conf_t *cf, uint64_t seq)
{
    (void)cf;
    return frame_with(seq, NULL);
}

static void
ordered_frame(side_t *s, pt_frame_t *f)
{
    conf_t *cf = s->cf;

    check_frame_header(s, f);
    ck_assert_uint_eq(f->seq, cf->recv + 1);
    cf->recv++;
    if (cf->recv == cf->t->total) {
        conf_done(cf);
    }
}

static void
start_pump(side_t *s)
{
    if (!s->is_server) {
        pump(s->cf);
    }
}

static const conf_test_t t_order = {
    .name = "order",
    .total = 10000,
    .make = make_empty,
    .on_up = start_pump,
    .on_frame = ordered_frame,
};

START_TEST(test_order)
{
    conf_t *cf = conf_run(&t_order, _i);

    ck_assert_uint_eq(cf->recv, 10000);
    ck_assert_int_eq(cf->srv.ups, 1);
    ck_assert_int_eq(cf->cli.ups, 1);
}
END_TEST

/* ---- many small messages: 100k frames, each with a message ----------------------------------- */

static pt_frame_t *
make_small(conf_t *cf, uint64_t seq)
{
    (void)cf;
    return frame_with(seq, small_message(seq));
}

static void
small_frame(side_t *s, pt_frame_t *f)
{
    ck_assert_ptr_nonnull(f->msg);
    ck_assert_uint_eq(message_seq(f->msg), f->seq);
    ordered_frame(s, f);
}

static const conf_test_t t_small = {
    .name = "small",
    .total = 100000,
    .make = make_small,
    .on_up = start_pump,
    .on_frame = small_frame,
};

START_TEST(test_many_small)
{
    conf_t *cf = conf_run(&t_small, _i);

    ck_assert_uint_eq(cf->recv, 100000);
}
END_TEST

/* ---- one huge message: a 256 MiB ArrayRecord arrives intact ---------------------------------- */

#define HUGE_BYTES (UINT64_C(256) << 20)

static uint64_t
checksum(const void *data, uint64_t nbytes)
{
    const uint64_t *w = data;
    uint64_t h = 1469598103934665603ull;

    for (uint64_t i = 0; i < nbytes / 8; i++) {
        h = (h ^ w[i]) * 1099511628211ull;
    }
    return h;
}

static pt_frame_t *
make_huge(conf_t *cf, uint64_t seq)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(d, "model");
    uint64_t shape[1] = {HUGE_BYTES / 8};
    petal_array_t *a;
    uint64_t *w;
    uint64_t x = 88172645463325252ull;
    petal_message_t *m;

    ck_assert_ptr_nonnull(ar);
    a = petal_arrayrecord_add(ar, "weights", PETAL_DTYPE_UINT64, 1, shape);
    ck_assert_ptr_nonnull(a);
    w = petal_array_data_mut(a);
    ck_assert_ptr_nonnull(w);
    for (uint64_t i = 0; i < shape[0]; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w[i] = x;
    }
    cf->huge_data = w;
    cf->huge_sum = checksum(w, HUGE_BYTES);
    m = petal_message_alloc(d, "train", 1, "conf", 60.0);
    ck_assert_ptr_nonnull(m);
    return frame_with(seq, m);
}

static void
huge_frame(side_t *s, pt_frame_t *f)
{
    conf_t *cf = s->cf;
    const petal_recorddict_t *d;
    const petal_arrayrecord_t *ar;
    const petal_array_t *a;

    check_frame_header(s, f);
    ck_assert_ptr_nonnull(f->msg);
    d = petal_message_content(f->msg);
    ck_assert_ptr_nonnull(d);
    ar = petal_recorddict_arrays(d, "model");
    ck_assert_ptr_nonnull(ar);
    a = petal_arrayrecord_get(ar, "weights");
    ck_assert_ptr_nonnull(a);
    ck_assert_int_eq(petal_array_dtype(a), PETAL_DTYPE_UINT64);
    ck_assert_uint_eq(petal_array_nbytes(a), HUGE_BYTES);
    ck_assert_uint_eq(checksum(petal_array_data(a), HUGE_BYTES), cf->huge_sum);
    if (cf->inproc) {
        ck_assert_ptr_eq(petal_array_data(a), cf->huge_data); /* passed by reference */
    }
    cf->huge_ok = 1;
    cf->recv++;
    conf_done(cf);
}

static const conf_test_t t_huge = {
    .name = "huge",
    .total = 1,
    .make = make_huge,
    .on_up = start_pump,
    .on_frame = huge_frame,
};

START_TEST(test_huge_message)
{
    conf_t *cf = conf_run(&t_huge, _i);

    ck_assert(cf->huge_ok);
}
END_TEST

/* ---- close while sending: no leak, each owner gets DOWN once --------------------------------- */

static pt_frame_t *
make_tracked(conf_t *cf, uint64_t seq)
{
    (void)cf;
    return frame_with(seq, tracked_message(seq));
}

static void
close_frame(side_t *s, pt_frame_t *f)
{
    conf_t *cf = s->cf;

    if (cf->server_closed) {
        cf->after_close++; /* already on its way when we closed; still ours to free */
        return;
    }
    check_frame_header(s, f);
    ck_assert_uint_eq(f->seq, cf->recv + 1);
    if (++cf->recv == 1000) {
        cf->server_closed = 1;
        pt_conn_close(s->conn);
        pt_conn_close(s->conn); /* idempotent */
        {
            pt_frame_t *late = frame_with(0, NULL);

            ck_assert_int_eq(pt_conn_send(s->conn, late), PETAL_ECLOSED);
            pt_msg_free(&late->hdr); /* a refused frame stays the caller's */
        }
    }
}

static void
on_down_both(side_t *s, pt_conn_event_t *ev)
{
    conf_t *cf = s->cf;

    (void)ev;
    if (cf->srv.downs == 1 && cf->cli.downs == 1) {
        conf_done(cf);
    }
}

static const conf_test_t t_close = {
    .name = "close",
    .total = UINT64_MAX,
    .make = make_tracked,
    .on_up = start_pump,
    .on_frame = close_frame,
    .on_down = on_down_both,
};

START_TEST(test_close_while_sending)
{
    conf_t *cf = conf_run(&t_close, _i);

    ck_assert_int_eq(cf->srv.downs, 1);
    ck_assert_int_eq(cf->cli.downs, 1);
    ck_assert_uint_ge(cf->sent, 1000);
    ck_assert_int_eq(atomic_load(&tracked_alive), 0);
}
END_TEST

/* ---- peer gone: sends fail with PETAL_ECLOSED and DOWN arrives ------------------------------- */

static void
gone_up(side_t *s)
{
    conf_t *cf = s->cf;

    if (s->is_server) {
        cf->server_closed = 1;
        pt_conn_close(s->conn);
        return;
    }
    /* The peer may or may not have closed yet: either the frame goes, or ECLOSED. */
    {
        pt_frame_t *f = frame_with(1, tracked_message(1));
        int r = pt_conn_send(s->conn, f);

        if (r != 0) {
            ck_assert_int_eq(r, PETAL_ECLOSED);
            pt_msg_free(&f->hdr);
        }
    }
}

static void
gone_frame(side_t *s, pt_frame_t *f)
{
    (void)f;
    s->cf->after_close++;
}

static void
gone_down(side_t *s, pt_conn_event_t *ev)
{
    conf_t *cf = s->cf;

    if (!s->is_server) {
        pt_frame_t *f = frame_with(2, tracked_message(2));

        ck_assert_int_eq(pt_conn_send(ev->conn, f), PETAL_ECLOSED);
        pt_msg_free(&f->hdr);
        cf->send_closed++;
    }
    on_down_both(s, ev);
}

static const conf_test_t t_gone = {
    .name = "gone",
    .on_up = gone_up,
    .on_frame = gone_frame,
    .on_down = gone_down,
};

START_TEST(test_peer_gone)
{
    conf_t *cf = conf_run(&t_gone, _i);

    ck_assert_int_eq(cf->srv.downs, 1);
    ck_assert_int_eq(cf->cli.downs, 1);
    ck_assert_uint_eq(cf->send_closed, 1);
    ck_assert_int_eq(atomic_load(&tracked_alive), 0);
}
END_TEST

/* ---- backpressure: EAGAIN, then WRITABLE, and every frame arrives in order ------------------ */

#define BP_TOTAL 3000
#define BP_SLOW_FRAMES 300
#define BP_PAYLOAD (64 * 1024)

static pt_frame_t *
make_bp(conf_t *cf, uint64_t seq)
{
    petal_message_t *m;
    petal_arrayrecord_t *ar;
    uint64_t shape[1] = {BP_PAYLOAD};
    petal_array_t *a;

    if (cf->inproc) {
        return frame_with(seq, NULL);
    }
    /* Over a socket, frames must be large enough to fill the kernel's buffers. */
    m = small_message(seq);
    ar = petal_recorddict_add_arrays((petal_recorddict_t *)petal_message_content(m), "p");
    ck_assert_ptr_nonnull(ar);
    a = petal_arrayrecord_add(ar, "bytes", PETAL_DTYPE_UINT8, 1, shape);
    ck_assert_ptr_nonnull(a);
    return frame_with(seq, m);
}

static void
bp_frame(side_t *s, pt_frame_t *f)
{
    conf_t *cf = s->cf;

    if (cf->recv < BP_SLOW_FRAMES) {
        struct timespec ts = {0, 200000}; /* a slow receiver */

        nanosleep(&ts, NULL);
    }
    if (f->msg != NULL) {
        ck_assert_uint_eq(message_seq(f->msg), f->seq);
    }
    ordered_frame(s, f);
}

static const conf_test_t t_bp = {
    .name = "backpressure",
    .total = BP_TOTAL,
    .hwm = 32,
    .make = make_bp,
    .on_up = start_pump,
    .on_frame = bp_frame,
};

START_TEST(test_backpressure)
{
    conf_t *cf = conf_run(&t_bp, _i);

    ck_assert_uint_eq(cf->recv, BP_TOTAL);
    ck_assert_uint_ge(cf->eagain, 1);
    ck_assert_uint_ge(cf->writable, 1);
    ck_assert_uint_le(cf->writable, cf->eagain);
}
END_TEST

/* ---- addresses: refused dials and taken addresses ------------------------------------------- */

typedef struct addr_state {
    const char *base;
    char addr[200];
    char bound[200];
    pt_runtime_t *rt;
    int ups;
    int downs;
    int dial_failed;
    int done;
} addr_state_t;

static void
addr_handler(pt_actor_t *self, pt_msg_t *m)
{
    addr_state_t *st = pt_actor_state(self);
    pt_listener_t *l;
    pt_listener_t *l2;
    pt_conn_t *c = NULL;
    int r;

    switch (m->type) {
    case MSG_START:
        ck_assert_int_eq(pt_listen(st->rt, st->addr, self, &l), 0);
        ck_assert_int_eq(pt_listener_addr(l, st->bound, sizeof(st->bound)), 0);
        /* The same address cannot be taken twice. */
        ck_assert_int_ne(pt_listen(st->rt, st->bound, self, &l2), 0);
        pt_listener_close(l);
        /* Nobody listens any more: the dial fails now, or later with DOWN; never UP. */
        r = pt_dial(st->rt, st->bound, self, &c);
        if (r != 0) {
            st->dial_failed = 1;
            pt_runtime_shutdown(st->rt);
        }
        break;
    case PT_MSG_CONN_UP:
        st->ups++;
        pt_runtime_shutdown(st->rt);
        break;
    case PT_MSG_CONN_DOWN:
        st->downs++;
        ck_assert_int_ne(((pt_conn_event_t *)m)->status, 0);
        pt_runtime_shutdown(st->rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

START_TEST(test_addresses)
{
    static addr_state_t st;
    pt_runtime_opts_t o = {.workers = 1};
    const char *base = bases[_i];
    size_t n = strlen(base);
    pt_actor_t *a;
    pt_listener_t *l;
    pt_conn_t *c;

    memset(&st, 0, sizeof(st));
    if (n >= 2 && strcmp(base + n - 2, ":0") == 0) {
        snprintf(st.addr, sizeof(st.addr), "%s", base);
    } else {
        snprintf(st.addr, sizeof(st.addr), "%s-addr-%ld", base, (long)getpid());
    }
    ck_assert_int_eq(pt_runtime_alloc(&o, &st.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(st.rt, "addr", addr_handler, &st, &a), 0);
    ck_assert_ptr_null(pt_tran_find("nope://x"));
    ck_assert_ptr_nonnull(pt_tran_find(st.addr));
    ck_assert_int_ne(pt_listen(st.rt, "nope://x", a, &l), 0);
    ck_assert_int_ne(pt_dial(st.rt, "nope://x", a, &c), 0);
    send_plain(a, MSG_START);
    ck_assert_int_eq(pt_runtime_run(st.rt), 0);
    ck_assert_int_eq(pt_runtime_free(st.rt), 0);
    ck_assert_int_eq(st.ups, 0);
    ck_assert_int_eq(st.dial_failed + st.downs, 1);
}
END_TEST

/* ---- The TCase ------------------------------------------------------------------------------- */

TCase *
pt_conformance_tcase(const char *name, const char *base_addr)
{
    TCase *tc;
    int i;

    if (nbases == MAX_TRANSPORTS) {
        fprintf(stderr, "conformance: more than %d transports\n", MAX_TRANSPORTS);
        abort();
    }
    i = nbases++;
    bases[i] = base_addr;
    tc = tcase_create(name);
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_order, i, i + 1);
    tcase_add_loop_test(tc, test_many_small, i, i + 1);
    tcase_add_loop_test(tc, test_huge_message, i, i + 1);
    tcase_add_loop_test(tc, test_close_while_sending, i, i + 1);
    tcase_add_loop_test(tc, test_peer_gone, i, i + 1);
    tcase_add_loop_test(tc, test_backpressure, i, i + 1);
    tcase_add_loop_test(tc, test_addresses, i, i + 1);
    return tc;
}
