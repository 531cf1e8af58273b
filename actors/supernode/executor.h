/* executor.h - where a SuperNode runs its ClientApp: worker threads, or a child process. */
#ifndef PT_EXECUTOR_H
#define PT_EXECUTOR_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

#include "runtime/actor.h"
#include "transport/transport.h"

/*
 * One executor per run. Thread isolation loads the plugin in this process and runs handlers on
 * the worker pool; process isolation runs them in a child process over an ipc connection, so a
 * crashing plugin becomes a CLIENT_APP_CRASHED error reply and the daemon keeps serving (the
 * next instruction starts a new child). Either way each submitted instruction produces exactly
 * one PT_EXEC_DONE message to `owner`, in submission order. Loop thread only.
 */
typedef struct pt_executor pt_executor_t;

#define PT_EXEC_DONE 0xfe000001u

typedef struct pt_exec_done {
    pt_msg_t hdr; /* hdr.type == PT_EXEC_DONE */
    pt_executor_t *exec;
    int loaded;              /* 1: the ClientApp finished loading (see pt_executor_error) */
    uint64_t instruction_id; /* otherwise: the instruction answered */
    petal_message_t *reply;  /* owned by the message; NULL only when out of memory */
} pt_exec_done_t;

/* The free function of a pt_exec_done_t (releases its reply). */
void pt_exec_done_free(pt_msg_t *m);

/* Starts loading APP_DIR's ClientApp (on a worker, or lazily in a child process); the owner gets
 * a PT_EXEC_DONE with loaded = 1 when it is ready or failed. Submit only after that. */
int pt_executor_start(pt_runtime_t *rt, pt_actor_t *owner, int isolation, const char *app_dir,
                      const petal_configrecord_t *run_config, const char *self_exe,
                      pt_executor_t **out, char *err, size_t err_cap);
/* After loaded: "" when the ClientApp is ready, else why it could not be loaded. */
const char *pt_executor_error(const pt_executor_t *e);
/* Runs the instruction in `f` with the node's context (which must outlive the call). Takes f
 * on success. */
int pt_executor_submit(pt_executor_t *e, petal_context_t *ctx, pt_frame_t *f);
/* Frees the executor once nothing is in flight (asynchronously if needed). */
void pt_executor_free(pt_executor_t *e);

/* The child side of process isolation: `petal-supernode --clientapp-child ADDR` connects to
 * ADDR (ipc) and serves instructions until the connection closes. Returns the exit status. */
int pt_executor_child_main(const char *ipc_address);

#endif
