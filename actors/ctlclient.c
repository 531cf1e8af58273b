/* ctlclient.c - one Control API exchange on a private runtime. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actors/params.h"
#include "actors/protocol.h"
#include "runtime/log.h"

#include "ctlclient.h"

typedef struct exchange {
    pt_runtime_t *rt;
    pt_conn_t *conn;
    pt_frame_t *request;
    pt_ctl_frame_fn on_frame;
    void *ctx;
    int rc;
    int done;
    char *err;
    size_t err_cap;
    pt_timer_t *timer;
} exchange_t;

static void
finish(exchange_t *x, int rc)
{
    if (x->done) {
        return;
    }
    x->done = 1;
    x->rc = rc;
    if (x->timer != NULL) {
        pt_timer_stop(x->timer);
        x->timer = NULL;
    }
    if (x->conn != NULL) {
        pt_conn_close(x->conn);
    }
    pt_runtime_shutdown(x->rt);
}

static void
handle(pt_actor_t *self, pt_msg_t *m)
{
    exchange_t *x = pt_actor_state(self);
    switch (m->type) {
    case PT_MSG_CONN_UP:
        x->conn = ((pt_conn_event_t *)m)->conn;
        if (x->request != NULL) {
            int rc = pt_conn_send(x->conn, x->request);
            if (rc != 0) {
                pt_msg_free(&x->request->hdr);
                snprintf(x->err, x->err_cap, "cannot send the request: %s", petal_strerror(rc));
                x->request = NULL;
                finish(x, rc);
                break;
            }
            x->request = NULL;
        }
        break;
    case PT_MSG_CONN_DOWN: {
        pt_conn_event_t *ev = (pt_conn_event_t *)m;
        x->conn = NULL;
        if (!x->done) {
            snprintf(x->err, x->err_cap, "%s",
                     ev->reason[0] ? ev->reason
                                   : "the SuperLink closed the connection before answering");
            finish(x, ev->status ? ev->status : PETAL_ECLOSED);
        }
        break;
    }
    case PT_MSG_FRAME: {
        pt_frame_t *f = (pt_frame_t *)m;
        if (x->done) {
            break;
        }
        if (f->kind == PT_CONTROL_ERROR || f->kind == PT_FLEET_ERROR) {
            const char *reason = "unknown error";
            int64_t code = PETAL_E_UNKNOWN;
            pt_params_str(pt_frame_params(f), "reason", &reason);
            pt_params_i64(pt_frame_params(f), "code", &code);
            snprintf(x->err, x->err_cap, "%s", reason);
            finish(x, code < 0 ? (int)code : PETAL_E_UNKNOWN);
            break;
        }
        if (x->on_frame(x->ctx, f) != 0) {
            finish(x, 0);
        }
        break;
    }
    case PT_MSG_TIMER:
        x->timer = NULL;
        snprintf(x->err, x->err_cap, "no answer from the SuperLink in time");
        finish(x, PETAL_ETIMEDOUT);
        break;
    case PT_MSG_STOP:
        if (x->conn != NULL) {
            pt_conn_close(x->conn);
            x->conn = NULL;
        }
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

int
pt_ctl_address(const char *hostport, char *buf, size_t cap)
{
    if (hostport == NULL || hostport[0] == '\0') {
        return PETAL_EINVAL;
    }
    int n = strstr(hostport, "://") ? snprintf(buf, cap, "%s", hostport)
                                    : snprintf(buf, cap, "tcp://%s", hostport);
    return n > 0 && (size_t)n < cap ? 0 : PETAL_EINVAL;
}

int
pt_ctl_exchange(const char *address, const pt_secure_opts_t *secure, pt_frame_t *request,
                pt_ctl_frame_fn on_frame, void *ctx, double timeout, char *err, size_t err_cap)
{
    exchange_t x = {
        .request = request, .on_frame = on_frame, .ctx = ctx, .err = err, .err_cap = err_cap};
    err[0] = '\0';
    pt_runtime_opts_t opts = {.workers = 1};
    int rc = pt_runtime_alloc(&opts, &x.rt);
    if (rc != 0) {
        pt_msg_free(&request->hdr);
        snprintf(err, err_cap, "cannot start: %s", petal_strerror(rc));
        return rc;
    }
    pt_actor_t *actor;
    rc = pt_actor_spawn(x.rt, "petal", handle, &x, &actor);
    pt_conn_t *conn;
    if (rc == 0) {
        rc = secure != NULL ? pt_dial_secure(x.rt, address, actor, secure, &conn)
                            : pt_dial(x.rt, address, actor, &conn);
        if (rc != 0) {
            snprintf(err, err_cap, "cannot reach the SuperLink at %s: %s", address,
                     petal_strerror(rc));
            pt_msg_free(&request->hdr);
            x.request = NULL;
            x.done = 1;
            x.rc = rc;
            pt_runtime_shutdown(x.rt);
        } else if (timeout > 0) {
            pt_timer_start(actor, (uint64_t)(timeout * 1000.0), 0, 1, &x.timer);
        }
    }
    pt_runtime_run(x.rt);
    if (x.request != NULL) {
        pt_msg_free(&x.request->hdr);
    }
    pt_runtime_free(x.rt);
    if (!x.done) {
        snprintf(err, err_cap, "the exchange with the SuperLink ended without an answer");
        return PETAL_ECLOSED;
    }
    if (x.rc != 0 && err[0] == '\0') {
        snprintf(err, err_cap, "%s", petal_strerror(x.rc));
    }
    return x.rc;
}
