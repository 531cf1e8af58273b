/* daemon_opts.c - the hardening limit flags of petal-superlink and petal-supernode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <petal/petal.h>

#include "runtime/codec.h"
#include "transport/secure.h"
#include "transport/stream.h"

#include "daemon_opts.h"

#define DEFAULT_HANDSHAKE_TIMEOUT 10.0

const char pt_daemon_limits_help[] =
    "Limits on what peers send (a peer over one is disconnected, and the reason logged):\n"
    "  --max-frame-size BYTES     one frame on the wire; larger messages travel as chunks\n"
    "                             (default 64M, at least 4K)\n"
    "  --max-message-size BYTES   one message, all its chunks (default 16G)\n"
    "  --max-records N            records in a message, entries in one record (default 65536)\n"
    "  --max-array-rank N         dimensions of one array, 1 to 16 (default 16)\n"
    "  --max-array-elements N     elements of one array (default: as many as\n"
    "                             --max-message-size allows)\n"
    "  --max-string-length BYTES  one string, bytes value or name (default 16M)\n"
    "  --idle-timeout S           a peer that stops in the middle of a frame for S seconds is\n"
    "                             disconnected (default 30)\n"
    "  --handshake-timeout S      a peer that has not finished the secure handshake after S\n"
    "                             seconds is disconnected (default 10)\n"
    "  --record-cipher C          the cipher offered for secure records: auto (default:\n"
    "                             AES-256-GCM where both sides have hardware AES, else\n"
    "                             XChaCha20-Poly1305), aes-256-gcm or xchacha20-poly1305; a\n"
    "                             peer with none in common is refused with the reason\n"
    "  BYTES take a K, M or G suffix (KiB, MiB, GiB).\n";

void
pt_daemon_limits_default(pt_daemon_limits_t *l)
{
    pt_codec_limits_t c;
    pt_codec_limits_default(&c);
    memset(l, 0, sizeof(*l));
    l->max_frame = PT_STREAM_DEFAULT_MAX_FRAME;
    l->max_message = PT_STREAM_DEFAULT_MAX_MESSAGE;
    l->max_records = c.max_records;
    l->max_rank = c.max_ndim;
    l->max_elements = 0;
    l->max_string = c.max_string_bytes;
    l->idle_timeout = (double)PT_STREAM_DEFAULT_IDLE_TIMEOUT_MS / 1000.0;
    l->handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT;
}

int
pt_daemon_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0) {
        return -1;
    }
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') {
        shift = 10;
    } else if (*end == 'M' || *end == 'm') {
        shift = 20;
    } else if (*end == 'G' || *end == 'g') {
        shift = 30;
    } else if (*end != '\0') {
        return -1;
    }
    if (shift != 0) {
        end++;
        if (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0) {
            end += strlen(end);
        }
    }
    if (*end != '\0' || x > (UINT64_MAX >> shift)) {
        return -1;
    }
    *out = (uint64_t)x << shift;
    return 0;
}

int
pt_daemon_parse_count(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    if (s == NULL || *s < '0' || *s > '9') {
        return -1;
    }
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || x < 1 || x > max) {
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

int
pt_daemon_parse_seconds(const char *s, double min, double max, double *out)
{
    char *end;
    if (s == NULL || *s == '\0') {
        return -1;
    }
    double x = strtod(s, &end);
    if (*end != '\0' || !(x >= min && x <= max)) {
        return -1;
    }
    *out = x;
    return 0;
}

int
pt_daemon_limits_opt(const char *prog, int c, const char *arg, pt_daemon_limits_t *l)
{
    uint64_t x = 0;
    double t = 0;
    switch (c) {
    case PT_DOPT_MAX_FRAME:
        if (pt_daemon_parse_size(arg, &x) != 0 || x < PT_STREAM_MIN_MAX_FRAME || x > UINT32_MAX) {
            fprintf(stderr, "%s: --max-frame-size '%s': expected bytes from 4K to 4294967295\n",
                    prog, arg);
            return -1;
        }
        l->max_frame = x;
        return 1;
    case PT_DOPT_MAX_MESSAGE:
        if (pt_daemon_parse_size(arg, &x) != 0 || x < 1024 || x > (UINT64_C(1) << 40)) {
            fprintf(stderr, "%s: --max-message-size '%s': expected bytes from 1K to 1024G\n", prog,
                    arg);
            return -1;
        }
        l->max_message = x;
        return 1;
    case PT_DOPT_MAX_RECORDS:
        if (pt_daemon_parse_count(arg, UINT32_MAX, &x) != 0) {
            fprintf(stderr, "%s: --max-records '%s': expected a count from 1 to 4294967295\n", prog,
                    arg);
            return -1;
        }
        l->max_records = x;
        return 1;
    case PT_DOPT_MAX_RANK:
        if (pt_daemon_parse_count(arg, PETAL_MAX_NDIM, &x) != 0) {
            fprintf(stderr, "%s: --max-array-rank '%s': expected a count from 1 to %d\n", prog, arg,
                    PETAL_MAX_NDIM);
            return -1;
        }
        l->max_rank = x;
        return 1;
    case PT_DOPT_MAX_ELEMENTS:
        if (pt_daemon_parse_count(arg, UINT64_MAX, &x) != 0) {
            fprintf(stderr, "%s: --max-array-elements '%s': expected a positive count\n", prog,
                    arg);
            return -1;
        }
        l->max_elements = x;
        return 1;
    case PT_DOPT_MAX_STRING:
        if (pt_daemon_parse_size(arg, &x) != 0 || x < 64 || x > UINT32_MAX) {
            fprintf(stderr, "%s: --max-string-length '%s': expected bytes from 64 to 4294967295\n",
                    prog, arg);
            return -1;
        }
        l->max_string = x;
        return 1;
    case PT_DOPT_IDLE_TIMEOUT:
        if (pt_daemon_parse_seconds(arg, 0.1, 86400, &t) != 0) {
            fprintf(stderr, "%s: --idle-timeout '%s': expected seconds from 0.1 to 86400\n", prog,
                    arg);
            return -1;
        }
        l->idle_timeout = t;
        return 1;
    case PT_DOPT_HANDSHAKE_TIMEOUT:
        if (pt_daemon_parse_seconds(arg, 0.1, 3600, &t) != 0) {
            fprintf(stderr, "%s: --handshake-timeout '%s': expected seconds from 0.1 to 3600\n",
                    prog, arg);
            return -1;
        }
        l->handshake_timeout = t;
        return 1;
    case PT_DOPT_RECORD_CIPHER:
        if (strcmp(arg, "auto") == 0) {
            l->ciphers = 0;
        } else if (strcmp(arg, "xchacha20-poly1305") == 0) {
            l->ciphers = PT_SECURE_XCHACHA20POLY1305;
        } else if (strcmp(arg, "aes-256-gcm") == 0) {
            if (!(pt_secure_ciphers_available() & PT_SECURE_AES256GCM)) {
                fprintf(stderr,
                        "%s: --record-cipher aes-256-gcm: this machine has no hardware AES "
                        "(AES-NI and PCLMUL); use auto or xchacha20-poly1305\n",
                        prog);
                return -1;
            }
            l->ciphers = PT_SECURE_AES256GCM;
        } else {
            fprintf(stderr,
                    "%s: --record-cipher '%s': expected auto, aes-256-gcm or "
                    "xchacha20-poly1305\n",
                    prog, arg);
            return -1;
        }
        return 1;
    default:
        return 0;
    }
}

int
pt_daemon_limits_apply(const char *prog, const pt_daemon_limits_t *l)
{
    pt_stream_opts_t o;
    pt_stream_opts_default(&o);
    o.max_frame = l->max_frame;
    o.max_message = l->max_message;
    o.idle_timeout_ms = (uint64_t)(l->idle_timeout * 1000.0 + 0.5);
    pt_codec_limits_t c;
    memset(&c, 0, sizeof(c));
    c.max_records = l->max_records > UINT32_MAX ? UINT32_MAX : (uint32_t)l->max_records;
    c.max_ndim = (uint32_t)l->max_rank;
    c.max_array_elements = l->max_elements;
    c.max_string_bytes = l->max_string;
    int rc = pt_stream_set_opts(&o);
    if (rc == 0) {
        rc = pt_stream_set_codec_limits(&c);
    }
    if (rc != 0) {
        fprintf(stderr, "%s: the limits are out of range: %s\n", prog, petal_strerror(rc));
        return -1;
    }
    return 0;
}
