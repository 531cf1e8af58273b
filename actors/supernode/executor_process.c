/* executor_process.c - process isolation: a child per run runs the ClientApp over an ipc socket. */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/clientapp/clientapp.h"
#include "actors/frameq.h"
#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/context.h"
#include "runtime/log.h"
#include "runtime/message.h"
#include "runtime/process.h"
#include "runtime/u64map.h"
#include "transport/stream.h"

#include "executor_process.h"

/*
 * The parent side is an actor of its own ("clientapp-proc"), so the child's connection and exit
 * are its events. The SuperNode actor hands it instructions (PROC_SUBMIT) and gets PT_EXEC_DONE
 * back. One instruction is in the child at a time; if the child dies meanwhile, that
 * instruction is answered with CLIENT_APP_CRASHED and the next one starts a new child. Context
 * state lives in the child (per node id) and is lost with it.
 */

enum { PROC_SUBMIT = 1, PROC_FREE = 2 };

typedef struct proc_submit {
    pt_msg_t hdr;
    pt_frame_t *frame;
} proc_submit_t;

enum child_state { CHILD_NONE, CHILD_STARTING, CHILD_READY, CHILD_FAILED };

#define MAX_EARLY_EXITS 3

struct pt_executor_process {
    pt_runtime_t *rt;
    pt_actor_t *actor, *owner;
    pt_executor_t *exec; /* named in PT_EXEC_DONE */
    char *app_dir, *self_exe;
    petal_recorddict_t *init; /* "config" (run) and "node-config" records for PT_EXEC_INIT */
    uint64_t node_id;
    char address[160];
    pt_listener_t *listener;
    pt_conn_t *conn;
    pt_process_t *child;
    enum child_state state;
    char error[512];
    pt_frameq_t queue;   /* instructions not yet in the child */
    pt_frame_t *current; /* the instruction in the child */
    int crashes;
    int early_exits; /* children in a row that ended before connecting */
    int freeing;
};

static atomic_uint next_socket;

static void
post_done(pt_executor_process_t *p, uint64_t instruction_id, petal_message_t *reply)
{
    pt_exec_done_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        petal_message_free(reply);
        return;
    }
    d->hdr.type = PT_EXEC_DONE;
    d->hdr.free = pt_exec_done_free;
    d->exec = p->exec;
    d->instruction_id = instruction_id;
    d->reply = reply;
    if (pt_actor_send(p->owner, &d->hdr) != 0) {
        pt_exec_done_free(&d->hdr);
    }
}

static void
answer(pt_executor_process_t *p, pt_frame_t *f, int code, const char *reason)
{
    uint64_t id = pt_message_md_const(f->msg)->message_id;
    petal_message_t *r = pt_message_alloc_error_reply(f->msg, code, reason);
    pt_msg_free(&f->hdr);
    post_done(p, id, r);
}

static void
spawn_child(pt_executor_process_t *p)
{
    snprintf(p->address, sizeof(p->address), "ipc:///tmp/petal-clientapp-%d-%u.sock", (int)getpid(),
             atomic_fetch_add(&next_socket, 1));
    int rc = pt_listen(p->rt, p->address, p->actor, &p->listener);
    if (rc == 0) {
        const char *argv[] = {p->self_exe, "--clientapp-child", p->address, NULL};
        rc = pt_process_spawn(p->rt, p->actor, argv, &p->child);
        if (rc != 0) {
            pt_listener_close(p->listener);
            p->listener = NULL;
        }
    }
    if (rc != 0) {
        p->state = CHILD_FAILED;
        snprintf(p->error, sizeof(p->error), "cannot start the ClientApp process %s: %s",
                 p->self_exe, petal_strerror(rc));
        PT_ERROR("%s", p->error);
        return;
    }
    p->state = CHILD_STARTING;
    PT_DEBUG("ClientApp process started for %s", p->app_dir);
}

