/* stream.c - frames over a uv_stream_t: writing, reading, chunking, limits (see stream.h). */
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../runtime/log.h"
#include "secure.h"
#include "stream.h"

/*
 * Lifetime of a connection. It is freed when all of these hold: its uv handles (stream and idle
 * timer) went through their close callbacks, a pending getaddrinfo has called back, its DOWN
 * event was handled by the owner (or refused by a stopped owner whose STOP has been handled),
 * and its embedded UP / WRITABLE events are not queued. Write requests always call back before
 * the stream's close callback (libuv cancels them with UV_ECANCELED), so they need no count.
 *
 * Reading. A frame's head (length, header, pad) is parsed from `stage`, a 64 KiB buffer that
 * exists only while it holds bytes. The message bytes go to `dst`: bytes already staged are
 * moved there, and while at least DIRECT_MIN bytes are missing libuv reads straight into it, so
 * a large message crosses user space once (kernel to its final buffer).
 */

#define STAGE_CAP (64 * 1024)
#define DIRECT_MIN (16 * 1024)
#define HEAD_MAX 256 /* most bytes a received header may take */
#define HEAD_ROOM 64 /* what this sender writes before a message: length, header, pad */
#define MSG_ALIGN 64
#define BACKLOG 511

enum { DOWN_NONE, DOWN_QUEUED, DOWN_REFUSED, DOWN_DONE };

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- Options -------------------------------------------------------------------------------- */

static pthread_mutex_t opts_mu = PTHREAD_MUTEX_INITIALIZER;
static pt_stream_opts_t opts_now = {
    PT_STREAM_DEFAULT_MAX_FRAME, PT_STREAM_DEFAULT_MAX_MESSAGE, PT_STREAM_DEFAULT_IDLE_TIMEOUT_MS,
    PT_STREAM_DEFAULT_WRITE_HWM, PT_STREAM_DEFAULT_SERIAL_RX,
};

void
pt_stream_opts_default(pt_stream_opts_t *o)
{
    o->max_frame = PT_STREAM_DEFAULT_MAX_FRAME;
    o->max_message = PT_STREAM_DEFAULT_MAX_MESSAGE;
    o->idle_timeout_ms = PT_STREAM_DEFAULT_IDLE_TIMEOUT_MS;
    o->write_hwm = PT_STREAM_DEFAULT_WRITE_HWM;
    o->serial_rx_min = PT_STREAM_DEFAULT_SERIAL_RX;
}

int
pt_stream_set_opts(const pt_stream_opts_t *o)
{
    pt_stream_opts_t n;

    pt_stream_opts_default(&n);
    if (o != NULL) {
        if (o->max_frame != 0) {
            if (o->max_frame < PT_STREAM_MIN_MAX_FRAME || o->max_frame > UINT32_MAX) {
                return PETAL_EINVAL;
            }
            n.max_frame = o->max_frame;
        }
        if (o->max_message != 0) {
            if (o->max_message > SIZE_MAX / 2) {
                return PETAL_EINVAL;
            }
            n.max_message = o->max_message;
        }
        if (o->idle_timeout_ms != 0) {
            n.idle_timeout_ms = o->idle_timeout_ms;
        }
        if (o->write_hwm != 0) {
            n.write_hwm = o->write_hwm;
        }
        if (o->serial_rx_min != 0) {
            n.serial_rx_min = o->serial_rx_min;
        }
    }
    pthread_mutex_lock(&opts_mu);
    opts_now = n;
    pthread_mutex_unlock(&opts_mu);
    return 0;
}

void
pt_stream_get_opts(pt_stream_opts_t *o)
{
    pthread_mutex_lock(&opts_mu);
    *o = opts_now;
    pthread_mutex_unlock(&opts_mu);
}

/* The largest array of d: its size, and the names of it and of its record. */
static uint64_t
largest_array(const petal_recorddict_t *d, const char **record, const char **array)
{
    uint64_t best = 0;

    for (uint64_t i = 0; d != NULL && i < petal_recorddict_count(d); i++) {
        if (petal_recorddict_kind_at(d, i) != PETAL_RECORD_ARRAYS) {
            continue;
        }
        const char *rname = petal_recorddict_name_at(d, i);
        const petal_arrayrecord_t *r = petal_recorddict_arrays(d, rname);
        for (uint64_t j = 0; r != NULL && j < petal_arrayrecord_count(r); j++) {
            uint64_t n = petal_array_nbytes(petal_arrayrecord_at(r, j));
            if (n >= best) {
                best = n;
                *record = rname;
                *array = petal_arrayrecord_name_at(r, j);
            }
        }
    }
    return best;
}

int
pt_stream_check_message(const petal_message_t *m, char *why, size_t cap)
{
    pt_encoded_t enc;
    pt_stream_opts_t o;
    int rc;

    if (m == NULL) {
        return 0;
    }
    rc = pt_codec_encode(m, &enc);
    if (rc != 0) {
        const char *record = "?", *array = "?";
        uint64_t big = largest_array(petal_message_content(m), &record, &array);
        if (rc == PETAL_EMSGSIZE && big > UINT32_MAX - MSG_ALIGN) {
            snprintf(why, cap,
                     "array '%s' in '%s' has %llu bytes, over the wire limit of 4 GiB - 1 bytes "
                     "for one array; split the model across several arrays",
                     array, record, (unsigned long long)big);
        } else {
            snprintf(why, cap, "the message cannot be encoded: %s", petal_strerror(rc));
        }
        return rc;
    }
    uint64_t total = enc.total;
    pt_encoded_fini(&enc);
    pt_stream_get_opts(&o);
    if (total > o.max_message) {
        snprintf(why, cap,
                 "the message has %llu bytes on the wire, over the limit of %llu bytes for one "
                 "message (--max-message-size)",
                 (unsigned long long)total, (unsigned long long)o.max_message);
        return PETAL_EMSGSIZE;
    }
    return 0;
}

static pt_codec_limits_t codec_now; /* 0 fields: the codec's defaults (under opts_mu) */

int
pt_stream_set_codec_limits(const pt_codec_limits_t *l)
{
    pt_codec_limits_t n;

    memset(&n, 0, sizeof(n));
    if (l != NULL) {
        if (l->max_ndim > PETAL_MAX_NDIM) {
            return PETAL_EINVAL;
        }
        n = *l;
        n.max_frame_bytes = 0;
    }
    pthread_mutex_lock(&opts_mu);
    codec_now = n;
    pthread_mutex_unlock(&opts_mu);
    return 0;
}

/* The decoding limits of a new connection whose messages may be max_message bytes. */
static void
conn_codec_limits(pt_codec_limits_t *l, uint64_t max_message)
{
    pt_codec_limits_t set;

    pthread_mutex_lock(&opts_mu);
    set = codec_now;
    pthread_mutex_unlock(&opts_mu);
    pt_codec_limits_default(l);
    l->max_frame_bytes = max_message;
    if (set.max_records != 0) {
        l->max_records = set.max_records;
    }
    if (set.max_ndim != 0) {
        l->max_ndim = set.max_ndim;
    }
    if (set.max_string_bytes != 0) {
        l->max_string_bytes = set.max_string_bytes;
    }
    if (set.max_list_elements != 0) {
        l->max_list_elements = set.max_list_elements;
    }
    if (set.max_array_elements != 0) {
        l->max_array_elements = set.max_array_elements;
    } else if (l->max_array_elements < max_message) {
        l->max_array_elements = max_message;
    }
}

