/* stream_tests.h - tests of the stream framing (tcp and ipc): bad peers, limits, chunks. */
#ifndef PT_TEST_STREAM_TESTS_H
#define PT_TEST_STREAM_TESTS_H

#include <check.h>

/*
 * A TCase whose tests listen on `listen_addr` ("tcp://127.0.0.1:0" or "ipc:///tmp/x-<pid>"),
 * connect raw sockets that send garbage, stall or announce absurd lengths (the owner must see
 * DOWN with a clear status and reason while a healthy connection keeps working), and send a
 * message larger than the max frame (it must arrive intact, in chunks). Each test has its own
 * runtime and guard timer and ends with pt_runtime_free() == 0.
 */
TCase *pt_stream_tcase(const char *name, const char *listen_addr);

#endif
