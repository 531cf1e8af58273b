/* error.h - Petal's error helpers: petal_strerror() over the PETAL_ERRORS table and libuv's. */
#ifndef PT_ERROR_H
#define PT_ERROR_H

#include <petal/petal.h>

/* Name of an error code ("PETAL_EPROTO", "ECONNREFUSED", ...). Never NULL. */
const char *pt_error_name(int err);
/* True when err is one of the PETAL_E_* codes that error replies carry (Flower's list). */
int pt_error_is_reply_code(int err);

#endif