static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;

static void
ignore_sigpipe_once(void)
{
    struct sigaction sa;

    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        (sa.sa_flags & SA_SIGINFO) == 0) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

void
pt_stream_ignore_sigpipe(void)
{
    pthread_once(&sigpipe_once, ignore_sigpipe_once);
}

void
pt_stream_set_peer(pt_stream_conn_t *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->base.peer, sizeof(c->base.peer), fmt, ap);
    va_end(ap);
}

void
pt_stream_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[64];

    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        uv_ip4_name(in, ip, sizeof(ip));
        snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        uv_ip6_name(in6, ip, sizeof(ip));
        snprintf(buf, cap, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    } else {
        snprintf(buf, cap, "?");
    }
}

/* ---- Connection lifetime -------------------------------------------------------------------- */

static void
maybe_free(pt_stream_conn_t *c)
{
    if (c->handles > 0 || c->gai_pending || c->down_state != DOWN_DONE ||
        c->owner_watch.pprev != NULL || c->up_busy || c->writable_busy) {
        return;
    }
    pt_actor_unwatch(&c->drain_watch);
    if (c->sec != NULL) {
        pt_secure_stream_free(c);
    }
    free(c->stage);
    free(c);
}

static void
on_handle_closed(uv_handle_t *h)
{
    pt_stream_conn_t *c = h->data;

    c->handles--;
    maybe_free(c);
}

static void
close_handles(pt_stream_conn_t *c)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    if (c->timer_on) {
        uv_timer_stop(&c->idle);
        c->timer_on = 0;
    }
    uv_close(&c->h.handle, on_handle_closed);
    uv_close((uv_handle_t *)&c->idle, on_handle_closed);
}

/* ---- Large messages one at a time (pt_stream_opts_t.serial_rx_min) ---------------------------
 *
 * One connection per process holds the slot while it receives a large message; others that
 * start one on the same loop queue up with reading stopped (paused, so the idle timeout does
 * not count the wait), and the slot is handed to the first of them when the message is in or
 * the holder goes down. A connection on another loop than the holder's does not wait (the
 * hand-over resumes the next one on the loop thread, through its idle timer). */

static pthread_mutex_t rx_mu = PTHREAD_MUTEX_INITIALIZER;
static pt_stream_conn_t *rx_holder;
static pt_stream_conn_t *rx_head, *rx_tail;

static void on_rx_resume(uv_timer_t *t);

/* 1: go on receiving a message of `size` bytes; 0: c waits (reading stopped). */
static int
rx_acquire(pt_stream_conn_t *c, uint64_t size)
{
    uint64_t min = c->opts.serial_rx_min ? c->opts.serial_rx_min : PT_STREAM_DEFAULT_SERIAL_RX;

    if (size < min || c->rx_holding) {
        return 1;
    }
    pthread_mutex_lock(&rx_mu);
    if (rx_holder == NULL) {
        rx_holder = c;
        c->rx_holding = 1;
        pthread_mutex_unlock(&rx_mu);
        return 1;
    }
    if (rx_holder->h.handle.loop != c->h.handle.loop) {
        pthread_mutex_unlock(&rx_mu);
        return 1;
    }
    c->rx_next = NULL;
    if (rx_tail != NULL) {
        rx_tail->rx_next = c;
    } else {
        rx_head = c;
    }
    rx_tail = c;
    c->rx_waiting = 1;
    pthread_mutex_unlock(&rx_mu);
    c->paused = 1;
    c->stats.rx_waits++;
    uv_read_stop(&c->h.stream);
    PT_DEBUG("%s: a message of %llu bytes waits until another large message is received",
             c->base.peer, (unsigned long long)size);
    return 0;
}

/* c no longer holds the slot (its message is in, or it is going down) nor waits for it. */
static void
rx_release(pt_stream_conn_t *c)
{
    pt_stream_conn_t *next = NULL;

    if (!c->rx_holding && !c->rx_waiting) {
        return;
    }
    pthread_mutex_lock(&rx_mu);
    if (c->rx_waiting) {
        pt_stream_conn_t **pp = &rx_head;
        pt_stream_conn_t *prev = NULL;
        while (*pp != NULL && *pp != c) {
            prev = *pp;
            pp = &(*pp)->rx_next;
        }
        if (*pp == c) {
            *pp = c->rx_next;
            if (rx_tail == c) {
                rx_tail = prev;
            }
        }
        c->rx_waiting = 0;
    }
    if (c->rx_holding) {
        c->rx_holding = 0;
        rx_holder = NULL;
        next = rx_head;
        if (next != NULL) {
            rx_head = next->rx_next;
            if (rx_head == NULL) {
                rx_tail = NULL;
            }
            next->rx_waiting = 0;
            next->rx_holding = 1; /* handed over */
            rx_holder = next;
        }
    }
    pthread_mutex_unlock(&rx_mu);
    if (next != NULL) {
        /* Not from inside c's processing: the next one resumes from its loop's timer phase. */
        if (next->timer_on) {
            uv_timer_stop(&next->idle);
        }
        next->rx_resume = 1;
        next->timer_on = 1;
        uv_timer_start(&next->idle, on_rx_resume, 0, 0);
    }
}

static void
release_read_buffers(pt_stream_conn_t *c)
{
    rx_release(c);
    if (c->dst != NULL && c->dst_owned) {
        pt_buf_release(c->dst);
    }
    c->dst = NULL;
    c->dst_owned = 0;
    c->in_payload = 0;
    if (c->asm_buf != NULL) {
        pt_buf_release(c->asm_buf);
        c->asm_buf = NULL;
    }
    if (c->sec != NULL) {
        pt_secure_stream_release(c);
    }
}

static void
on_down_freed(pt_msg_t *m)
{
    pt_stream_conn_t *c = CONTAINER_OF(m, pt_stream_conn_t, ev_down.hdr);

    c->down_state = DOWN_DONE;
    pt_actor_unwatch(&c->owner_watch);
    maybe_free(c);
}

static void
on_up_freed(pt_msg_t *m)
{
    pt_stream_conn_t *c = CONTAINER_OF(m, pt_stream_conn_t, ev_up.hdr);

    c->up_busy = 0;
    maybe_free(c);
}

static void
on_writable_freed(pt_msg_t *m)
{
    pt_stream_conn_t *c = CONTAINER_OF(m, pt_stream_conn_t, ev_writable.hdr);

    c->writable_busy = 0;
    maybe_free(c);
}

static int
is_fault(int status)
{
    return status == PETAL_EPROTO || status == PETAL_EMSGSIZE || status == PETAL_ETIMEDOUT ||
           status == PETAL_ENOMEM || status == PETAL_EVERSION;
}

