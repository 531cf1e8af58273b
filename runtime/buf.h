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

/* Buffers of at least this many bytes are their own huge-page-advised mappings, recycled
 * through a small process-wide cache (see buf.c). */
#define PT_BUF_LARGE_MIN ((size_t)1 << 20)

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
/* 1 for a buffer from pt_buf_alloc (writable memory of its own), 0 for wrapped memory. */
int pt_buf_is_owned(const pt_buf_t *b);

/* The cache of released large buffers: what it holds now, and how allocations were served. */
typedef struct pt_buf_cache_stats {
    uint32_t entries;
    size_t bytes;
    uint64_t hits;   /* large allocations served from the cache */
    uint64_t misses; /* large allocations that mapped new memory */
} pt_buf_cache_stats_t;

void pt_buf_cache_stats(pt_buf_cache_stats_t *out);
/* Returns every cached buffer to the kernel now (the cache also does it by itself after about
 * two idle seconds). */
void pt_buf_cache_trim(void);

#endif
