/* linkstate.h - the SuperLink's state (nodes, runs, pending messages) behind one interface. */
#ifndef PT_LINKSTATE_H
#define PT_LINKSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

/*
 * LinkState is used by the SuperLink actor only, on the loop thread. Implementations: the
 * in-memory one here (default, also used by `petal sim`), and later SQLite (--database).
 * Functions return 0 or a negative petal_error; out-parameters are written on success only.
 */

typedef enum pt_run_status {
    PT_RUN_PENDING = 0,
    PT_RUN_STARTING = 1,
    PT_RUN_RUNNING = 2,
    PT_RUN_FINISHED = 3
} pt_run_status_t;

typedef enum pt_run_result {
    PT_RUN_NONE = 0, /* not finished */
    PT_RUN_COMPLETED = 1,
    PT_RUN_FAILED = 2,
    PT_RUN_STOPPED = 3
} pt_run_result_t;

const char *pt_run_status_name(int status, int result); /* "running", "finished:failed", ... */

typedef struct pt_node_rec {
    uint64_t node_id;
    double last_seen; /* seconds since the epoch of the last frame or heartbeat */
    uint8_t online;
} pt_node_rec_t;

typedef struct pt_run_rec {
    uint64_t run_id;
    int status; /* pt_run_status_t */
    int result; /* pt_run_result_t */
    double created_at, started_at, finished_at;
    const char *app_dir;                    /* borrowed; lives as long as the run */
    const petal_configrecord_t *run_config; /* borrowed; read-only */
    const char *reason;                     /* why it failed or stopped; "" otherwise */
} pt_run_rec_t;

typedef struct pt_linkstate pt_linkstate_t;

typedef struct pt_linkstate_ops {
    void (*free)(pt_linkstate_t *ls);
    /* Nodes: `count` consecutive new node ids, online, first id in *first. */
    int (*nodes_create)(pt_linkstate_t *ls, uint64_t count, double now, uint64_t *first);
    int (*node_get)(pt_linkstate_t *ls, uint64_t node_id, pt_node_rec_t *out);
    int (*node_set_online)(pt_linkstate_t *ls, uint64_t node_id, int online, double now);
    /* Writes up to cap ids of online nodes, ascending; returns the number online (may be > cap). */
    int64_t (*node_ids_online)(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap);
    /* Runs: takes ownership of config_holder (a RecordDict with a ConfigRecord "config"). */
    int (*run_create)(pt_linkstate_t *ls, const char *app_dir, petal_recorddict_t *config_holder,
                      double now, uint64_t *run_id);
    int (*run_get)(pt_linkstate_t *ls, uint64_t run_id, pt_run_rec_t *out);
    int (*run_set_status)(pt_linkstate_t *ls, uint64_t run_id, int status, int result,
                          const char *reason, double now);
    /* Messages: stores a held reference to an instruction (its message id set by the caller,
     * unique); taken back by message id when its reply arrives or it expires. */
    int (*msg_put)(pt_linkstate_t *ls, petal_message_t *m);
    petal_message_t *(*msg_take)(pt_linkstate_t *ls, uint64_t message_id);
    /* Removes instructions whose created_at + ttl < now; calls expired(ctx, m) for each (the
     * callback owns m). Returns how many expired. */
    int64_t (*msg_expire)(pt_linkstate_t *ls, double now,
                          void (*expired)(void *ctx, petal_message_t *m), void *ctx);
    uint64_t (*msg_pending)(pt_linkstate_t *ls);
} pt_linkstate_ops_t;

struct pt_linkstate {
    const pt_linkstate_ops_t *ops;
};

int pt_linkstate_memory_alloc(pt_linkstate_t **out);

#endif