/* Sends the next instruction to the child, starting one when there is none. */
static void
pump(pt_executor_process_t *p)
{
    while (p->current == NULL && p->queue.head != NULL) {
        if (p->state == CHILD_FAILED) {
            answer(p, pt_frameq_pop(&p->queue), PETAL_E_LOAD_CLIENT_APP_EXCEPTION, p->error);
            continue;
        }
        if (p->state == CHILD_NONE) {
            spawn_child(p);
            continue;
        }
        if (p->state != CHILD_READY || p->conn == NULL) {
            return;
        }
        pt_frame_t *f = pt_frameq_pop(&p->queue);
        pt_frame_t *run = pt_frame_alloc(PT_EXEC_RUN, pt_message_hold(f->msg));
        if (run == NULL || pt_conn_send(p->conn, run) != 0) {
            if (run != NULL) {
                pt_msg_free(&run->hdr);
            }
            answer(p, f, PETAL_E_CLIENT_APP_CRASHED,
                   "cannot hand the instruction to the "
                   "ClientApp process");
            continue;
        }
        p->current = f;
    }
}

static void
send_init(pt_executor_process_t *p)
{
    petal_configrecord_t *params;
    pt_frame_t *f = pt_params_frame(PT_EXEC_INIT, "exec.init", &params);
    petal_recorddict_t *content = f ? pt_message_content_mut(f->msg) : NULL;
    int ok = content != NULL && pt_params_set_str(params, "app-dir", p->app_dir) == 0 &&
             pt_params_set_i64(params, "node-id", (int64_t)p->node_id) == 0;
    const char *names[] = {"config", "node-config"};
    for (int k = 0; ok && k < 2; k++) {
        const petal_configrecord_t *src = petal_recorddict_config(p->init, names[k]);
        petal_configrecord_t *dst = petal_recorddict_add_config(content, names[k]);
        const char *name;
        petal_value_t v;
        ok = dst != NULL;
        for (uint64_t i = 0; ok && src != NULL && i < petal_configrecord_count(src); i++) {
            ok = petal_configrecord_at(src, i, &name, &v) == 0 &&
                 petal_configrecord_set(dst, name, &v) == 0;
        }
    }
    if (!ok || pt_conn_send(p->conn, f) != 0) {
        if (f != NULL) {
            pt_msg_free(&f->hdr);
        }
        pt_conn_close(p->conn);
        return;
    }
    p->state = CHILD_READY;
}

/* The child went away (exited, crashed, or closed the socket). */
static void
child_gone(pt_executor_process_t *p, const char *why)
{
    if (p->conn != NULL) {
        pt_conn_close(p->conn);
        p->conn = NULL;
    }
    if (p->listener != NULL) {
        pt_listener_close(p->listener);
        p->listener = NULL;
    }
    if (p->current != NULL) {
        char reason[600];
        snprintf(reason, sizeof(reason), "the ClientApp process crashed: %s", why);
        PT_WARN("%s (app %s); the SuperNode keeps serving", reason, p->app_dir);
        answer(p, p->current, PETAL_E_CLIENT_APP_CRASHED, reason);
        p->current = NULL;
        p->crashes++;
    }
    if (p->state == CHILD_STARTING && ++p->early_exits >= MAX_EARLY_EXITS) {
        /* It never got as far as connecting: starting it again would only spin. */
        p->state = CHILD_FAILED;
        snprintf(p->error, sizeof(p->error),
                 "the ClientApp process ended before connecting %d times in a row (last: %s)",
                 MAX_EARLY_EXITS, why);
        PT_ERROR("%s", p->error);
    }
    if (p->state != CHILD_FAILED) {
        p->state = CHILD_NONE; /* the next instruction starts a new one */
    }
    if (!p->freeing) {
        pump(p);
    }
}

static void
on_frame(pt_executor_process_t *p, pt_frame_t *f)
{
    switch (f->kind) {
    case PT_EXEC_REPLY:
        if (p->current != NULL && f->msg != NULL) {
            uint64_t id = pt_message_md(p->current->msg)->message_id;
            pt_msg_free(&p->current->hdr);
            p->current = NULL;
            post_done(p, id, f->msg);
            f->msg = NULL;
        }
        pump(p);
        break;
    case PT_EXEC_INIT_FAILED: {
        const char *reason = "unknown";
        pt_params_str(pt_frame_params(f), "reason", &reason);
        p->state = CHILD_FAILED;
        snprintf(p->error, sizeof(p->error), "%s", reason);
        PT_ERROR("cannot load the ClientApp: %s", reason);
        if (p->current != NULL) {
            answer(p, p->current, PETAL_E_LOAD_CLIENT_APP_EXCEPTION, p->error);
            p->current = NULL;
        }
        pump(p);
        break;
    }
    default:
        PT_WARN("unexpected frame kind 0x%04x from the ClientApp process", f->kind);
        break;
    }
}

