/* superlink.h - the SuperLink actor: the federation's hub (Fleet side and Grid side). */
#ifndef PT_SUPERLINK_H
#define PT_SUPERLINK_H

#include <stdint.h>

#include "actors/superlink/linkstate.h"
#include "actors/serverapp/serverapp.h"
#include "actors/waiter.h"
#include "runtime/actor.h"
#include "runtime/context.h"
#include "runtime/keys.h"

typedef struct pt_superlink pt_superlink_t;

typedef struct pt_superlink_opts {
    const char *fleet_address;   /* "inproc://fleet", "tcp://0.0.0.0:9092" */
    const char *control_address; /* "tcp://127.0.0.1:9093"; NULL: no Control API (petal sim) */
    const char *cache_dir;       /* where submitted bundles are unpacked; NULL: default */
    double heartbeat_interval;   /* seconds; 0 = 30. A node missing 3 is offline. */
    int exit_when_idle;          /* petal sim: shut the runtime down when the last run finished */
    const char *serverapp_exe;   /* process isolation: run ServerApps as `EXE --serverapp-child`;
                                  * NULL: in threads of this process */
    /* Instructions one node may have waiting for a reply; one more gets the error reply
     * MESSAGE_UNAVAILABLE with the reason. 0: no limit (petal sim). */
    uint64_t max_pending_per_node;
    /* Connections on the fleet and on the control address; one more is told why (an error
     * frame) and closed, and the refusal is logged. 0: no limit. */
    uint64_t max_connections, max_control_connections;
    /* The secure channel (transport/secure.h) on both tcp addresses when identity is set; the
     * pointers are borrowed and must outlive the SuperLink. NULL identity: plain frames. */
    const pt_keypair_t *identity;
    const pt_keylist_t *allow_nodes; /* SuperNode keys allowed on the fleet; NULL: any key */
    const pt_keylist_t *operators;   /* CLI keys allowed on the control address; NULL: any key */
    double handshake_timeout;        /* seconds; 0: the secure channel's default */
    unsigned ciphers;                /* record ciphers offered (transport/secure.h); 0: all */
} pt_superlink_opts_t;

/* Spawns the actor and starts listening (loop thread, before or while the runtime runs). Takes
 * ownership of `ls`, also when it fails. */
int pt_superlink_start(pt_runtime_t *rt, const pt_superlink_opts_t *opts, pt_linkstate_t *ls,
                       pt_superlink_t **out);
pt_actor_t *pt_superlink_actor(pt_superlink_t *sl);
/* The bound fleet and control addresses (with real ports after binding port 0). */
int pt_superlink_addresses(pt_superlink_t *sl, char *fleet, size_t fleet_cap, char *control,
                           size_t control_cap);
/* A new message id, unique in this process; any thread. */
uint64_t pt_superlink_new_message_id(void);

/* ---- Messages other threads send to the SuperLink actor ---------------------------------- */

enum pt_superlink_msg_type {
    PT_SL_START_RUN = 1, /* pt_sl_start_run_t */
    PT_SL_NODE_IDS,      /* pt_sl_node_ids_t (synchronous: the sender waits on `done`) */
    PT_SL_PUSH,          /* pt_sl_push_t */
    PT_SL_CANCEL,        /* pt_sl_cancel_t */
    PT_SL_RUN_DONE,      /* pt_sl_run_done_t */
    PT_SL_TTL_SWEEP,     /* internal timer tag */
};

/* Starts a run: the SuperLink records it and starts its ServerApp. */
typedef struct pt_sl_start_run {
    pt_msg_t hdr;
    char *app_dir;                     /* owned */
    petal_recorddict_t *config_holder; /* owned; the run config ("config" record) */
    pt_run_observer_t *observer;       /* borrowed; must outlive the run; may be NULL */
} pt_sl_start_run_t;

/* A synchronous request: the sender fills ids/cap, waits until done != 0. */
typedef struct pt_sl_sync {
    void *mu, *cv; /* pthread mutex/cond owned by the sender */
    int done;
} pt_sl_sync_t;

typedef struct pt_sl_node_ids {
    pt_msg_t hdr;
    pt_sl_sync_t *sync;
    uint64_t *ids;
    uint64_t cap;
    int64_t result;
} pt_sl_node_ids_t;

/* Pushes instructions; replies (or error replies) go to the waiter's slots in order. */
typedef struct pt_sl_push {
    pt_msg_t hdr;
    uint64_t run_id;
    pt_waiter_t *waiter;    /* a reference owned by this message */
    petal_message_t **msgs; /* owned, n of them */
    uint64_t n;
} pt_sl_push_t;

typedef struct pt_sl_cancel {
    pt_msg_t hdr;
    pt_waiter_t *waiter; /* a reference owned by this message */
} pt_sl_cancel_t;

typedef struct pt_sl_run_done {
    pt_msg_t hdr;
    uint64_t run_id;
    int result; /* pt_run_result_t */
    char reason[512];
} pt_sl_run_done_t;

/* Allocates a pt_sl_* message with hdr.type and a free function set; NULL when out of memory. */
void *pt_sl_msg_alloc(uint32_t type, size_t size);

#endif