/* The one way down. */
static void
conn_down(pt_stream_conn_t *c, int status, const char *reason)
{
    if (c->closed) {
        return;
    }
    c->closed = 1;
    c->up = 0;
    c->paused = 0;
    pt_actor_unwatch(&c->drain_watch);
    if (c->gai_pending) {
        uv_cancel((uv_req_t *)&c->gai); /* its callback still runs, with UV_ECANCELED */
    }
    close_handles(c);
    release_read_buffers(c);
    if (is_fault(status)) {
        PT_WARN("%s", reason);
    } else {
        PT_DEBUG("down: %s", reason);
    }
    if (c->down_state != DOWN_NONE) {
        maybe_free(c);
        return;
    }
    memset(&c->ev_down, 0, sizeof(c->ev_down));
    c->ev_down.hdr.type = PT_MSG_CONN_DOWN;
    c->ev_down.hdr.free = on_down_freed;
    c->ev_down.conn = (pt_conn_t *)c;
    c->ev_down.status = status;
    {
        size_t n = strlen(reason);

        n = n < sizeof(c->ev_down.reason) - 1 ? n : sizeof(c->ev_down.reason) - 1;
        memcpy(c->ev_down.reason, reason, n); /* cut to fit; the log line has it whole */
        c->ev_down.reason[n] = '\0';
    }
    if (pt_actor_send(c->base.owner, &c->ev_down.hdr) == 0) {
        c->down_state = DOWN_QUEUED;
    } else {
        /* The owner is stopping: c stays valid for its STOP handler; the owner watch frees. */
        c->down_state = c->owner_watch.pprev != NULL ? DOWN_REFUSED : DOWN_DONE;
    }
    maybe_free(c);
}