static void
proc_free(pt_executor_process_t *p)
{
    pt_frameq_clear(&p->queue);
    if (p->current != NULL) {
        pt_msg_free(&p->current->hdr);
    }
    free(p->app_dir);
    free(p->self_exe);
    petal_recorddict_free(p->init);
    free(p);
}

static void
handle(pt_actor_t *self, pt_msg_t *m)
{
    pt_executor_process_t *p = pt_actor_state(self);
    switch (m->type) {
    case PROC_SUBMIT: {
        proc_submit_t *s = (proc_submit_t *)m;
        if (p->freeing) {
            pt_msg_free(&s->frame->hdr);
        } else {
            pt_frameq_push(&p->queue, s->frame);
            pump(p);
        }
        s->frame = NULL;
        break;
    }
    case PT_MSG_CONN_UP:
        if (p->conn != NULL) {
            pt_conn_close(((pt_conn_event_t *)m)->conn); /* one child, one connection */
            break;
        }
        p->conn = ((pt_conn_event_t *)m)->conn;
        p->early_exits = 0;
        send_init(p);
        pump(p);
        break;
    case PT_MSG_FRAME:
        on_frame(p, (pt_frame_t *)m);
        break;
    case PT_MSG_CONN_DOWN:
        if (((pt_conn_event_t *)m)->conn == p->conn) {
            p->conn = NULL;
            if (p->child != NULL) {
                /* Its exit says why (the signal); a child that only closed the socket is ended. */
                pt_process_kill(p->child, SIGKILL);
            } else {
                child_gone(p, "it closed its connection");
            }
        }
        break;
    case PT_MSG_PROCESS_EXIT: {
        pt_process_exit_t *e = (pt_process_exit_t *)m;
        char why[128];
        if (e->p != p->child) {
            break; /* an earlier child, already replaced */
        }
        if (e->term_signal != 0) {
            snprintf(why, sizeof(why), "killed by signal %d (%s)", e->term_signal,
                     strsignal(e->term_signal));
        } else {
            snprintf(why, sizeof(why), "exited with status %lld", (long long)e->exit_status);
        }
        p->child = NULL;
        child_gone(p, why);
        break;
    }
    case PROC_FREE:
        p->freeing = 1;
        if (p->child != NULL) {
            pt_process_kill(p->child, SIGKILL);
        }
        child_gone(p, "the SuperNode is stopping");
        pt_actor_stop(self);
        break;
    case PT_MSG_STOP:
        p->freeing = 1;
        if (p->child != NULL) {
            pt_process_kill(p->child, SIGKILL);
        }
        if (p->conn != NULL) {
            pt_conn_close(p->conn);
            p->conn = NULL;
        }
        if (p->listener != NULL) {
            pt_listener_close(p->listener);
            p->listener = NULL;
        }
        pt_msg_free(m);
        proc_free(p);
        return;
    default:
        break;
    }
    pt_msg_free(m);
}

static void
submit_free(pt_msg_t *m)
{
    proc_submit_t *s = (proc_submit_t *)m;
    if (s->frame != NULL) {
        pt_msg_free(&s->frame->hdr);
    }
    free(s);
}

