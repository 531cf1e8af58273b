/* alloc.c - petal_alloc/petal_free: 64-byte aligned, zeroed memory for hosts and plugins. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#define ALLOC_ALIGN 64

/* Any thread. Size 0 returns a valid (minimal) allocation; NULL only when out of memory. */
void *
petal_alloc(uint64_t size)
{
    void *p = NULL;
    uint64_t rounded;

    if (size > (uint64_t)SIZE_MAX - ALLOC_ALIGN) {
        return NULL;
    }
    rounded = size == 0 ? ALLOC_ALIGN : (size + ALLOC_ALIGN - 1) & ~(uint64_t)(ALLOC_ALIGN - 1);
    if (posix_memalign(&p, ALLOC_ALIGN, (size_t)rounded) != 0) {
        return NULL;
    }
    memset(p, 0, (size_t)rounded);
    return p;
}

/* Any thread; NULL is a no-op. */
void
petal_free(void *ptr)
{
    free(ptr);
}
