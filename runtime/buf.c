/* buf.c - reference-counted byte buffers: 64-byte aligned allocations or wrapped memory. */
#include "runtime/buf.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct pt_buf {
    atomic_uint refs;
    void *data;
    size_t len;
    petal_free_cb free_cb; /* wrapped memory only */
    void *free_ctx;
    int wrapped;
};

/* An owned buffer is one allocation: the header padded to PT_BUF_ALIGN, then the data. */
#define HEADER_SIZE (((sizeof(struct pt_buf) + PT_BUF_ALIGN - 1) / PT_BUF_ALIGN) * PT_BUF_ALIGN)

pt_buf_t *
pt_buf_alloc(size_t len, int zero)
{
    void *mem = NULL;
    pt_buf_t *b;

    if (len > SIZE_MAX - HEADER_SIZE) {
        return NULL;
    }
    if (posix_memalign(&mem, PT_BUF_ALIGN, HEADER_SIZE + len) != 0) {
        return NULL;
    }
    b = mem;
    atomic_init(&b->refs, 1);
    b->data = (char *)mem + HEADER_SIZE;
    b->len = len;
    b->free_cb = NULL;
    b->free_ctx = NULL;
    b->wrapped = 0;
    if (zero && len > 0) {
        memset(b->data, 0, len);
    }
    return b;
}

pt_buf_t *
pt_buf_wrap(void *data, size_t len, petal_free_cb free_cb, void *ctx)
{
    pt_buf_t *b = malloc(sizeof(*b));

    if (b == NULL) {
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->data = data;
    b->len = len;
    b->free_cb = free_cb;
    b->free_ctx = ctx;
    b->wrapped = 1;
    return b;
}

void
pt_buf_hold(pt_buf_t *b)
{
    if (b != NULL) {
        atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    }
}

void
pt_buf_release(pt_buf_t *b)
{
    if (b == NULL) {
        return;
    }
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    if (b->wrapped) {
        if (b->free_cb != NULL) {
            b->free_cb(b->data, b->free_ctx);
        }
        free(b);
    } else {
        free(b); /* header and data are one allocation */
    }
}

void *
pt_buf_data(const pt_buf_t *b)
{
    return b != NULL ? b->data : NULL;
}

size_t
pt_buf_len(const pt_buf_t *b)
{
    return b != NULL ? b->len : 0;
}

uint32_t
pt_buf_refs(const pt_buf_t *b)
{
    return b != NULL ? atomic_load_explicit(&((pt_buf_t *)b)->refs, memory_order_acquire) : 0;
}
