/* test_actor.c - the actor runtime: ordering, fairness, cross-thread sends, stop, timers. */
#include <check.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <petal/petal.h>

#include "runtime/actor.h"

#define MSG_START 1u
#define MSG_DATA 2u
#define GUARD_MS 30000

typedef struct tmsg {
    pt_msg_t hdr;
    uint32_t sender;
    uint64_t seq;
} tmsg_t;

static atomic_int msgs_freed;

static void
tmsg_free(pt_msg_t *m)
{
    atomic_fetch_add(&msgs_freed, 1);
    free(m);
}

static tmsg_t *
tmsg_new(uint32_t type, uint32_t sender, uint64_t seq)
{
    tmsg_t *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->hdr.type = type;
    m->hdr.free = tmsg_free;
    m->sender = sender;
    m->seq = seq;
    return m;
}

static void
send_or_fail(pt_actor_t *to, uint32_t type, uint32_t sender, uint64_t seq)
{
    tmsg_t *m = tmsg_new(type, sender, seq);

    ck_assert_int_eq(pt_actor_send(to, &m->hdr), 0);
}

/* ---- The guard: every async test ends within GUARD_MS or fails ------------------------------ */

static int guard_fired;

static void
guard_handler(pt_actor_t *self, pt_msg_t *m)
{
    if (m->type == PT_MSG_TIMER) {
        guard_fired = 1;
        pt_runtime_shutdown(pt_actor_runtime(self));
    } else if (m->type == MSG_START) {
        pt_timer_t *t;
        int r = pt_timer_start(self, GUARD_MS, 0, 0, &t);

        /* PETAL_ECLOSED when the runtime is already shutting down. */
        ck_assert(r == 0 || r == PETAL_ECLOSED);
    }
    pt_msg_free(m);
}

static pt_runtime_t *
rt_new(uint32_t workers, uint32_t batch, uint32_t hwm)
{
    pt_runtime_opts_t o = {.workers = workers, .batch = batch, .mailbox_hwm = hwm};
    pt_runtime_t *rt = NULL;
    pt_actor_t *g;

    guard_fired = 0;
    atomic_store(&msgs_freed, 0);
    ck_assert_int_eq(pt_runtime_alloc(&o, &rt), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "guard", guard_handler, NULL, &g), 0);
    send_or_fail(g, MSG_START, 0, 0);
    return rt;
}

static void
rt_run_and_free(pt_runtime_t *rt)
{
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    ck_assert_msg(!guard_fired, "the guard timer fired: the test did not finish");
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}

/* ---- Ordering per sender --------------------------------------------------------------------- */

#define ORDER_N 10000

typedef struct order_state {
    uint64_t next[2];
    uint64_t got;
    pt_actor_t *recv;
} order_state_t;

static void
order_recv(pt_actor_t *self, pt_msg_t *m)
{
    order_state_t *s = pt_actor_state(self);

    if (m->type == MSG_DATA) {
        tmsg_t *t = (tmsg_t *)m;

        ck_assert_uint_eq(t->seq, s->next[t->sender]);
        s->next[t->sender]++;
        if (++s->got == 2 * ORDER_N) {
            pt_runtime_shutdown(pt_actor_runtime(self));
        }
    }
    pt_msg_free(m);
}

static void
order_send(pt_actor_t *self, pt_msg_t *m)
{
    order_state_t *s = pt_actor_state(self);

    if (m->type == MSG_START) {
        ck_assert(pt_runtime_on_loop(pt_actor_runtime(self)));
        for (uint64_t i = 0; i < ORDER_N; i++) {
            send_or_fail(s->recv, MSG_DATA, 1, i);
        }
    }
    pt_msg_free(m);
}

START_TEST(test_order_per_sender)
{
    pt_runtime_t *rt = rt_new(1, 0, 0);
    order_state_t s = {0};
    pt_actor_t *snd;

    ck_assert_int_eq(pt_actor_spawn(rt, "recv", order_recv, &s, &s.recv), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "send", order_send, &s, &snd), 0);
    ck_assert(!pt_runtime_on_loop(rt));
    send_or_fail(snd, MSG_START, 0, 0);
    /* Sender 0 is this thread, before the loop runs; sender 1 is an actor on the loop. */
    for (uint64_t i = 0; i < ORDER_N; i++) {
        send_or_fail(s.recv, MSG_DATA, 0, i);
    }
    rt_run_and_free(rt);
    ck_assert_uint_eq(s.got, 2 * ORDER_N);
}
END_TEST

