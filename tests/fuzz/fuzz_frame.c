/* fuzz_frame.c - fuzz target: the stream framing reader (transport/stream.c) on arbitrary bytes. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "runtime/actor.h"
#include "runtime/keys.h"
#include "runtime/log.h"
#include "transport/secure.h"
#include "transport/stream.h"
#include "transport/transport.h"

/*
 * The bytes are what a peer sends on a Petal stream: the target writes them, unchanged, to an
 * ipc socket accepted by the real ipc transport (one runtime on a loop thread for the whole
 * run), half-closes, and waits until the transport has taken the connection down. So the
 * whole reader runs as in production: length prefix, header, pad, chunk assembly, the codec,
 * the limits. Each input goes to three listeners:
 *   small:  plain, max_frame 4096 (the minimum), max_message 1 MiB - chunking and size checks;
 *   large:  plain, max_frame 1 MiB, max_message 1 MiB - direct reads into the message buffer;
 *   secure: the secure channel (transport/secure.h), max_frame 64 KiB, max_message 1 MiB. The
 *           target completes a real handshake as an authenticated client (a malicious node),
 *           then sends the bytes sealed in records cut at arbitrary places, so the decrypted
 *           bytes go through the secure glue (records opened into the stage or straight into
 *           a message's buffer) and then the same framing.
 * (max_message stays at 1 MiB so that a header announcing a huge chunked message does not make
 * every run allocate gigabytes; that limit is documented in docs/security.md.)
 * Checked: every delivered frame is well-formed; the connection always goes down, with a
 * transport status and a reason, within WAIT_S seconds; nothing crashes (ASan).
 * FUZZ_FRAME_VERBOSE=1 prints each connection's frames and reason.
 */

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_frame: %s:%d: %s\n", __FILE__, __LINE__, #cond);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MSG_START 1u
#define NLISTENERS 3
#define SECURE 2 /* the index of the secure listener */
#define WAIT_S 20

