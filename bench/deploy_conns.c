/* deploy_conns.c - one SuperLink holding 10,000 SuperNode connections: RSS, CPU per heartbeat. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/codec.h"
#include "runtime/message.h"

#include "deploy_proc.h"

/*
 * A load generator (this process, one epoll loop) plays N SuperNodes against one
 * petal-superlink child: it opens N TCP connections to the Fleet address, sends each a HELLO
 * with its own node key and a node config (what petal-supernode sends), counts the WELCOMEs,
 * then sends every node's HEARTBEAT once per heartbeat interval (the interval the SuperLink
 * announces, spread evenly over it). Frames are built with the codec and the stream layout of
 * docs/protocol.md ("Frames on a stream"): [u32 BE length][msgpack header][zero pad to 64]
 * [message].
 *
 * Measured on the SuperLink child (from /proc): RSS per connection = (VmRSS with N nodes
 * registered and heartbeating - VmRSS before any connection) / N, and CPU per heartbeat =
 * (utime + stime over a window of heartbeats) / heartbeats sent in it, next to the CPU of an
 * equally long window without heartbeats.
 *
 *   bench_deploy_conns [--conns N] [--interval S] [--window S]
 *     --conns     connections (default 10000)
 *     --interval  the SuperLink's --heartbeat-interval (default 2 s; 3 missed = offline)
 *     --window    seconds of heartbeats measured (default 10)
 */

#define HEAD_ROOM 64
#define MAX_IN_FLIGHT 256 /* connections dialled or said hello but not yet welcomed */
#define CONNECT_TIMEOUT 120.0

enum { C_IDLE, C_CONNECTING, C_HELLO, C_UP, C_DEAD };

typedef struct gconn {
    int fd;
    uint8_t state;
    uint8_t head_len;
    uint8_t head[9]; /* length prefix + the header's first bytes: enough for the kind */
    uint32_t skip;   /* bytes of the current incoming frame still to skip */
    const uint8_t *out;
    uint32_t out_len, out_off;
    uint8_t *hello; /* this node's HELLO frame */
    uint32_t hello_len;
} gconn_t;

typedef struct gen {
    int ep;
    gconn_t *c;
    uint32_t n;
    struct sockaddr_in addr;
    uint8_t *hb;
    uint32_t hb_len;
    uint32_t next_dial, in_flight, welcomed, dead, errors, other_frames;
    uint64_t hb_sent, hb_skipped;
    int heartbeating;
    double interval;
    double hb_epoch;  /* when the current heartbeat period started */
    uint32_t hb_next; /* next connection index to heartbeat in this period */
} gen_t;

static uint64_t
be32(const uint8_t *p)
{
    return ((uint64_t)p[0] << 24) | ((uint64_t)p[1] << 16) | ((uint64_t)p[2] << 8) | p[3];
}

/* A frame of `kind` whose message is m, laid out as a stream transport writes it. */
static uint8_t *
frame_bytes(uint16_t kind, const petal_message_t *m, uint32_t *len)
{
    pt_encoded_t e;
    if (pt_codec_encode(m, &e) != 0) {
        return NULL;
    }
    uint8_t *b = calloc(1, HEAD_ROOM + e.total);
    if (b != NULL) {
        uint64_t L = HEAD_ROOM - 4 + e.total;
        uint8_t *h = b + 4;
        b[0] = (uint8_t)(L >> 24);
        b[1] = (uint8_t)(L >> 16);
        b[2] = (uint8_t)(L >> 8);
        b[3] = (uint8_t)L;
        h[0] = 0x96; /* [version, kind, flags, seq, ack, has_msg] */
        h[1] = PT_PROTOCOL_VERSION;
        h[2] = 0xcd;
        h[3] = (uint8_t)(kind >> 8);
        h[4] = (uint8_t)kind;
        h[5] = 0; /* flags */
        h[6] = 0; /* seq */
        h[7] = 0; /* ack */
        h[8] = 0xc3;
        size_t off = HEAD_ROOM;
        for (size_t i = 0; i < e.niov; i++) {
            memcpy(b + off, e.iov[i].base, e.iov[i].len);
            off += e.iov[i].len;
        }
        *len = (uint32_t)(HEAD_ROOM + e.total);
    }
    pt_encoded_fini(&e);
    return b;
}