/* ---- Batch fairness -------------------------------------------------------------------------- */

#define FAIR_N 200
#define FAIR_BATCH 8

typedef struct fair_state {
    char order[2 * FAIR_N];
    int n;
} fair_state_t;

static fair_state_t fair;

static void
fair_handler(pt_actor_t *self, pt_msg_t *m)
{
    if (m->type == MSG_DATA) {
        fair.order[fair.n++] = *(const char *)pt_actor_state(self);
        if (fair.n == 2 * FAIR_N) {
            pt_runtime_shutdown(pt_actor_runtime(self));
        }
    }
    pt_msg_free(m);
}

START_TEST(test_batch_fairness)
{
    static const char tag_a = 'A';
    static const char tag_b = 'B';
    pt_runtime_t *rt = rt_new(1, FAIR_BATCH, 0);
    pt_actor_t *a;
    pt_actor_t *b;
    int run = 0;
    int max_run = 0;
    int switches = 0;

    memset(&fair, 0, sizeof(fair));
    ck_assert_int_eq(pt_actor_spawn(rt, "a", fair_handler, (void *)&tag_a, &a), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "b", fair_handler, (void *)&tag_b, &b), 0);
    for (int i = 0; i < FAIR_N; i++) {
        send_or_fail(a, MSG_DATA, 0, (uint64_t)i);
    }
    for (int i = 0; i < FAIR_N; i++) {
        send_or_fail(b, MSG_DATA, 0, (uint64_t)i);
    }
    rt_run_and_free(rt);
    ck_assert_int_eq(fair.n, 2 * FAIR_N);
    for (int i = 0; i < fair.n; i++) {
        if (i > 0 && fair.order[i] != fair.order[i - 1]) {
            switches++;
            run = 0;
        }
        run++;
        max_run = run > max_run ? run : max_run;
    }
    /* Both were busy all along: neither ran more than one batch before the other got a turn. */
    ck_assert_int_le(max_run, FAIR_BATCH);
    ck_assert_int_ge(switches, 2 * FAIR_N / FAIR_BATCH - 1);
}
END_TEST

/* ---- Cross-thread sends ---------------------------------------------------------------------- */

#define XT_THREADS 4
#define XT_PER_THREAD 100000

typedef struct xt_state {
    pt_actor_t *recv;
    uint64_t next[XT_THREADS];
    uint64_t got;
    uv_barrier_t start;
} xt_state_t;

typedef struct xt_thread {
    xt_state_t *s;
    uint32_t id;
    uv_thread_t th;
} xt_thread_t;

static void
xt_recv(pt_actor_t *self, pt_msg_t *m)
{
    xt_state_t *s = pt_actor_state(self);

    if (m->type == MSG_DATA) {
        tmsg_t *t = (tmsg_t *)m;

        ck_assert_uint_lt(t->sender, XT_THREADS);
        ck_assert_uint_eq(t->seq, s->next[t->sender]);
        s->next[t->sender]++;
        if (++s->got == (uint64_t)XT_THREADS * XT_PER_THREAD) {
            pt_runtime_shutdown(pt_actor_runtime(self));
        }
    }
    pt_msg_free(m);
}

static void
xt_main(void *arg)
{
    xt_thread_t *t = arg;

    uv_barrier_wait(&t->s->start);
    for (uint64_t i = 0; i < XT_PER_THREAD; i++) {
        tmsg_t *m = tmsg_new(MSG_DATA, t->id, i);

        if (pt_actor_send(t->s->recv, &m->hdr) != 0) {
            abort();
        }
    }
}

START_TEST(test_cross_thread_sends)
{
    pt_runtime_t *rt = rt_new(1, 0, 0);
    static xt_state_t s;
    xt_thread_t th[XT_THREADS];

    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(uv_barrier_init(&s.start, XT_THREADS), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "recv", xt_recv, &s, &s.recv), 0);
    for (uint32_t i = 0; i < XT_THREADS; i++) {
        th[i].s = &s;
        th[i].id = i;
        ck_assert_int_eq(uv_thread_create(&th[i].th, xt_main, &th[i]), 0);
    }
    rt_run_and_free(rt);
    for (uint32_t i = 0; i < XT_THREADS; i++) {
        uv_thread_join(&th[i].th);
        ck_assert_uint_eq(s.next[i], XT_PER_THREAD);
    }
    uv_barrier_destroy(&s.start);
    ck_assert_uint_eq(s.got, (uint64_t)XT_THREADS * XT_PER_THREAD);
    ck_assert_int_eq(atomic_load(&msgs_freed), XT_THREADS * XT_PER_THREAD + 1);
}
END_TEST

