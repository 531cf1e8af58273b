/* buf.h - reference-counted byte buffers, owned or wrapping foreign memory. */
#ifndef PT_BUF_H
#define PT_BUF_H

#include <stddef.h>
#include <stdint.h>

#include <petal/plugin.h>

/*
 * A pt_buf_t is shared by reference: every holder calls pt_buf_release() once. Holds and
 * releases are atomic, so a buffer may be released on any thread; the free callback of a
 * wrapped buffer runs on the thread that drops the last reference.
 */
typedef struct pt_buf pt_buf_t;

#define PT_BUF_ALIGN 64

/* A new buffer of `len` bytes, 64-byte aligned, zeroed when `zero`; NULL if out of memory. */
pt_buf_t *pt_buf_alloc(size_t len, int zero);
/* Wraps memory the caller allocated; free_cb(data, ctx) runs when the last reference goes
 * (free_cb may be NULL for static memory). NULL if out of memory (free_cb then not called). */
pt_buf_t *pt_buf_wrap(void *data, size_t len, petal_free_cb free_cb, void *ctx);
void pt_buf_hold(pt_buf_t *b);
void pt_buf_release(pt_buf_t *b);
void *pt_buf_data(const pt_buf_t *b);
size_t pt_buf_len(const pt_buf_t *b);
/* Number of references; for tests and assertions only. */
uint32_t pt_buf_refs(const pt_buf_t *b);

#endif