void
pt_stream_conn_fail(pt_stream_conn_t *c, int status, const char *fmt, ...)
{
    char reason[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    conn_down(c, status, reason);
}

void
pt_stream_conn_discard(pt_stream_conn_t *c)
{
    c->down_state = DOWN_DONE;
    pt_actor_unwatch(&c->owner_watch);
    c->closed = 1;
    if (c->gai_pending) {
        uv_cancel((uv_req_t *)&c->gai);
    }
    close_handles(c);
    release_read_buffers(c);
}

void
pt_stream_conn_gai_done(pt_stream_conn_t *c)
{
    c->gai_pending = 0;
    maybe_free(c);
}

static void
on_owner_stopped(pt_actor_watch_t *w, int stopped)
{
    pt_stream_conn_t *c = CONTAINER_OF(w, pt_stream_conn_t, owner_watch);

    (void)stopped;
    if (c->base.owner != c->watched && c->down_state == DOWN_NONE) {
        /* Handed to another actor: watch that one instead. */
        c->watched = c->base.owner;
        if (pt_actor_watch_stop(c->watched, &c->owner_watch, on_owner_stopped) == 0) {
            return;
        }
    }
    if (!c->closed) {
        pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: actor stopped", c->base.peer);
    }
    if (c->down_state == DOWN_REFUSED) {
        c->down_state = DOWN_DONE;
    }
    maybe_free(c);
}

int
pt_stream_conn_new(pt_runtime_t *rt, const pt_tran_ops_t *ops, pt_actor_t *owner, int is_pipe,
                   const pt_stream_opts_t *opts, pt_stream_conn_t **out)
{
    uv_loop_t *loop = pt_runtime_loop(rt);
    pt_stream_conn_t *c = calloc(1, sizeof(*c));
    int r;

    if (c == NULL) {
        return PETAL_ENOMEM;
    }
    c->base.ops = ops;
    c->base.owner = owner;
    snprintf(c->base.peer, sizeof(c->base.peer), "?");
    c->rt = rt;
    c->is_pipe = is_pipe;
    if (opts != NULL) {
        c->opts = *opts;
    } else {
        pt_stream_get_opts(&c->opts);
    }
    conn_codec_limits(&c->limits, c->opts.max_message);
    r = is_pipe ? uv_pipe_init(loop, &c->h.pipe, 0) : uv_tcp_init(loop, &c->h.tcp);
    if (r != 0) {
        free(c);
        return r;
    }
    c->h.handle.data = c;
    uv_timer_init(loop, &c->idle);
    c->idle.data = c;
    c->handles = 2;
    c->watched = owner;
    r = pt_actor_watch_stop(owner, &c->owner_watch, on_owner_stopped);
    if (r != 0) {
        pt_stream_conn_discard(c);
        return r;
    }
    *out = c;
    return 0;
}

int
pt_stream_conn_stats(pt_conn_t *pc, pt_stream_stats_t *out)
{
    pt_stream_conn_t *c = (pt_stream_conn_t *)pc;

    if (c == NULL || out == NULL || c->base.ops == NULL || c->base.ops->send != pt_stream_send) {
        return PETAL_EINVAL;
    }
    *out = c->stats;
    return 0;
}

/* ---- Events to the owner -------------------------------------------------------------------- */

static void
notify_writable(pt_stream_conn_t *c)
{
    c->want_writable = 0;
    if (c->writable_busy || c->closed) {
        return; /* one already queued serves */
    }
    memset(&c->ev_writable, 0, sizeof(c->ev_writable));
    c->ev_writable.hdr.type = PT_MSG_CONN_WRITABLE;
    c->ev_writable.hdr.free = on_writable_freed;
    c->ev_writable.conn = (pt_conn_t *)c;
    c->writable_busy = 1;
    if (pt_actor_send(c->base.owner, &c->ev_writable.hdr) != 0) {
        c->writable_busy = 0;
    }
}

/* ---- Reading -------------------------------------------------------------------------------- */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void process(pt_stream_conn_t *c);

static int
mid_frame(const pt_stream_conn_t *c)
{
    return c->in_payload || c->asm_buf != NULL ||
           (c->stage != NULL && c->stage_end > c->stage_start) ||
           (c->sec != NULL && pt_secure_stream_mid_record(c));
}

static void
on_idle_timer(uv_timer_t *t)
{
    pt_stream_conn_t *c = t->data;
    uint64_t now = uv_now(t->loop);
    uint64_t elapsed = now - c->last_rx;

    c->timer_on = 0;
    if (c->closed || c->paused || !mid_frame(c)) {
        return;
    }
    if (elapsed >= c->opts.idle_timeout_ms) {
        pt_stream_conn_fail(c, PETAL_ETIMEDOUT,
                            "%s: peer stalled in the middle of a frame for %llu ms (idle timeout "
                            "%llu ms)",
                            c->base.peer, (unsigned long long)elapsed,
                            (unsigned long long)c->opts.idle_timeout_ms);
        return;
    }
    uv_timer_start(&c->idle, on_idle_timer, c->opts.idle_timeout_ms - elapsed, 0);
    c->timer_on = 1;
}

static void
update_idle(pt_stream_conn_t *c)
{
    if (c->closed || c->rx_resume) {
        return;
    }
    if (!mid_frame(c) || c->paused || c->opts.idle_timeout_ms == PT_STREAM_NO_TIMEOUT) {
        if (c->timer_on) {
            uv_timer_stop(&c->idle);
            c->timer_on = 0;
        }
        return;
    }
    if (!c->timer_on) {
        uv_timer_start(&c->idle, on_idle_timer, c->opts.idle_timeout_ms, 0);
        c->timer_on = 1;
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    pt_stream_conn_t *c = h->data;

    (void)suggested;
    if (c->in_payload && c->dst_end - c->dst_pos >= DIRECT_MIN) {
        /* Straight into the message's buffer, never past this frame's bytes. */
        buf->base = (char *)pt_buf_data(c->dst) + c->dst_pos;
        buf->len = c->dst_end - c->dst_pos;
        return;
    }
    if (c->stage == NULL) {
        c->stage = malloc(STAGE_CAP);
        c->stage_start = 0;
        c->stage_end = 0;
        if (c->stage == NULL) {
            buf->base = NULL;
            buf->len = 0; /* on_read gets UV_ENOBUFS */
            return;
        }
    }
    if (c->stage_start > 0) {
        memmove(c->stage, c->stage + c->stage_start, c->stage_end - c->stage_start);
        c->stage_end -= c->stage_start;
        c->stage_start = 0;
    }
    buf->base = (char *)c->stage + c->stage_end;
    buf->len = STAGE_CAP - c->stage_end;
}

static int
start_reading(pt_stream_conn_t *c)
{
    int r = c->sec != NULL ? uv_read_start(&c->h.stream, pt_secure_on_alloc, pt_secure_on_read)
                           : uv_read_start(&c->h.stream, on_alloc, on_read);

    if (r != 0 && r != UV_EALREADY) {
        pt_stream_conn_fail(c, r, "%s: cannot read: %s", c->base.peer, uv_strerror(r));
        return r;
    }
    return 0;
}

static void
on_owner_drained(pt_actor_watch_t *w, int stopped)
{
    pt_stream_conn_t *c = CONTAINER_OF(w, pt_stream_conn_t, drain_watch);

    if (c->closed || stopped) {
        return; /* the owner watch takes it down */
    }
    c->paused = 0;
    c->last_rx = uv_now(c->h.handle.loop);
    process(c);
    if (c->sec != NULL && !c->closed && !c->paused) {
        pt_secure_stream_resume(c); /* records read before the pause */
    }
    if (!c->closed && !c->paused) {
        start_reading(c);
    }
}

static void
on_rx_resume(uv_timer_t *t)
{
    pt_stream_conn_t *c = t->data;

    c->timer_on = 0;
    c->rx_resume = 0;
    if (c->closed) {
        return;
    }
    c->paused = 0;
    c->last_rx = uv_now(t->loop);
    process(c);
    if (c->sec != NULL && !c->closed && !c->paused) {
        pt_secure_stream_resume(c); /* records read before the wait */
    }
    if (!c->closed && !c->paused) {
        start_reading(c);
    }
}

/* After a delivery: stop reading while the owner's mailbox is over its high-water mark. */
static void
maybe_pause(pt_stream_conn_t *c)
{
    pt_actor_t *owner = c->base.owner;

    if (!pt_actor_over_hwm(owner)) {
        return;
    }
    if (pt_actor_watch_drain(owner, &c->drain_watch, on_owner_drained) == 0) {
        c->paused = 1;
        c->stats.pauses++;
        uv_read_stop(&c->h.stream);
    }
}

static void
deliver(pt_stream_conn_t *c, const pt_stream_hdr_t *h, petal_message_t *msg)
{
    pt_frame_t *f = pt_frame_alloc((uint16_t)h->kind, msg);

    if (f == NULL) {
        if (msg != NULL) {
            petal_message_free(msg);
        }
        pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory for a received frame",
                            c->base.peer);
        return;
    }
    f->version = (uint16_t)h->version;
    f->flags = (uint32_t)h->flags & ~PT_FRAME_FLAG_CHUNK;
    f->seq = h->seq;
    f->ack = h->ack;
    f->conn = (pt_conn_t *)c;
    c->stats.frames_in++;
    if (pt_actor_send(c->base.owner, &f->hdr) != 0) {
        pt_msg_free(&f->hdr); /* the owner is stopping; its watch takes the connection down */
        return;
    }
    maybe_pause(c);
}

static void
fail_proto(pt_stream_conn_t *c, const char *what, const char *detail)
{
    pt_stream_conn_fail(c, PETAL_EPROTO, "%s: %s: %s", c->base.peer, what, detail);
}

/* ---- Frame headers: a few msgpack integers, parsed by hand ---------------------------------- */

enum { PARSE_OK = 0, PARSE_MORE = 1, PARSE_BAD = 2 };

static uint64_t
be_read(const uint8_t *p, size_t w)
{
    uint64_t v = 0;

    for (size_t i = 0; i < w; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

static void
be_write(uint8_t *p, uint64_t v, size_t w)
{
    for (size_t i = 0; i < w; i++) {
        p[w - 1 - i] = (uint8_t)(v >> (8 * i));
    }
}

static int
rd_uint(const uint8_t *p, size_t n, size_t *pos, uint64_t *v, const char *what, char *err,
        size_t cap)
{
    uint8_t b;
    size_t w;

    if (*pos >= n) {
        return PARSE_MORE;
    }
    b = p[*pos];
    if (b <= 0x7f) {
        *v = b;
        *pos += 1;
        return PARSE_OK;
    }
    switch (b) {
    case 0xcc:
        w = 1;
        break;
    case 0xcd:
        w = 2;
        break;
    case 0xce:
        w = 4;
        break;
    case 0xcf:
        w = 8;
        break;
    default:
        snprintf(err, cap, "%s is not an unsigned integer (byte 0x%02x at offset %zu)", what, b,
                 *pos);
        return PARSE_BAD;
    }
    if (*pos + 1 + w > n) {
        return PARSE_MORE;
    }
    *v = be_read(p + *pos + 1, w);
    *pos += 1 + w;
    return PARSE_OK;
}

/* Parses a header from p[0, n); *used = its length. */
static int
parse_header(const uint8_t *p, size_t n, pt_stream_hdr_t *h, size_t *used, char *err, size_t cap)
{
    size_t pos = 0;
    uint64_t count;
    uint64_t *fields[] = {&h->version, &h->kind, &h->flags, &h->seq, &h->ack};
    static const char *const names[] = {"version", "kind", "flags", "seq", "ack"};
    int r;

    memset(h, 0, sizeof(*h));
    if (n == 0) {
        return PARSE_MORE;
    }
    if ((p[0] & 0xf0) == 0x90) {
        count = p[0] & 0x0f;
        pos = 1;
    } else if (p[0] == 0xdc || p[0] == 0xdd) {
        size_t w = p[0] == 0xdc ? 2 : 4;

        if (n < 1 + w) {
            return PARSE_MORE;
        }
        count = be_read(p + 1, w);
        pos = 1 + w;
    } else {
        snprintf(err, cap, "expected a msgpack array, got byte 0x%02x", p[0]);
        return PARSE_BAD;
    }
    if (count != 6 && count != 8) {
        snprintf(err, cap, "expected 6 or 8 header fields, got %llu", (unsigned long long)count);
        return PARSE_BAD;
    }
    for (size_t i = 0; i < 5; i++) {
        r = rd_uint(p, n, &pos, fields[i], names[i], err, cap);
        if (r != PARSE_OK) {
            return r;
        }
    }
    if (pos >= n) {
        return PARSE_MORE;
    }
    if (p[pos] != 0xc2 && p[pos] != 0xc3) {
        snprintf(err, cap, "has_msg is not a bool (byte 0x%02x at offset %zu)", p[pos], pos);
        return PARSE_BAD;
    }
    h->has_msg = p[pos] == 0xc3;
    pos++;
    if (count == 8) {
        r = rd_uint(p, n, &pos, &h->total, "total", err, cap);
        if (r == PARSE_OK) {
            r = rd_uint(p, n, &pos, &h->offset, "offset", err, cap);
        }
        if (r != PARSE_OK) {
            return r;
        }
    }
    if (h->kind > UINT16_MAX || h->flags > UINT32_MAX) {
        snprintf(err, cap, "%s %llu is out of range", h->kind > UINT16_MAX ? "kind" : "flags",
                 (unsigned long long)(h->kind > UINT16_MAX ? h->kind : h->flags));
        return PARSE_BAD;
    }
    if ((count == 8) != ((h->flags & PT_FRAME_FLAG_CHUNK) != 0)) {
        snprintf(err, cap, "%llu fields but the chunk flag is %s", (unsigned long long)count,
                 (h->flags & PT_FRAME_FLAG_CHUNK) != 0 ? "set" : "clear");
        return PARSE_BAD;
    }
    if (count == 8 && !h->has_msg) {
        snprintf(err, cap, "a chunk without a message");
        return PARSE_BAD;
    }
    *used = pos;
    return PARSE_OK;
}

static size_t
put_uint(uint8_t *p, uint64_t v)
{
    if (v <= 0x7f) {
        p[0] = (uint8_t)v;
        return 1;
    }
    if (v <= UINT8_MAX) {
        p[0] = 0xcc;
        p[1] = (uint8_t)v;
        return 2;
    }
    if (v <= UINT16_MAX) {
        p[0] = 0xcd;
        be_write(p + 1, v, 2);
        return 3;
    }
    if (v <= UINT32_MAX) {
        p[0] = 0xce;
        be_write(p + 1, v, 4);
        return 5;
    }
    p[0] = 0xcf;
    be_write(p + 1, v, 8);
    return 9;
}

/*
 * Writes a frame head into out[0, HEAD_ROOM): length, header and, when a message follows, the
 * zero pad up to HEAD_ROOM (the header is at most 49 bytes). Returns the head's length.
 */
static size_t
put_head(uint8_t *out, const pt_frame_t *f, int chunk, uint64_t total, uint64_t offset,
         uint64_t payload)
{
    uint8_t *p = out + 4;
    size_t n = 0;
    uint32_t flags = f->flags & ~PT_FRAME_FLAG_CHUNK;

    p[n++] = chunk ? 0x98 : 0x96;
    n += put_uint(p + n, f->version);
    n += put_uint(p + n, f->kind);
    n += put_uint(p + n, chunk ? flags | PT_FRAME_FLAG_CHUNK : flags);
    n += put_uint(p + n, f->seq);
    n += put_uint(p + n, f->ack);
    p[n++] = payload > 0 ? 0xc3 : 0xc2;
    if (chunk) {
        n += put_uint(p + n, total);
        n += put_uint(p + n, offset);
    }
    if (payload == 0) {
        be_write(out, n, 4);
        return 4 + n;
    }
    memset(p + n, 0, HEAD_ROOM - 4 - n);
    be_write(out, HEAD_ROOM - 4 + payload, 4);
    return HEAD_ROOM;
}

/* ---- Reading frames ------------------------------------------------------------------------- */

static int
printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

/* The message bytes of a frame are in: decode (or wait for the next chunk). */
static void
payload_done(pt_stream_conn_t *c)
{
    pt_buf_t *buf;
    size_t len;
    petal_message_t *msg = NULL;
    uint64_t copied = 0;
    char err[256];
    int r;

    c->in_payload = 0;
    if (!c->dst_owned) {
        c->stats.chunks_in++;
        c->asm_next = c->dst_end;
        c->dst = NULL;
        if (c->asm_next < c->asm_total) {
            return;
        }
        buf = c->asm_buf;
        len = (size_t)c->asm_total;
        c->asm_buf = NULL;
    } else {
        buf = c->dst;
        len = c->dst_end;
        c->dst = NULL;
        c->dst_owned = 0;
    }
    rx_release(c); /* the whole message is in */
    err[0] = '\0';
    r = pt_codec_decode(buf, 0, len, &c->limits, &msg, &copied, err, sizeof(err));
    pt_buf_release(buf); /* the message's arrays hold their own references */
    if (r != 0) {
        if (r == PETAL_ENOMEM) {
            pt_stream_conn_fail(c, r, "%s: out of memory decoding a message of %zu bytes",
                                c->base.peer, len);
        } else {
            pt_stream_conn_fail(c, r == PETAL_EMSGSIZE ? PETAL_EMSGSIZE : PETAL_EPROTO,
                                "%s: malformed message: %s", c->base.peer, err);
        }
        return;
    }
    c->stats.copied_in += copied;
    deliver(c, &c->cur, msg);
}

/* Parses the head at the start of the staged bytes. 1: consumed (a frame without a message was
 * delivered, or the payload phase started), 0: needs more bytes, -1: the connection failed. */
static int
parse_head(pt_stream_conn_t *c)
{
    const uint8_t *p = c->stage + c->stage_start;
    size_t avail = c->stage_end - c->stage_start;
    pt_stream_hdr_t h;
    size_t hav, hlen = 0, moff;
    uint64_t L, plen, most;
    char err[200];
    int r;

    if (avail < 4) {
        return 0;
    }
    if (!c->first_done && c->sec == NULL && memcmp(p, PT_SECURE_MAGIC, 4) == 0) {
        if (avail < PT_SECURE_MAGIC_LEN) {
            return 0;
        }
        if (memcmp(p, PT_SECURE_MAGIC, PT_SECURE_MAGIC_LEN) == 0) {
            pt_stream_conn_fail(c, PETAL_EPROTO,
                                "%s: the peer uses the secure channel but this side is plain "
                                "(--insecure): both sides must use the same mode",
                                c->base.peer);
            return -1;
        }
    }
    L = be_read(p, 4);
    if (L > c->opts.max_frame) {
        if (!c->first_done && printable(p, 4)) {
            pt_stream_conn_fail(c, PETAL_EPROTO,
                                "%s: not a Petal stream (it starts with \"%c%c%c%c\")",
                                c->base.peer, p[0], p[1], p[2], p[3]);
        } else {
            pt_stream_conn_fail(
                c, PETAL_EMSGSIZE, "%s: frame of %llu bytes exceeds the limit of %llu bytes",
                c->base.peer, (unsigned long long)L, (unsigned long long)c->opts.max_frame);
        }
        return -1;
    }
    if (L == 0) {
        fail_proto(c, "malformed frame header", "empty frame");
        return -1;
    }
    most = L < HEAD_MAX ? L : HEAD_MAX;
    hav = avail - 4 < most ? avail - 4 : (size_t)most;
    err[0] = '\0';
    r = parse_header(p + 4, hav, &h, &hlen, err, sizeof(err));
    if (r == PARSE_MORE) {
        if (hav < most) {
            return 0;
        }
        snprintf(err, sizeof(err), "truncated: the header does not fit in %llu bytes",
                 (unsigned long long)most);
        r = PARSE_BAD;
    }
    if (r == PARSE_BAD) {
        fail_proto(c, "malformed frame header", err);
        return -1;
    }
    c->first_done = 1;
    if (h.version != PT_PROTOCOL_VERSION) {
        pt_stream_conn_fail(c, PETAL_EPROTO,
                            "%s: unsupported frame version %llu (this build speaks %d)",
                            c->base.peer, (unsigned long long)h.version, PT_PROTOCOL_VERSION);
        return -1;
    }
    if (!h.has_msg) {
        if (hlen != L) {
            snprintf(err, sizeof(err), "%llu bytes after a header without a message",
                     (unsigned long long)(L - hlen));
            fail_proto(c, "malformed frame", err);
            return -1;
        }
        if (c->asm_buf != NULL) {
            fail_proto(c, "malformed frame", "a frame came between the chunks of a message");
            return -1;
        }
        c->stage_start += 4 + (size_t)L;
        deliver(c, &h, NULL);
        return c->closed ? -1 : 1;
    }
    moff = (4 + hlen + MSG_ALIGN - 1) / MSG_ALIGN * MSG_ALIGN;
    if ((uint64_t)moff >= 4 + L) {
        snprintf(err, sizeof(err),
                 "a frame of %llu bytes has no room for a message after its "
                 "%zu-byte header",
                 (unsigned long long)L, hlen);
        fail_proto(c, "malformed frame", err);
        return -1;
    }
    if (avail < moff) {
        return 0;
    }
    for (size_t i = 4 + hlen; i < moff; i++) {
        if (p[i] != 0) {
            fail_proto(c, "malformed frame", "non-zero padding before the message");
            return -1;
        }
    }
    plen = 4 + L - moff;
    if (h.flags & PT_FRAME_FLAG_CHUNK) {
        if (h.total > c->opts.max_message) {
            pt_stream_conn_fail(c, PETAL_EMSGSIZE,
                                "%s: chunked message of %llu bytes exceeds the limit of %llu "
                                "bytes",
                                c->base.peer, (unsigned long long)h.total,
                                (unsigned long long)c->opts.max_message);
            return -1;
        }
        if (c->asm_buf == NULL) {
            if (h.offset != 0) {
                snprintf(err, sizeof(err), "the first chunk is at offset %llu",
                         (unsigned long long)h.offset);
                fail_proto(c, "malformed frame", err);
                return -1;
            }
            if (plen >= h.total) {
                snprintf(err, sizeof(err), "a chunk of %llu bytes for a message of %llu",
                         (unsigned long long)plen, (unsigned long long)h.total);
                fail_proto(c, "malformed frame", err);
                return -1;
            }
            if (!rx_acquire(c, h.total)) {
                return 0;
            }
            c->asm_buf = pt_buf_alloc((size_t)h.total, 0);
            if (c->asm_buf == NULL) {
                pt_stream_conn_fail(c, PETAL_ENOMEM,
                                    "%s: out of memory for a message of %llu bytes", c->base.peer,
                                    (unsigned long long)h.total);
                return -1;
            }
            c->asm_total = h.total;
            c->asm_next = 0;
            c->asm_kind = h.kind;
            c->asm_seq = h.seq;
        } else if (h.total != c->asm_total || h.offset != c->asm_next || h.kind != c->asm_kind ||
                   h.seq != c->asm_seq) {
            snprintf(err, sizeof(err),
                     "chunk at offset %llu of %llu (kind %llu, seq %llu); expected offset %llu "
                     "of %llu",
                     (unsigned long long)h.offset, (unsigned long long)h.total,
                     (unsigned long long)h.kind, (unsigned long long)h.seq,
                     (unsigned long long)c->asm_next, (unsigned long long)c->asm_total);
            fail_proto(c, "malformed frame", err);
            return -1;
        }
        if (plen > c->asm_total - h.offset) {
            snprintf(err, sizeof(err), "a chunk of %llu bytes at offset %llu overruns %llu",
                     (unsigned long long)plen, (unsigned long long)h.offset,
                     (unsigned long long)c->asm_total);
            fail_proto(c, "malformed frame", err);
            return -1;
        }
        c->dst = c->asm_buf;
        c->dst_owned = 0;
        c->dst_pos = (size_t)h.offset;
        c->dst_end = (size_t)(h.offset + plen);
    } else {
        if (c->asm_buf != NULL) {
            fail_proto(c, "malformed frame", "a frame came between the chunks of a message");
            return -1;
        }
        if (plen > c->opts.max_message) {
            pt_stream_conn_fail(
                c, PETAL_EMSGSIZE, "%s: message of %llu bytes exceeds the limit of %llu bytes",
                c->base.peer, (unsigned long long)plen, (unsigned long long)c->opts.max_message);
            return -1;
        }
        if (!rx_acquire(c, plen)) {
            return 0;
        }
        c->dst = pt_buf_alloc((size_t)plen, 0);
        if (c->dst == NULL) {
            pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory for a frame of %llu bytes",
                                c->base.peer, (unsigned long long)plen);
            return -1;
        }
        c->dst_owned = 1;
        c->dst_pos = 0;
        c->dst_end = (size_t)plen;
    }
    c->cur = h;
    c->in_payload = 1;
    c->stage_start += moff;
    return 1;
}

/* Consumes staged bytes until they run out, the owner's mailbox is full or the conn failed. */
static void
process(pt_stream_conn_t *c)
{
    while (!c->closed && !c->paused && c->stage != NULL) {
        size_t avail = c->stage_end - c->stage_start;

        if (c->in_payload) {
            size_t want = c->dst_end - c->dst_pos;
            size_t n = avail < want ? avail : want;

            if (n > 0) {
                memcpy((uint8_t *)pt_buf_data(c->dst) + c->dst_pos, c->stage + c->stage_start, n);
                c->dst_pos += n;
                c->stage_start += n;
            }
            if (c->dst_pos < c->dst_end) {
                break;
            }
            payload_done(c);
            continue;
        }
        if (avail == 0 || parse_head(c) <= 0) {
            break;
        }
    }
    if (c->stage != NULL && c->stage_start == c->stage_end) {
        free(c->stage); /* an idle connection keeps no buffer */
        c->stage = NULL;
        c->stage_start = 0;
        c->stage_end = 0;
    }
    update_idle(c);
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    pt_stream_conn_t *c = s->data;
    int staged;

    if (c->closed) {
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            if (mid_frame(c)) {
                pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed by peer in the middle of a frame",
                                    c->base.peer);
            } else {
                pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed by peer", c->base.peer);
            }
        } else if (nread == UV_ENOBUFS) {
            pt_stream_conn_fail(c, PETAL_ENOMEM, "%s: out of memory for a read buffer",
                                c->base.peer);
        } else {
            pt_stream_conn_fail(c, (int)nread, "%s: read: %s", c->base.peer,
                                uv_strerror((int)nread));
        }
        return;
    }
    if (nread == 0) {
        return;
    }
    c->stats.bytes_in += (uint64_t)nread;
    c->last_rx = uv_now(s->loop);
    staged = c->stage != NULL && (uint8_t *)buf->base >= c->stage &&
             (uint8_t *)buf->base < c->stage + STAGE_CAP;
    if (staged) {
        c->stage_end += (size_t)nread;
    } else {
        c->dst_pos += (size_t)nread;
        if (c->dst_pos == c->dst_end) {
            payload_done(c);
        }
    }
    process(c);
}