int
pt_executor_process_start(pt_runtime_t *rt, pt_actor_t *owner, pt_executor_t *e,
                          const char *app_dir, const petal_configrecord_t *run_config,
                          const char *self_exe, pt_executor_process_t **out, char *err,
                          size_t err_cap)
{
    if (self_exe == NULL || self_exe[0] == '\0' || access(self_exe, X_OK) != 0) {
        snprintf(err, err_cap, "process isolation needs the petal-supernode executable (%s)",
                 self_exe ? self_exe : "unknown");
        return PETAL_EINVAL;
    }
    pt_executor_process_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, err_cap, "out of memory");
        return PETAL_ENOMEM;
    }
    p->rt = rt;
    p->owner = owner;
    p->exec = e;
    p->app_dir = strdup(app_dir);
    p->self_exe = strdup(self_exe);
    p->init = petal_recorddict_alloc();
    petal_configrecord_t *cfg = p->init ? petal_recorddict_add_config(p->init, "config") : NULL;
    const char *name;
    petal_value_t v;
    int ok = p->app_dir && p->self_exe && cfg;
    for (uint64_t i = 0; ok && run_config != NULL && i < petal_configrecord_count(run_config);
         i++) {
        ok = petal_configrecord_at(run_config, i, &name, &v) == 0 &&
             petal_configrecord_set(cfg, name, &v) == 0;
    }
    int rc = ok ? pt_actor_spawn(rt, "clientapp-proc", handle, p, &p->actor) : PETAL_ENOMEM;
    if (rc != 0) {
        snprintf(err, err_cap, "out of memory");
        proc_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int
pt_executor_process_submit(pt_executor_process_t *p, petal_context_t *ctx, pt_frame_t *f)
{
    if (p->node_id == 0) {
        /* The node's identity and config go to the child with PT_EXEC_INIT. */
        p->node_id = petal_context_node_id(ctx);
        const petal_configrecord_t *src = petal_context_node_config(ctx);
        petal_configrecord_t *dst = petal_recorddict_add_config(p->init, "node-config");
        const char *name;
        petal_value_t v;
        for (uint64_t i = 0; dst != NULL && src != NULL && i < petal_configrecord_count(src); i++) {
            if (petal_configrecord_at(src, i, &name, &v) == 0) {
                petal_configrecord_set(dst, name, &v);
            }
        }
    }
    proc_submit_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return PETAL_ENOMEM;
    }
    s->hdr.type = PROC_SUBMIT;
    s->hdr.free = submit_free;
    s->frame = f;
    int rc = pt_actor_send(p->actor, &s->hdr);
    if (rc != 0) {
        s->frame = NULL;
        free(s);
    }
    return rc;
}

void
pt_executor_process_free(pt_executor_process_t *p)
{
    if (p == NULL) {
        return;
    }
    pt_msg_t *m = calloc(1, sizeof(*m));
    if (m != NULL) {
        m->type = PROC_FREE;
        m->free = (void (*)(pt_msg_t *))free;
        if (pt_actor_send(p->actor, m) != 0) {
            free(m);
        }
    }
}

/* ---- The child ------------------------------------------------------------------------------- */

typedef struct child {
    pt_runtime_t *rt;
    pt_conn_t *conn;
    pt_clientapp_t *app;
    pt_run_config_t *config;
    petal_recorddict_t *node_config; /* "config" holder */
    uint64_t node_id;
    pt_u64map_t contexts; /* run id -> petal_context_t* */
} child_t;

static void
child_init(child_t *c, pt_frame_t *f)
{
    char err[512];
    const char *app_dir = NULL;
    int64_t node_id = 0;
    const petal_recorddict_t *content = f->msg ? petal_message_content(f->msg) : NULL;
    pt_params_str(pt_frame_params(f), "app-dir", &app_dir);
    pt_params_i64(pt_frame_params(f), "node-id", &node_id);
    c->node_id = (uint64_t)node_id;
    petal_recorddict_t *run = petal_recorddict_alloc(), *node = petal_recorddict_alloc();
    const char *names[] = {"config", "node-config"};
    petal_recorddict_t *dst[] = {run, node};
    for (int k = 0; k < 2 && content != NULL; k++) {
        const petal_configrecord_t *src = petal_recorddict_config(content, names[k]);
        petal_configrecord_t *d = dst[k] ? petal_recorddict_add_config(dst[k], "config") : NULL;
        const char *name;
        petal_value_t v;
        for (uint64_t i = 0; d != NULL && src != NULL && i < petal_configrecord_count(src); i++) {
            if (petal_configrecord_at(src, i, &name, &v) == 0) {
                petal_configrecord_set(d, name, &v);
            }
        }
    }
    c->node_config = node;
    c->config = run ? pt_run_config_alloc(run) : NULL;
    int rc = app_dir && c->config ? pt_clientapp_load(app_dir, pt_run_config_get(c->config),
                                                      &c->app, err, sizeof(err))
                                  : PETAL_EINVAL;
    if (rc != 0) {
        if (app_dir == NULL || c->config == NULL) {
            snprintf(err, sizeof(err), "malformed init from the SuperNode");
        }
        petal_configrecord_t *p;
        pt_frame_t *r = pt_params_frame(PT_EXEC_INIT_FAILED, "exec.init-failed", &p);
        if (r != NULL) {
            pt_params_set_str(p, "reason", err);
            if (pt_conn_send(c->conn, r) != 0) {
                pt_msg_free(&r->hdr);
            }
        }
    }
}