/* ---- Stop ------------------------------------------------------------------------------------ */

typedef struct stop_state {
    int got;
    int stops;
    int after_stop;
} stop_state_t;

static void
stop_handler(pt_actor_t *self, pt_msg_t *m)
{
    stop_state_t *s = pt_actor_state(self);

    if (m->type == PT_MSG_STOP) {
        s->stops++;
        /* No sends accepted any more, not even from itself. */
        tmsg_t *t = tmsg_new(MSG_DATA, 0, 0);
        ck_assert_int_eq(pt_actor_send(self, &t->hdr), PETAL_ECLOSED);
        pt_msg_free(&t->hdr);
        pt_runtime_shutdown(pt_actor_runtime(self));
    } else {
        if (s->stops > 0) {
            s->after_stop++;
        }
        ck_assert_uint_eq(((tmsg_t *)m)->seq, (uint64_t)s->got);
        s->got++;
    }
    pt_msg_free(m);
}

START_TEST(test_stop_semantics)
{
    pt_runtime_t *rt = rt_new(1, 7, 0);
    stop_state_t s = {0};
    pt_actor_t *a;
    tmsg_t *late;

    ck_assert_int_eq(pt_actor_spawn(rt, "stopper", stop_handler, &s, &a), 0);
    for (int i = 0; i < 100; i++) {
        send_or_fail(a, MSG_DATA, 0, (uint64_t)i);
    }
    pt_actor_stop(a);
    pt_actor_stop(a); /* idempotent */
    late = tmsg_new(MSG_DATA, 0, 100);
    ck_assert_int_eq(pt_actor_send(a, &late->hdr), PETAL_ECLOSED);
    pt_msg_free(&late->hdr);
    rt_run_and_free(rt);
    ck_assert_int_eq(s.got, 100);
    ck_assert_int_eq(s.stops, 1);
    ck_assert_int_eq(s.after_stop, 0);
}
END_TEST

/* Senders on other threads race with pt_actor_stop: STOP is still the last message, and every
 * accepted message is handled exactly once. */
typedef struct race_state {
    pt_actor_t *a;
    atomic_ulong accepted;
    uint64_t handled;
    int stopped;
    uv_barrier_t start;
} race_state_t;

static void
race_handler(pt_actor_t *self, pt_msg_t *m)
{
    race_state_t *s = pt_actor_state(self);

    if (m->type == PT_MSG_STOP) {
        ck_assert(!s->stopped);
        s->stopped = 1;
        pt_runtime_shutdown(pt_actor_runtime(self));
    } else {
        ck_assert(!s->stopped);
        if (++s->handled == 20000) {
            pt_actor_stop(self);
        }
    }
    pt_msg_free(m);
}

static void
race_main(void *arg)
{
    race_state_t *s = arg;

    uv_barrier_wait(&s->start);
    for (;;) {
        tmsg_t *m = tmsg_new(MSG_DATA, 0, 0);

        if (pt_actor_send(s->a, &m->hdr) != 0) {
            pt_msg_free(&m->hdr);
            break;
        }
        atomic_fetch_add(&s->accepted, 1);
    }
}

START_TEST(test_stop_races_senders)
{
    pt_runtime_t *rt = rt_new(1, 0, 0);
    static race_state_t s;
    uv_thread_t th[3];

    memset(&s, 0, sizeof(s));
    atomic_init(&s.accepted, 0);
    ck_assert_int_eq(uv_barrier_init(&s.start, 3), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "racer", race_handler, &s, &s.a), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(uv_thread_create(&th[i], race_main, &s), 0);
    }
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    for (int i = 0; i < 3; i++) {
        uv_thread_join(&th[i]);
    }
    uv_barrier_destroy(&s.start);
    ck_assert(!guard_fired);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
    ck_assert(s.stopped);
    ck_assert_uint_eq(s.handled, atomic_load(&s.accepted));
}
END_TEST

/* ---- Shutdown and free ----------------------------------------------------------------------- */

static atomic_int stops_seen;

static void
count_stop_handler(pt_actor_t *self, pt_msg_t *m)
{
    (void)self;
    if (m->type == PT_MSG_STOP) {
        atomic_fetch_add(&stops_seen, 1);
    }
    pt_msg_free(m);
}