/* ---- Plaintext from a record layer (secure.c) ------------------------------------------------ */

uint8_t *
pt_stream_rx_reserve(pt_stream_conn_t *c, size_t n)
{
    size_t live, need;
    uint8_t *p;

    if (c->in_payload && (c->stage == NULL || c->stage_end == c->stage_start) &&
        n <= c->dst_end - c->dst_pos) {
        return (uint8_t *)pt_buf_data(c->dst) + c->dst_pos;
    }
    if (c->stage == NULL) {
        c->stage_start = 0;
        c->stage_end = 0;
        c->stage_cap = 0;
    } else if (c->stage_start > 0) {
        memmove(c->stage, c->stage + c->stage_start, c->stage_end - c->stage_start);
        c->stage_end -= c->stage_start;
        c->stage_start = 0;
    }
    live = c->stage_end;
    need = live + n;
    if (c->stage == NULL || need > c->stage_cap) {
        size_t cap = need > STAGE_CAP ? need : STAGE_CAP;

        p = realloc(c->stage, cap);
        if (p == NULL) {
            return NULL;
        }
        c->stage = p;
        c->stage_cap = cap;
    }
    return c->stage + c->stage_end;
}

void
pt_stream_rx_commit(pt_stream_conn_t *c, const uint8_t *p, size_t n)
{
    if (c->closed) {
        return;
    }
    if (n > 0) {
        if (c->stage != NULL && p == c->stage + c->stage_end) {
            c->stage_end += n;
        } else {
            c->dst_pos += n;
            if (c->dst_pos == c->dst_end) {
                payload_done(c);
            }
        }
    }
    process(c);
}

