/* process.h - child processes for process isolation: spawn, signal, and an exit message. */
#ifndef PT_PROCESS_H
#define PT_PROCESS_H

#include <stdint.h>

#include "actor.h"

/*
 * A child process started with uv_spawn on the runtime's loop. Its stdin is /dev/null, its
 * stdout and stderr are the parent's; it gets the parent's environment and working directory.
 *
 * Lifetime of a pt_process_t (every call on the loop thread):
 *  - pt_process_spawn() returns it; it stays valid while the child runs.
 *  - When the child exits, `owner` receives one pt_process_exit_t (type PT_MSG_PROCESS_EXIT).
 *    The handle stays valid while the owner handles that message and is freed by
 *    pt_msg_free() on it: after that, never touch it again. pt_process_kill() on an exited
 *    child does nothing.
 *  - If the owner stops first, the handle stays valid through the owner's PT_MSG_STOP handler
 *    (which may still call pt_process_kill()); after that handler, a child still running is
 *    sent SIGKILL, no message is delivered, and the handle is freed once the child is reaped.
 *    The runtime's loop runs until then.
 */

#define PT_MSG_PROCESS_EXIT 0xff000201u /* a pt_process_exit_t */

typedef struct pt_process pt_process_t;

typedef struct pt_process_exit {
    pt_msg_t hdr;
    pt_process_t *p;
    int64_t exit_status; /* the exit code, when term_signal is 0 */
    int term_signal;     /* the signal that ended the child, or 0 */
} pt_process_exit_t;

/*
 * Starts argv[0] (looked up in PATH when it has no '/') with the NULL-terminated argv.
 * 0 and *out on success; a negative libuv error (UV_ENOENT, UV_EACCES, ...) or PETAL_EINVAL /
 * PETAL_ENOMEM / PETAL_ECLOSED (owner stopped) otherwise, and then no message ever comes.
 */
int pt_process_spawn(pt_runtime_t *rt, pt_actor_t *owner, const char *const *argv,
                     pt_process_t **out);
/* Sends signum to the child if it has not exited yet (logs a failure). */
void pt_process_kill(pt_process_t *p, int signum);
/* The child's process id. */
int pt_process_pid(const pt_process_t *p);

#endif
