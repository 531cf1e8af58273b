/* test_inproc.c - the transport conformance suite over inproc://, plus inproc-only cases. */
#include <stdlib.h>
#include <string.h>

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

/* The client dials; once connected it waits a turn (so the server has stopped), then sends. */
static void
owner_cli(pt_actor_t *self, pt_msg_t *m)
{
    pt_frame_t *f;

    switch (m->type) {
    case MSG_GO:
        if (os.conn == NULL) {
            ck_assert_int_eq(pt_dial(os.rt, "inproc://owner-stops", self, &os.conn), 0);
            break;
        }
        f = pt_frame_alloc(1, NULL);
        ck_assert_ptr_nonnull(f);
        os.send_result = pt_conn_send(os.conn, f);
        if (os.send_result != 0) {
            pt_msg_free(&f->hdr); /* refused: still ours */
        }
        break;
    case PT_MSG_CONN_UP:
        send_go(self);
        break;
    case PT_MSG_CONN_DOWN:
        os.cli_downs++;
        pt_runtime_shutdown(os.rt);
        break;
    default:
        break;
    }
    pt_msg_free(m);
}

/* Frames to a connection whose owner stopped fail with PETAL_ECLOSED and bring DOWN; the
 * listener and both ends are released although nobody closed them (checked under ASan). */
START_TEST(test_owner_stops_without_closing)
{
    pt_runtime_opts_t o = {.workers = 1};

    memset(&os, 0, sizeof(os));
    ck_assert_int_eq(pt_runtime_alloc(&o, &os.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(os.rt, "srv", owner_srv, NULL, &os.srv), 0);
    ck_assert_int_eq(pt_actor_spawn(os.rt, "cli", owner_cli, NULL, &os.cli), 0);
    send_go(os.srv);
    ck_assert_int_eq(pt_runtime_run(os.rt), 0);
    ck_assert_int_eq(pt_runtime_free(os.rt), 0);
    ck_assert_int_eq(os.send_result, PETAL_ECLOSED);
    ck_assert_int_eq(os.cli_downs, 1);
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
