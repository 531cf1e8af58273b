/* fuzz.h - the libFuzzer entry point every fuzz target defines (also driven by replay.c). */
#ifndef PETAL_TESTS_FUZZ_H
#define PETAL_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Feeds one input to the code under test; aborts on a broken invariant, returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