/* ---- Established -------------------------------------------------------------------------- */

void
pt_stream_conn_established(pt_stream_conn_t *c, pt_stream_listener_t *l)
{
    if (c->closed) {
        return;
    }
    if (!c->is_pipe) {
        uv_tcp_nodelay(&c->h.tcp, 1);
    }
    if (c->sec != NULL || (l != NULL && l->sec != NULL)) {
        pt_secure_stream_start(c, l); /* UP once the handshake is done */
        return;
    }
    pt_stream_conn_up(c, l);
}

void
pt_stream_conn_up(pt_stream_conn_t *c, pt_stream_listener_t *l)
{
    if (c->closed) {
        return;
    }
    memset(&c->ev_up, 0, sizeof(c->ev_up));
    c->ev_up.hdr.type = PT_MSG_CONN_UP;
    c->ev_up.hdr.free = on_up_freed;
    c->ev_up.conn = (pt_conn_t *)c;
    c->ev_up.listener = (pt_listener_t *)l;
    c->up_busy = 1;
    if (pt_actor_send(c->base.owner, &c->ev_up.hdr) != 0) {
        c->up_busy = 0;
        pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: actor stopped", c->base.peer);
        return;
    }
    c->up = 1;
    c->last_rx = uv_now(c->h.handle.loop);
    if (start_reading(c) != 0) {
        return;
    }
    if (c->want_writable) {
        notify_writable(c);
    }
}