static void
child_run(child_t *c, pt_frame_t *f)
{
    if (f->msg == NULL || c->app == NULL) {
        return;
    }
    uint64_t run_id = pt_message_md(f->msg)->run_id;
    petal_context_t *ctx = pt_u64map_get(&c->contexts, run_id);
    if (ctx == NULL) {
        ctx = pt_context_alloc(run_id, c->node_id, c->config, pt_recorddict_clone(c->node_config));
        if (ctx != NULL) {
            pt_u64map_put(&c->contexts, run_id, ctx);
        }
    }
    petal_message_t *reply =
        ctx ? pt_clientapp_handle(c->app, ctx, f->msg)
            : pt_message_alloc_error_reply(f->msg, PETAL_E_UNKNOWN, "out of memory");
    char why[256] = "";
    if (reply != NULL && pt_stream_check_message(reply, why, sizeof(why)) != 0) {
        /* Dropped at the send below, the SuperNode would wait for it forever: say why. */
        char reason[400];
        snprintf(reason, sizeof(reason), "the ClientApp's reply cannot be sent: %s", why);
        PT_ERROR("%s", reason);
        petal_message_t *err = pt_message_alloc_error(pt_message_md_const(reply),
                                                      PETAL_E_CLIENT_APP_RAISED_EXCEPTION, reason);
        if (err != NULL) {
            petal_message_free(reply);
            reply = err;
        }
    }
    pt_frame_t *r = reply ? pt_frame_alloc(PT_EXEC_REPLY, reply) : NULL;
    if (r == NULL) {
        petal_message_free(reply);
        return;
    }
    if (pt_conn_send(c->conn, r) != 0) {
        pt_msg_free(&r->hdr);
    }
}

static void
child_handle(pt_actor_t *self, pt_msg_t *m)
{
    child_t *c = pt_actor_state(self);
    switch (m->type) {
    case PT_MSG_CONN_UP:
        c->conn = ((pt_conn_event_t *)m)->conn;
        break;
    case PT_MSG_CONN_DOWN:
        c->conn = NULL;
        pt_runtime_shutdown(c->rt);
        break;
    case PT_MSG_FRAME: {
        pt_frame_t *f = (pt_frame_t *)m;
        if (f->kind == PT_EXEC_INIT && c->app == NULL) {
            child_init(c, f);
        } else if (f->kind == PT_EXEC_RUN) {
            child_run(c, f);
        }
        break;
    }
    case PT_MSG_STOP:
        if (c->conn != NULL) {
            pt_conn_close(c->conn);
            c->conn = NULL;
        }
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

int
pt_executor_child_main(const char *ipc_address)
{
    child_t c;
    memset(&c, 0, sizeof(c));
    pt_u64map_init(&c.contexts);
    pt_runtime_opts_t opts = {.workers = 1};
    if (pt_runtime_alloc(&opts, &c.rt) != 0) {
        return 1;
    }
    pt_actor_t *a;
    pt_conn_t *conn;
    int rc = pt_actor_spawn(c.rt, "clientapp", child_handle, &c, &a);
    if (rc == 0) {
        rc = pt_dial(c.rt, ipc_address, a, &conn);
    }
    if (rc != 0) {
        fprintf(stderr, "petal-supernode --clientapp-child: cannot reach %s: %s\n", ipc_address,
                petal_strerror(rc));
        pt_runtime_shutdown(c.rt);
    }
    pt_runtime_run(c.rt);
    pt_runtime_free(c.rt);
    uint64_t key;
    void *val;
    for (size_t it = 0; pt_u64map_next(&c.contexts, &it, &key, &val);) {
        pt_context_free(val);
    }
    pt_u64map_fini(&c.contexts);
    pt_clientapp_free(c.app);
    if (c.config != NULL) {
        pt_run_config_release(c.config);
    }
    petal_recorddict_free(c.node_config);
    return rc == 0 ? 0 : 1;
}
