/* transport.c - bench: one 256 MiB ArrayRecord over tcp loopback vs a plain blocking socket. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "runtime/message.h"
#include "transport/stream.h"
#include "transport/transport.h"

/*
 * Both sides of each measurement run on their own thread, as two processes would: the raw
 * baseline is write() of the whole buffer on one thread and read() into a fresh buffer on
 * another; the Petal side is two runtimes (sender, receiver), the message going through
 * pt_conn_send (encode to iovecs, one uv_write) and arriving as a decoded message whose array is
 * a view into the buffer the socket was read into. Each Petal send is timed until a small ack
 * frame comes back. Best of RUNS for each; the ratio is Petal / raw.
 *
 * usage: bench_transport [MIB [RUNS]]   (defaults 256 3)
 */

#define DEFAULT_MIB 256
#define DEFAULT_RUNS 3
#define MAX_RUNS 20
#define KIND_DATA 1
#define KIND_ACK 2
#define MSG_GO 1u
#define TARGET 0.8

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_transport: %s\n", what);
    exit(1);
}

/* ---- The baseline: blocking write() and read() on loopback ---------------------------------- */

typedef struct raw_rx {
    int lfd;
    size_t n;
    double t_done;
    int ok;
    uint8_t expect_first, expect_last;
} raw_rx_t;

static void *
raw_reader(void *arg)
{
    raw_rx_t *rx = arg;
    int fd = accept(rx->lfd, NULL, NULL);
    uint8_t *buf;
    size_t got = 0;

    if (fd < 0) {
        return NULL;
    }
    buf = malloc(rx->n); /* fresh, like the receive buffer of each Petal message */
    if (buf == NULL) {
        close(fd);
        return NULL;
    }
    while (got < rx->n) {
        ssize_t r = read(fd, buf + got, rx->n - got);

        if (r <= 0) {
            break;
        }
        got += (size_t)r;
    }
    rx->t_done = now_s();
    rx->ok = got == rx->n && buf[0] == rx->expect_first && buf[rx->n - 1] == rx->expect_last;
    free(buf);
    close(fd);
    return NULL;
}

static double
raw_once(const uint8_t *src, size_t n)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    raw_rx_t rx;
    pthread_t th;
    size_t off = 0;
    double t0;
    int fd;

    memset(&rx, 0, sizeof(rx));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rx.lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (rx.lfd < 0 || bind(rx.lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        listen(rx.lfd, 1) != 0 || getsockname(rx.lfd, (struct sockaddr *)&sin, &len) != 0) {
        die("raw: cannot listen on 127.0.0.1");
    }
    rx.n = n;
    rx.expect_first = src[0];
    rx.expect_last = src[n - 1];
    if (pthread_create(&th, NULL, raw_reader, &rx) != 0) {
        die("raw: pthread_create");
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        die("raw: cannot connect");
    }
    t0 = now_s();
    while (off < n) {
        ssize_t r = write(fd, src + off, n - off);

        if (r <= 0) {
            die("raw: write failed");
        }
        off += (size_t)r;
    }
    pthread_join(th, NULL);
    close(fd);
    close(rx.lfd);
    if (!rx.ok) {
        die("raw: the bytes did not arrive intact");
    }
    return (double)n / (rx.t_done - t0);
}

/* ---- Petal: tcp transport, two runtimes on two threads ------------------------------------- */

typedef struct bench {
    size_t n;
    int runs;
    petal_recorddict_t *content; /* shared by every message sent (arrays by reference) */
    uint8_t expect_first, expect_last;
    /* receiver */
    pt_runtime_t *rx_rt;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char bound[200];
    int bound_ready;
    int rx_ok;
    pt_stream_stats_t rx_stats;
    /* sender */
    pt_runtime_t *tx_rt;
    pt_conn_t *conn;
    int done_runs;
    double t0;
    double gbps[MAX_RUNS];
    uint64_t copied_encode;
    int failed;
} bench_t;

static bench_t B;

