/* test_pool.c - the worker pool: jobs that reply to actors, parallel_for, shutdown. */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <petal/petal.h>

#include "runtime/actor.h"

#define MSG_START 1u
#define MSG_JOB 2u
#define NJOBS 1000

typedef struct sum_job {
    pt_job_t job;
    uint64_t n;
    uint64_t sum;
    int on_loop;
} sum_job_t;

static atomic_int jobs_run;
static atomic_int jobs_freed;
static pt_runtime_t *the_rt;

static void
sum_work(pt_job_t *j)
{
    sum_job_t *s = (sum_job_t *)j;

    s->on_loop = pt_runtime_on_loop(the_rt);
    for (uint64_t i = 1; i <= s->n; i++) {
        s->sum += i;
    }
    atomic_fetch_add(&jobs_run, 1);
}

static void
sum_free(pt_msg_t *m)
{
    atomic_fetch_add(&jobs_freed, 1);
    free(m);
}

static sum_job_t *
sum_new(uint64_t n, pt_actor_t *reply_to)
{
    sum_job_t *s = calloc(1, sizeof(*s));

    ck_assert_ptr_nonnull(s);
    s->job.hdr.type = MSG_JOB;
    s->job.hdr.free = sum_free;
    s->job.work = sum_work;
    s->job.reply_to = reply_to;
    s->n = n;
    return s;
}

static pt_runtime_t *
rt_new(uint32_t workers)
{
    pt_runtime_opts_t o = {.workers = workers};
    pt_runtime_t *rt = NULL;

    atomic_store(&jobs_run, 0);
    atomic_store(&jobs_freed, 0);
    ck_assert_int_eq(pt_runtime_alloc(&o, &rt), 0);
    the_rt = rt;
    return rt;
}

/* ---- Jobs reply --------------------------------------------------------------------------- */

typedef struct reply_state {
    int replies;
    int guard_fired;
    pt_timer_t *guard;
} reply_state_t;

static void
reply_handler(pt_actor_t *self, pt_msg_t *m)
{
    reply_state_t *s = pt_actor_state(self);
    pt_runtime_t *rt = pt_actor_runtime(self);

    if (m->type == MSG_START) {
        ck_assert_int_eq(pt_timer_start(self, 30000, 0, 0, &s->guard), 0);
        for (uint64_t i = 0; i < NJOBS; i++) {
            ck_assert_int_eq(pt_pool_submit(rt, &sum_new(i, self)->job), 0);
        }
        free(m);
        return;
    }
    if (m->type == PT_MSG_TIMER) {
        s->guard_fired = 1;
        pt_runtime_shutdown(rt);
    } else if (m->type == MSG_JOB) {
        sum_job_t *j = (sum_job_t *)m;

        ck_assert(pt_runtime_on_loop(rt));
        ck_assert(!j->on_loop);
        ck_assert_uint_eq(j->sum, j->n * (j->n + 1) / 2);
        if (++s->replies == NJOBS) {
            pt_timer_stop(s->guard);
            pt_runtime_shutdown(rt);
        }
    }
    pt_msg_free(m);
}

START_TEST(test_jobs_reply)
{
    pt_runtime_t *rt = rt_new(3);
    reply_state_t s = {0};
    pt_actor_t *a;
    pt_msg_t *start = calloc(1, sizeof(*start));

    ck_assert_uint_eq(pt_runtime_workers(rt), 3);
    ck_assert_int_eq(pt_actor_spawn(rt, "collector", reply_handler, &s, &a), 0);
    start->type = MSG_START;
    ck_assert_int_eq(pt_actor_send(a, start), 0);
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    ck_assert(!s.guard_fired);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
    ck_assert_int_eq(s.replies, NJOBS);
    ck_assert_int_eq(atomic_load(&jobs_run), NJOBS);
    ck_assert_int_eq(atomic_load(&jobs_freed), NJOBS);
}
END_TEST

/* A job whose actor stopped meanwhile is freed with hdr.free; so is a job without reply_to. */
static void
ignore_handler(pt_actor_t *self, pt_msg_t *m)
{
    (void)self;
    pt_msg_free(m);
}