static void
shutdown_thread(void *arg)
{
    pt_runtime_shutdown(arg);
    pt_runtime_shutdown(arg); /* idempotent */
}

START_TEST(test_shutdown_from_thread)
{
    pt_runtime_t *rt = rt_new(2, 0, 0);
    pt_actor_t *a[3];
    pt_actor_t *late;
    uv_thread_t th;

    atomic_store(&stops_seen, 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(pt_actor_spawn(rt, "idle", count_stop_handler, NULL, &a[i]), 0);
    }
    ck_assert_int_eq(uv_thread_create(&th, shutdown_thread, rt), 0);
    ck_assert_int_eq(pt_runtime_run(rt), 0);
    uv_thread_join(&th);
    ck_assert_int_eq(atomic_load(&stops_seen), 3);
    ck_assert_int_eq(pt_actor_spawn(rt, "late", count_stop_handler, NULL, &late), PETAL_ECLOSED);
    {
        tmsg_t *m = tmsg_new(MSG_DATA, 0, 0);
        ck_assert_int_eq(pt_actor_send(a[0], &m->hdr), PETAL_ECLOSED);
        pt_msg_free(&m->hdr);
    }
    ck_assert_int_eq(pt_runtime_run(rt), PETAL_ESTATE);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
}
END_TEST

START_TEST(test_free_without_run)
{
    pt_runtime_t *rt = NULL;
    pt_actor_t *a;

    atomic_store(&msgs_freed, 0);
    ck_assert_int_eq(pt_runtime_alloc(NULL, &rt), 0);
    ck_assert_uint_ge(pt_runtime_workers(rt), 1);
    ck_assert_ptr_nonnull(pt_runtime_loop(rt));
    ck_assert_int_eq(pt_actor_spawn(rt, "never", count_stop_handler, NULL, &a), 0);
    ck_assert_str_eq(pt_actor_name(a), "never");
    for (int i = 0; i < 50; i++) {
        send_or_fail(a, MSG_DATA, 0, (uint64_t)i);
    }
    ck_assert_uint_eq(pt_actor_queued(a), 50);
    ck_assert_int_eq(pt_runtime_free(rt), 0);
    ck_assert_int_eq(atomic_load(&msgs_freed), 50);
}
END_TEST

/* ---- Timers ---------------------------------------------------------------------------------- */

typedef struct timer_state {
    pt_timer_t *rep;
    int ticks;
    int late_ticks;
    int done;
    uint64_t t0;
} timer_state_t;

static void
timer_handler(pt_actor_t *self, pt_msg_t *m)
{
    timer_state_t *s = pt_actor_state(self);
    pt_runtime_t *rt = pt_actor_runtime(self);

    if (m->type == MSG_START) {
        s->t0 = pt_runtime_now_ms(rt);
        ck_assert_int_eq(pt_timer_start(self, 2, 2, 7, &s->rep), 0);
    } else if (m->type == PT_MSG_TIMER) {
        pt_timer_msg_t *tm = (pt_timer_msg_t *)m;

        if (tm->tag == 7) {
            ck_assert_ptr_eq(tm->timer, s->rep);
            if (s->done) {
                s->late_ticks++;
            } else if (++s->ticks == 5) {
                pt_timer_t *once;

                s->done = 1;
                pt_timer_stop(s->rep);
                ck_assert_int_eq(pt_timer_start(self, 30, 0, 9, &once), 0);
            }
        } else {
            ck_assert_uint_eq(tm->tag, 9);
            ck_assert_uint_ge(pt_runtime_now_ms(rt) - s->t0, 30);
            pt_runtime_shutdown(rt);
        }
    }
    pt_msg_free(m);
}

START_TEST(test_timers_repeat)
{
    pt_runtime_t *rt = rt_new(1, 0, 0);
    timer_state_t s = {0};
    pt_actor_t *a;

    ck_assert_int_eq(pt_actor_spawn(rt, "timed", timer_handler, &s, &a), 0);
    send_or_fail(a, MSG_START, 0, 0);
    rt_run_and_free(rt);
    ck_assert_int_eq(s.ticks, 5);
    ck_assert_int_eq(s.late_ticks, 0);
}
END_TEST

