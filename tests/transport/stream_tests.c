/* stream_tests.c - stream framing tests run over tcp and ipc (see stream_tests.h). */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "stream_tests.h"
#include "transport/stream.h"
#include "transport/transport.h"

#define MAX_BASES 4
#define GUARD_MS 60000
#define KIND 9
#define HEALTHY_FRAMES 10
#define STALL_TIMEOUT_MS 300
#define CHUNK_MAX_FRAME (UINT64_C(1) << 20)
#define CHUNK_BYTES (UINT64_C(20) << 20)
#define PAUSE_FRAMES 2000
#define PAUSE_HWM 8

#define MSG_GO 1u
#define MSG_DIAL 2u
#define MSG_SEND 3u

enum mode { MODE_BAD_PEER, MODE_CHUNKS, MODE_TOO_BIG, MODE_PAUSE, MODE_SERIAL };

/* What a raw socket peer sends, and how the server must react. */
enum bad { BAD_HEADER, BAD_HTTP, BAD_VERSION, BAD_MESSAGE, BAD_STALL, BAD_LENGTH, BAD_COUNT };

typedef struct bad_case {
    uint8_t bytes[128];
    size_t len;
    int status;
    const char *reason; /* must appear in the DOWN reason */
} bad_case_t;

typedef struct st {
    enum mode mode;
    char listen_addr[200];
    char bound[200];
    int is_ipc;
    bad_case_t bc;
    pt_runtime_t *rt;
    pt_actor_t *srv;
    pt_actor_t *cli;
    pt_listener_t *l;
    pt_timer_t *guard;
    int guard_fired;
    int done;
    /* server */
    int srv_ups;
    int bad_downs;
    int bad_status;
    char bad_reason[sizeof(((pt_conn_event_t *)0)->reason)];
    uint64_t frames;
    pt_stream_stats_t rx_stats;
    uint64_t rx_waits; /* MODE_SERIAL: summed over the server's connections */
    int chunk_ok;
    /* client */
    pt_conn_t *conn;
    pt_conn_t *conn2; /* MODE_SERIAL */
    int cli_ups;
    int cli_up;
    int send_pending;
    uint64_t sum;
    int too_big_result;
    /* the raw peer thread */
    pthread_t raw;
    int raw_started;
    int raw_result; /* 0: the server closed the socket; else -errno */
} st_t;

static const char *bases[MAX_BASES];
static int nbases;
static st_t T;

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
finish(void)
{
    if (!T.done) {
        T.done = 1;
        pt_runtime_shutdown(T.rt);
    }
}

static uint64_t
checksum(const uint8_t *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;

    for (uint64_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 1099511628211ull;
    }
    return h;
}

