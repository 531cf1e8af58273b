/* buf.c - reference-counted byte buffers: 64-byte aligned allocations or wrapped memory. */
#include "runtime/buf.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct pt_buf {
    atomic_uint refs;
    void *data;
    size_t len;
    petal_free_cb free_cb; /* wrapped memory only */
    void *free_ctx;
    int wrapped;
    size_t map_len; /* owned: the length of its own mapping (large buffers), 0 when malloc'd */
};

/* An owned buffer is one allocation: the header padded to PT_BUF_ALIGN, then the data. */
#define HEADER_SIZE (((sizeof(struct pt_buf) + PT_BUF_ALIGN - 1) / PT_BUF_ALIGN) * PT_BUF_ALIGN)

/*
 * Large buffers (PT_BUF_LARGE_MIN bytes and more: received messages, models, FedAvg sums) are
 * their own anonymous mappings, 2 MiB aligned and madvise(MADV_HUGEPAGE)d, so that filling one
 * costs a fault per 2 MiB instead of one per 4 KiB where transparent huge pages are enabled
 * (also in the kernel's `madvise` THP mode).
 *
 * Released large buffers go to a small process-wide cache instead of back to the kernel, and a
 * later allocation of a similar size (at most twice smaller than the cached mapping) reuses
 * one: a round's messages have the same sizes as the previous round's, so after the first
 * round receiving, folding and replying touch memory that is already mapped (no page faults,
 * no munmap TLB shoot-downs). The cache is:
 *   - bounded: at most CACHE_MAX_ENTRIES mappings and CACHE_MAX_BYTES bytes (1 GiB, or an
 *     eighth of the physical memory when that is less); a mapping larger than a quarter of
 *     that is never cached; when a release would overflow it, the least recently used
 *     mappings are unmapped first.
 *   - thread-safe: one mutex (buffers are released on any thread); pthread_atfork keeps it
 *     consistent in a forked child.
 *   - returned when idle: a reaper thread, started when the first mapping enters the empty
 *     cache, wakes every second and unmaps mappings unused for CACHE_IDLE_SECONDS; it exits as
 *     soon as the cache is empty, so an idle process holds no cached memory and no extra
 *     thread. pt_buf_cache_trim() empties it at once.
 * Under AddressSanitizer every buffer is malloc'd, so that use-after-release stays detectable.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PT_BUF_NO_LARGE 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PT_BUF_NO_LARGE 1
#endif
#endif
#ifdef PT_BUF_NO_LARGE
#define LARGE_MAPPINGS 0
#else
#define LARGE_MAPPINGS 1
#endif

#define HUGE_SIZE ((size_t)2 << 20)
#define CACHE_MAX_ENTRIES 32
#define CACHE_MAX_BYTES ((size_t)1 << 30)
#define CACHE_IDLE_SECONDS 2.0

typedef struct cache_entry {
    void *base;
    size_t len;
    double used; /* monotonic seconds when it was released */
} cache_entry_t;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    cache_entry_t e[CACHE_MAX_ENTRIES];
    unsigned n;
    size_t bytes;
    size_t max_bytes; /* 0 until computed */
    int reaper;       /* a reaper thread runs */
    int atfork;
    uint64_t hits;
    uint64_t misses;
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static double
mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
atfork_prepare(void)
{
    pthread_mutex_lock(&cache.mu);
}

static void
atfork_parent(void)
{
    pthread_mutex_unlock(&cache.mu);
}

static void
atfork_child(void)
{
    cache.reaper = 0; /* threads do not survive fork; the next release starts a new one */
    pthread_mutex_unlock(&cache.mu);
}

/* With cache.mu held. */
static size_t
cache_max_bytes(void)
{
    if (cache.max_bytes == 0) {
        long pages = sysconf(_SC_PHYS_PAGES);
        long psize = sysconf(_SC_PAGESIZE);
        size_t max = CACHE_MAX_BYTES;
        if (pages > 0 && psize > 0 && (size_t)pages / 8 < SIZE_MAX / (size_t)psize &&
            (size_t)pages / 8 * (size_t)psize < max) {
            max = (size_t)pages / 8 * (size_t)psize;
        }
        cache.max_bytes = max;
    }
    return cache.max_bytes;
}

/* With cache.mu held: removes entry i (order is kept: oldest first). */
static void
cache_take(unsigned i)
{
    cache.bytes -= cache.e[i].len;
    memmove(&cache.e[i], &cache.e[i + 1], (cache.n - i - 1) * sizeof(cache.e[0]));
    cache.n--;
}

static void *
reaper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cache.mu);
    while (cache.n > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&cache.wake, &cache.mu, &until);
        double now = mono_now();
        while (cache.n > 0 && now - cache.e[0].used >= CACHE_IDLE_SECONDS) {
            void *base = cache.e[0].base;
            size_t len = cache.e[0].len;
            cache_take(0);
            pthread_mutex_unlock(&cache.mu);
            munmap(base, len);
            pthread_mutex_lock(&cache.mu);
        }
    }
    cache.reaper = 0;
    pthread_mutex_unlock(&cache.mu);
    return NULL;
}

