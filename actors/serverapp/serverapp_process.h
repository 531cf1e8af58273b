/* serverapp_process.h - process isolation for ServerApps: main() runs in a child process. */
#ifndef PT_SERVERAPP_PROCESS_H
#define PT_SERVERAPP_PROCESS_H

#include <stddef.h>

#include <petal/petal.h>

/*
 * The parent side runs on the run's ServerApp thread: it starts `self_exe --serverapp-child FD`
 * with one end of a Unix socket pair, sends it the run (id, app dir, run config), and serves
 * its Grid calls with the parent's own Grid (blocking calls on this thread) until the child
 * reports main()'s result or dies. A crashing server plugin thus fails its run with a reason
 * ("the ServerApp process was killed by signal 11") and the SuperLink keeps serving.
 *
 * Each exchange is a sequence of Petal messages (the codec's encoding), each prefixed by its
 * length as a 32-bit big-endian integer; see docs/protocol.md ("ServerApp process").
 */

/* Returns what the child's main() returned (0 = completed), or a negative error with err set. */
int pt_serverapp_process_run(petal_grid_t *grid, petal_context_t *ctx, const char *self_exe,
                             const char *app_dir, char *err, size_t err_cap);

/* The child: serves one run over `fd` and returns the process exit status. */
int pt_serverapp_child_main(int fd);

#endif
