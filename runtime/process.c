/* process.c - child processes with uv_spawn; the exit arrives as a message (see process.h). */
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "log.h"
#include "process.h"

/*
 * A pt_process_t is freed when three things are over: the uv handle's close callback has run
 * (it is closed as soon as the child exits), the exit message was handled (or could not be
 * delivered), and the owner watch is gone (the owner handled the message, or its STOP).
 */

#define CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

enum { EXIT_NONE, EXIT_QUEUED, EXIT_DONE };

struct pt_process {
    uv_process_t h;
    pt_actor_t *owner;
    pt_actor_watch_t owner_watch;
    pt_process_exit_t msg;
    int pid;
    int exited;
    int handle_closed;
    int msg_state;
    char name[64]; /* argv[0], for log lines */
};

static void
maybe_free(pt_process_t *p)
{
    if (p->handle_closed && p->msg_state == EXIT_DONE && p->owner_watch.pprev == NULL) {
        free(p);
    }
}

static void
on_closed(uv_handle_t *h)
{
    pt_process_t *p = h->data;

    p->handle_closed = 1;
    maybe_free(p);
}

static void
on_msg_freed(pt_msg_t *m)
{
    pt_process_t *p = CONTAINER_OF(m, pt_process_t, msg.hdr);

    p->msg_state = EXIT_DONE;
    pt_actor_unwatch(&p->owner_watch);
    maybe_free(p);
}

static void
on_child_exit(uv_process_t *h, int64_t exit_status, int term_signal)
{
    pt_process_t *p = h->data;

    p->exited = 1;
    uv_close((uv_handle_t *)h, on_closed);
    PT_DEBUG("process %d (%s) ended: status %lld, signal %d", p->pid, p->name,
             (long long)exit_status, term_signal);
    if (p->msg_state != EXIT_NONE) {
        return;
    }
    p->msg.hdr.type = PT_MSG_PROCESS_EXIT;
    p->msg.hdr.free = on_msg_freed;
    p->msg.p = p;
    p->msg.exit_status = exit_status;
    p->msg.term_signal = term_signal;
    if (pt_actor_send(p->owner, &p->msg.hdr) == 0) {
        p->msg_state = EXIT_QUEUED;
    } else {
        p->msg_state = EXIT_DONE; /* the owner stopped; its watch fired or fires soon */
    }
    maybe_free(p);
}

static void
on_owner_stopped(pt_actor_watch_t *w, int stopped)
{
    pt_process_t *p = CONTAINER_OF(w, pt_process_t, owner_watch);

    (void)stopped;
    if (!p->exited) {
        PT_DEBUG("process %d (%s): owner stopped, sending SIGKILL", p->pid, p->name);
        uv_process_kill(&p->h, SIGKILL);
        p->msg_state = EXIT_DONE; /* nobody to tell */
    }
    maybe_free(p);
}

int
pt_process_spawn(pt_runtime_t *rt, pt_actor_t *owner, const char *const *argv, pt_process_t **out)
{
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    pt_process_t *p;
    int r;

    if (rt == NULL || owner == NULL || argv == NULL || argv[0] == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return PETAL_ENOMEM;
    }
    p->owner = owner;
    p->h.data = p;
    snprintf(p->name, sizeof(p->name), "%s", argv[0]);
    memset(&o, 0, sizeof(o));
    memset(stdio, 0, sizeof(stdio));
    stdio[0].flags = UV_IGNORE;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = 1;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = 2;
    o.exit_cb = on_child_exit;
    o.file = argv[0];
    o.args = (char **)argv;
    o.stdio = stdio;
    o.stdio_count = 3;
    r = pt_actor_watch_stop(owner, &p->owner_watch, on_owner_stopped);
    if (r != 0) {
        free(p);
        return r;
    }
    r = uv_spawn(pt_runtime_loop(rt), &p->h, &o);
    if (r != 0) {
        /* The handle was initialised: it must be closed; nothing is delivered. */
        pt_actor_unwatch(&p->owner_watch);
        p->exited = 1;
        p->msg_state = EXIT_DONE;
        uv_close((uv_handle_t *)&p->h, on_closed);
        return r;
    }
    p->pid = p->h.pid;
    PT_DEBUG("process %d started: %s", p->pid, p->name);
    *out = p;
    return 0;
}

void
pt_process_kill(pt_process_t *p, int signum)
{
    int r;

    if (p == NULL || p->exited) {
        return;
    }
    r = uv_process_kill(&p->h, signum);
    if (r != 0 && r != UV_ESRCH) {
        PT_WARN("process %d (%s): cannot send signal %d: %s", p->pid, p->name, signum,
                uv_strerror(r));
    }
}

int
pt_process_pid(const pt_process_t *p)
{
    return p->pid;
}
