/* log.c - leveled log lines with UTC timestamps and the thread's actor/worker name. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <uv.h>

#include <petal/petal.h>

#include "log.h"

#define LINE_MAX_BYTES 4096

static atomic_int log_level = PETAL_LOG_INFO;
static uv_once_t level_once = UV_ONCE_INIT;
static _Thread_local const char *thread_name;

static const char *const level_names[] = {"ERROR", "WARN ", "INFO ", "DEBUG"};

static void
level_init(void)
{
    const char *env = getenv("PETAL_LOG_LEVEL");
    int level;

    if (env != NULL && env[0] != '\0') {
        if (pt_log_parse_level(env, &level) == 0) {
            atomic_store(&log_level, level);
        } else {
            fprintf(stderr,
                    "petal: ignoring PETAL_LOG_LEVEL=\"%s\" (use error, warn, info or "
                    "debug)\n",
                    env);
        }
    }
}

int
pt_log_parse_level(const char *s, int *level)
{
    static const struct {
        const char *name;
        int level;
    } names[] = {
        {"error", PETAL_LOG_ERROR}, {"warn", PETAL_LOG_WARN},   {"warning", PETAL_LOG_WARN},
        {"info", PETAL_LOG_INFO},   {"debug", PETAL_LOG_DEBUG},
    };

    if (s == NULL || level == NULL) {
        return PETAL_EINVAL;
    }
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return PETAL_EINVAL;
}

/* Any thread. Overrides PETAL_LOG_LEVEL from then on. Out-of-range levels are clamped. */
void
pt_log_set_level(int level)
{
    uv_once(&level_once, level_init);
    if (level < PETAL_LOG_ERROR) {
        level = PETAL_LOG_ERROR;
    }
    if (level > PETAL_LOG_DEBUG) {
        level = PETAL_LOG_DEBUG;
    }
    atomic_store(&log_level, level);
}

int
pt_log_level(void)
{
    uv_once(&level_once, level_init);
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

void
pt_log_set_name(const char *name)
{
    thread_name = name;
}

static void vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
vlog(int level, const char *fmt, va_list ap)
{
    char line[LINE_MAX_BYTES];
    struct timespec ts;
    struct tm tm;
    size_t len;
    int n;

    if (level < PETAL_LOG_ERROR) {
        level = PETAL_LOG_ERROR;
    }
    if (level > pt_log_level()) {
        return;
    }
    if (level > PETAL_LOG_DEBUG) {
        level = PETAL_LOG_DEBUG;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    len = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line + len, sizeof(line) - len, ".%03ldZ %s [%s] ", ts.tv_nsec / 1000000L,
                 level_names[level], thread_name != NULL ? thread_name : "-");
    if (n < 0) {
        return;
    }
    len += (size_t)n;
    /* Leave room for "...\n" when the message does not fit. */
    n = vsnprintf(line + len, sizeof(line) - len - 4, fmt, ap);
    if (n < 0) {
        n = 0;
    }
    if ((size_t)n >= sizeof(line) - len - 4) {
        len = sizeof(line) - 5;
        memcpy(line + len, "...", 3);
        len += 3;
    } else {
        len += (size_t)n;
    }
    while (len > 0 && line[len - 1] == '\n') {
        len--;
    }
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void
pt_log(int level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

/* The plugin-facing entry (host table slot `log`); same as pt_log. */
void
petal_log(int32_t level, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vlog((int)level, fmt, ap);
    va_end(ap);
}
