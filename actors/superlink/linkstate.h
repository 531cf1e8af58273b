/* linkstate.h - the SuperLink's state (nodes, runs, pending messages) behind one interface. */
#ifndef PT_LINKSTATE_H
#define PT_LINKSTATE_H

#include <stddef.h>
#include <stdint.h>

#include <petal/petal.h>

#include "runtime/buf.h"

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

/* Longest node key (a public key, or a name an insecure node chose) and bundle hash. */
#define PT_NODE_KEY_MAX 64
#define PT_BUNDLE_HASH_LEN 64 /* lower-case hex SHA-256, without the NUL */

/* From run_get. app_dir, run_config and bundle_hash stay valid until the LinkState is freed;
 * reason until the next run_set_status of that run (both backends). */
typedef struct pt_run_rec {
    uint64_t run_id;
    int status; /* pt_run_status_t */
    int result; /* pt_run_result_t */
    double created_at, started_at, finished_at;
    const char *app_dir;                    /* borrowed; lives as long as the run */
    const petal_configrecord_t *run_config; /* borrowed; read-only */
    const char *reason;                     /* why it failed or stopped; "" otherwise */
    const char *bundle_hash;                /* "" for a run of a local app directory */
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
    /* A node identified by `key` (1..PT_NODE_KEY_MAX bytes): the same key gets the same node id
     * back, across reconnects and restarts; *is_new says whether it was created. Online. */
    int (*node_register)(pt_linkstate_t *ls, const uint8_t *key, size_t key_len, double now,
                         uint64_t *node_id, int *is_new);
    /* Writes up to cap node records (online or not), ascending; returns how many there are. */
    int64_t (*node_list)(pt_linkstate_t *ls, pt_node_rec_t *out, uint64_t cap);
    /* Runs: takes ownership of config_holder (a RecordDict with a ConfigRecord "config"), also
     * on failure. bundle_hash may be NULL (a local app directory). */
    int (*run_create)(pt_linkstate_t *ls, const char *app_dir, const char *bundle_hash,
                      petal_recorddict_t *config_holder, double now, uint64_t *run_id);
    /* Writes up to cap run ids, ascending; returns how many runs there are. */
    int64_t (*run_ids)(pt_linkstate_t *ls, uint64_t *ids, uint64_t cap);
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
    /* Calls cb(ctx, m) for each stored instruction addressed to node_id, oldest first (by
     * created_at, then message id), without removing them (re-delivery after a reconnect); m is
     * borrowed. Returns how many. */
    int64_t (*msg_for_node)(pt_linkstate_t *ls, uint64_t node_id,
                            void (*cb)(void *ctx, petal_message_t *m), void *ctx);
    /* Run logs: lines appended in order and numbered from 0. */
    int (*log_append)(pt_linkstate_t *ls, uint64_t run_id, const char *line);
    /* Calls cb for lines [from, ...) of the run; returns the index after the last one given. */
    int64_t (*log_read)(pt_linkstate_t *ls, uint64_t run_id, uint64_t from,
                        void (*cb)(void *ctx, uint64_t index, const char *line), void *ctx);
    /* App bundles by the SHA-256 of their bytes (hex); put of a stored hash is a no-op. */
    int (*bundle_put)(pt_linkstate_t *ls, const char *hash, const void *data, size_t len);
    /* The bundle's bytes as a new buffer reference (the caller releases it). */
    int (*bundle_get)(pt_linkstate_t *ls, const char *hash, pt_buf_t **out);
} pt_linkstate_ops_t;

struct pt_linkstate {
    const pt_linkstate_ops_t *ops;
};

int pt_linkstate_memory_alloc(pt_linkstate_t **out);
/* Opens (creating if needed) a SQLite LinkState. Runs that were not finished when the file was
 * last closed are marked finished:failed ("the SuperLink restarted while the run was
 * running"), and every node starts offline (ids and keys are kept). One process per file (an
 * exclusive flock). On error writes a sentence naming the file to err. */
int pt_linkstate_sqlite_open(const char *path, pt_linkstate_t **out, char *err, size_t err_cap);

#endif