static void
go_free(pt_msg_t *m)
{
    free(m);
}

static void
send_go(pt_actor_t *to)
{
    pt_msg_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        die("out of memory");
    }
    m->type = MSG_GO;
    m->free = go_free;
    if (pt_actor_send(to, m) != 0) {
        die("cannot start an actor");
    }
}

static void
rx_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_listener_t *l;
    pt_frame_t *f = (pt_frame_t *)m;

    if (m->type == MSG_GO) {
        if (pt_listen(B.rx_rt, "tcp://127.0.0.1:0", self, &l) != 0) {
            die("petal: cannot listen on tcp://127.0.0.1:0");
        }
        pthread_mutex_lock(&B.mu);
        pt_listener_addr(l, B.bound, sizeof(B.bound));
        B.bound_ready = 1;
        pthread_cond_signal(&B.cv);
        pthread_mutex_unlock(&B.mu);
    } else if (m->type == PT_MSG_FRAME && f->kind == KIND_DATA) {
        const petal_arrayrecord_t *ar = petal_recorddict_arrays(petal_message_content(f->msg), "m");
        const petal_array_t *a = ar != NULL ? petal_arrayrecord_get(ar, "w") : NULL;
        const uint8_t *d = a != NULL ? petal_array_data(a) : NULL;
        pt_frame_t *ack = pt_frame_alloc(KIND_ACK, NULL);

        B.rx_ok = d != NULL && petal_array_nbytes(a) == B.n && d[0] == B.expect_first &&
                  d[B.n - 1] == B.expect_last;
        pt_stream_conn_stats(f->conn, &B.rx_stats);
        if (ack == NULL || pt_conn_send(f->conn, ack) != 0) {
            die("petal: cannot send the ack");
        }
    }
    pt_msg_free(m);
}

static void *
rx_main(void *arg)
{
    (void)arg;
    pt_runtime_run(B.rx_rt);
    return NULL;
}

static void
tx_send(void)
{
    petal_recorddict_t *d = pt_recorddict_clone(B.content); /* shares the array bytes */
    petal_message_t *msg = d != NULL ? petal_message_alloc(d, "train", 1, "bench", 60.0) : NULL;
    pt_frame_t *f = msg != NULL ? pt_frame_alloc(KIND_DATA, msg) : NULL;

    if (f == NULL) {
        die("out of memory");
    }
    B.t0 = now_s();
    if (pt_conn_send(B.conn, f) != 0) {
        die("petal: send failed");
    }
}