/* ---- Writing -------------------------------------------------------------------------------- */

typedef struct wreq {
    uv_write_t req;
    pt_stream_conn_t *c;
    pt_encoded_t enc;
    int has_enc;
    uint64_t bytes;
    uint64_t frames;
    uint64_t chunks;
    uint8_t heads[]; /* HEAD_ROOM per frame */
} wreq_t;

static void
wreq_free(void *p)
{
    wreq_t *w = p;

    if (w->has_enc) {
        pt_encoded_fini(&w->enc);
    }
    free(w);
}

static void
on_write(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    pt_stream_conn_t *c = w->c;
    uint64_t bytes = w->bytes, frames = w->frames, chunks = w->chunks;

    wreq_free(w);
    pt_stream_write_done(c, status, bytes, bytes, frames, chunks);
}

void
pt_stream_write_done(pt_stream_conn_t *c, int status, uint64_t queued, uint64_t wire,
                     uint64_t frames, uint64_t chunks)
{
    c->queued -= queued;
    if (status == 0) {
        c->stats.frames_out += frames;
        c->stats.chunks_out += chunks;
        c->stats.bytes_out += wire;
    }
    if (c->closed) {
        return;
    }
    if (status < 0) {
        pt_stream_conn_fail(c, status, "%s: write: %s", c->base.peer, uv_strerror(status));
        return;
    }
    if (c->want_writable && c->queued <= c->opts.write_hwm / 2) {
        notify_writable(c);
    }
}

/* Appends iovec pieces covering enc bytes [from, from + len) to bufs. */
static size_t
add_span(const pt_encoded_t *e, size_t *iv, size_t *ioff, uint64_t len, uv_buf_t *bufs, size_t nb)
{
    while (len > 0) {
        const pt_iov_t *v = &e->iov[*iv];
        size_t left = v->len - *ioff;
        size_t take = left < len ? left : (size_t)len;

        if (take > 0) {
            bufs[nb].base = (char *)v->base + *ioff;
            bufs[nb].len = take;
            nb++;
        }
        *ioff += take;
        len -= take;
        if (*ioff == v->len) {
            (*iv)++;
            *ioff = 0;
        }
    }
    return nb;
}

/* The secure channel seals the frames' bytes (secure.c) instead of writing them. */
static int
send_secure(pt_stream_conn_t *c, pt_frame_t *f, wreq_t *w, uv_buf_t *bufs, size_t nbufs,
            uint64_t nframes, uint64_t cp, uint64_t total)
{
    pt_stream_wframe_t *fr = malloc((size_t)nframes * sizeof(*fr));
    uint64_t bytes = w->bytes;
    int r;

    if (fr == NULL) {
        free(bufs);
        wreq_free(w);
        return PETAL_ENOMEM;
    }
    if (f->msg == NULL) {
        fr[0].head = bufs[0].len;
        fr[0].payload = 0;
    } else if (nframes == 1) {
        fr[0].head = HEAD_ROOM;
        fr[0].payload = total;
    } else {
        for (uint64_t k = 0; k < nframes; k++) {
            fr[k].head = HEAD_ROOM;
            fr[k].payload = total - k * cp < cp ? total - k * cp : cp;
        }
    }
    c->queued += bytes;
    r = pt_secure_stream_send(c, bufs, nbufs, fr, (size_t)nframes, w->chunks, w, wreq_free);
    if (r != 0) {
        c->queued -= bytes;
        return r;
    }
    pt_msg_free(&f->hdr);
    return 0;
}

