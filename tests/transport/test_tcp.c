/* test_tcp.c - the conformance and stream suites over tcp://127.0.0.1:0, plus tcp-only cases. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <petal/petal.h>

#include "conformance.h"
#include "runtime/actor.h"
#include "stream_tests.h"
#include "transport/transport.h"

#define MSG_GO 1u
#define GUARD_MS 30000

typedef struct dial_state {
    pt_runtime_t *rt;
    char target[200];
    int ups;
    int downs;
    int status;
    char reason[sizeof(((pt_conn_event_t *)0)->reason)];
    int guard_fired;
    pt_timer_t *guard;
    pt_listener_t *l;
    int srv_ups;
} dial_state_t;

static dial_state_t D;

static void
go_free(pt_msg_t *m)
{
    free(m);
}

static void
send_go(pt_actor_t *to)
{
    pt_msg_t *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->type = MSG_GO;
    m->free = go_free;
    ck_assert_int_eq(pt_actor_send(to, m), 0);
}

/* ---- A refused dial: DOWN with the uv status and a reason naming the address ---------------- */

static void
refused_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;
    pt_listener_t *l;
    pt_conn_t *c;
    char bound[200];

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &D.guard), 0);
        /* A port nobody listens on: bind one, note it, close it. */
        ck_assert_int_eq(pt_listen(D.rt, "tcp://127.0.0.1:0", self, &l), 0);
        ck_assert_int_eq(pt_listener_addr(l, bound, sizeof(bound)), 0);
        pt_listener_close(l);
        snprintf(D.target, sizeof(D.target), "%s", bound);
        ck_assert_int_eq(pt_dial(D.rt, D.target, self, &c), 0);
        break;
    case PT_MSG_CONN_UP:
        D.ups++;
        pt_runtime_shutdown(D.rt);
        break;
    case PT_MSG_CONN_DOWN:
        D.downs++;
        D.status = ev->status;
        snprintf(D.reason, sizeof(D.reason), "%s", ev->reason);
        pt_runtime_shutdown(D.rt);
        break;
    case PT_MSG_TIMER:
        D.guard_fired = 1;
        pt_runtime_shutdown(D.rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

START_TEST(test_dial_refused)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;
    char want[256];

    memset(&D, 0, sizeof(D));
    ck_assert_int_eq(pt_runtime_alloc(&o, &D.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(D.rt, "dialer", refused_handler, NULL, &a), 0);
    send_go(a);
    ck_assert_int_eq(pt_runtime_run(D.rt), 0);
    ck_assert_int_eq(pt_runtime_free(D.rt), 0);
    ck_assert(!D.guard_fired);
    ck_assert_int_eq(D.ups, 0);
    ck_assert_int_eq(D.downs, 1);
    ck_assert_int_eq(D.status, UV_ECONNREFUSED);
    /* "connect to 127.0.0.1:PORT: connection refused" */
    int n = snprintf(want, sizeof(want), "connect to %s: connection refused",
                     D.target + strlen("tcp://"));
    ck_assert(n > 0 && (size_t)n < sizeof(want));
    ck_assert_str_eq(D.reason, want);
}
END_TEST

/* ---- Names are resolved: dial tcp://localhost:PORT --------------------------------------- */

static void
name_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;
    pt_conn_t *c;
    char bound[200];
    char want[64];
    const char *port;

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, GUARD_MS, 0, 0, &D.guard), 0);
        ck_assert_int_eq(pt_listen(D.rt, "tcp://127.0.0.1:0", self, &D.l), 0);
        ck_assert_int_eq(pt_listener_addr(D.l, bound, sizeof(bound)), 0);
        ck_assert(strncmp(bound, "tcp://127.0.0.1:", 16) == 0);
        port = strrchr(bound, ':') + 1;
        ck_assert_int_gt(atoi(port), 0);
        snprintf(D.target, sizeof(D.target), "tcp://localhost:%s", port);
        ck_assert_int_eq(pt_dial(D.rt, D.target, self, &c), 0);
        break;
    case PT_MSG_CONN_UP:
        if (ev->listener != NULL) {
            ck_assert_ptr_eq(ev->listener, D.l);
            ck_assert(strncmp(pt_conn_peer(ev->conn), "127.0.0.1:", 10) == 0);
            D.srv_ups++;
        } else {
            /* The name was resolved to an IPv4 address. */
            snprintf(want, sizeof(want), "127.0.0.1:%s", strrchr(D.target, ':') + 1);
            ck_assert_str_eq(pt_conn_peer(ev->conn), want);
            D.ups++;
        }
        if (D.ups == 1 && D.srv_ups == 1) {
            pt_runtime_shutdown(D.rt);
        }
        break;
    case PT_MSG_CONN_DOWN:
        D.downs++;
        snprintf(D.reason, sizeof(D.reason), "%s", ev->reason);
        pt_runtime_shutdown(D.rt);
        break;
    case PT_MSG_TIMER:
        D.guard_fired = 1;
        pt_runtime_shutdown(D.rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

START_TEST(test_dial_name)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;

    memset(&D, 0, sizeof(D));
    ck_assert_int_eq(pt_runtime_alloc(&o, &D.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(D.rt, "namer", name_handler, NULL, &a), 0);
    send_go(a);
    ck_assert_int_eq(pt_runtime_run(D.rt), 0);
    ck_assert_int_eq(pt_runtime_free(D.rt), 0);
    ck_assert(!D.guard_fired);
    ck_assert_msg(D.downs == 0, "unexpected DOWN: %s", D.reason);
    ck_assert_int_eq(D.ups, 1);
    ck_assert_int_eq(D.srv_ups, 1);
}
END_TEST

/* ---- Address syntax ------------------------------------------------------------------------- */

static void
addr_handler(pt_actor_t *self, pt_msg_t *m)
{
    static const char *const bad[] = {
        "tcp://",       "tcp://127.0.0.1", "tcp://:80",      "tcp://127.0.0.1:",
        "tcp://::1:80", "tcp://[::1]80",   "tcp://[::1",     "tcp://1.2.3.4:65536",
        "tcp://h:12a",  "tcp://h:-1",      "tcp://h:123456",
    };
    pt_listener_t *l;
    pt_conn_t *c;

    if (m->type == MSG_GO) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            ck_assert_msg(pt_listen(D.rt, bad[i], self, &l) == PETAL_EINVAL, "listen %s", bad[i]);
            ck_assert_msg(pt_dial(D.rt, bad[i], self, &c) == PETAL_EINVAL, "dial %s", bad[i]);
        }
        /* Port 0 is for listening only. */
        ck_assert_int_eq(pt_dial(D.rt, "tcp://127.0.0.1:0", self, &c), PETAL_EINVAL);
        ck_assert_ptr_eq(pt_tran_find("tcp://127.0.0.1:1"), &pt_tcp_ops);
        ck_assert_ptr_eq(pt_tran_find("ipc:///x"), &pt_ipc_ops);
        pt_runtime_shutdown(D.rt);
    }
    pt_msg_free(m);
}

START_TEST(test_addresses_syntax)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;

    memset(&D, 0, sizeof(D));
    ck_assert_int_eq(pt_runtime_alloc(&o, &D.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(D.rt, "addr", addr_handler, NULL, &a), 0);
    send_go(a);
    ck_assert_int_eq(pt_runtime_run(D.rt), 0);
    ck_assert_int_eq(pt_runtime_free(D.rt), 0);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("tcp");
    TCase *only = tcase_create("tcp-only");
    SRunner *sr;
    int failed;

    suite_add_tcase(s, pt_conformance_tcase("tcp", "tcp://127.0.0.1:0"));
    suite_add_tcase(s, pt_stream_tcase("tcp-stream", "tcp://127.0.0.1:0"));
    tcase_set_timeout(only, 60);
    tcase_add_test(only, test_dial_refused);
    tcase_add_test(only, test_dial_name);
    tcase_add_test(only, test_addresses_syntax);
    suite_add_tcase(s, only);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
