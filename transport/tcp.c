/* tcp.c - the tcp transport: "tcp://HOST:PORT" (IPv4, [IPv6] or a name) over stream frames. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/log.h"
#include "stream.h"

/*
 * Addresses: "tcp://127.0.0.1:9092", "tcp://[::1]:9092", "tcp://example.org:9092". Port 0 in
 * listen binds any free port; listener_addr reports the real one. Names are resolved with
 * uv_getaddrinfo (synchronously for listen, on libuv's pool for dial); when a name has IPv4 and
 * IPv6 addresses the first IPv4 one is used. Connections set TCP_NODELAY. A dial that fails
 * delivers PT_MSG_CONN_DOWN with libuv's status and a reason such as
 * "connect to 127.0.0.1:9: connection refused". Framing, limits and lifetimes: stream.h.
 */

#define SCHEME "tcp://"
#define HOST_MAX 256

typedef struct hostport {
    char host[HOST_MAX];
    char port[8];
    int portnum;
} hostport_t;

static int
parse_addr(const char *addr, hostport_t *hp)
{
    const char *s, *host, *host_end, *port;
    size_t hn, pn;

    if (addr == NULL || strncmp(addr, SCHEME, strlen(SCHEME)) != 0) {
        return PETAL_EINVAL;
    }
    s = addr + strlen(SCHEME);
    if (*s == '[') {
        host = s + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL || host_end[1] != ':') {
            return PETAL_EINVAL;
        }
        port = host_end + 2;
    } else {
        host = s;
        host_end = strrchr(s, ':');
        if (host_end == NULL) {
            return PETAL_EINVAL;
        }
        if (memchr(host, ':', (size_t)(host_end - host)) != NULL) {
            return PETAL_EINVAL; /* an IPv6 address needs brackets */
        }
        port = host_end + 1;
    }
    hn = (size_t)(host_end - host);
    pn = strlen(port);
    if (hn == 0 || hn >= HOST_MAX || pn == 0 || pn > 5 || strspn(port, "0123456789") != pn) {
        return PETAL_EINVAL;
    }
    hp->portnum = atoi(port);
    if (hp->portnum > 65535) {
        return PETAL_EINVAL;
    }
    memcpy(hp->host, host, hn);
    hp->host[hn] = '\0';
    memcpy(hp->port, port, pn + 1);
    return 0;
}

static int
numeric_addr(const hostport_t *hp, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(hp->host, hp->portnum, (struct sockaddr_in *)ss) == 0) {
        return 0;
    }
    if (uv_ip6_addr(hp->host, hp->portnum, (struct sockaddr_in6 *)ss) == 0) {
        return 0;
    }
    return PETAL_EINVAL;
}

/* The first IPv4 address, else the first IPv6 one. */
static const struct addrinfo *
pick(const struct addrinfo *res)
{
    const struct addrinfo *v6 = NULL;

    for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            return a;
        }
        if (a->ai_family == AF_INET6 && v6 == NULL) {
            v6 = a;
        }
    }
    return v6;
}