/* A fresh mapping of len bytes (a multiple of HUGE_SIZE), HUGE_SIZE aligned. */
static void *
map_new(size_t len)
{
    size_t span = len + HUGE_SIZE;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    size_t head = (HUGE_SIZE - (uintptr_t)p % HUGE_SIZE) % HUGE_SIZE;
    if (head > 0) {
        munmap(p, head);
    }
    if (span - head - len > 0) {
        munmap(p + head + len, span - head - len);
    }
    p += head;
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE); /* advice only: without THP this fails harmlessly */
#endif
    return p;
}

/* A mapping of at least len bytes: a cached one (*fresh = 0) or a new one (*fresh = 1). */
static void *
large_get(size_t len, size_t *got, int *fresh)
{
    pthread_mutex_lock(&cache.mu);
    int best = -1;
    for (unsigned i = 0; i < cache.n; i++) {
        size_t l = cache.e[i].len;
        if (l >= len && l / 2 <= len && (best < 0 || l < cache.e[best].len)) {
            best = (int)i;
        }
    }
    if (best >= 0) {
        void *base = cache.e[best].base;
        *got = cache.e[best].len;
        cache_take((unsigned)best);
        cache.hits++;
        pthread_mutex_unlock(&cache.mu);
        *fresh = 0;
        return base;
    }
    cache.misses++;
    pthread_mutex_unlock(&cache.mu);
    *got = len;
    *fresh = 1;
    return map_new(len);
}

static void
large_put(void *base, size_t len)
{
    void *drop[CACHE_MAX_ENTRIES + 1];
    size_t drop_len[CACHE_MAX_ENTRIES + 1];
    unsigned ndrop = 0;

    pthread_mutex_lock(&cache.mu);
    if (!cache.atfork) {
        cache.atfork = 1;
        pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
    }
    size_t max = cache_max_bytes();
    if (len > max / 4) {
        drop[ndrop] = base;
        drop_len[ndrop++] = len;
    } else {
        while (cache.n > 0 && (cache.n == CACHE_MAX_ENTRIES || cache.bytes + len > max)) {
            drop[ndrop] = cache.e[0].base;
            drop_len[ndrop++] = cache.e[0].len;
            cache_take(0);
        }
        cache.e[cache.n].base = base;
        cache.e[cache.n].len = len;
        cache.e[cache.n].used = mono_now();
        cache.n++;
        cache.bytes += len;
        if (!cache.reaper) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &attr, reaper_main, NULL) == 0) {
                cache.reaper = 1;
            }
            pthread_attr_destroy(&attr);
        }
    }
    pthread_mutex_unlock(&cache.mu);
    for (unsigned i = 0; i < ndrop; i++) {
        munmap(drop[i], drop_len[i]);
    }
}

void
pt_buf_cache_trim(void)
{
    pthread_mutex_lock(&cache.mu);
    while (cache.n > 0) {
        void *base = cache.e[0].base;
        size_t len = cache.e[0].len;
        cache_take(0);
        pthread_mutex_unlock(&cache.mu);
        munmap(base, len);
        pthread_mutex_lock(&cache.mu);
    }
    pthread_cond_broadcast(&cache.wake); /* the reaper sees an empty cache and exits */
    pthread_mutex_unlock(&cache.mu);
}

void
pt_buf_cache_stats(pt_buf_cache_stats_t *out)
{
    pthread_mutex_lock(&cache.mu);
    out->entries = cache.n;
    out->bytes = cache.bytes;
    out->hits = cache.hits;
    out->misses = cache.misses;
    pthread_mutex_unlock(&cache.mu);
}

/* An owned buffer's header at the start of mem (map_len: its own mapping's length, or 0). */
static pt_buf_t *
init_owned(void *mem, size_t len, size_t map_len)
{
    pt_buf_t *b = mem;

    atomic_init(&b->refs, 1);
    b->data = (char *)mem + HEADER_SIZE;
    b->len = len;
    b->free_cb = NULL;
    b->free_ctx = NULL;
    b->wrapped = 0;
    b->map_len = map_len;
    return b;
}

static pt_buf_t *
alloc_large(size_t len, int zero)
{
    size_t need = (HEADER_SIZE + len + HUGE_SIZE - 1) / HUGE_SIZE * HUGE_SIZE;
    size_t got = 0;
    int fresh = 0;
    void *mem = large_get(need, &got, &fresh);
    pt_buf_t *b;

    if (mem == NULL) {
        return NULL;
    }
    b = init_owned(mem, len, got);
    if (zero && !fresh) {
        memset(b->data, 0, len); /* a new mapping is zero already */
    }
    return b;
}

pt_buf_t *
pt_buf_alloc(size_t len, int zero)
{
    void *mem = NULL;
    pt_buf_t *b;

    if (len > SIZE_MAX / 2 - HEADER_SIZE - HUGE_SIZE) {
        return NULL;
    }
    if (LARGE_MAPPINGS && len >= PT_BUF_LARGE_MIN) {
        return alloc_large(len, zero);
    }
    if (posix_memalign(&mem, PT_BUF_ALIGN, HEADER_SIZE + len) != 0) {
        return NULL;
    }
    b = init_owned(mem, len, 0);
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
    b->map_len = 0;
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
    } else if (b->map_len > 0) {
        large_put(b, b->map_len); /* header and data are one mapping */
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

int
pt_buf_is_owned(const pt_buf_t *b)
{
    return b != NULL && !b->wrapped;
}
