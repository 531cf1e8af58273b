/* test_fedavg_narrow.c - FedAvg's narrow sums for very large models: in place, exact rounding. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include "actors/serverapp/aggregate.h"
#include "runtime/buf.h"
#include "runtime/message.h"

#define N 1000

/* A reply message with "arrays" {"w": float32[N] = f(i, seed), "b": float64[3]}. */
static petal_message_t *
reply_of(int seed)
{
    petal_recorddict_t *d = petal_recorddict_alloc();
    petal_arrayrecord_t *ar = petal_recorddict_add_arrays(d, "arrays");
    uint64_t sw[1] = {N};
    uint64_t sb[1] = {3};
    petal_array_t *w = petal_arrayrecord_add(ar, "w", PETAL_DTYPE_FLOAT32, 1, sw);
    petal_array_t *b = petal_arrayrecord_add(ar, "b", PETAL_DTYPE_FLOAT64, 1, sb);
    ck_assert_ptr_nonnull(w);
    ck_assert_ptr_nonnull(b);
    float *x = petal_array_data_mut(w);
    double *y = petal_array_data_mut(b);
    for (int i = 0; i < N; i++) {
        x[i] = (float)sin(0.1 * i + seed) * 3.3f;
    }
    for (int i = 0; i < 3; i++) {
        y[i] = 1.0 / (i + seed + 1);
    }
    petal_message_t *m = petal_message_alloc(d, "train", 0, "1", 60.0);
    ck_assert_ptr_nonnull(m);
    return m;
}

static const petal_arrayrecord_t *
arrays_of(const petal_message_t *m)
{
    return petal_recorddict_arrays(petal_message_content(m), "arrays");
}

/* The narrow sums' arithmetic, written out: each fold rounds once to the array's dtype. */
static void
expected(const petal_message_t *r1, const petal_message_t *r2, double w1, double w2, float *ew,
         double *eb)
{
    const float *x1 = petal_array_data(petal_arrayrecord_get(arrays_of(r1), "w"));
    const float *x2 = petal_array_data(petal_arrayrecord_get(arrays_of(r2), "w"));
    const double *y1 = petal_array_data(petal_arrayrecord_get(arrays_of(r1), "b"));
    const double *y2 = petal_array_data(petal_arrayrecord_get(arrays_of(r2), "b"));
    for (int i = 0; i < N; i++) {
        float s = (float)(0.0 + w1 * (double)x1[i]);
        s = (float)((double)s + w2 * (double)x2[i]);
        ew[i] = (float)((double)s / (w1 + w2));
    }
    for (int i = 0; i < 3; i++) {
        eb[i] = (0.0 + w1 * y1[i] + w2 * y2[i]) / (w1 + w2);
    }
}

/* Folds r1 (weight 1) and r2 (weight 3) with narrow sums into `out`; returns the accumulator
 * (the caller frees it). */
static pt_fedavg_acc_t *
fold_two(const petal_message_t *r1, const petal_message_t *r2, petal_arrayrecord_t *out,
         uint64_t narrow_min)
{
    pt_fedavg_acc_t *acc = NULL;
    char why[256] = "";
    ck_assert_int_eq(pt_fedavg_acc_alloc(arrays_of(r2), 1u << 20, why, sizeof(why), &acc), 0);
    pt_fedavg_acc_set_narrow(acc, narrow_min);
    ck_assert_int_eq(pt_fedavg_acc_fold_reply(acc, r1, arrays_of(r1), 1.0, NULL, why, sizeof(why)),
                     0);
    ck_assert_int_eq(pt_fedavg_acc_fold_reply(acc, r2, arrays_of(r2), 3.0, NULL, why, sizeof(why)),
                     0);
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), 0);
    return acc;
}

/* A reply this process alone holds becomes the sums, and then the output: no new memory. */
START_TEST(test_narrow_in_place_when_owned)
{
    petal_message_t *r1 = reply_of(1);
    petal_message_t *r2 = reply_of(2);
    petal_message_t *c1 = reply_of(1); /* the same values, to compute what to expect */
    float ew[N];
    double eb[3];
    expected(c1, r2, 1.0, 3.0, ew, eb);
    pt_buf_t *wbuf = pt_array_buf(petal_arrayrecord_get(arrays_of(r1), "w"));

    petal_recorddict_t *o = petal_recorddict_alloc();
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(o, "arrays");
    pt_fedavg_acc_t *acc = fold_two(r1, r2, out, 1);
    ck_assert(pt_fedavg_acc_is_narrow(acc));
    ck_assert_ptr_null(pt_fedavg_acc_mean(acc, NULL));
    /* The output's "w" lives in the first reply's buffer. */
    ck_assert_ptr_eq(pt_array_buf(petal_arrayrecord_get(out, "w")), wbuf);
    ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "w")), ew, sizeof(ew));
    ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "b")), eb, sizeof(eb));
    /* Finishing twice would overwrite the output with a second division. */
    ck_assert_int_eq(pt_fedavg_acc_finish(acc, out, NULL), PETAL_ESTATE);
    char why[128];
    ck_assert_int_eq(pt_fedavg_acc_fold(acc, arrays_of(r2), 1.0, NULL, why, sizeof(why)),
                     PETAL_ESTATE);

    /* The output outlives the accumulator and the replies. */
    pt_fedavg_acc_free(acc);
    petal_message_free(r1);
    petal_message_free(r2);
    ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "w")), ew, sizeof(ew));
    petal_recorddict_free(o);
    petal_message_free(c1);
}
END_TEST