static petal_message_t *
array_message(uint64_t nbytes, uint64_t *sum)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ar;
    petal_array_t *a;
    uint64_t shape[1] = {nbytes};
    uint8_t *w;
    uint32_t x = 2463534242u;
    petal_message_t *m;

    ck_assert_ptr_nonnull(d);
    ar = petal_recorddict_add_arrays(d, "model");
    ck_assert_ptr_nonnull(ar);
    a = petal_arrayrecord_add(ar, "w", PETAL_DTYPE_UINT8, 1, shape);
    ck_assert_ptr_nonnull(a);
    w = petal_array_data_mut(a);
    for (uint64_t i = 0; i < nbytes; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        w[i] = (uint8_t)x;
    }
    if (sum != NULL) {
        *sum = checksum(w, nbytes);
    }
    m = petal_message_alloc(d, "train", 1, "stream", 60.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

static pt_frame_t *
frame(uint64_t seq, petal_message_t *msg)
{
    pt_frame_t *f = pt_frame_alloc(KIND, msg);

    ck_assert_ptr_nonnull(f);
    f->seq = seq;
    return f;
}

static void
make_bad_case(enum bad v, bad_case_t *bc)
{
    static const char http[] = "GET / HTTP/1.1\r\nHost: petal\r\n\r\n";
    static const uint8_t header[] = {0, 0, 0, 8, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1};
    static const uint8_t version[] = {0, 0, 0, 7, 0x96, 0x02, KIND, 0, 0, 0, 0xc2};
    static const uint8_t stall[] = {0, 0, 1, 0, 0x96, 0x01, KIND};
    static const uint8_t length[] = {0x80, 0, 0, 0, 0x96, 0x01};

    memset(bc, 0, sizeof(*bc));
    switch (v) {
    case BAD_HEADER:
        memcpy(bc->bytes, header, sizeof(header));
        bc->len = sizeof(header);
        bc->status = PETAL_EPROTO;
        bc->reason = "malformed frame header";
        break;
    case BAD_HTTP:
        memcpy(bc->bytes, http, strlen(http));
        bc->len = strlen(http);
        bc->status = PETAL_EPROTO;
        bc->reason = "not a Petal stream";
        break;
    case BAD_VERSION:
        memcpy(bc->bytes, version, sizeof(version));
        bc->len = sizeof(version);
        bc->status = PETAL_EPROTO;
        bc->reason = "unsupported frame version";
        break;
    case BAD_MESSAGE:
        /* A valid header with a message, the pad to 64, then 16 bytes that are no message. */
        bc->bytes[3] = 60 + 16;
        bc->bytes[4] = 0x96;
        bc->bytes[5] = 0x01;
        bc->bytes[6] = KIND;
        bc->bytes[7] = 0x00;
        bc->bytes[8] = 0x01;
        bc->bytes[9] = 0x00;
        bc->bytes[10] = 0xc3;
        memset(bc->bytes + 64, 0xc1, 16);
        bc->len = 80;
        bc->status = PETAL_EPROTO;
        bc->reason = "malformed message";
        break;
    case BAD_STALL:
        memcpy(bc->bytes, stall, sizeof(stall));
        bc->len = sizeof(stall);
        bc->status = PETAL_ETIMEDOUT;
        bc->reason = "stalled";
        break;
    case BAD_LENGTH:
        memcpy(bc->bytes, length, sizeof(length));
        bc->len = sizeof(length);
        bc->status = PETAL_EMSGSIZE;
        bc->reason = "frame of 2147483648 bytes exceeds the limit";
        break;
    default:
        ck_abort_msg("no bad case %d", (int)v);
    }
}

/* ---- The raw peer (a plain blocking socket on its own thread) -------------------------------- */

static int
raw_connect(void)
{
    int fd;

    if (T.is_ipc) {
        struct sockaddr_un sun;

        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", T.bound + strlen("ipc://"));
        ck_assert(n > 0 && (size_t)n < sizeof(sun.sun_path));
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
            int e = -errno;

            if (fd >= 0) {
                close(fd);
            }
            return e;
        }
    } else {
        struct sockaddr_in sin;
        const char *colon = strrchr(T.bound, ':');

        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_port = htons((uint16_t)atoi(colon + 1));
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
            int e = -errno;

            if (fd >= 0) {
                close(fd);
            }
            return e;
        }
    }
    return fd;
}

