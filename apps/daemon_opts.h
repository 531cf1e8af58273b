/* daemon_opts.h - what petal-superlink and petal-supernode share: hardening limits and keys. */
#ifndef PETAL_DAEMON_OPTS_H
#define PETAL_DAEMON_OPTS_H

#include <getopt.h>
#include <stdint.h>

/*
 * The wire limits both daemons take as flags (getopt_long codes from PT_DOPT_BASE, so they do
 * not clash with a daemon's own one-letter codes). Every value is checked when parsed; a bad one
 * is a usage error that names the flag and the range.
 */
enum {
    PT_DOPT_BASE = 0x1000,
    PT_DOPT_MAX_FRAME = PT_DOPT_BASE,
    PT_DOPT_MAX_MESSAGE,
    PT_DOPT_MAX_RECORDS,
    PT_DOPT_MAX_RANK,
    PT_DOPT_MAX_ELEMENTS,
    PT_DOPT_MAX_STRING,
    PT_DOPT_IDLE_TIMEOUT,
    PT_DOPT_HANDSHAKE_TIMEOUT,
    PT_DOPT_RECORD_CIPHER,
    PT_DOPT_END
};

// clang-format off
#define PT_DAEMON_LIMIT_OPTIONS                                                                    \
    {"max-frame-size", required_argument, NULL, PT_DOPT_MAX_FRAME},                                \
    {"max-message-size", required_argument, NULL, PT_DOPT_MAX_MESSAGE},                            \
    {"max-records", required_argument, NULL, PT_DOPT_MAX_RECORDS},                                 \
    {"max-array-rank", required_argument, NULL, PT_DOPT_MAX_RANK},                                 \
    {"max-array-elements", required_argument, NULL, PT_DOPT_MAX_ELEMENTS},                         \
    {"max-string-length", required_argument, NULL, PT_DOPT_MAX_STRING},                            \
    {"idle-timeout", required_argument, NULL, PT_DOPT_IDLE_TIMEOUT},                               \
    {"handshake-timeout", required_argument, NULL, PT_DOPT_HANDSHAKE_TIMEOUT},                     \
    {"record-cipher", required_argument, NULL, PT_DOPT_RECORD_CIPHER}
// clang-format on

/* The --help paragraph for the limits above. */
extern const char pt_daemon_limits_help[];

typedef struct pt_daemon_limits {
    uint64_t max_frame;       /* bytes after a frame's length prefix */
    uint64_t max_message;     /* one message's encoding, chunked or not */
    uint64_t max_records;     /* records per RecordDict, entries per record */
    uint64_t max_rank;        /* array dimensions */
    uint64_t max_elements;    /* elements in one array; 0: bounded by max_message only */
    uint64_t max_string;      /* one string, bytes value or name */
    double idle_timeout;      /* seconds a peer may stall inside a frame */
    double handshake_timeout; /* seconds for the secure handshake */
    unsigned ciphers;         /* record ciphers offered (transport/secure.h bits); 0: all */
} pt_daemon_limits_t;

/* The defaults (the library's, and 10 s for the handshake). */
void pt_daemon_limits_default(pt_daemon_limits_t *l);

/* For getopt_long's code `c` with argument `arg`: 1 when it was a limit flag and was stored, 0
 * when `c` is not a limit flag, -1 after printing "PROG: --flag 'arg': expected ..." to stderr. */
int pt_daemon_limits_opt(const char *prog, int c, const char *arg, pt_daemon_limits_t *l);

/* Makes the limits the process-wide ones of tcp and ipc connections (call before listening or
 * dialling). 0, or -1 after printing why. */
int pt_daemon_limits_apply(const char *prog, const pt_daemon_limits_t *l);

/* Parses a byte count: digits with an optional K, M or G (KiB, MiB, GiB) suffix. 0 or -1. */
int pt_daemon_parse_size(const char *s, uint64_t *out);
/* Parses a positive count up to `max`. 0 or -1. */
int pt_daemon_parse_count(const char *s, uint64_t max, uint64_t *out);
/* Parses seconds in [min, max]. 0 or -1. */
int pt_daemon_parse_seconds(const char *s, double min, double max, double *out);

#endif