/* A repeating timer left running is stopped with its actor. */
static void
timer_leak_handler(pt_actor_t *self, pt_msg_t *m)
{
    int *ticks = pt_actor_state(self);

    if (m->type == MSG_START) {
        pt_timer_t *t;

        ck_assert_int_eq(pt_timer_start(self, 1, 1, 0, &t), 0);
    } else if (m->type == PT_MSG_TIMER) {
        if (++*ticks == 3) {
            pt_runtime_shutdown(pt_actor_runtime(self));
        }
    }
    pt_msg_free(m);
}

START_TEST(test_timer_stops_with_actor)
{
    pt_runtime_t *rt = rt_new(1, 0, 0);
    int ticks = 0;
    pt_actor_t *a;

    ck_assert_int_eq(pt_actor_spawn(rt, "timed", timer_leak_handler, &ticks, &a), 0);
    send_or_fail(a, MSG_START, 0, 0);
    rt_run_and_free(rt);
    ck_assert_int_ge(ticks, 3);
}
END_TEST

/* ---- High-water mark and watches ------------------------------------------------------------- */

typedef struct watch_state {
    pt_actor_t *busy;
    pt_actor_watch_t drain;
    pt_actor_watch_t stop;
    int drained;
    int stopped;
    uint64_t queued_at_drain;
} watch_state_t;

static watch_state_t ws;

static void
on_drain(pt_actor_watch_t *w, int stopped)
{
    ck_assert_ptr_eq(w, &ws.drain);
    ck_assert_int_eq(stopped, 0);
    ws.drained++;
    ws.queued_at_drain = pt_actor_queued(ws.busy);
}

static void
on_stop_watch(pt_actor_watch_t *w, int stopped)
{
    ck_assert_ptr_eq(w, &ws.stop);
    ck_assert_int_eq(stopped, 1);
    ws.stopped++;
}

static void
busy_handler(pt_actor_t *self, pt_msg_t *m)
{
    (void)self;
    if (m->type == MSG_DATA && ((tmsg_t *)m)->seq == 39) {
        pt_runtime_shutdown(pt_actor_runtime(self));
    }
    pt_msg_free(m);
}

static void
watcher_handler(pt_actor_t *self, pt_msg_t *m)
{
    (void)self;
    if (m->type == MSG_START) {
        ck_assert(pt_actor_over_hwm(ws.busy));
        ck_assert_int_eq(pt_actor_watch_drain(ws.busy, &ws.drain, on_drain), 0);
        ck_assert_int_eq(pt_actor_watch_drain(ws.busy, &ws.drain, on_drain), PETAL_EEXIST);
        ck_assert_int_eq(pt_actor_watch_stop(ws.busy, &ws.stop, on_stop_watch), 0);
    }
    pt_msg_free(m);
}

START_TEST(test_hwm_and_watches)
{
    pt_runtime_t *rt = rt_new(1, 8, 16);
    pt_actor_t *w;

    memset(&ws, 0, sizeof(ws));
    ck_assert_int_eq(pt_actor_spawn(rt, "watcher", watcher_handler, NULL, &w), 0);
    ck_assert_int_eq(pt_actor_spawn(rt, "busy", busy_handler, NULL, &ws.busy), 0);
    send_or_fail(w, MSG_START, 0, 0);
    for (int i = 0; i < 40; i++) {
        send_or_fail(ws.busy, MSG_DATA, 0, (uint64_t)i);
    }
    ck_assert_uint_eq(pt_actor_queued(ws.busy), 40);
    ck_assert(pt_actor_over_hwm(ws.busy));
    rt_run_and_free(rt);
    ck_assert_int_eq(ws.drained, 1);
    ck_assert_uint_le(ws.queued_at_drain, 8);
    ck_assert_int_eq(ws.stopped, 1);
}
END_TEST

static Suite *
actor_suite(void)
{
    Suite *s = suite_create("actor");
    TCase *tc = tcase_create("runtime");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_order_per_sender);
    tcase_add_test(tc, test_batch_fairness);
    tcase_add_test(tc, test_cross_thread_sends);
    tcase_add_test(tc, test_stop_semantics);
    tcase_add_test(tc, test_stop_races_senders);
    tcase_add_test(tc, test_shutdown_from_thread);
    tcase_add_test(tc, test_free_without_run);
    tcase_add_test(tc, test_timers_repeat);
    tcase_add_test(tc, test_timer_stops_with_actor);
    tcase_add_test(tc, test_hwm_and_watches);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    SRunner *sr = srunner_create(actor_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