/* A reply someone else also sees (a second message reference, or a buffer shared with another
 * message) is left untouched: the sums get their own buffer, with the same result bytes. */
START_TEST(test_narrow_copy_when_shared)
{
    for (int how = 0; how < 2; how++) {
        petal_message_t *r1 = reply_of(1);
        petal_message_t *r2 = reply_of(2);
        petal_message_t *c1 = reply_of(1);
        petal_recorddict_t *other = NULL;
        if (how == 0) {
            pt_message_hold(r1);
        } else {
            other = petal_recorddict_alloc();
            ck_assert_int_eq(petal_arrayrecord_add_ref(petal_recorddict_add_arrays(other, "x"), "w",
                                                       petal_arrayrecord_get(arrays_of(r1), "w")),
                             0);
        }
        float ew[N];
        double eb[3];
        expected(c1, r2, 1.0, 3.0, ew, eb);

        petal_recorddict_t *o = petal_recorddict_alloc();
        petal_arrayrecord_t *out = petal_recorddict_add_arrays(o, "arrays");
        pt_fedavg_acc_t *acc = fold_two(r1, r2, out, 1);
        ck_assert(pt_fedavg_acc_is_narrow(acc));
        ck_assert_ptr_ne(pt_array_buf(petal_arrayrecord_get(out, "w")),
                         pt_array_buf(petal_arrayrecord_get(arrays_of(r1), "w")));
        ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "w")), ew, sizeof(ew));
        ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "b")), eb, sizeof(eb));
        /* r1 still holds its own values. */
        ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(arrays_of(r1), "w")),
                         petal_array_data(petal_arrayrecord_get(arrays_of(c1), "w")),
                         N * sizeof(float));
        pt_fedavg_acc_free(acc);
        petal_recorddict_free(o);
        if (how == 0) {
            petal_message_free(r1);
        }
        petal_recorddict_free(other);
        petal_message_free(r1);
        petal_message_free(r2);
        petal_message_free(c1);
    }
}
END_TEST

/* Below the threshold the sums stay double precision (and float64 arrays give the same bytes
 * either way). */
START_TEST(test_wide_below_threshold)
{
    petal_message_t *r1 = reply_of(1);
    petal_message_t *r2 = reply_of(2);
    petal_recorddict_t *o = petal_recorddict_alloc();
    petal_arrayrecord_t *out = petal_recorddict_add_arrays(o, "arrays");
    pt_fedavg_acc_t *acc = fold_two(r1, r2, out, N + 4);
    ck_assert(!pt_fedavg_acc_is_narrow(acc));
    ck_assert_ptr_ne(pt_array_buf(petal_arrayrecord_get(out, "w")),
                     pt_array_buf(petal_arrayrecord_get(arrays_of(r1), "w")));
    const float *w = petal_array_data(petal_arrayrecord_get(out, "w"));
    const float *x1 = petal_array_data(petal_arrayrecord_get(arrays_of(r1), "w"));
    const float *x2 = petal_array_data(petal_arrayrecord_get(arrays_of(r2), "w"));
    for (int i = 0; i < N; i++) {
        float want = (float)((0.0 + 1.0 * (double)x1[i] + 3.0 * (double)x2[i]) / 4.0);
        ck_assert_msg(w[i] == want, "w[%d] = %.9g, want %.9g", i, (double)w[i], (double)want);
    }
    float ew[N];
    double eb[3];
    expected(r1, r2, 1.0, 3.0, ew, eb);
    ck_assert_mem_eq(petal_array_data(petal_arrayrecord_get(out, "b")), eb, sizeof(eb));
    pt_fedavg_acc_free(acc);
    petal_recorddict_free(o);
    petal_message_free(r1);
    petal_message_free(r2);
}
END_TEST

static Suite *
narrow_suite(void)
{
    Suite *s = suite_create("fedavg_narrow");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_narrow_in_place_when_owned);
    tcase_add_test(tc, test_narrow_copy_when_shared);
    tcase_add_test(tc, test_wide_below_threshold);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(narrow_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