static void *
raw_main(void *arg)
{
    struct timeval tv = {GUARD_MS / 1000, 0};
    size_t off = 0;
    int fd = raw_connect();

    (void)arg;
    if (fd < 0) {
        T.raw_result = fd;
        return NULL;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (off < T.bc.len) {
        ssize_t n = write(fd, T.bc.bytes + off, T.bc.len - off);

        if (n <= 0) {
            T.raw_result = -errno;
            close(fd);
            return NULL;
        }
        off += (size_t)n;
    }
    /* Then wait: the server must close the connection. */
    for (;;) {
        char b[256];
        ssize_t n = read(fd, b, sizeof(b));

        if (n > 0) {
            continue;
        }
        T.raw_result = n == 0 ? 0 : -errno;
        break;
    }
    close(fd);
    return NULL;
}

/* ---- The actors ----------------------------------------------------------------------------- */

/* MODE_SERIAL: one of the two large messages, intact. */
static void
check_serial(pt_frame_t *f)
{
    pt_stream_stats_t st;
    const petal_recorddict_t *d = petal_message_content(f->msg);
    const petal_arrayrecord_t *ar = d != NULL ? petal_recorddict_arrays(d, "model") : NULL;
    const petal_array_t *a = ar != NULL ? petal_arrayrecord_get(ar, "w") : NULL;

    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(petal_array_nbytes(a), CHUNK_BYTES);
    ck_assert_uint_eq(checksum(petal_array_data(a), CHUNK_BYTES), T.sum);
    ck_assert_int_eq(pt_stream_conn_stats(f->conn, &st), 0);
    T.rx_waits += st.rx_waits;
}

static void
check_chunked(pt_frame_t *f)
{
    const petal_recorddict_t *d;
    const petal_arrayrecord_t *ar;
    const petal_array_t *a;

    ck_assert_ptr_nonnull(f->msg);
    d = petal_message_content(f->msg);
    ck_assert_ptr_nonnull(d);
    ar = petal_recorddict_arrays(d, "model");
    ck_assert_ptr_nonnull(ar);
    a = petal_arrayrecord_get(ar, "w");
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq(petal_array_nbytes(a), CHUNK_BYTES);
    ck_assert_uint_eq((uintptr_t)petal_array_data(a) % 64, 0);
    ck_assert_uint_eq(checksum(petal_array_data(a), CHUNK_BYTES), T.sum);
    ck_assert_int_eq(pt_stream_conn_stats(f->conn, &T.rx_stats), 0);
    T.chunk_ok = 1;
}

static void
srv_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;
    pt_frame_t *f = (pt_frame_t *)m;
    int r;

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &T.guard), 0);
        r = pt_listen(T.rt, T.listen_addr, self, &T.l);
        ck_assert_msg(r == 0, "listen %s: %s", T.listen_addr, petal_strerror(r));
        ck_assert_int_eq(pt_listener_addr(T.l, T.bound, sizeof(T.bound)), 0);
        if (T.mode == MODE_BAD_PEER) {
            ck_assert_int_eq(pthread_create(&T.raw, NULL, raw_main, NULL), 0);
            T.raw_started = 1;
        }
        send_plain(T.cli, MSG_DIAL);
        break;
    case PT_MSG_CONN_UP:
        T.srv_ups++;
        ck_assert_ptr_eq(ev->listener, T.l);
        break;
    case PT_MSG_CONN_DOWN:
        if (ev->status != PETAL_ECLOSED) {
            /* The bad peer: the healthy connection must keep working afterwards. */
            T.bad_downs++;
            T.bad_status = ev->status;
            snprintf(T.bad_reason, sizeof(T.bad_reason), "%s", ev->reason);
            send_plain(T.cli, MSG_SEND);
        }
        break;
    case PT_MSG_FRAME:
        ck_assert_uint_eq(f->kind, KIND);
        ck_assert_uint_eq(f->version, PT_PROTOCOL_VERSION);
        ck_assert_uint_eq(f->flags & PT_FRAME_FLAG_CHUNK, 0);
        T.frames++;
        if (T.mode == MODE_CHUNKS) {
            check_chunked(f);
            finish();
        } else if (T.mode == MODE_SERIAL) {
            check_serial(f);
            if (T.frames == 2) {
                finish();
            }
        } else if (T.mode == MODE_PAUSE) {
            ck_assert_uint_eq(f->seq, T.frames);
            if (T.frames == PAUSE_FRAMES) {
                ck_assert_int_eq(pt_stream_conn_stats(f->conn, &T.rx_stats), 0);
                finish();
            }
        } else {
            ck_assert_uint_eq(f->seq, T.frames);
            if (T.frames == HEALTHY_FRAMES) {
                finish();
            }
        }
        break;
    case PT_MSG_TIMER:
        T.guard_fired = 1;
        finish();
        break;
    default:
        break; /* STOP: the listener and connections close with their owner */
    }
    pt_msg_free(m);
}

static void
send_healthy(void)
{
    for (uint64_t i = 1; i <= HEALTHY_FRAMES; i++) {
        ck_assert_int_eq(pt_conn_send(T.conn, frame(i, NULL)), 0);
    }
}

static void
cli_up(void)
{
    pt_frame_t *f;

    T.cli_up = 1;
    switch (T.mode) {
    case MODE_CHUNKS:
        ck_assert_int_eq(pt_conn_send(T.conn, frame(1, array_message(CHUNK_BYTES, &T.sum))), 0);
        break;
    case MODE_TOO_BIG:
        /* Over max_message: refused, and the frame stays ours. */
        f = frame(1, array_message(2 << 20, NULL));
        T.too_big_result = pt_conn_send(T.conn, f);
        pt_msg_free(&f->hdr);
        send_healthy();
        break;
    case MODE_PAUSE:
        for (uint64_t i = 1; i <= PAUSE_FRAMES; i++) {
            ck_assert_int_eq(pt_conn_send(T.conn, frame(i, NULL)), 0);
        }
        break;
    case MODE_BAD_PEER:
        if (T.send_pending) {
            send_healthy();
        }
        break;
    case MODE_SERIAL:
        /* Both large messages at once, one per connection. */
        if (++T.cli_ups == 2) {
            ck_assert_int_eq(pt_conn_send(T.conn, frame(1, array_message(CHUNK_BYTES, &T.sum))), 0);
            ck_assert_int_eq(pt_conn_send(T.conn2, frame(1, array_message(CHUNK_BYTES, NULL))), 0);
        }
        break;
    }
}