START_TEST(test_jobs_to_stopped_actor)
{
    pt_runtime_t *rt = rt_new(2);
    pt_actor_t *a;

    ck_assert_int_eq(pt_actor_spawn(rt, "gone", ignore_handler, NULL, &a), 0);
    pt_actor_stop(a);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(pt_pool_submit(rt, &sum_new(100, a)->job), 0);
        ck_assert_int_eq(pt_pool_submit(rt, &sum_new(100, NULL)->job), 0);
    }
    pt_runtime_shutdown(rt);
    {
        sum_job_t *late = sum_new(1, NULL);

        ck_assert_int_eq(pt_pool_submit(rt, &late->job), PETAL_ECLOSED);
        free(late);
    }
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
    ck_assert_int_eq(atomic_load(&jobs_run), 40);
    ck_assert_int_eq(atomic_load(&jobs_freed), 40);
}
END_TEST

START_TEST(test_submit_invalid)
{
    pt_runtime_t *rt = rt_new(1);
    pt_job_t j = {0};

    ck_assert_int_eq(pt_pool_submit(rt, NULL), PETAL_EINVAL);
    ck_assert_int_eq(pt_pool_submit(rt, &j), PETAL_EINVAL);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

/* ---- parallel_for ---------------------------------------------------------------------------- */

#define PF_N 100000

typedef struct pf_state {
    atomic_uchar *hits;
    atomic_int threads_seen;
} pf_state_t;

static void
pf_body(uint32_t i, void *arg)
{
    pf_state_t *s = arg;

    atomic_fetch_add(&s->hits[i], 1);
}

static void
check_pf(pt_runtime_t *rt, uint32_t n)
{
    pf_state_t s;

    s.hits = calloc(n + 1, sizeof(*s.hits));
    ck_assert_ptr_nonnull(s.hits);
    pt_pool_parallel_for(rt, n, pf_body, &s);
    for (uint32_t i = 0; i < n; i++) {
        ck_assert_msg(atomic_load(&s.hits[i]) == 1, "index %u ran %d times", i,
                      (int)atomic_load(&s.hits[i]));
    }
    ck_assert_int_eq(atomic_load(&s.hits[n]), 0);
    free(s.hits);
}

START_TEST(test_parallel_for_covers_all)
{
    pt_runtime_t *rt = rt_new(4);

    check_pf(rt, 0);
    check_pf(rt, 1);
    check_pf(rt, 3);
    check_pf(rt, PF_N);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

static void
pf_thread(void *arg)
{
    for (int r = 0; r < 20; r++) {
        check_pf(arg, 5000);
    }
}

START_TEST(test_parallel_for_concurrent_callers)
{
    pt_runtime_t *rt = rt_new(2);
    uv_thread_t th[3];

    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(uv_thread_create(&th[i], pf_thread, rt), 0);
    }
    for (int i = 0; i < 3; i++) {
        uv_thread_join(&th[i]);
    }
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

/* parallel_for from inside a job (a worker) still completes: the caller takes part. */
static void
pf_in_job_work(pt_job_t *j)
{
    (void)j;
    check_pf(the_rt, 10000);
    atomic_fetch_add(&jobs_run, 1);
}

START_TEST(test_parallel_for_from_worker)
{
    pt_runtime_t *rt = rt_new(2);
    sum_job_t *j = sum_new(0, NULL);

    j->job.work = pf_in_job_work;
    ck_assert_int_eq(pt_pool_submit(rt, &j->job), 0);
    pt_runtime_shutdown(rt);
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
    ck_assert_int_eq(atomic_load(&jobs_run), 1);
    ck_assert_int_eq(atomic_load(&jobs_freed), 1);
}
END_TEST

START_TEST(test_default_workers)
{
    pt_runtime_t *rt = rt_new(0);

    ck_assert_uint_eq(pt_runtime_workers(rt), uv_available_parallelism());
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

static Suite *
pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_jobs_reply);
    tcase_add_test(tc, test_jobs_to_stopped_actor);
    tcase_add_test(tc, test_submit_invalid);
    tcase_add_test(tc, test_parallel_for_covers_all);
    tcase_add_test(tc, test_parallel_for_concurrent_callers);
    tcase_add_test(tc, test_parallel_for_from_worker);
    tcase_add_test(tc, test_default_workers);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(pool_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
