/* conformance.h - one transport conformance suite, run over every address scheme. */
#ifndef PT_TEST_CONFORMANCE_H
#define PT_TEST_CONFORMANCE_H

#include <check.h>

/*
 * Returns a TCase named `name` whose tests run one listener and one dialer over the transport
 * of `base_addr`: "inproc://conf", "tcp://127.0.0.1:0" or "ipc:///tmp/petal-conf". Each test
 * derives its own address from it (a ":0" port is used as is; otherwise "-<test>-<pid>" is
 * appended), has its own runtime and guard timer, and ends with pt_runtime_free() == 0.
 * (nng's NUTS_DECLARE_TRAN_TESTS idea: the tests are written once.)
 */
TCase *pt_conformance_tcase(const char *name, const char *base_addr);

#endif