static void
cli_handler(pt_actor_t *self, pt_msg_t *m)
{
    int r;

    switch (m->type) {
    case MSG_DIAL:
        r = pt_dial(T.rt, T.bound, self, &T.conn);
        ck_assert_msg(r == 0, "dial %s: %s", T.bound, petal_strerror(r));
        if (T.mode == MODE_SERIAL) {
            ck_assert_int_eq(pt_dial(T.rt, T.bound, self, &T.conn2), 0);
        }
        break;
    case PT_MSG_CONN_UP:
        ck_assert(((pt_conn_event_t *)m)->conn == T.conn ||
                  (T.mode == MODE_SERIAL && ((pt_conn_event_t *)m)->conn == T.conn2));
        ck_assert_ptr_null(((pt_conn_event_t *)m)->listener);
        cli_up();
        break;
    case MSG_SEND:
        if (T.cli_up) {
            send_healthy();
        } else {
            T.send_pending = 1;
        }
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

static void
run(enum mode mode, int base, const pt_stream_opts_t *opts, const bad_case_t *bc, const char *tag)
{
    pt_runtime_opts_t o = {.workers = 1, .mailbox_hwm = mode == MODE_PAUSE ? PAUSE_HWM : 0};

    memset(&T, 0, sizeof(T));
    T.mode = mode;
    if (bc != NULL) {
        T.bc = *bc;
    }
    T.is_ipc = strncmp(bases[base], "ipc://", 6) == 0;
    if (T.is_ipc) {
        snprintf(T.listen_addr, sizeof(T.listen_addr), "%s-%s-%ld", bases[base], tag,
                 (long)getpid());
    } else {
        snprintf(T.listen_addr, sizeof(T.listen_addr), "%s", bases[base]);
    }
    ck_assert_int_eq(pt_stream_set_opts(opts), 0);
    ck_assert_int_eq(pt_runtime_alloc(&o, &T.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(T.rt, "server", srv_handler, NULL, &T.srv), 0);
    ck_assert_int_eq(pt_actor_spawn(T.rt, "client", cli_handler, NULL, &T.cli), 0);
    send_plain(T.srv, MSG_GO);
    ck_assert_int_eq(pt_runtime_run(T.rt), 0);
    if (T.raw_started) {
        pthread_join(T.raw, NULL);
    }
    ck_assert_int_eq(pt_runtime_free(T.rt), 0);
    ck_assert_int_eq(pt_stream_set_opts(NULL), 0);
    ck_assert_msg(!T.guard_fired, "the guard timer fired (frames %llu, bad downs %d)",
                  (unsigned long long)T.frames, T.bad_downs);
}

/* ---- Tests ---------------------------------------------------------------------------------- */

/* _i = base * BAD_COUNT + bad case */
START_TEST(test_bad_peer)
{
    pt_stream_opts_t o = {0};
    enum bad v = (enum bad)(_i % BAD_COUNT);
    bad_case_t bc;
    char tag[16];

    if (v == BAD_STALL) {
        o.idle_timeout_ms = STALL_TIMEOUT_MS;
    }
    make_bad_case(v, &bc);
    snprintf(tag, sizeof(tag), "bad%d", (int)v);
    run(MODE_BAD_PEER, _i / BAD_COUNT, &o, &bc, tag);
    ck_assert_int_eq(T.srv_ups, 2);
    ck_assert_int_eq(T.bad_downs, 1);
    ck_assert_msg(T.bad_status == T.bc.status, "status %s, expected %s",
                  petal_strerror(T.bad_status), petal_strerror(T.bc.status));
    ck_assert_msg(strstr(T.bad_reason, T.bc.reason) != NULL, "reason \"%s\" lacks \"%s\"",
                  T.bad_reason, T.bc.reason);
    /* The reason names the peer. */
    ck_assert_msg(strncmp(T.bad_reason, T.is_ipc ? "ipc://" : "127.0.0.1:", T.is_ipc ? 6 : 10) == 0,
                  "reason \"%s\" does not start with the peer", T.bad_reason);
    /* The healthy connection kept working. */
    ck_assert_uint_eq(T.frames, HEALTHY_FRAMES);
    /* The raw peer saw its connection closed by the server. */
    ck_assert_msg(T.raw_result == 0 || T.raw_result == -ECONNRESET, "raw peer: %s",
                  strerror(-T.raw_result));
}
END_TEST

START_TEST(test_chunked_message)
{
    pt_stream_opts_t o = {.max_frame = CHUNK_MAX_FRAME};

    run(MODE_CHUNKS, _i, &o, NULL, "chunks");
    ck_assert(T.chunk_ok);
    ck_assert_uint_eq(T.frames, 1);
    ck_assert_uint_eq(T.rx_stats.frames_in, 1);
    /* 20 MiB in frames of at most 1 MiB. */
    ck_assert_uint_ge(T.rx_stats.chunks_in, CHUNK_BYTES / CHUNK_MAX_FRAME);
    ck_assert_uint_le(T.rx_stats.chunks_in, CHUNK_BYTES / CHUNK_MAX_FRAME + 2);
    ck_assert_uint_eq(T.rx_stats.copied_in, 0);
}
END_TEST

START_TEST(test_message_too_big)
{
    pt_stream_opts_t o = {.max_message = 1 << 20};

    run(MODE_TOO_BIG, _i, &o, NULL, "big");
    ck_assert_int_eq(T.too_big_result, PETAL_EMSGSIZE);
    ck_assert_uint_eq(T.frames, HEALTHY_FRAMES);
}
END_TEST

/* Reading stops while the owner's mailbox is over its high-water mark, and resumes: every
 * frame arrives, in order. */
START_TEST(test_read_pauses)
{
    run(MODE_PAUSE, _i, NULL, NULL, "pause");
    ck_assert_uint_eq(T.frames, PAUSE_FRAMES);
    ck_assert_uint_eq(T.rx_stats.frames_in, PAUSE_FRAMES);
    ck_assert_uint_ge(T.rx_stats.pauses, 1);
}
END_TEST

/* Large messages (serial_rx_min) arriving on two connections at once are received one after
 * the other (the second connection's reading waits), both intact. */
START_TEST(test_large_messages_one_at_a_time)
{
    pt_stream_opts_t o = {.max_frame = CHUNK_MAX_FRAME, .serial_rx_min = 1 << 20};

    run(MODE_SERIAL, _i, &o, NULL, "serial");
    ck_assert_uint_eq(T.frames, 2);
    ck_assert_uint_ge(T.rx_waits, 1);
}
END_TEST

START_TEST(test_opts)
{
    pt_stream_opts_t o = {0};
    pt_stream_opts_t d;

    (void)_i;
    pt_stream_opts_default(&d);
    ck_assert_uint_eq(d.max_frame, UINT64_C(64) << 20);
    ck_assert_uint_eq(d.max_message, UINT64_C(16) << 30);
    ck_assert_uint_eq(d.idle_timeout_ms, 30000);
    ck_assert_uint_eq(d.serial_rx_min, UINT64_C(1) << 30);
    o.max_frame = 100;
    ck_assert_int_eq(pt_stream_set_opts(&o), PETAL_EINVAL);
    o.max_frame = UINT64_C(1) << 33;
    ck_assert_int_eq(pt_stream_set_opts(&o), PETAL_EINVAL);
    o.max_frame = 4096;
    ck_assert_int_eq(pt_stream_set_opts(&o), 0);
    pt_stream_get_opts(&o);
    ck_assert_uint_eq(o.max_frame, 4096);
    ck_assert_uint_eq(o.max_message, d.max_message);
    ck_assert_int_eq(pt_stream_set_opts(NULL), 0);
    pt_stream_get_opts(&o);
    ck_assert_uint_eq(o.max_frame, d.max_frame);
}
END_TEST

TCase *
pt_stream_tcase(const char *name, const char *listen_addr)
{
    TCase *tc;
    int i;

    if (nbases == MAX_BASES) {
        fprintf(stderr, "stream_tests: more than %d bases\n", MAX_BASES);
        abort();
    }
    i = nbases++;
    bases[i] = listen_addr;
    tc = tcase_create(name);
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_bad_peer, i * BAD_COUNT, (i + 1) * BAD_COUNT);
    tcase_add_loop_test(tc, test_chunked_message, i, i + 1);
    tcase_add_loop_test(tc, test_message_too_big, i, i + 1);
    tcase_add_loop_test(tc, test_read_pauses, i, i + 1);
    tcase_add_loop_test(tc, test_large_messages_one_at_a_time, i, i + 1);
    tcase_add_loop_test(tc, test_opts, i, i + 1);
    return tc;
}