static uint8_t *
hello_bytes(uint32_t index, uint32_t n, uint32_t *len)
{
    petal_configrecord_t *p;
    char key[80];
    pt_frame_t *f = pt_params_frame(PT_FLEET_HELLO, "fleet.hello", &p);
    if (f == NULL) {
        return NULL;
    }
    /* 64 hex characters, like a SuperNode's public key. */
    snprintf(key, sizeof(key), "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64,
             (uint64_t)index * UINT64_C(0x9e3779b97f4a7c15), (uint64_t)index, ~(uint64_t)index,
             UINT64_C(0x70657461) + index);
    petal_configrecord_t *nc =
        petal_recorddict_add_config(pt_message_content_mut(f->msg), "node-config");
    petal_value_t pid = petal_value_i64(index), np = petal_value_i64(n);
    uint8_t *b = NULL;
    if (nc != NULL && pt_params_set_str(p, "node-key", key) == 0 &&
        petal_configrecord_set(nc, "partition-id", &pid) == 0 &&
        petal_configrecord_set(nc, "num-partitions", &np) == 0) {
        b = frame_bytes(PT_FLEET_HELLO, f->msg, len);
    }
    pt_msg_free(&f->hdr);
    return b;
}

static void
set_events(gen_t *g, uint32_t i, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.u32 = i};
    epoll_ctl(g->ep, EPOLL_CTL_MOD, g->c[i].fd, &e);
}

static void
conn_dead(gen_t *g, uint32_t i)
{
    gconn_t *c = &g->c[i];
    if (c->state == C_DEAD) {
        return;
    }
    if (c->state == C_CONNECTING || c->state == C_HELLO) {
        g->in_flight--;
    } else if (c->state == C_UP) {
        g->welcomed--;
    }
    c->state = C_DEAD;
    g->dead++;
    epoll_ctl(g->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

/* Writes what is pending; 0, or -1 when the connection died. */
static int
flush_out(gen_t *g, uint32_t i)
{
    gconn_t *c = &g->c[i];
    while (c->out != NULL && c->out_off < c->out_len) {
        ssize_t k = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(g, i, EPOLLIN | EPOLLOUT);
            return 0;
        }
        if (k <= 0) {
            conn_dead(g, i);
            return -1;
        }
        c->out_off += (uint32_t)k;
    }
    c->out = NULL;
    set_events(g, i, EPOLLIN);
    return 0;
}

static void
dial(gen_t *g, uint32_t i)
{
    gconn_t *c = &g->c[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        c->state = C_DEAD;
        g->dead++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->state = C_CONNECTING;
    g->in_flight++;
    struct epoll_event e = {.events = EPOLLOUT | EPOLLIN, .data.u32 = i};
    epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &e);
    if (connect(fd, (struct sockaddr *)&g->addr, sizeof(g->addr)) != 0 && errno != EINPROGRESS) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        conn_dead(g, i);
    }
}

static void
on_frame_head(gen_t *g, uint32_t i)
{
    gconn_t *c = &g->c[i];
    uint16_t kind = (uint16_t)((c->head[7] << 8) | c->head[8]);
    if (c->head[6] != 0xcd) {
        kind = c->head[6]; /* a kind below 0x80 (never sent by a SuperLink) */
    }
    if (kind == PT_FLEET_WELCOME && c->state == C_HELLO) {
        c->state = C_UP;
        g->in_flight--;
        g->welcomed++;
    } else if (kind == PT_FLEET_ERROR) {
        g->errors++;
    } else {
        g->other_frames++;
    }
}

