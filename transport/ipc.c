/* ipc.c - the ipc transport: "ipc:///path/to.sock", a Unix domain socket over stream frames. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../runtime/log.h"
#include "stream.h"

/*
 * The path is everything after "ipc://" ("ipc:///tmp/x.sock" is /tmp/x.sock) and must fit in
 * sun_path (107 bytes). listen() refuses a path that a listener of this process holds
 * (UV_EADDRINUSE) or that exists and is not a socket; a socket file that nobody accepts on (a
 * connect is refused) is stale and removed first. A path some other process listens on is
 * refused too (that check connects once, so that process sees a connection come and go).
 * Closing the listener removes the socket file (libuv unlinks it). Framing: stream.h.
 */

#define SCHEME "ipc://"

typedef struct held_path {
    struct held_path *next;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} held_path_t;

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static held_path_t *held;

static int
parse_path(const char *addr, char *path, size_t cap)
{
    size_t n;

    if (addr == NULL || strncmp(addr, SCHEME, strlen(SCHEME)) != 0) {
        return PETAL_EINVAL;
    }
    addr += strlen(SCHEME);
    n = strlen(addr);
    if (n == 0 || n >= cap || n >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        return PETAL_EINVAL;
    }
    memcpy(path, addr, n + 1);
    return 0;
}

/* Reserves `path` for a listener of this process; UV_EADDRINUSE if one holds it. */
static int
hold_path(const char *path)
{
    held_path_t *h;

    pthread_mutex_lock(&held_mu);
    for (h = held; h != NULL; h = h->next) {
        if (strcmp(h->path, path) == 0) {
            pthread_mutex_unlock(&held_mu);
            return UV_EADDRINUSE;
        }
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        pthread_mutex_unlock(&held_mu);
        return PETAL_ENOMEM;
    }
    snprintf(h->path, sizeof(h->path), "%s", path);
    h->next = held;
    held = h;
    pthread_mutex_unlock(&held_mu);
    return 0;
}

static void
unhold_path(const char *path)
{
    pthread_mutex_lock(&held_mu);
    for (held_path_t **pp = &held; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->path, path) == 0) {
            held_path_t *h = *pp;

            *pp = h->next;
            free(h);
            break;
        }
    }
    pthread_mutex_unlock(&held_mu);
}

/* 0 when path is free (a stale socket file was removed), UV_EADDRINUSE when it is taken. */
static int
clear_stale(const char *path)
{
    struct sockaddr_un sun;
    struct stat st;
    int fd, r, err;

    if (lstat(path, &st) != 0) {
        return errno == ENOENT ? 0 : -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        PT_ERROR("ipc://%s: the path exists and is not a socket; not removing it", path);
        return UV_EADDRINUSE;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    err = r == 0 ? 0 : errno;
    close(fd);
    if (r == 0 || err == EAGAIN || err == EINPROGRESS) {
        return UV_EADDRINUSE; /* somebody accepts there */
    }
    if (err == ECONNREFUSED) {
        if (unlink(path) != 0 && errno != ENOENT) {
            return -errno;
        }
        PT_INFO("ipc://%s: removed a stale socket file", path);
        return 0;
    }
    return err == ENOENT ? 0 : -err;
}

static void
on_listener_close(pt_stream_listener_t *l)
{
    unhold_path(l->path); /* libuv unlinks the socket file when it closes the pipe */
}

static int
ipc_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pt_stream_listener_t *l;
    int r;

    r = parse_path(addr, path, sizeof(path));
    if (r != 0) {
        return r;
    }
    r = hold_path(path);
    if (r != 0) {
        return r;
    }
    r = clear_stale(path);
    if (r != 0) {
        unhold_path(path);
        return r;
    }
    pt_stream_ignore_sigpipe();
    r = pt_stream_listener_new(rt, &pt_ipc_ops, owner, 1, &l);
    if (r != 0) {
        unhold_path(path);
        return r;
    }
    snprintf(l->path, sizeof(l->path), "%s", path);
    snprintf(l->addr, sizeof(l->addr), "%s%s", SCHEME, path);
    l->on_close = on_listener_close;
    r = uv_pipe_bind(&l->h.pipe, path);
    if (r == 0) {
        r = pt_stream_listener_start(l);
    }
    if (r != 0) {
        pt_stream_listener_close((pt_listener_t *)l);
        return r;
    }
    *out = (pt_listener_t *)l;
    return 0;
}

static void
on_connect(uv_connect_t *req, int status)
{
    pt_stream_conn_t *c = req->handle->data;

    if (status == UV_ECANCELED || c->closed) {
        return;
    }
    if (status < 0) {
        pt_stream_conn_fail(c, status, "connect to %s: %s", c->base.peer, uv_strerror(status));
        return;
    }
    pt_stream_conn_established(c, NULL);
}

static int
ipc_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pt_stream_conn_t *c;
    int r;

    r = parse_path(addr, path, sizeof(path));
    if (r != 0) {
        return r;
    }
    pt_stream_ignore_sigpipe();
    r = pt_stream_conn_new(rt, &pt_ipc_ops, owner, 1, NULL, &c);
    if (r != 0) {
        return r;
    }
    pt_stream_set_peer(c, "%s", addr);
    uv_pipe_connect(&c->connect_req, &c->h.pipe, path, on_connect);
    *out = (pt_conn_t *)c;
    return 0;
}

const pt_tran_ops_t pt_ipc_ops = {
    .scheme = "ipc",
    .listen = ipc_listen,
    .listener_addr = pt_stream_listener_addr,
    .listener_close = pt_stream_listener_close,
    .dial = ipc_dial,
    .send = pt_stream_send,
    .close = pt_stream_close,
};
