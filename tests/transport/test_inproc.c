/* test_inproc.c - the transport conformance suite over inproc://, plus inproc-only cases. */
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include <petal/petal.h>

#include "conformance.h"
#include "runtime/actor.h"
#include "transport/transport.h"

#define MSG_GO 1u

typedef struct owner_state {
    pt_runtime_t *rt;
    pt_actor_t *srv;
    pt_actor_t *cli;
    pt_listener_t *l;
    pt_conn_t *conn;
    int cli_downs;
    int guard_fired;
    int redial_result;
    int send_result;
} owner_state_t;

static owner_state_t os;

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

/* The server listens, accepts, then stops without closing anything. */
static void
owner_srv(pt_actor_t *self, pt_msg_t *m)
{
    if (m->type == MSG_GO) {
        ck_assert_int_eq(pt_listen(os.rt, "inproc://owner-stops", self, &os.l), 0);
        send_go(os.cli);
    } else if (m->type == PT_MSG_CONN_UP) {
        pt_actor_stop(self);
    }
    pt_msg_free(m);
}

/* The client dials, starts a guard timer, and waits: the server's stop must bring DOWN. */
static void
owner_cli(pt_actor_t *self, pt_msg_t *m)
{
    pt_conn_event_t *ev = (pt_conn_event_t *)m;
    pt_timer_t *guard;
    pt_frame_t *f;
    pt_conn_t *c;

    switch (m->type) {
    case MSG_GO:
        ck_assert_int_eq(pt_timer_start(self, 60000, 0, 0, &guard), 0);
        ck_assert_int_eq(pt_dial(os.rt, "inproc://owner-stops", self, &os.conn), 0);
        break;
    case PT_MSG_CONN_DOWN:
        os.cli_downs++;
        ck_assert_ptr_eq(ev->conn, os.conn);
        ck_assert_int_eq(ev->status, PETAL_ECLOSED);
        ck_assert_str_eq(ev->reason, "peer actor stopped");
        f = pt_frame_alloc(1, NULL);
        ck_assert_ptr_nonnull(f);
        os.send_result = pt_conn_send(ev->conn, f);
        if (os.send_result != 0) {
            pt_msg_free(&f->hdr); /* refused: still ours */
        }
        /* The listener went with its owner. */
        os.redial_result = pt_dial(os.rt, "inproc://owner-stops", self, &c);
        pt_runtime_shutdown(os.rt);
        break;
    case PT_MSG_TIMER:
        os.guard_fired = 1;
        pt_runtime_shutdown(os.rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

/* An actor that stops without closing its listener or its connection: the peer gets DOWN,
 * sends fail with PETAL_ECLOSED, and everything is released (checked under ASan). */
START_TEST(test_owner_stops_without_closing)
{
    pt_runtime_opts_t o = {.workers = 1};

    memset(&os, 0, sizeof(os));
    ck_assert_int_eq(pt_runtime_alloc(&o, &os.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(os.rt, "srv", owner_srv, NULL, &os.srv), 0);
    ck_assert_int_eq(pt_actor_spawn(os.rt, "cli", owner_cli, NULL, &os.cli), 0);
    send_go(os.srv);
    ck_assert_int_eq(pt_runtime_run(os.rt), 0);
    ck_assert(!os.guard_fired);
    ck_assert_int_eq(pt_runtime_free(os.rt), 0);
    ck_assert_int_eq(os.cli_downs, 1);
    ck_assert_int_eq(os.send_result, PETAL_ECLOSED);
    ck_assert_int_eq(os.redial_result, UV_ECONNREFUSED);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("inproc");
    TCase *only = tcase_create("inproc-only");
    SRunner *sr;
    int failed;

    suite_add_tcase(s, pt_conformance_tcase("inproc", "inproc://conf"));
    tcase_add_test(only, test_owner_stops_without_closing);
    suite_add_tcase(s, only);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
