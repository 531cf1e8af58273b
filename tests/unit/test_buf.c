/* test_buf.c - reference-counted buffers: alignment, zeroing, wrapping and atomic releases. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/buf.h"

START_TEST(test_alloc_aligned_zeroed)
{
    size_t sizes[] = {0, 1, 63, 64, 65, 4096, 1000003};

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pt_buf_t *b = pt_buf_alloc(sizes[i], 1);
        const unsigned char *p;

        ck_assert_ptr_nonnull(b);
        p = pt_buf_data(b);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % PT_BUF_ALIGN, 0);
        ck_assert_uint_eq(pt_buf_len(b), sizes[i]);
        ck_assert_uint_eq(pt_buf_refs(b), 1);
        for (size_t j = 0; j < sizes[i]; j++) {
            ck_assert_uint_eq(p[j], 0);
        }
        memset(pt_buf_data(b), 0xab, sizes[i]); /* the whole length is writable */
        pt_buf_release(b);
    }
}
END_TEST

START_TEST(test_alloc_refuses_impossible_size)
{
    ck_assert_ptr_null(pt_buf_alloc(SIZE_MAX, 0));
    ck_assert_ptr_null(pt_buf_alloc(SIZE_MAX - 10, 1));
}
END_TEST

START_TEST(test_hold_release_counts)
{
    pt_buf_t *b = pt_buf_alloc(16, 0);

    ck_assert_ptr_nonnull(b);
    pt_buf_hold(b);
    pt_buf_hold(b);
    ck_assert_uint_eq(pt_buf_refs(b), 3);
    pt_buf_release(b);
    ck_assert_uint_eq(pt_buf_refs(b), 2);
    pt_buf_release(b);
    ck_assert_uint_eq(pt_buf_refs(b), 1);
    pt_buf_release(b);
    pt_buf_release(NULL); /* harmless */
    pt_buf_hold(NULL);
}
END_TEST

typedef struct free_record {
    int calls;
    void *data;
    void *ctx;
} free_record_t;

static void
record_free(void *data, void *ctx)
{
    free_record_t *fr = ctx;
    fr->calls++;
    fr->data = data;
    fr->ctx = ctx;
}

START_TEST(test_wrap_calls_free_once)
{
    static char storage[100];
    free_record_t fr = {0, NULL, NULL};
    pt_buf_t *b = pt_buf_wrap(storage, sizeof(storage), record_free, &fr);

    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_eq(pt_buf_data(b), storage);
    ck_assert_uint_eq(pt_buf_len(b), sizeof(storage));
    pt_buf_hold(b);
    pt_buf_release(b);
    ck_assert_int_eq(fr.calls, 0);
    pt_buf_release(b);
    ck_assert_int_eq(fr.calls, 1);
    ck_assert_ptr_eq(fr.data, storage);
    ck_assert_ptr_eq(fr.ctx, &fr);
}
END_TEST

START_TEST(test_wrap_static_without_callback)
{
    static const char text[] = "static bytes";
    pt_buf_t *b = pt_buf_wrap((void *)text, sizeof(text), NULL, NULL);

    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(pt_buf_data(b), "static bytes");
    pt_buf_release(b);
}
END_TEST

static pt_buf_t *shared_buf;

static void *
hold_release_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++) {
        pt_buf_hold(shared_buf);
        pt_buf_release(shared_buf);
    }
    pt_buf_release(shared_buf); /* each thread owns one reference */
    return NULL;
}

static void
count_free(void *data, void *ctx)
{
    (void)data;
    __atomic_add_fetch((int *)ctx, 1, __ATOMIC_SEQ_CST);
}

START_TEST(test_release_from_many_threads)
{
    enum { THREADS = 4 };
    pthread_t t[THREADS];
    int freed = 0;
    void *mem = malloc(32);

    shared_buf = pt_buf_wrap(mem, 32, count_free, &freed);
    ck_assert_ptr_nonnull(shared_buf);
    for (int i = 1; i < THREADS; i++) {
        pt_buf_hold(shared_buf);
    }
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, hold_release_many, NULL), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    ck_assert_int_eq(freed, 1);
    free(mem);
}
END_TEST

/* ---- Large buffers: own mappings, recycled through the cache -------------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define NO_CACHE 1 /* buf.c mallocs every buffer under AddressSanitizer */
#else
#define NO_CACHE 0
#endif

static void
assert_all(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(p[i] == v, "byte %zu is %u, expected %u", i, p[i], v);
    }
}

