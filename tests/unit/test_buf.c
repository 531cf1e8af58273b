/* test_buf.c - reference-counted buffers: alignment, zeroing, wrapping and atomic releases. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
