/* signals.c - an actor owning uv_signal_t handles for SIGINT and SIGTERM. */
#include <signal.h>
#include <stdlib.h>

#include <uv.h>

#include "log.h"
#include "signals.h"

typedef struct signals {
    pt_runtime_t *rt;
    uv_signal_t sigint, sigterm;
    int open;
} signals_t;

static void
on_signal(uv_signal_t *h, int signum)
{
    signals_t *s = h->data;
    PT_INFO("%s received: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    pt_runtime_shutdown(s->rt);
}

static void
on_close(uv_handle_t *h)
{
    signals_t *s = h->data;
    if (--s->open == 0) {
        free(s);
    }
}

static void
handle(pt_actor_t *self, pt_msg_t *m)
{
    signals_t *s = pt_actor_state(self);
    if (m->type == PT_MSG_STOP) {
        uv_close((uv_handle_t *)&s->sigint, on_close);
        uv_close((uv_handle_t *)&s->sigterm, on_close);
    }
    pt_msg_free(m);
}

int
pt_signals_start(pt_runtime_t *rt)
{
    signals_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PETAL_ENOMEM;
    }
    uv_loop_t *loop = pt_runtime_loop(rt);
    s->rt = rt;
    uv_signal_init(loop, &s->sigint);
    uv_signal_init(loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    s->open = 2;
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    pt_actor_t *a;
    int rc = pt_actor_spawn(rt, "signals", handle, s, &a);
    if (rc != 0) {
        uv_close((uv_handle_t *)&s->sigint, on_close);
        uv_close((uv_handle_t *)&s->sigterm, on_close);
    }
    return rc;
}
