/* superlink_internal.h - what the SuperLink's files share: its state and helpers (loop thread). */
#ifndef PT_SUPERLINK_INTERNAL_H
#define PT_SUPERLINK_INTERNAL_H

#include "actors/history.h"
#include "actors/outbox.h"
#include "runtime/u64map.h"
#include "transport/transport.h"

#include "superlink.h"

/* One connection: a SuperNode, the simulation's virtual nodes, or a CLI on the control port. */
typedef struct link_conn {
    pt_conn_t *conn;
    int control;                   /* accepted on the control address */
    int keyed;                     /* registered with a node key (a real SuperNode) */
    int refused;                   /* over a limit: told why, closed by the peer or the sweep */
    uint64_t first_node, count;    /* node ids [first, first + count) once registered */
    double last_seen;              /* seconds since the epoch of the last frame */
    uint64_t log_run_id, log_next; /* control: the run log it reads, and the next line */
    pt_outbox_t outbox;            /* frames waiting for PT_MSG_CONN_WRITABLE */
    struct link_conn *next;
} link_conn_t;

/* Where the reply to an instruction goes. */
typedef struct pending_ref {
    pt_waiter_t *waiter; /* a reference */
    uint64_t slot;
    uint64_t dst_node;
} pending_ref_t;

/* A CLI following a run's log (petal run --stream, petal log --follow). */
typedef struct log_follower {
    link_conn_t *lc;
    uint64_t run_id;
    struct log_follower *next;
} log_follower_t;

typedef struct run_entry {
    uint64_t run_id;
    pt_superlink_t *sl;
    pt_serverapp_t *serverapp;
    pt_run_observer_t *observer; /* the caller's (petal sim), or &recorder */
    pt_run_observer_t recorder;  /* deployment: round lines into the run's log, and history */
    pt_history_t *history;       /* written by the ServerApp thread until the run is done */
    int64_t num_rounds;
    int expect_evaluate;
    double round_started; /* ServerApp thread only */
    int stop_requested;
    int done;
} run_entry_t;

struct pt_superlink {
    pt_runtime_t *rt;
    pt_actor_t *actor;
    pt_linkstate_t *ls;
    pt_listener_t *listener, *control_listener;
    pt_superlink_opts_t opts;
    char fleet_address[256], control_address[256], cache_dir[4096], serverapp_exe[4096];
    link_conn_t *conns;
    link_conn_t **node_conn; /* node id - 1 -> its connection (NULL when offline) */
    uint64_t node_conn_cap;
    pt_u64map_t pending;          /* message id -> pending_ref_t* */
    pt_u64map_t pending_per_node; /* node id -> (void *)(uintptr_t) its entries in `pending` */
    uint64_t fleet_conns, control_conns; /* accepted and not refused */
    pt_u64map_t runs; /* run id -> run_entry_t* (live and finished this process) */
    log_follower_t *followers;
    uint64_t running_runs;
    pt_timer_t *ttl_timer, *liveness_timer;
};

/* Internal actor messages. */
enum {
    PT_SL_LOG = 100, /* pt_sl_log_t: a line for a run's log, from the ServerApp thread */
};

typedef struct pt_sl_log {
    pt_msg_t hdr;
    uint64_t run_id;
    char line[512];
} pt_sl_log_t;

void pt_sl_conn_send(link_conn_t *lc, pt_frame_t *f);
/* Sends a FLEET_ERROR or CONTROL_ERROR (by the connection's kind) with code and reason. */
void pt_sl_send_error(link_conn_t *lc, int code, const char *reason);

/* Runs (superlink_runs.c) */
/* Creates and starts a run; takes config_holder. 0 and *run_id, or an error with err set. */
int pt_sl_run_start(pt_superlink_t *sl, const char *app_dir, const char *bundle_hash,
                    petal_recorddict_t *config_holder, pt_run_observer_t *observer,
                    uint64_t *run_id, char *err, size_t err_cap);
void pt_sl_run_done(pt_superlink_t *sl, pt_sl_run_done_t *d);
/* Asks a running run to stop; 0, PETAL_ENOENT (unknown) or PETAL_ESTATE (finished). */
int pt_sl_run_stop(pt_superlink_t *sl, uint64_t run_id);
/* Appends a line to the run's log and sends it to the followers. */
void pt_sl_run_log(pt_superlink_t *sl, uint64_t run_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pt_sl_runs_free(pt_superlink_t *sl);

/* Control protocol (superlink_control.c) */
void pt_sl_control_frame(pt_superlink_t *sl, link_conn_t *lc, pt_frame_t *f);
/* Sends a run's log lines from `from`, and finished = 1 when it ended. */
void pt_sl_control_send_log(pt_superlink_t *sl, link_conn_t *lc, uint64_t run_id, uint64_t from);
/* Forgets the followers on a connection that went down. */
void pt_sl_control_conn_down(pt_superlink_t *sl, link_conn_t *lc);

#endif