static void
tx_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;

    switch (m->type) {
    case MSG_GO:
        if (pt_dial(B.tx_rt, B.bound, self, &B.conn) != 0) {
            die("petal: cannot dial");
        }
        break;
    case PT_MSG_CONN_UP:
        tx_send();
        break;
    case PT_MSG_FRAME:
        B.gbps[B.done_runs] = (double)B.n / (now_s() - B.t0);
        if (!B.rx_ok) {
            B.failed = 1;
        }
        if (++B.done_runs < B.runs && !B.failed) {
            tx_send();
        } else {
            pt_runtime_shutdown(B.tx_rt);
            pt_runtime_shutdown(B.rx_rt);
        }
        break;
    case PT_MSG_CONN_DOWN:
        fprintf(stderr, "bench_transport: connection down: %s\n", ev->reason);
        B.failed = 1;
        pt_runtime_shutdown(B.tx_rt);
        pt_runtime_shutdown(B.rx_rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

static void
petal_runs(void)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *rx, *tx;
    pthread_t th;

    pthread_mutex_init(&B.mu, NULL);
    pthread_cond_init(&B.cv, NULL);
    if (pt_runtime_alloc(&o, &B.rx_rt) != 0 || pt_runtime_alloc(&o, &B.tx_rt) != 0 ||
        pt_actor_spawn(B.rx_rt, "receiver", rx_handler, NULL, &rx) != 0 ||
        pt_actor_spawn(B.tx_rt, "sender", tx_handler, NULL, &tx) != 0) {
        die("cannot start the runtimes");
    }
    send_go(rx);
    if (pthread_create(&th, NULL, rx_main, NULL) != 0) {
        die("pthread_create");
    }
    pthread_mutex_lock(&B.mu);
    while (!B.bound_ready) {
        pthread_cond_wait(&B.cv, &B.mu);
    }
    pthread_mutex_unlock(&B.mu);
    send_go(tx);
    pt_runtime_run(B.tx_rt);
    pthread_join(th, NULL);
    if (pt_runtime_free(B.tx_rt) != 0 || pt_runtime_free(B.rx_rt) != 0) {
        die("a runtime did not close cleanly");
    }
    pthread_cond_destroy(&B.cv);
    pthread_mutex_destroy(&B.mu);
}

static double
best(const double *v, int n)
{
    double b = 0;

    for (int i = 0; i < n; i++) {
        b = v[i] > b ? v[i] : b;
    }
    return b;
}

int
main(int argc, char **argv)
{
    size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : DEFAULT_MIB;
    int runs = argc > 2 ? atoi(argv[2]) : DEFAULT_RUNS;
    uint64_t shape[1];
    petal_arrayrecord_t *ar;
    petal_array_t *a;
    uint8_t *w;
    double raw[MAX_RUNS];
    double raw_best, petal_best, ratio;
    pt_encoded_t enc;
    petal_message_t *probe;

    if (mib == 0 || runs <= 0 || runs > MAX_RUNS) {
        die("usage: bench_transport [MIB [RUNS]] (RUNS 1 to 20)");
    }
    memset(&B, 0, sizeof(B));
    B.n = mib << 20;
    B.runs = runs;
    shape[0] = B.n;
    B.content = petal_recorddict_alloc();
    ar = B.content != NULL ? petal_recorddict_add_arrays(B.content, "m") : NULL;
    a = ar != NULL ? petal_arrayrecord_add(ar, "w", PETAL_DTYPE_UINT8, 1, shape) : NULL;
    if (a == NULL) {
        die("out of memory");
    }
    w = petal_array_data_mut(a);
    for (size_t i = 0; i < B.n; i++) {
        w[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    B.expect_first = w[0];
    B.expect_last = w[B.n - 1];

    /* Zero copy on the way out: the encoding references the array. */
    probe = petal_message_alloc(pt_recorddict_clone(B.content), "train", 1, "bench", 60.0);
    if (probe == NULL || pt_codec_encode(probe, &enc) != 0) {
        die("cannot encode");
    }
    B.copied_encode = enc.copied;
    pt_encoded_fini(&enc);
    petal_message_free(probe);

    for (int i = 0; i < runs; i++) {
        raw[i] = raw_once(w, B.n);
    }
    petal_runs();
    if (B.failed || B.done_runs != runs) {
        die("petal: the message did not arrive intact");
    }
    raw_best = best(raw, runs);
    petal_best = best(B.gbps, runs);
    ratio = petal_best / raw_best;
    printf("transport: one %zu MiB ArrayRecord over tcp loopback, best of %d\n", mib, runs);
    printf("  raw blocking write/read   %6.2f GB/s   (runs:", raw_best / 1e9);
    for (int i = 0; i < runs; i++) {
        printf(" %.2f", raw[i] / 1e9);
    }
    printf(")\n  petal tcp transport       %6.2f GB/s   (runs:", petal_best / 1e9);
    for (int i = 0; i < runs; i++) {
        printf(" %.2f", B.gbps[i] / 1e9);
    }
    printf(")\n  ratio petal / raw         %6.2f        (target >= %.1f)%s\n", ratio, TARGET,
           ratio >= TARGET ? "" : "  BELOW TARGET");
    printf("  array bytes copied in user space: encode %llu, decode %llu; chunks %llu\n",
           (unsigned long long)B.copied_encode, (unsigned long long)B.rx_stats.copied_in,
           (unsigned long long)B.rx_stats.chunks_in);
    petal_recorddict_free(B.content);
    return 0;
}
