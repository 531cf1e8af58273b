/* test_process.c - child processes: exit status, signals, kill, and an owner that stops first. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>
#include <uv.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "runtime/process.h"

#define MSG_GO 1u
#define GUARD_MS 30000

typedef struct proc_state {
    pt_runtime_t *rt;
    const char *const *argv;
    int kill_signal; /* sent right after spawning, when non-zero */
    int stop_owner;  /* the owner stops itself right after spawning */
    pt_process_t *p;
    int spawn_result;
    int exits;
    int64_t exit_status;
    int term_signal;
    int msg_p_ok;
    int pid;
    int guard_fired;
    pt_timer_t *guard;
} proc_state_t;

static proc_state_t P;

static void
go_free(pt_msg_t *m)
{
    free(m);
}

static void
handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_process_exit_t *e = (pt_process_exit_t *)m;

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &P.guard), 0);
        P.spawn_result = pt_process_spawn(P.rt, self, P.argv, &P.p);
        if (P.spawn_result != 0) {
            pt_runtime_shutdown(P.rt);
            break;
        }
        P.pid = pt_process_pid(P.p);
        ck_assert_int_gt(P.pid, 0);
        if (P.kill_signal != 0) {
            pt_process_kill(P.p, P.kill_signal);
        }
        if (P.stop_owner) {
            pt_runtime_shutdown(P.rt);
        }
        break;
    case PT_MSG_PROCESS_EXIT:
        P.exits++;
        P.msg_p_ok = e->p == P.p;
        P.exit_status = e->exit_status;
        P.term_signal = e->term_signal;
        pt_process_kill(e->p, SIGTERM); /* exited: does nothing */
        pt_runtime_shutdown(P.rt);
        break;
    case PT_MSG_TIMER:
        P.guard_fired = 1;
        pt_runtime_shutdown(P.rt);
        break;
    case PT_MSG_STOP:
        if (P.stop_owner && P.p != NULL && P.exits == 0) {
            pt_process_kill(P.p, SIGTERM); /* still valid in the STOP handler */
        }
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

static void
run(const char *const *argv)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;
    pt_msg_t *m = calloc(1, sizeof(*m));

    P.argv = argv;
    ck_assert_ptr_nonnull(m);
    m->type = MSG_GO;
    m->free = go_free;
    ck_assert_int_eq(pt_runtime_alloc(&o, &P.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(P.rt, "parent", handler, NULL, &a), 0);
    ck_assert_int_eq(pt_actor_send(a, m), 0);
    ck_assert_int_eq(pt_runtime_run(P.rt), 0);
    ck_assert_int_eq(pt_runtime_free(P.rt), 0);
    ck_assert(!P.guard_fired);
}

START_TEST(test_true)
{
    static const char *const argv[] = {"/bin/true", NULL};

    memset(&P, 0, sizeof(P));
    run(argv);
    ck_assert_int_eq(P.spawn_result, 0);
    ck_assert_int_eq(P.exits, 1);
    ck_assert(P.msg_p_ok);
    ck_assert_int_eq(P.exit_status, 0);
    ck_assert_int_eq(P.term_signal, 0);
}
END_TEST

START_TEST(test_false)
{
    static const char *const argv[] = {"/bin/false", NULL};

    memset(&P, 0, sizeof(P));
    run(argv);
    ck_assert_int_eq(P.exits, 1);
    ck_assert_int_eq(P.exit_status, 1);
    ck_assert_int_eq(P.term_signal, 0);
}
END_TEST

START_TEST(test_exit_code_from_path)
{
    static const char *const argv[] = {"sh", "-c", "exit 42", NULL}; /* found through PATH */

    memset(&P, 0, sizeof(P));
    run(argv);
    ck_assert_int_eq(P.exits, 1);
    ck_assert_int_eq(P.exit_status, 42);
    ck_assert_int_eq(P.term_signal, 0);
}
END_TEST

START_TEST(test_segv)
{
    static const char *const argv[] = {"/bin/sh", "-c", "kill -SEGV $$", NULL};

    memset(&P, 0, sizeof(P));
    run(argv);
    ck_assert_int_eq(P.exits, 1);
    ck_assert_int_eq(P.term_signal, SIGSEGV);
}
END_TEST

START_TEST(test_kill)
{
    static const char *const argv[] = {"/bin/sleep", "30", NULL};

    memset(&P, 0, sizeof(P));
    P.kill_signal = SIGTERM;
    run(argv);
    ck_assert_int_eq(P.exits, 1);
    ck_assert_int_eq(P.term_signal, SIGTERM);
}
END_TEST

START_TEST(test_missing_binary)
{
    static const char *const argv[] = {"/nonexistent/petal-no-such-binary", NULL};

    memset(&P, 0, sizeof(P));
    run(argv);
    ck_assert_int_eq(P.spawn_result, UV_ENOENT);
    ck_assert_int_eq(P.exits, 0);
}
END_TEST

/* The owner stops while the child runs: the child is killed and reaped, no message comes, and
 * the runtime ends cleanly. */
START_TEST(test_owner_stops_first)
{
    static const char *const argv[] = {"/bin/sleep", "30", NULL};

    memset(&P, 0, sizeof(P));
    P.stop_owner = 1;
    run(argv);
    ck_assert_int_eq(P.spawn_result, 0);
    ck_assert_int_eq(P.exits, 0);
    ck_assert_int_eq(kill(P.pid, 0), -1); /* reaped: no such process */
}
END_TEST

START_TEST(test_invalid)
{
    pt_process_t *p;
    static const char *const empty[] = {NULL};

    ck_assert_int_eq(pt_process_spawn(NULL, NULL, empty, &p), PETAL_EINVAL);
    pt_process_kill(NULL, SIGTERM);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("process");
    TCase *tc = tcase_create("process");
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_true);
    tcase_add_test(tc, test_false);
    tcase_add_test(tc, test_exit_code_from_path);
    tcase_add_test(tc, test_segv);
    tcase_add_test(tc, test_kill);
    tcase_add_test(tc, test_missing_binary);
    tcase_add_test(tc, test_owner_stops_first);
    tcase_add_test(tc, test_invalid);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