int
pt_stream_send(pt_conn_t *pc, pt_frame_t *f)
{
    pt_stream_conn_t *c = (pt_stream_conn_t *)pc;
    pt_encoded_t enc;
    uint64_t total = 0, cp = 0, nframes = 1;
    size_t nbufs = 0, maxbufs, iv = 0, ioff = 0;
    uv_buf_t *bufs = NULL;
    wreq_t *w;
    int chunked = 0, r;

    if (c->closed) {
        return PETAL_ECLOSED;
    }
    if (!c->up || c->queued > c->opts.write_hwm) {
        c->want_writable = 1;
        return PETAL_EAGAIN;
    }
    memset(&enc, 0, sizeof(enc));
    if (f->msg != NULL) {
        r = pt_codec_encode(f->msg, &enc);
        if (r != 0) {
            PT_WARN("%s: cannot encode a frame of kind %u: %s", c->base.peer, f->kind,
                    petal_strerror(r));
            return r;
        }
        total = enc.total;
        if (total > c->opts.max_message) {
            PT_WARN("%s: message of %llu bytes exceeds the limit of %llu bytes", c->base.peer,
                    (unsigned long long)total, (unsigned long long)c->opts.max_message);
            pt_encoded_fini(&enc);
            return PETAL_EMSGSIZE;
        }
        if (HEAD_ROOM - 4 + total > c->opts.max_frame) {
            chunked = 1;
            cp = (c->opts.max_frame - (HEAD_ROOM - 4)) / MSG_ALIGN * MSG_ALIGN;
            nframes = (total + cp - 1) / cp;
        }
    }
    maxbufs = (size_t)nframes * 2 + enc.niov;
    w = calloc(1, sizeof(*w) + (size_t)nframes * HEAD_ROOM);
    bufs = malloc(maxbufs * sizeof(*bufs));
    if (w == NULL || bufs == NULL) {
        free(w);
        free(bufs);
        if (f->msg != NULL) {
            pt_encoded_fini(&enc);
        }
        return PETAL_ENOMEM;
    }
    w->c = c;
    if (f->msg == NULL) {
        bufs[0].base = (char *)w->heads;
        bufs[0].len = put_head(w->heads, f, 0, 0, 0, 0);
        nbufs = 1;
        w->bytes = bufs[0].len;
    } else if (!chunked) {
        bufs[0].base = (char *)w->heads;
        bufs[0].len = put_head(w->heads, f, 0, 0, 0, total);
        nbufs = add_span(&enc, &iv, &ioff, total, bufs, 1);
        w->bytes = HEAD_ROOM + total;
    } else {
        for (uint64_t k = 0; k < nframes; k++) {
            uint64_t off = k * cp;
            uint64_t len = total - off < cp ? total - off : cp;
            uint8_t *head = w->heads + k * HEAD_ROOM;

            bufs[nbufs].base = (char *)head;
            bufs[nbufs].len = put_head(head, f, 1, total, off, len);
            nbufs = add_span(&enc, &iv, &ioff, len, bufs, nbufs + 1);
            w->bytes += HEAD_ROOM + len;
        }
        w->chunks = nframes;
    }
    w->frames = 1;
    if (c->sec != NULL) {
        if (f->msg != NULL) {
            w->enc = enc;
            w->has_enc = 1;
        }
        return send_secure(c, f, w, bufs, nbufs, nframes, cp, total);
    }
    r = uv_write(&w->req, &c->h.stream, bufs, (unsigned int)nbufs, on_write);
    free(bufs); /* libuv keeps its own copy of the uv_buf_t array */
    if (r != 0) {
        free(w);
        if (f->msg != NULL) {
            pt_encoded_fini(&enc);
        }
        pt_stream_conn_fail(c, r, "%s: write: %s", c->base.peer, uv_strerror(r));
        return PETAL_ECLOSED;
    }
    if (f->msg != NULL) {
        w->enc = enc; /* the encoding holds the array buffers until written */
        w->has_enc = 1;
    }
    c->queued += w->bytes;
    pt_msg_free(&f->hdr);
    return 0;
}

void
pt_stream_close(pt_conn_t *pc)
{
    pt_stream_conn_t *c = (pt_stream_conn_t *)pc;

    if (c != NULL && !c->closed) {
        pt_stream_conn_fail(c, PETAL_ECLOSED, "%s: closed", c->base.peer);
    }
}

/* ---- Listeners ------------------------------------------------------------------------------ */

static void
on_listener_closed(uv_handle_t *h)
{
    pt_stream_listener_t *l = h->data;

    if (l->sec != NULL) {
        pt_secure_listener_free(l);
    }
    free(l);
}

void
pt_stream_listener_close(pt_listener_t *pl)
{
    pt_stream_listener_t *l = (pt_stream_listener_t *)pl;

    if (l == NULL || l->closing) {
        return;
    }
    l->closing = 1;
    pt_actor_unwatch(&l->owner_watch);
    if (l->on_close != NULL) {
        l->on_close(l);
    }
    uv_close(&l->h.handle, on_listener_closed);
}

static void
on_listener_owner_stopped(pt_actor_watch_t *w, int stopped)
{
    (void)stopped;
    pt_stream_listener_close((pt_listener_t *)CONTAINER_OF(w, pt_stream_listener_t, owner_watch));
}

int
pt_stream_listener_new(pt_runtime_t *rt, const pt_tran_ops_t *ops, pt_actor_t *owner, int is_pipe,
                       pt_stream_listener_t **out)
{
    uv_loop_t *loop = pt_runtime_loop(rt);
    pt_stream_listener_t *l = calloc(1, sizeof(*l));
    int r;

    if (l == NULL) {
        return PETAL_ENOMEM;
    }
    l->base.ops = ops;
    l->base.owner = owner;
    l->rt = rt;
    l->is_pipe = is_pipe;
    pt_stream_get_opts(&l->opts);
    r = is_pipe ? uv_pipe_init(loop, &l->h.pipe, 0) : uv_tcp_init(loop, &l->h.tcp);
    if (r != 0) {
        free(l);
        return r;
    }
    l->h.handle.data = l;
    r = pt_actor_watch_stop(owner, &l->owner_watch, on_listener_owner_stopped);
    if (r != 0) {
        pt_stream_listener_close((pt_listener_t *)l);
        return r;
    }
    *out = l;
    return 0;
}

static void
on_connection(uv_stream_t *server, int status)
{
    pt_stream_listener_t *l = server->data;
    pt_stream_conn_t *c;
    int r;

    if (status < 0) {
        PT_WARN("%s: accept: %s", l->addr, uv_strerror(status));
        return;
    }
    r = pt_stream_conn_new(l->rt, l->base.ops, l->base.owner, l->is_pipe, &l->opts, &c);
    if (r != 0) {
        PT_ERROR("%s: cannot accept a connection: %s", l->addr, petal_strerror(r));
        return;
    }
    r = uv_accept(server, &c->h.stream);
    if (r != 0) {
        PT_WARN("%s: accept: %s", l->addr, uv_strerror(r));
        pt_stream_conn_discard(c);
        return;
    }
    if (l->is_pipe) {
        pt_stream_set_peer(c, "%s", l->addr);
    } else {
        struct sockaddr_storage ss;
        int len = sizeof(ss);

        if (uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
            pt_stream_format_addr((struct sockaddr *)&ss, c->base.peer, sizeof(c->base.peer));
        }
    }
    pt_stream_conn_established(c, l);
}

int
pt_stream_listener_start(pt_stream_listener_t *l)
{
    return uv_listen(&l->h.stream, BACKLOG, on_connection);
}

int
pt_stream_listener_addr(pt_listener_t *pl, char *buf, size_t cap)
{
    pt_stream_listener_t *l = (pt_stream_listener_t *)pl;
    size_t n = strlen(l->addr);

    if (n >= cap) {
        return UV_ENOBUFS;
    }
    memcpy(buf, l->addr, n + 1);
    return 0;
}
