/* test_ipc.c - the conformance and stream suites over ipc:// sockets, plus ipc-only cases. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

#include <petal/petal.h>

#include "conformance.h"
#include "runtime/actor.h"
#include "stream_tests.h"
#include "transport/transport.h"

#define MSG_GO 1u

static char conf_base[96];
static char stream_base[96];

typedef struct ipc_state {
    pt_runtime_t *rt;
    char path[108];
    char addr[128];
    int listen_result;
    int file_after_close; /* 1 if the socket file still existed right after listener_close */
    int second_result;
} ipc_state_t;

static ipc_state_t S;

static void
go_free(pt_msg_t *m)
{
    free(m);
}

static void
run_actor(pt_actor_handler_fn fn)
{
    pt_runtime_opts_t o = {.workers = 1};
    pt_actor_t *a;
    pt_msg_t *m = calloc(1, sizeof(*m));

    ck_assert_ptr_nonnull(m);
    m->type = MSG_GO;
    m->free = go_free;
    ck_assert_int_eq(pt_runtime_alloc(&o, &S.rt), 0);
    ck_assert_int_eq(pt_actor_spawn(S.rt, "ipc", fn, NULL, &a), 0);
    ck_assert_int_eq(pt_actor_send(a, m), 0);
    ck_assert_int_eq(pt_runtime_run(S.rt), 0);
    ck_assert_int_eq(pt_runtime_free(S.rt), 0);
}

static int
exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

/* Listens, checks that a second listen on the path fails, closes and notes the file. */
static void
listen_close_handler(pt_actor_t *self, pt_msg_t *m)
{
    pt_listener_t *l;
    pt_listener_t *l2;
    char bound[200];

    if (m->type == MSG_GO) {
        S.listen_result = pt_listen(S.rt, S.addr, self, &l);
        if (S.listen_result == 0) {
            ck_assert_int_eq(pt_listener_addr(l, bound, sizeof(bound)), 0);
            ck_assert_str_eq(bound, S.addr);
            ck_assert(exists(S.path));
            S.second_result = pt_listen(S.rt, S.addr, self, &l2);
            pt_listener_close(l);
            S.file_after_close = exists(S.path);
        }
        pt_runtime_shutdown(S.rt);
    }
    pt_msg_free(m);
}

static void
set_path(const char *tag)
{
    memset(&S, 0, sizeof(S));
    snprintf(S.path, sizeof(S.path), "/tmp/petal-test-%ld-%s.sock", (long)getpid(), tag);
    snprintf(S.addr, sizeof(S.addr), "ipc://%s", S.path);
    unlink(S.path);
}

START_TEST(test_socket_file_removed_on_close)
{
    set_path("close");
    run_actor(listen_close_handler);
    ck_assert_int_eq(S.listen_result, 0);
    ck_assert_int_eq(S.second_result, UV_EADDRINUSE);
    ck_assert_int_eq(S.file_after_close, 0);
}
END_TEST

START_TEST(test_stale_socket_replaced)
{
    struct sockaddr_un sun;
    int fd;

    set_path("stale");
    /* A socket file nobody accepts on: what a crashed daemon leaves behind. */
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", S.path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    close(fd);
    ck_assert(exists(S.path));
    run_actor(listen_close_handler);
    ck_assert_int_eq(S.listen_result, 0);
    ck_assert_int_eq(S.file_after_close, 0);
}
END_TEST

START_TEST(test_regular_file_kept)
{
    FILE *f;

    set_path("file");
    f = fopen(S.path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("not a socket\n", f);
    fclose(f);
    run_actor(listen_close_handler);
    ck_assert_int_eq(S.listen_result, UV_EADDRINUSE);
    ck_assert(exists(S.path)); /* never deleted */
    unlink(S.path);
}
END_TEST

static void
syntax_handler(pt_actor_t *self, pt_msg_t *m)
{
    char longpath[300];
    pt_listener_t *l;
    pt_conn_t *c;

    if (m->type == MSG_GO) {
        memset(longpath, 'x', sizeof(longpath));
        memcpy(longpath, "ipc:///tmp/", 11);
        longpath[sizeof(longpath) - 1] = '\0';
        ck_assert_int_eq(pt_listen(S.rt, "ipc://", self, &l), PETAL_EINVAL);
        ck_assert_int_eq(pt_dial(S.rt, "ipc://", self, &c), PETAL_EINVAL);
        ck_assert_int_eq(pt_listen(S.rt, longpath, self, &l), PETAL_EINVAL);
        ck_assert_int_eq(pt_dial(S.rt, longpath, self, &c), PETAL_EINVAL);
        pt_runtime_shutdown(S.rt);
    }
    pt_msg_free(m);
}

START_TEST(test_path_syntax)
{
    memset(&S, 0, sizeof(S));
    run_actor(syntax_handler);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("ipc");
    TCase *only = tcase_create("ipc-only");
    SRunner *sr;
    int failed;

    snprintf(conf_base, sizeof(conf_base), "ipc:///tmp/petal-test-%ld-c", (long)getpid());
    snprintf(stream_base, sizeof(stream_base), "ipc:///tmp/petal-test-%ld-s", (long)getpid());
    suite_add_tcase(s, pt_conformance_tcase("ipc", conf_base));
    suite_add_tcase(s, pt_stream_tcase("ipc-stream", stream_base));
    tcase_set_timeout(only, 60);
    tcase_add_test(only, test_socket_file_removed_on_close);
    tcase_add_test(only, test_stale_socket_replaced);
    tcase_add_test(only, test_regular_file_kept);
    tcase_add_test(only, test_path_syntax);
    suite_add_tcase(s, only);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
