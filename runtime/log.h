/* log.h - leveled logging with timestamps and the current actor's name. */
#ifndef PT_LOG_H
#define PT_LOG_H

#include <petal/plugin.h>

/* Level from PETAL_LOG_LEVEL ("error", "warn", "info", "debug") at first use; default info. */
void pt_log_set_level(int level);
int pt_log_level(void);
/* Parses "error|warn|info|debug"; 0 and *level on success, PETAL_EINVAL otherwise. */
int pt_log_parse_level(const char *s, int *level);
/* Names the calling thread's current actor/worker in log lines ("superlink", "worker-1"); the
 * string must outlive its use (static or actor-owned). Thread-local. */
void pt_log_set_name(const char *name);
/* Thread-safe; one line per call, written whole to stderr. */
void pt_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PT_ERROR(...) pt_log(PETAL_LOG_ERROR, __VA_ARGS__)
#define PT_WARN(...) pt_log(PETAL_LOG_WARN, __VA_ARGS__)
#define PT_INFO(...) pt_log(PETAL_LOG_INFO, __VA_ARGS__)
#define PT_DEBUG(...)                                                                              \
    do {                                                                                           \
        if (pt_log_level() >= PETAL_LOG_DEBUG) {                                                   \
            pt_log(PETAL_LOG_DEBUG, __VA_ARGS__);                                                  \
        }                                                                                          \
    } while (0)

#endif