static const pt_stream_opts_t profiles[NLISTENERS] = {
    {4096, 1u << 20, 0, 0, 0},
    {1u << 20, 1u << 20, 0, 0, 0},
    {64u << 10, 1u << 20, 0, 0, 0},
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static struct {
    pt_runtime_t *rt;
    pt_actor_t *owner;
    pthread_t loop;
    int listening; /* 1: both listen, -errno: failed */
    char paths[NLISTENERS][108];
    uint64_t downs; /* connections taken down so far */
    pt_keypair_t *server_id, *client_id;
    pt_secure_opts_t server_opts; /* must outlive the listener */
    uint64_t frames;              /* delivered on the current connection */
    int verbose;                  /* FUZZ_FRAME_VERBOSE=1: one line per connection */
    pt_msg_t start;
} F;

static void
signal_state(int listening, int down)
{
    pthread_mutex_lock(&mu);
    if (listening != 0) {
        F.listening = listening;
    }
    F.downs += (uint64_t)down;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void
check_frame(const pt_frame_t *f)
{
    CHECK(f->version == PT_PROTOCOL_VERSION);
    CHECK((f->flags & PT_FRAME_FLAG_CHUNK) == 0);
    CHECK(f->conn != NULL);
    if (f->msg != NULL) {
        petal_metadata_t md;

        CHECK(petal_message_metadata(f->msg, &md) == 0);
        CHECK(petal_message_error_code(f->msg) != 0 || petal_message_content(f->msg) != NULL);
    }
}

static void
check_down(const pt_conn_event_t *ev)
{
    if (ev->status != PETAL_ECLOSED && ev->status != PETAL_EPROTO && ev->status != PETAL_EMSGSIZE &&
        ev->status != PETAL_ENOMEM) {
        fprintf(stderr, "fuzz_frame: unexpected DOWN status %d (%s): %s\n", ev->status,
                petal_strerror(ev->status), ev->reason);
        abort();
    }
    CHECK(ev->reason[0] != '\0');
    if (F.verbose) {
        fprintf(stderr, "fuzz_frame: down after %llu frames: %s\n", (unsigned long long)F.frames,
                ev->reason);
    }
    F.frames = 0;
}

static void
owner_handler(pt_actor_t *self, pt_msg_t *m)
{
    (void)self;
    switch (m->type) {
    case MSG_START: {
        int rc = 0;

        for (int i = 0; i < NLISTENERS && rc == 0; i++) {
            char addr[160];
            pt_listener_t *l;

            snprintf(F.paths[i], sizeof(F.paths[i]), "/tmp/petal-fuzz-frame-%ld-%d.sock",
                     (long)getpid(), i);
            snprintf(addr, sizeof(addr), "ipc://%s", F.paths[i]);
            rc = pt_stream_set_opts(&profiles[i]);
            if (rc == 0 && i == SECURE) {
                rc = pt_listen_secure(F.rt, addr, F.owner, &F.server_opts, &l);
            } else if (rc == 0) {
                rc = pt_listen(F.rt, addr, F.owner, &l);
            }
        }
        pt_stream_set_opts(NULL);
        if (rc != 0) {
            fprintf(stderr, "fuzz_frame: cannot listen: %s\n", petal_strerror(rc));
        }
        signal_state(rc == 0 ? 1 : (rc < 0 ? rc : -1), 0);
        break;
    }
    case PT_MSG_FRAME:
        check_frame((const pt_frame_t *)m);
        F.frames++;
        break;
    case PT_MSG_CONN_DOWN:
        check_down((const pt_conn_event_t *)m);
        pt_msg_free(m);
        signal_state(0, 1);
        return;
    default: /* CONN_UP, WRITABLE, STOP */
        break;
    }
    pt_msg_free(m);
}

static void
remove_sockets(void)
{
    for (int i = 0; i < NLISTENERS; i++) {
        if (F.paths[i][0] != '\0') {
            unlink(F.paths[i]);
        }
    }
}

static void *
loop_main(void *arg)
{
    (void)arg;
    pt_runtime_run(F.rt);
    return NULL;
}

/* One runtime for the whole process; never shut down (the process exits with it running). */
static void
setup(void)
{
    pt_runtime_opts_t ro = {1, 0, 0};

    F.verbose = getenv("FUZZ_FRAME_VERBOSE") != NULL;
    pt_log_set_level(PETAL_LOG_ERROR);
    CHECK(pt_keypair_generate(&F.server_id) == 0);
    CHECK(pt_keypair_generate(&F.client_id) == 0);
    F.server_opts.identity = F.server_id;
    CHECK(pt_runtime_alloc(&ro, &F.rt) == 0);
    CHECK(pt_actor_spawn(F.rt, "fuzz-frame", owner_handler, NULL, &F.owner) == 0);
    CHECK(pthread_create(&F.loop, NULL, loop_main, NULL) == 0);
    atexit(remove_sockets);
    F.start.type = MSG_START;
    CHECK(pt_actor_send(F.owner, &F.start) == 0);
    pthread_mutex_lock(&mu);
    while (F.listening == 0) {
        pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    CHECK(F.listening == 1);
}

static int
connect_to(int i)
{
    struct sockaddr_un sun;
    struct timeval tv = {WAIT_S, 0};
    int fd;

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", F.paths[i]);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        fprintf(stderr, "fuzz_frame: connect %s: %s\n", F.paths[i], strerror(errno));
        abort();
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends everything; 0, or -1 once the server has closed (it gave up on the bytes early). */
static int
send_all(int fd, const uint8_t *p, size_t n)
{
    size_t off = 0;

    while (off < n) {
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            CHECK(errno == EPIPE || errno == ECONNRESET);
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Half-closes and reads until the server closes; it never writes frames on these. */
static void
finish(int fd)
{
    shutdown(fd, SHUT_WR);
    for (;;) {
        char b[256];
        ssize_t n = recv(fd, b, sizeof(b), 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            fprintf(stderr, "fuzz_frame: the server kept the connection open for %d s\n", WAIT_S);
            abort();
        }
        CHECK(n <= 0);
        break;
    }
    close(fd);
}

/* The client side of the handshake over the blocking socket; returns the session. */
static pt_secure_session_t *
handshake(int fd)
{
    pt_secure_opts_t o;
    pt_secure_session_t *s = NULL;
    uint8_t in[1024];
    size_t have = 0;

    memset(&o, 0, sizeof(o));
    o.identity = F.client_id;
    o.pinned_peer_pk = F.server_id->pk;
    CHECK(pt_secure_session_new(PT_SECURE_CLIENT, &o, &s) == 0);
    for (;;) {
        uint8_t *out = NULL;
        size_t len = 0;
        size_t used = 0;
        ssize_t n;
        int rc;

        CHECK(pt_secure_take_output(s, &out, &len) == 0);
        if (len > 0) {
            CHECK(send_all(fd, out, len) == 0);
        }
        free(out);
        if (pt_secure_established(s)) {
            return s;
        }
        n = recv(fd, in + have, sizeof(in) - have, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fprintf(stderr, "fuzz_frame: the secure listener closed during the handshake\n");
            abort();
        }
        have += (size_t)n;
        rc = pt_secure_handshake_input(s, in, have, &used);
        if (rc < 0) {
            fprintf(stderr, "fuzz_frame: handshake: %s\n", pt_secure_error(s));
            abort();
        }
        memmove(in, in + used, have - used);
        have -= used;
    }
}

/* The bytes as records of arbitrary lengths (a fixed pseudo-random sequence per input size,
 * from 1 byte to a full record), so frames and records rarely line up. */
static void
send_sealed(int fd, pt_secure_session_t *s, const uint8_t *data, size_t size)
{
    static const size_t cuts[] = {1, 5, 64, 700, 4096, 13, 20000, PT_SECURE_MAX_RECORD, 3, 60};
    size_t k = size % (sizeof(cuts) / sizeof(cuts[0]));
    uint8_t *rec = malloc(PT_SECURE_MAX_RECORD + PT_SECURE_RECORD_OVERHEAD);
    size_t off = 0;

    CHECK(rec != NULL);
    while (off < size) {
        size_t n = size - off < cuts[k] ? size - off : cuts[k];
        int64_t len = pt_secure_seal(s, data + off, n, rec);

        CHECK(len == (int64_t)(n + PT_SECURE_RECORD_OVERHEAD));
        if (send_all(fd, rec, (size_t)len) != 0) {
            break;
        }
        off += n;
        k = (k + 1) % (sizeof(cuts) / sizeof(cuts[0]));
    }
    free(rec);
}

/* Sends the bytes on a new connection to listener i and reads until the server closes. */
static void
feed(int i, const uint8_t *data, size_t size)
{
    int fd = connect_to(i);

    if (i == SECURE) {
        pt_secure_session_t *s = handshake(fd);

        send_sealed(fd, s, data, size);
        pt_secure_session_free(s);
    } else {
        send_all(fd, data, size);
    }
    finish(fd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    uint64_t want;

    if (!ready) {
        setup();
        ready = 1;
    }
    pthread_mutex_lock(&mu);
    want = F.downs;
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < NLISTENERS; i++) {
        struct timespec deadline;

        feed(i, data, size);
        want++;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += WAIT_S;
        pthread_mutex_lock(&mu);
        while (F.downs < want) {
            if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT) {
                fprintf(stderr, "fuzz_frame: no DOWN within %d s\n", WAIT_S);
                abort();
            }
        }
        pthread_mutex_unlock(&mu);
    }
    return 0;
}
