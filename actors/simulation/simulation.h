/* simulation.h - the simulation actor: N virtual SuperNodes over one Fleet connection. */
#ifndef PT_SIMULATION_H
#define PT_SIMULATION_H

#include <stdint.h>

#include "runtime/actor.h"

/*
 * The actor speaks the Fleet protocol to a SuperLink like any SuperNode, but registers
 * `num_nodes` virtual nodes at once and runs their ClientApps on the worker pool. A virtual
 * node costs a few bytes until it first receives a message; then it gets a Context (node
 * config partition-id/num-partitions, a state RecordDict that persists across rounds).
 */
typedef struct pt_simulation pt_simulation_t;

typedef struct pt_simulation_opts {
    const char *fleet_address; /* the SuperLink's, e.g. "inproc://fleet" */
    uint64_t num_nodes;        /* >= 1 */
    uint32_t max_inflight;     /* ClientApp calls queued to the pool at once; 0 = 4 x workers */
} pt_simulation_opts_t;

/* Spawns the actor and dials the SuperLink. Loop thread. */
int pt_simulation_start(pt_runtime_t *rt, const pt_simulation_opts_t *opts, pt_simulation_t **out);

/* Counters for reports; read after the runtime stopped or on the loop thread. */
typedef struct pt_simulation_stats {
    uint64_t executed; /* ClientApp calls completed */
    uint64_t failed;   /* of which error replies */
    uint64_t contexts; /* virtual nodes that got a Context */
} pt_simulation_stats_t;
void pt_simulation_stats(pt_simulation_t *s, pt_simulation_stats_t *out);
/* Drops the caller's reference (the actor and its jobs hold their own). */
void pt_simulation_release(pt_simulation_t *s);

#endif