static void
on_readable(gen_t *g, uint32_t i)
{
    static uint8_t scratch[65536];
    gconn_t *c = &g->c[i];
    for (;;) {
        ssize_t k = read(c->fd, scratch, sizeof(scratch));
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (k <= 0) {
            conn_dead(g, i);
            return;
        }
        size_t pos = 0;
        while (pos < (size_t)k) {
            if (c->skip > 0) {
                size_t take = (size_t)k - pos < c->skip ? (size_t)k - pos : c->skip;
                pos += take;
                c->skip -= (uint32_t)take;
                continue;
            }
            c->head[c->head_len++] = scratch[pos++];
            if (c->head_len == sizeof(c->head)) {
                uint64_t L = be32(c->head);
                c->head_len = 0;
                if (L < sizeof(c->head) - 4) {
                    fprintf(stderr, "connection %u: a frame of %" PRIu64 " bytes\n", i, L);
                    conn_dead(g, i);
                    return;
                }
                c->skip = (uint32_t)(L - (sizeof(c->head) - 4));
                on_frame_head(g, i);
            }
        }
    }
}

static void
on_event(gen_t *g, uint32_t i, uint32_t ev)
{
    gconn_t *c = &g->c[i];
    if (c->state == C_DEAD) {
        return;
    }
    if (c->state == C_CONNECTING && (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            fprintf(stderr, "connection %u: %s\n", i, strerror(err));
            conn_dead(g, i);
            return;
        }
        c->state = C_HELLO;
        c->out = c->hello;
        c->out_len = c->hello_len;
        c->out_off = 0;
        if (flush_out(g, i) != 0) {
            return;
        }
        return;
    }
    if (ev & EPOLLIN) {
        on_readable(g, i);
    }
    if (c->state != C_DEAD && (ev & EPOLLOUT) && c->out != NULL) {
        flush_out(g, i);
    }
    if (c->state != C_DEAD && (ev & (EPOLLERR | EPOLLHUP)) && !(ev & EPOLLIN)) {
        conn_dead(g, i);
    }
}

/* Sends the heartbeats due by `now`: connection j's is due at epoch + j * interval / n. */
static void
heartbeats_due(gen_t *g, double now)
{
    if (!g->heartbeating) {
        return;
    }
    while (g->hb_epoch + g->interval * g->hb_next / g->n <= now) {
        uint32_t i = g->hb_next;
        gconn_t *c = &g->c[i];
        if (c->state == C_UP) {
            if (c->out != NULL) {
                g->hb_skipped++;
            } else {
                c->out = g->hb;
                c->out_len = g->hb_len;
                c->out_off = 0;
                if (flush_out(g, i) == 0) {
                    g->hb_sent++;
                }
            }
        }
        if (++g->hb_next == g->n) {
            g->hb_next = 0;
            g->hb_epoch += g->interval;
        }
    }
}

/* Runs the loop until `until` (absolute, pt_bench_now) or, with stop_when_welcomed, until every
 * live connection is welcomed. */
static void
pump(gen_t *g, double until, int stop_when_welcomed)
{
    struct epoll_event evs[256];
    for (;;) {
        double now = pt_bench_now();
        if (now >= until) {
            return;
        }
        while (g->next_dial < g->n && g->in_flight < MAX_IN_FLIGHT) {
            dial(g, g->next_dial++);
        }
        if (stop_when_welcomed && g->next_dial == g->n && g->in_flight == 0) {
            return;
        }
        heartbeats_due(g, now);
        double wait = until - now;
        if (g->heartbeating) {
            double due = g->hb_epoch + g->interval * g->hb_next / g->n - now;
            wait = due < wait ? due : wait;
        }
        int ms = wait <= 0 ? 0 : (int)(wait * 1000.0) + 1;
        if (ms > 50) {
            ms = 50;
        }
        int k = epoll_wait(g->ep, evs, 256, ms);
        for (int j = 0; j < k; j++) {
            on_event(g, evs[j].data.u32, evs[j].events);
        }
    }
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_deploy_conns [--conns N] [--interval S] [--window S]\n");
}

