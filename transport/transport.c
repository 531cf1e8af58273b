/* transport.c - the transport registry, the generic connection wrappers and frames. */
#include <stdlib.h>
#include <string.h>

#include "secure.h"
#include "transport.h"

/* Every transport, one line each. pt_tran_find matches "<scheme>://" at the address start. */
static const pt_tran_ops_t *const transports[] = {
    &pt_inproc_ops, &pt_tcp_ops, &pt_ipc_ops,
    &pt_tcp_secure_ops, /* secure.c: "tcp+secure://", with pt_secure_set_default_opts() */
};

const pt_tran_ops_t *
pt_tran_find(const char *addr)
{
    if (addr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(transports) / sizeof(transports[0]); i++) {
        const char *scheme = transports[i]->scheme;
        size_t n = strlen(scheme);

        if (strncmp(addr, scheme, n) == 0 && strncmp(addr + n, "://", 3) == 0) {
            return transports[i];
        }
    }
    return NULL;
}

static void
frame_free(pt_msg_t *m)
{
    pt_frame_t *f = (pt_frame_t *)m;

    if (f->msg != NULL) {
        petal_message_free(f->msg);
    }
    free(f);
}

/* Any thread. The frame owns `msg` from here on (also when the frame is freed unsent). */
pt_frame_t *
pt_frame_alloc(uint16_t kind, petal_message_t *msg)
{
    pt_frame_t *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return NULL;
    }
    f->hdr.type = PT_MSG_FRAME;
    f->hdr.free = frame_free;
    f->version = PT_PROTOCOL_VERSION;
    f->kind = kind;
    f->msg = msg;
    return f;
}

int
pt_listen(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_listener_t **out)
{
    const pt_tran_ops_t *ops = pt_tran_find(addr);

    if (rt == NULL || owner == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (ops == NULL) {
        return PETAL_EINVAL;
    }
    return ops->listen(rt, addr, owner, out);
}

int
pt_dial(pt_runtime_t *rt, const char *addr, pt_actor_t *owner, pt_conn_t **out)
{
    const pt_tran_ops_t *ops = pt_tran_find(addr);

    if (rt == NULL || owner == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    if (ops == NULL) {
        return PETAL_EINVAL;
    }
    return ops->dial(rt, addr, owner, out);
}

int
pt_conn_send(pt_conn_t *c, pt_frame_t *f)
{
    if (c == NULL || f == NULL) {
        return PETAL_EINVAL;
    }
    return ((struct pt_conn_base *)c)->ops->send(c, f);
}

void
pt_conn_close(pt_conn_t *c)
{
    if (c != NULL) {
        ((struct pt_conn_base *)c)->ops->close(c);
    }
}

void
pt_conn_set_data(pt_conn_t *c, void *data)
{
    ((struct pt_conn_base *)c)->data = data;
}

void *
pt_conn_data(pt_conn_t *c)
{
    return ((struct pt_conn_base *)c)->data;
}

const char *
pt_conn_peer(pt_conn_t *c)
{
    return ((struct pt_conn_base *)c)->peer;
}

void
pt_conn_set_owner(pt_conn_t *c, pt_actor_t *owner)
{
    if (c != NULL && owner != NULL) {
        ((struct pt_conn_base *)c)->owner = owner;
    }
}

int
pt_listener_addr(pt_listener_t *l, char *buf, size_t cap)
{
    if (l == NULL || buf == NULL || cap == 0) {
        return PETAL_EINVAL;
    }
    return ((struct pt_listener_base *)l)->ops->listener_addr(l, buf, cap);
}

void
pt_listener_close(pt_listener_t *l)
{
    if (l != NULL) {
        ((struct pt_listener_base *)l)->ops->listener_close(l);
    }
}
