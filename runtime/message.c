/* message.c - reference-counted messages: metadata plus content or an error. */
#include "runtime/message.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_TTL 43200.0 /* seconds, as Flower's DEFAULT_TTL */

struct petal_message {
    atomic_uint refs;
    petal_metadata_t md;
    petal_recorddict_t *content; /* NULL for an error message */
    int32_t err_code;            /* 0 when there is content */
    char *err_reason;            /* NULL when none */
};

void
pt_metadata_init(petal_metadata_t *md)
{
    memset(md, 0, sizeof(*md));
    md->struct_size = sizeof(*md);
    md->abi_version = PETAL_ABI_VERSION;
}

double
pt_now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copies md with the struct header set and both strings NUL-terminated. */
static void
metadata_copy(petal_metadata_t *dst, const petal_metadata_t *src)
{
    *dst = *src;
    dst->struct_size = sizeof(*dst);
    dst->abi_version = PETAL_ABI_VERSION;
    dst->group_id[PETAL_GROUP_ID_MAX - 1] = '\0';
    dst->message_type[PETAL_MESSAGE_TYPE_MAX - 1] = '\0';
}

static petal_message_t *
message_new(const petal_metadata_t *md)
{
    petal_message_t *m = calloc(1, sizeof(*m));

    if (m == NULL) {
        return NULL;
    }
    atomic_init(&m->refs, 1);
    metadata_copy(&m->md, md);
    return m;
}

petal_message_t *
pt_message_alloc_meta(const petal_metadata_t *md, petal_recorddict_t *content)
{
    petal_message_t *m;
    petal_recorddict_t *own = NULL;

    if (md == NULL) {
        return NULL;
    }
    if (content == NULL) {
        own = content = petal_recorddict_alloc();
        if (content == NULL) {
            return NULL;
        }
    }
    m = message_new(md);
    if (m == NULL) {
        petal_recorddict_free(own);
        return NULL;
    }
    m->content = content;
    return m;
}

petal_message_t *
pt_message_alloc_error(const petal_metadata_t *md, int32_t code, const char *reason)
{
    petal_message_t *m;

    if (md == NULL || code >= 0) {
        return NULL;
    }
    m = message_new(md);
    if (m == NULL) {
        return NULL;
    }
    m->err_code = code;
    if (reason != NULL && reason[0] != '\0') {
        size_t len = strlen(reason);
        m->err_reason = malloc(len + 1);
        if (m->err_reason == NULL) {
            free(m);
            return NULL;
        }
        memcpy(m->err_reason, reason, len + 1);
    }
    return m;
}

/* Metadata of a reply to `to`, as Flower's Message.create_reply(). */
static void
reply_metadata(const petal_message_t *to, petal_metadata_t *md)
{
    double now = pt_now_seconds();

    pt_metadata_init(md);
    md->run_id = to->md.run_id;
    md->src_node_id = to->md.dst_node_id;
    md->dst_node_id = to->md.src_node_id;
    md->reply_to_message_id = to->md.message_id;
    memcpy(md->group_id, to->md.group_id, sizeof(md->group_id));
    memcpy(md->message_type, to->md.message_type, sizeof(md->message_type));
    /* The reply lives no longer than the instruction it answers. */
    md->ttl = to->md.ttl - (now - to->md.created_at);
    md->created_at = now;
}

petal_message_t *
pt_message_alloc_reply(const petal_message_t *to, petal_recorddict_t *content)
{
    petal_metadata_t md;

    if (to == NULL) {
        return NULL;
    }
    reply_metadata(to, &md);
    return pt_message_alloc_meta(&md, content);
}

petal_message_t *
pt_message_alloc_error_reply(const petal_message_t *to, int32_t code, const char *reason)
{
    petal_metadata_t md;

    if (to == NULL) {
        return NULL;
    }
    reply_metadata(to, &md);
    return pt_message_alloc_error(&md, code, reason);
}

petal_message_t *
pt_message_hold(petal_message_t *m)
{
    if (m != NULL) {
        atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    }
    return m;
}

void
pt_message_release(petal_message_t *m)
{
    if (m == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    petal_recorddict_free(m->content);
    free(m->err_reason);
    free(m);
}

uint32_t
pt_message_refs(const petal_message_t *m)
{
    return m != NULL ? atomic_load_explicit(&((petal_message_t *)m)->refs, memory_order_acquire)
                     : 0;
}

petal_metadata_t *
pt_message_md(petal_message_t *m)
{
    return m != NULL ? &m->md : NULL;
}

const petal_metadata_t *
pt_message_md_const(const petal_message_t *m)
{
    return m != NULL ? &m->md : NULL;
}

petal_recorddict_t *
pt_message_content_mut(petal_message_t *m)
{
    return m != NULL ? m->content : NULL;
}

/* ---- The public API ------------------------------------------------------------------------ */

petal_message_t *
petal_message_alloc(petal_recorddict_t *content, const char *message_type, uint64_t dst_node_id,
                    const char *group_id, double ttl)
{
    petal_metadata_t md;
    size_t tlen;
    size_t glen;

    if (message_type == NULL) {
        return NULL;
    }
    tlen = strlen(message_type);
    glen = group_id != NULL ? strlen(group_id) : 0;
    if (tlen == 0 || tlen >= PETAL_MESSAGE_TYPE_MAX || glen >= PETAL_GROUP_ID_MAX) {
        return NULL;
    }
    pt_metadata_init(&md);
    md.src_node_id = PETAL_SERVER_NODE_ID;
    md.dst_node_id = dst_node_id;
    md.ttl = ttl > 0 ? ttl : DEFAULT_TTL; /* also replaces NaN */
    md.created_at = pt_now_seconds();
    memcpy(md.message_type, message_type, tlen + 1);
    if (glen > 0) {
        memcpy(md.group_id, group_id, glen + 1);
    }
    return pt_message_alloc_meta(&md, content);
}

void
petal_message_free(petal_message_t *m)
{
    pt_message_release(m);
}

int32_t
petal_message_metadata(const petal_message_t *m, petal_metadata_t *out)
{
    if (m == NULL || out == NULL) {
        return PETAL_EINVAL;
    }
    *out = m->md;
    return 0;
}

const petal_recorddict_t *
petal_message_content(const petal_message_t *m)
{
    return m != NULL ? m->content : NULL;
}

int32_t
petal_message_error_code(const petal_message_t *m)
{
    if (m == NULL) {
        return PETAL_EINVAL;
    }
    return m->err_code;
}

const char *
petal_message_error_reason(const petal_message_t *m)
{
    if (m == NULL || m->err_reason == NULL) {
        return "";
    }
    return m->err_reason;
}