int
main(int argc, char **argv)
{
    uint32_t n = 10000;
    double interval = 2.0, window = 10.0;
    char build[PATH_MAX], buf[64];
    gen_t g;
    int status = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--conns") == 0 && i + 1 < argc) {
            n = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            interval = atof(argv[++i]);
        } else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) {
            window = atof(argv[++i]);
        } else {
            usage();
            return 2;
        }
    }
    if (n < 1 || n > 1000000 || !(interval >= 0.1) || !(window >= 1)) {
        usage();
        return 2;
    }
    if (pt_bench_build_dir(build, sizeof(build)) != 0) {
        return 1;
    }
    uint64_t want = (uint64_t)n + 256;
    uint64_t have = pt_dep_raise_nofile(want);
    if (have < want) {
        fprintf(stderr,
                "RLIMIT_NOFILE allows %" PRIu64 " descriptors, %" PRIu64 " are needed: raise "
                "the hard limit (ulimit -Hn) or pass --conns %" PRIu64 "\n",
                have, want, have > 512 ? have - 256 : 256);
        return 1;
    }

    memset(&g, 0, sizeof(g));
    g.n = n;
    g.interval = interval;
    g.ep = epoll_create1(EPOLL_CLOEXEC);
    g.c = calloc(n, sizeof(*g.c));
    if (g.ep < 0 || g.c == NULL) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        g.c[i].fd = -1;
        g.c[i].hello = hello_bytes(i, n, &g.c[i].hello_len);
        if (g.c[i].hello == NULL) {
            fprintf(stderr, "cannot encode a HELLO\n");
            return 1;
        }
    }
    petal_configrecord_t *p;
    pt_frame_t *hbf = pt_params_frame(PT_FLEET_HEARTBEAT, "fleet.heartbeat", &p);
    g.hb = hbf != NULL ? frame_bytes(PT_FLEET_HEARTBEAT, hbf->msg, &g.hb_len) : NULL;
    if (hbf != NULL) {
        pt_msg_free(&hbf->hdr);
    }
    if (g.hb == NULL) {
        fprintf(stderr, "cannot encode a HEARTBEAT\n");
        return 1;
    }

    pt_dep_link_opts_t lo = {.build_dir = build,
                             .heartbeat_interval = interval,
                             .log_level = "warn",
                             .nofile = want + 1024};
    pt_dep_link_t link;
    if (pt_dep_link_start(&lo, &link) != 0) {
        return 1;
    }
    char *colon = strrchr(link.fleet, ':');
    g.addr.sin_family = AF_INET;
    g.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    g.addr.sin_port = htons((uint16_t)atoi(colon != NULL ? colon + 1 : "0"));

    printf("deploy_conns: %s SuperNode connections from one load generator (epoll) to one "
           "petal-superlink on 127.0.0.1; HELLO %u bytes, HEARTBEAT %u bytes; heartbeat "
           "interval %g s\n",
           pt_bench_group(n, buf, sizeof(buf)), g.c[0].hello_len, g.hb_len, interval);
    fflush(stdout);

    struct timespec settle = {0, 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    uint64_t rss0 = 0, rss1 = 0, rss2 = 0, hwm = 0;
    double cpu0 = 0, cpu1 = 0, cpu2 = 0, cpu3 = 0, cpu_reg0 = 0, cpu_reg1 = 0;
    pt_dep_proc_mem(link.pid, "VmRSS", &rss0);
    pt_dep_proc_cpu(link.pid, &cpu_reg0);

    /* Register everybody, heartbeating those welcomed as we go. */
    double t0 = pt_bench_now();
    g.heartbeating = 1;
    g.hb_epoch = t0;
    pump(&g, t0 + CONNECT_TIMEOUT, 1);
    double t_reg = pt_bench_now() - t0;
    pt_dep_proc_cpu(link.pid, &cpu_reg1);
    if (g.welcomed != n) {
        fprintf(stderr,
                "only %u of %u connections were welcomed within %.0f s (%u dead, %u error "
                "frames); SuperLink log: %s\n",
                g.welcomed, n, CONNECT_TIMEOUT, g.dead, g.errors, link.log_path);
        goto out;
    }
    printf("registered %s nodes in %.2f s (%.0f HELLO/s; SuperLink CPU %.1f us per HELLO)\n",
           pt_bench_group(n, buf, sizeof(buf)), t_reg, n / t_reg, (cpu_reg1 - cpu_reg0) / n * 1e6);
    fflush(stdout);

    /* Steady state: a full heartbeat period, then memory, then the measured window. */
    pump(&g, pt_bench_now() + interval + 0.5, 0);
    pt_dep_proc_mem(link.pid, "VmRSS", &rss1);
    uint64_t sent0 = g.hb_sent;
    double w0 = pt_bench_now();
    pt_dep_proc_cpu(link.pid, &cpu0);
    pump(&g, w0 + window, 0);
    double w1 = pt_bench_now();
    pt_dep_proc_cpu(link.pid, &cpu1);
    uint64_t sent = g.hb_sent - sent0;

    /* The same SuperLink without heartbeats, for a shorter while (below its grace period). */
    double idle = interval < window ? interval : window;
    g.heartbeating = 0;
    pt_dep_proc_cpu(link.pid, &cpu2);
    double i0 = pt_bench_now();
    pump(&g, i0 + idle, 0);
    double i1 = pt_bench_now();
    pt_dep_proc_cpu(link.pid, &cpu3);
    g.heartbeating = 1;
    g.hb_epoch = pt_bench_now();
    g.hb_next = 0;
    pump(&g, pt_bench_now() + 0.2, 0);
    uint32_t alive = g.welcomed;
    pt_dep_proc_mem(link.pid, "VmHWM", &hwm);

    double per_conn = ((double)rss1 - (double)rss0) / n;
    double hb_cpu = cpu1 - cpu0, idle_rate = (cpu3 - cpu2) / (i1 - i0);
    double per_hb = hb_cpu / (double)sent;
    double per_hb_net = (hb_cpu - idle_rate * (w1 - w0)) / (double)sent;
    printf("SuperLink RSS: %.1f MB before, %.1f MB with %s nodes: %.0f bytes per connection "
           "(peak %.1f MB)\n",
           rss0 / 1e6, rss1 / 1e6, pt_bench_group(n, buf, sizeof(buf)), per_conn, hwm / 1e6);
    printf("heartbeats: %" PRIu64 " in %.1f s (%.0f/s, %" PRIu64 " skipped); SuperLink CPU "
           "%.3f s = %.2f us per heartbeat (%.1f%% of one core); without heartbeats %.2f%% of "
           "a core, so %.2f us per heartbeat net\n",
           sent, w1 - w0, sent / (w1 - w0), g.hb_skipped, hb_cpu, per_hb * 1e6,
           100.0 * hb_cpu / (w1 - w0), 100.0 * idle_rate, per_hb_net * 1e6);
    printf("connections alive at the end: %u of %u (error frames %u, other frames %u)\n", alive, n,
           g.errors, g.other_frames);
    fflush(stdout);

    /* Everybody leaves: what stays behind. */
    for (uint32_t i = 0; i < n; i++) {
        if (g.c[i].fd >= 0) {
            close(g.c[i].fd);
            g.c[i].fd = -1;
        }
    }
    struct timespec drain = {1, 0};
    nanosleep(&drain, NULL);
    pt_dep_proc_mem(link.pid, "VmRSS", &rss2);
    printf("after every connection closed: SuperLink RSS %.1f MB (node records are kept)\n",
           rss2 / 1e6);
    status = alive == n ? 0 : 1;
    if (status != 0) {
        fprintf(stderr, "%u connections were dropped; SuperLink log: %s\n", n - alive,
                link.log_path);
    }

out:
    for (uint32_t i = 0; i < n; i++) {
        if (g.c[i].fd >= 0) {
            close(g.c[i].fd);
        }
        free(g.c[i].hello);
    }
    free(g.c);
    free(g.hb);
    close(g.ep);
    struct rusage ru;
    int ec = pt_dep_stop(link.pid, 10.0, &ru);
    if (ec != 0) {
        fprintf(stderr, "petal-superlink exited with %d; log: %s\n", ec, link.log_path);
        status = 1;
    } else if (status == 0) {
        unlink(link.log_path);
    }
    return status;
}
