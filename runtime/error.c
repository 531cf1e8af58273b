/* error.c - petal_strerror() and error names over the PETAL_ERRORS table and libuv's codes. */
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "error.h"

typedef struct err_entry {
    int code;
    const char *name;
    const char *text;
} err_entry_t;

static const err_entry_t petal_errors[] = {
#define ERR_ENTRY_(name, value, text) {value, #name, text},
    PETAL_ERRORS(ERR_ENTRY_)
#undef ERR_ENTRY_
};

#define UNKNOWN_PREFIX "Unknown system error"

static const err_entry_t *
find_petal(int err)
{
    for (size_t i = 0; i < sizeof(petal_errors) / sizeof(petal_errors[0]); i++) {
        if (petal_errors[i].code == err) {
            return &petal_errors[i];
        }
    }
    return NULL;
}

/* True when libuv knows err. uv_strerror()/uv_err_name() allocate (and leak) a string for
 * unknown codes, so they are only called after this check. */
static int
uv_knows(int err)
{
    char buf[64];

    if (err >= 0) {
        return 0;
    }
    uv_strerror_r(err, buf, sizeof(buf));
    return strncmp(buf, UNKNOWN_PREFIX, strlen(UNKNOWN_PREFIX)) != 0;
}

/* Any thread. Never NULL; the string is static except for unknown codes, whose text lives in a
 * thread-local buffer until the next call on the same thread. */
const char *
petal_strerror(int32_t err)
{
    static _Thread_local char unknown[48];
    const err_entry_t *e;

    if (err == 0) {
        return "success";
    }
    e = find_petal(err);
    if (e != NULL) {
        return e->text;
    }
    if (uv_knows(err)) {
        return uv_strerror(err);
    }
    snprintf(unknown, sizeof(unknown), "unknown error %d", (int)err);
    return unknown;
}

/* Any thread. Never NULL. */
const char *
pt_error_name(int err)
{
    const err_entry_t *e;

    if (err == 0) {
        return "OK";
    }
    e = find_petal(err);
    if (e != NULL) {
        return e->name;
    }
    if (uv_knows(err)) {
        return uv_err_name(err);
    }
    return "UNKNOWN";
}

int
pt_error_is_reply_code(int err)
{
    const err_entry_t *e = find_petal(err);

    return e != NULL && strncmp(e->name, "PETAL_E_", 8) == 0;
}