static int
resolve_sync(pt_runtime_t *rt, const hostport_t *hp, struct sockaddr_storage *ss)
{
    uv_getaddrinfo_t req;
    struct addrinfo hints;
    const struct addrinfo *a;
    int r;

    if (numeric_addr(hp, ss) == 0) {
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    r = uv_getaddrinfo(pt_runtime_loop(rt), &req, NULL, hp->host, hp->port, &hints);
    if (r != 0) {
        PT_WARN("tcp: cannot resolve %s: %s", hp->host, uv_strerror(r));
        return r;
    }
    a = pick(req.addrinfo);
    if (a == NULL) {
        uv_freeaddrinfo(req.addrinfo);
        return UV_EAI_ADDRFAMILY;
    }
    memset(ss, 0, sizeof(*ss));
    memcpy(ss, a->ai_addr, a->ai_addrlen);
    uv_freeaddrinfo(req.addrinfo);
    return 0;
}

static int
tcp_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out)
{
    hostport_t hp;
    struct sockaddr_storage ss;
    pt_stream_listener_t *l;
    char name[128];
    int len = sizeof(ss);
    int r;

    r = parse_addr(addr, &hp);
    if (r != 0) {
        return r;
    }
    r = resolve_sync(rt, &hp, &ss);
    if (r != 0) {
        return r;
    }
    pt_stream_ignore_sigpipe();
    r = pt_stream_listener_new(rt, &pt_tcp_ops, owner, 0, &l);
    if (r != 0) {
        return r;
    }
    r = uv_tcp_bind(&l->h.tcp, (const struct sockaddr *)&ss, 0);
    if (r == 0) {
        r = pt_stream_listener_start(l); /* bind errors such as EADDRINUSE surface here */
    }
    if (r == 0) {
        r = uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len);
    }
    if (r != 0) {
        pt_stream_listener_close((pt_listener_t *)l);
        return r;
    }
    pt_stream_format_addr((const struct sockaddr *)&ss, name, sizeof(name));
    snprintf(l->addr, sizeof(l->addr), "%s%s", SCHEME, name);
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

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pt_stream_conn_t *c = req->data;
    const struct addrinfo *a;
    int r;

    if (c->closed) {
        uv_freeaddrinfo(res);
    } else if (status < 0) {
        pt_stream_conn_fail(c, status, "resolve %s: %s", c->base.peer, uv_strerror(status));
    } else if ((a = pick(res)) == NULL) {
        uv_freeaddrinfo(res);
        pt_stream_conn_fail(c, UV_EAI_ADDRFAMILY, "resolve %s: no IPv4 or IPv6 address",
                            c->base.peer);
    } else {
        pt_stream_format_addr(a->ai_addr, c->base.peer, sizeof(c->base.peer));
        r = uv_tcp_connect(&c->connect_req, &c->h.tcp, a->ai_addr, on_connect);
        uv_freeaddrinfo(res);
        if (r != 0) {
            pt_stream_conn_fail(c, r, "connect to %s: %s", c->base.peer, uv_strerror(r));
        }
    }
    pt_stream_conn_gai_done(c); /* last: may free c */
}

static int
tcp_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out)
{
    hostport_t hp;
    struct sockaddr_storage ss;
    pt_stream_conn_t *c;
    struct addrinfo hints;
    int r;

    r = parse_addr(addr, &hp);
    if (r != 0) {
        return r;
    }
    if (hp.portnum == 0) {
        return PETAL_EINVAL;
    }
    pt_stream_ignore_sigpipe();
    r = pt_stream_conn_new(rt, &pt_tcp_ops, owner, 0, NULL, &c);
    if (r != 0) {
        return r;
    }
    if (numeric_addr(&hp, &ss) == 0) {
        pt_stream_format_addr((const struct sockaddr *)&ss, c->base.peer, sizeof(c->base.peer));
        r = uv_tcp_connect(&c->connect_req, &c->h.tcp, (const struct sockaddr *)&ss, on_connect);
    } else {
        pt_stream_set_peer(c, "%s:%s", hp.host, hp.port);
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->gai.data = c;
        c->gai_pending = 1;
        r = uv_getaddrinfo(pt_runtime_loop(rt), &c->gai, on_resolved, hp.host, hp.port, &hints);
        if (r != 0) {
            c->gai_pending = 0;
        }
    }
    if (r != 0) {
        pt_stream_conn_discard(c);
        return r;
    }
    *out = (pt_conn_t *)c;
    return 0;
}

const pt_tran_ops_t pt_tcp_ops = {
    .scheme = "tcp",
    .listen = tcp_listen,
    .listener_addr = pt_stream_listener_addr,
    .listener_close = pt_stream_listener_close,
    .dial = tcp_dial,
    .send = pt_stream_send,
    .close = pt_stream_close,
};
