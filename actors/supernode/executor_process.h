/* executor_process.h - process isolation: a child process per run serves ClientApp calls. */
#ifndef PT_EXECUTOR_PROCESS_H
#define PT_EXECUTOR_PROCESS_H

#include <stddef.h>

#include <petal/petal.h>

#include "actors/supernode/executor.h"

typedef struct pt_executor_process pt_executor_process_t;

/* Prepares a child for APP_DIR (started lazily on the first instruction, and again after a
 * crash). Replies go to `owner` as PT_EXEC_DONE of executor `e`. */
int pt_executor_process_start(pt_runtime_t *rt, pt_actor_t *owner, pt_executor_t *e,
                              const char *app_dir, const petal_configrecord_t *run_config,
                              const char *self_exe, pt_executor_process_t **out, char *err,
                              size_t err_cap);
/* Sends the instruction (with the node's context state) to the child; takes f on success. */
int pt_executor_process_submit(pt_executor_process_t *p, petal_context_t *ctx, pt_frame_t *f);
/* Stops the child and frees everything (NULL is fine). */
void pt_executor_process_free(pt_executor_process_t *p);

#endif