START_TEST(test_large_reused_and_zeroed_on_request)
{
    const size_t n = (size_t)5 << 20;
    pt_buf_cache_stats_t st0, st;

    pt_buf_cache_trim();
    pt_buf_cache_stats(&st0);
    ck_assert_uint_eq(st0.entries, 0);
    ck_assert_uint_eq(st0.bytes, 0);

    pt_buf_t *a = pt_buf_alloc(n, 1);
    ck_assert_ptr_nonnull(a);
    ck_assert_uint_eq((uintptr_t)pt_buf_data(a) % PT_BUF_ALIGN, 0);
    ck_assert_uint_eq(pt_buf_len(a), n);
    assert_all(pt_buf_data(a), n, 0);
    memset(pt_buf_data(a), 0xab, n);
    void *pa = pt_buf_data(a);
    pt_buf_release(a);
    if (NO_CACHE) {
        return;
    }
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 1);
    ck_assert_uint_ge(st.bytes, n);

    /* The same mapping comes back, zeroed because it was asked for. */
    pt_buf_t *b = pt_buf_alloc(n, 1);
    ck_assert_ptr_eq(pt_buf_data(b), pa);
    assert_all(pt_buf_data(b), n, 0);
    memset(pt_buf_data(b), 0xcd, n);
    pt_buf_release(b);
    /* Not zeroed when not asked: the previous bytes are still there. */
    b = pt_buf_alloc(n - 100, 0);
    ck_assert_ptr_eq(pt_buf_data(b), pa);
    ck_assert_uint_eq(((unsigned char *)pt_buf_data(b))[0], 0xcd);
    /* A second buffer while the first is in use is a new mapping. */
    pt_buf_t *c = pt_buf_alloc(n, 0);
    ck_assert_ptr_ne(pt_buf_data(c), pa);
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.hits, st0.hits + 2);
    ck_assert_uint_eq(st.misses, st0.misses + 2);
    pt_buf_release(b);
    pt_buf_release(c);
    /* A request of less than half a cached mapping does not take it. */
    pt_buf_t *small = pt_buf_alloc((size_t)1 << 20, 0);
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 2);
    pt_buf_release(small);

    pt_buf_cache_trim();
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
}
END_TEST

/* Cached memory goes back to the kernel by itself once nobody allocates (about 2 s). */
START_TEST(test_large_cache_returns_memory_when_idle)
{
    pt_buf_cache_stats_t st;

    pt_buf_release(pt_buf_alloc((size_t)4 << 20, 0));
    pt_buf_release(pt_buf_alloc((size_t)9 << 20, 0));
    if (NO_CACHE) {
        return;
    }
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 2);
    for (int i = 0; i < 150; i++) { /* at most 15 s; the test's point is that it happens */
        pt_buf_cache_stats(&st);
        if (st.entries == 0) {
            break;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    /* The cache works again afterwards (a new reaper thread). */
    pt_buf_release(pt_buf_alloc((size_t)4 << 20, 0));
    pt_buf_cache_stats(&st);
    ck_assert_uint_eq(st.entries, 1);
    pt_buf_cache_trim();
}
END_TEST

/* Many threads allocating, filling, checking and releasing large buffers of a few sizes. */
static void *
large_worker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 40; i++) {
        size_t n = ((size_t)1 << 20) + (size_t)(rand_r(&seed) % 4) * ((size_t)1 << 20);
        unsigned char v = (unsigned char)(rand_r(&seed) | 1);
        pt_buf_t *b = pt_buf_alloc(n, 1);
        if (b == NULL) {
            return (void *)1;
        }
        unsigned char *p = pt_buf_data(b);
        if (p[0] != 0 || p[n - 1] != 0 || p[n / 2] != 0) {
            pt_buf_release(b);
            return (void *)2;
        }
        memset(p, v, n);
        if (p[n - 1] != v) {
            pt_buf_release(b);
            return (void *)3;
        }
        pt_buf_release(b);
    }
    return NULL;
}

START_TEST(test_large_from_many_threads)
{
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) {
        ck_assert_int_eq(pthread_create(&t[i], NULL, large_worker, (void *)(i + 1)), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        ck_assert_ptr_null(r);
    }
    pt_buf_cache_stats_t st;
    pt_buf_cache_stats(&st);
    ck_assert_uint_le(st.entries, 32);
    pt_buf_cache_trim();
}
END_TEST

static Suite *
buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_alloc_aligned_zeroed);
    tcase_add_test(tc, test_alloc_refuses_impossible_size);
    tcase_add_test(tc, test_hold_release_counts);
    tcase_add_test(tc, test_wrap_calls_free_once);
    tcase_add_test(tc, test_wrap_static_without_callback);
    tcase_add_test(tc, test_release_from_many_threads);
    tcase_add_test(tc, test_large_reused_and_zeroed_on_request);
    tcase_add_test(tc, test_large_cache_returns_memory_when_idle);
    tcase_add_test(tc, test_large_from_many_threads);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(buf_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
